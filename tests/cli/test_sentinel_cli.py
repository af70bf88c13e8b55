"""The CLI and the demo reach Redis through Sentinel, with the primary's password kept out of
what they print, and while one Sentinel hangs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from stateful_route.cli.app import app
from stateful_route.store.connection import connect
from stateful_route.testing.cleanup import delete_prefix
from stateful_route.testing.sentinel import SentinelGroup
from tests.routes import NS, SVC, make_route

pytestmark = pytest.mark.sentinel

PASSWORD = "hunter2-primary"


@pytest.fixture(scope="module")
def sentinel_group() -> Iterator[SentinelGroup]:
    group = SentinelGroup(password=PASSWORD).start()
    try:
        yield group
    finally:
        group.cleanup()


@pytest.fixture(scope="module")
def sentinel_url(sentinel_group) -> str:
    return sentinel_group.url


async def cli(*args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    return result.exit_code, result.stdout, result.stderr


async def test_admin_commands_work_through_sentinel(sentinel_url, prefix):
    redis = connect(sentinel_url)
    try:
        await make_route(redis, prefix, pods=3)
        code, out, _ = await cli("pods", NS, SVC, "--redis-url", sentinel_url, "--prefix", prefix, "--json")
        assert code == 0, out
        assert [row["pod"] for row in json.loads(out)] == [0, 1, 2]
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()


async def test_commands_work_while_the_first_sentinel_hangs(sentinel_group, prefix):
    url = sentinel_group.url
    redis = connect(url)
    first = sentinel_group.sentinels[0].process
    assert first is not None
    try:
        await make_route(redis, prefix, pods=3)
        os.kill(first.pid, signal.SIGSTOP)
        try:
            for args in (["pods", NS, SVC, "--json"], ["place", NS, SVC, "u1"], ["handoff", NS, SVC, "0"]):
                code, out, err = await cli(*args, "--redis-url", url, "--prefix", prefix, "--timeout", "2")
                assert code == 0, (args, out, err)
        finally:
            os.kill(first.pid, signal.SIGCONT)
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()


async def test_a_wrong_password_is_unavailable_and_never_printed(sentinel_url, prefix):
    wrong = sentinel_url.replace(PASSWORD, "wrong-secret")
    code, out, err = await cli("pods", NS, SVC, "--redis-url", wrong, "--prefix", prefix, "--timeout", "1")
    assert code == 3
    assert "wrong-secret" not in out + err
    assert "***@" in err


def test_the_demo_runs_through_sentinel(sentinel_url):
    result = CliRunner().invoke(
        app,
        ["demo", "--redis-url", sentinel_url, "--duration", "5", "--pods", "3", "--users", "100", "--json"],
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
