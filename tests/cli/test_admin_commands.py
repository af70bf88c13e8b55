"""The admin commands against real Redis: tables, --json, and the exit codes scripts rely on."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from stateful_route import PodState, RouteTable, RoutingState
from stateful_route.cli.app import app
from stateful_route.testing.local_redis import free_port
from tests.routes import NS, SVC, keys_under, make_route


async def cli(*args: str) -> tuple[int, str]:
    """Run the command in a thread (it runs its own event loop): (exit code, stdout)."""
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    return result.exit_code, result.stdout


@pytest.fixture
async def table(redis, prefix) -> RouteTable:
    return await make_route(redis, prefix, pods=3)


def opts(redis_url: str, prefix: str) -> list[str]:
    return ["--redis-url", redis_url, "--prefix", prefix]


async def test_pods_shows_the_route_table_as_a_table_and_as_json(table, redis_url, prefix):
    await table.update_pod(NS, SVC, PodState(2, ready=False))
    code, text = await cli("pods", NS, SVC, *opts(redis_url, prefix))
    assert code == 0
    assert "NotReady" in text
    assert "★" in text
    code, text = await cli("pods", NS, SVC, *opts(redis_url, prefix), "--json")
    rows = json.loads(text)
    assert code == 0
    assert [(r["pod"], r["routable"], r["available"]) for r in rows] == [
        (0, True, True),
        (1, True, True),
        (2, False, False),
    ]
    assert [r["best"] for r in rows] == [True, False, False]


async def test_place_then_lookup_and_links_report_the_same_pod(table, redis_url, prefix):
    code, text = await cli("place", NS, SVC, "user-1", *opts(redis_url, prefix), "--json")
    assert code == 0
    pod = json.loads(text)["pod"]
    code, text = await cli("lookup", NS, SVC, "user-1", *opts(redis_url, prefix), "--json")
    assert code == 0
    assert json.loads(text)["pod"] == pod
    assert json.loads(text)["persistent"] is False
    code, text = await cli("links", NS, "user-1", *opts(redis_url, prefix), "--json")
    assert (code, json.loads(text)) == (0, {SVC: pod})
    code, text = await cli("lookup", NS, SVC, "user-1", *opts(redis_url, prefix))
    assert code == 0
    assert "pod" in text


async def test_missing_link_route_or_pod_exits_1_and_writes_nothing(table, redis, redis_url, prefix):
    before = await keys_under(redis, prefix)
    assert (await cli("lookup", NS, SVC, "nobody", *opts(redis_url, prefix)))[0] == 1
    assert (await cli("links", NS, "nobody", *opts(redis_url, prefix)))[0] == 1
    assert (await cli("pods", NS, "no-such-route", *opts(redis_url, prefix)))[0] == 1
    assert (await cli("place", NS, "no-such-route", "u", *opts(redis_url, prefix)))[0] == 1
    assert (await cli("drain", NS, SVC, "7", *opts(redis_url, prefix)))[0] == 1
    code, text = await cli("evict", NS, SVC, "7", *opts(redis_url, prefix), "--json")
    assert code == 1
    assert "not in the route table" in json.loads(text)["error"]
    assert await keys_under(redis, prefix) == before


async def test_bad_input_exits_2_naming_the_field(table, redis, redis_url, prefix):
    before = await keys_under(redis, prefix)
    code, text = await cli("place", "Not_A_Namespace", SVC, "u", *opts(redis_url, prefix), "--json")
    assert code == 2
    assert json.loads(text)["field"] == "namespace"
    code, text = await cli("lookup", NS, SVC, "x" * 10_000, *opts(redis_url, prefix), "--json")
    assert (code, json.loads(text)["field"]) == (2, "uid")
    assert (await cli("drain", NS, SVC, "-1", *opts(redis_url, prefix)))[0] == 2
    assert (await cli("pods", NS, *opts(redis_url, prefix)))[0] == 2  # usage: SERVICE missing
    assert await keys_under(redis, prefix) == before


async def test_redis_down_exits_3_within_the_timeout(prefix):
    dead = f"redis://:secret@127.0.0.1:{free_port()}/0"
    loop = asyncio.get_running_loop()
    started = loop.time()
    code, text = await cli(
        "pods", NS, SVC, "--redis-url", dead, "--prefix", prefix, "--json", "--timeout", "0.5"
    )
    assert code == 3
    assert loop.time() - started < 3
    assert "secret" not in text  # the password never reaches the output
    assert "***" in json.loads(text)["error"]


async def test_no_available_pod_exits_4(table, redis_url, prefix):
    for i in range(3):
        await table.update_pod(NS, SVC, PodState(i, routing=RoutingState.DENY_NEW_CALL))
    assert (await cli("place", NS, SVC, "newcomer", *opts(redis_url, prefix)))[0] == 4


async def test_drain_stops_placements_undrain_restores_them(table, redis_url, prefix):
    code, text = await cli("drain", NS, SVC, "0", *opts(redis_url, prefix), "--json")
    assert code == 0
    assert (json.loads(text)["routing"], json.loads(text)["available"]) == ("DenyNewCall", False)
    placed = {json.loads((await cli("place", NS, SVC, f"u{i}", *opts(redis_url, prefix), "--json"))[1])["pod"]
              for i in range(6)}  # fmt: skip
    assert 0 not in placed
    code, text = await cli("undrain", NS, SVC, "0", *opts(redis_url, prefix), "--json")
    assert (code, json.loads(text)["available"]) == (0, True)


async def test_evict_removes_a_pods_links_and_rebinds_them_elsewhere(table, redis_url, prefix):
    for i in range(9):
        await cli("place", NS, SVC, f"u{i}", *opts(redis_url, prefix))
    await cli("drain", NS, SVC, "1", *opts(redis_url, prefix))
    code, text = await cli("evict", NS, SVC, "1", "--rebind", *opts(redis_url, prefix), "--json")
    done = json.loads(text)
    assert (code, done["removed"], done["rebound"]) == (0, 3, 3)
    code, text = await cli("pods", NS, SVC, *opts(redis_url, prefix), "--json")
    assert [r["links"] for r in json.loads(text)] == [5, 0, 4] or [r["links"] for r in json.loads(text)] == [
        4,
        0,
        5,
    ]


def test_every_command_explains_itself_with_an_example():
    for command in ("pods", "lookup", "links", "place", "drain", "undrain", "evict", "operator", "demo"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0
        assert "Example: stateful-route" in result.stdout


def test_operator_refuses_to_start_without_a_namespace_choice():
    assert CliRunner().invoke(app, ["operator"]).exit_code == 2
    assert CliRunner().invoke(app, ["operator", "-n", "games", "--all-namespaces"]).exit_code == 2
