"""`stateful-route migrate`: a route written by the layout-1 release (commit 4fd8d86) brought to
today's layout, as a table and as JSON; idempotent; --all; bad input and newer layouts."""

from __future__ import annotations

import json

import pytest

from stateful_route.core.constants import LAYOUT
from tests.cli.test_admin_commands import cli, opts
from tests.routes import NS, SVC, make_route
from tests.store.layout_1 import OldRelease

READY = "1,0,0,0"


async def old_route(redis, prefix: str, service: str = SVC) -> OldRelease:
    old = OldRelease(redis, prefix, service=service)
    await old.configure()
    await old.put_pods(dict.fromkeys(range(3), READY))
    for i in range(200):
        pod = int((await old.place(f"user-{i}"))[0])
        if i % 5 == 0:
            await old.set_linked_pod(f"user-{i}", pod)
    await old.put_phases({1: ",1"})
    return old


async def test_migrate_reports_what_it_moved_and_a_second_run_moves_nothing(redis, redis_url, prefix):
    await old_route(redis, prefix)
    code, text = await cli("migrate", NS, SVC, *opts(redis_url, prefix), "--json")
    assert code == 0, text
    (done,) = json.loads(text)
    assert done["layout_before"] is None
    assert (done["layout_after"], done["moved"], done["phases_converted"], done["done"]) == (
        LAYOUT,
        200,
        True,
        True,
    )
    code, text = await cli("pods", NS, SVC, *opts(redis_url, prefix), "--json")
    assert sum(row["links"] for row in json.loads(text)) == 200
    code, text = await cli("migrate", NS, SVC, *opts(redis_url, prefix))
    assert code == 0
    assert f"{LAYOUT} → {LAYOUT}" in text
    assert "yes" in text


async def test_migrate_all_takes_every_route_of_the_prefix(redis, redis_url, prefix):
    await old_route(redis, prefix)
    await old_route(redis, prefix, service="lobby")
    code, text = await cli("migrate", "--all", *opts(redis_url, prefix), "--json")
    assert code == 0, text
    assert [(m["service"], m["moved"], m["done"]) for m in json.loads(text)] == [
        ("lobby", 200, True),
        (SVC, 200, True),
    ]


async def test_the_pods_command_reads_the_old_releases_phases(redis, redis_url, prefix):
    """Finding 3: the CLI read layout 1's phases (a JSON string) as WRONGTYPE and exited 3."""
    await old_route(redis, prefix)
    code, text = await cli("pods", NS, SVC, *opts(redis_url, prefix), "--json")
    assert code == 0, text
    assert [row["state"] for row in json.loads(text)] == ["Ready", "Outdated", "Ready"]


async def test_a_route_of_a_newer_layout_exits_6_naming_both_layouts(redis, redis_url, prefix):
    await make_route(redis, prefix, pods=2)
    await redis.hset(f"{prefix}:{{{NS}/{SVC}}}:cfg", "layout", LAYOUT + 1)
    for command in (["pods", NS, SVC], ["migrate", NS, SVC]):
        code, text = await cli(*command, *opts(redis_url, prefix), "--json")
        assert code == 6, text
        assert json.loads(text)["found"] == LAYOUT + 1
        assert json.loads(text)["known"] == LAYOUT


async def test_migrate_all_goes_past_a_route_of_a_newer_layout_and_lists_every_route(
    redis, redis_url, prefix
):
    """One route a newer release wrote neither stops --all nor hides what it migrated (review 4)."""
    for service in ("aaa", "mmm", "zzz"):
        await old_route(redis, prefix, service=service)
    await redis.hset(f"{prefix}:{{{NS}/mmm}}:cfg", "layout", LAYOUT + 1)
    code, text = await cli("migrate", NS, "--all", *opts(redis_url, prefix), "--json")
    assert code == 6, text
    rows = {m["service"]: m for m in json.loads(text)}
    assert [(s, rows[s]["done"], rows[s]["moved"]) for s in ("aaa", "mmm", "zzz")] == [
        ("aaa", True, 200),
        ("mmm", False, 0),
        ("zzz", True, 200),
    ]
    assert rows["mmm"]["layout_before"] == LAYOUT + 1
    assert f"layout is {LAYOUT + 1}" in rows["mmm"]["error"]
    assert await redis.hget(f"{prefix}:{{{NS}/mmm}}:cfg", "layout") == str(LAYOUT + 1).encode()
    code, text = await cli("migrate", NS, "--all", *opts(redis_url, prefix))
    assert code == 6
    assert "newer" in text


@pytest.mark.parametrize("args", [[], [NS], [NS, SVC, "--all"], ["Bad_NS", "--all"]])
async def test_bad_arguments_exit_2_and_change_nothing(redis_url, prefix, args):
    code, _ = await cli("migrate", *args, *opts(redis_url, prefix))
    assert code == 2


async def test_no_such_route_exits_1(redis_url, prefix):
    code, _ = await cli("migrate", NS, "nothing", *opts(redis_url, prefix))
    assert code == 1


async def test_migrate_after_an_old_driver_removed_users_from_a_marked_route(redis, redis_url, prefix):
    """Outside review 1, D1: the operator marked the route, then an old pod driver removed 50
    users (leaving their shard entries). ``migrate`` removes them: counts equal the links."""
    old = OldRelease(redis, prefix)
    await old.configure(owner="")
    await old.put_pods(dict.fromkeys(range(3), READY))
    for i in range(300):
        await old.set_linked_pod(f"u{i}", int((await old.place(f"u{i}"))[0]))
    code, text = await cli("migrate", NS, SVC, *opts(redis_url, prefix), "--json")
    assert (code, json.loads(text)[0]["done"]) == (0, True)
    for i in range(50):
        await old.remove(f"u{i}")
    code, text = await cli("migrate", NS, SVC, *opts(redis_url, prefix), "--json")
    assert code == 0, text
    (done,) = json.loads(text)
    assert (done["layout_before"], done["stale"], done["checked"], done["done"]) == (LAYOUT, 50, 300, True)
    code, text = await cli("pods", NS, SVC, *opts(redis_url, prefix), "--json")
    assert sum(row["links"] for row in json.loads(text)) == 250
