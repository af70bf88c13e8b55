"""The demo when the Redis it found stops serving: Sentinels that name no usable primary any more
(as right after a group starts, before its Sentinels settle), at start or in the middle of the
story, end it with one line and exit 3, the URL redacted, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stateful_route.cli.app import app
from stateful_route.testing import local_redis
from stateful_route.testing.sentinel import SentinelGroup

pytestmark = [pytest.mark.sentinel, pytest.mark.slow]

PASSWORD = "hunter2-primary"
DEMO = ["--duration", "5", "--pods", "3", "--users", "50", "--json"]


@pytest.fixture
def lone_primary() -> Iterator[SentinelGroup]:
    """A primary and three Sentinels, no replica: once it is gone, no Sentinel names a primary."""
    group = SentinelGroup(replicas=0, password=PASSWORD).start()
    try:
        yield group
    finally:
        group.cleanup()


def assert_one_redacted_line(code: int, stderr: str) -> None:
    assert code == 3, stderr
    assert "Traceback" not in stderr, stderr
    assert PASSWORD not in stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: redis+sentinel://***@127.0.0.1:"), line


def test_the_primary_lost_right_after_it_was_found_ends_the_demo_with_exit_3(lone_primary, mocker):
    found = local_redis.answers

    def found_then_lost(url: str) -> bool:
        answered = found(url)
        lone_primary.data[0].kill()  # the demo's own connections then find no primary
        return answered

    mocker.patch.object(local_redis, "answers", found_then_lost)
    result = CliRunner().invoke(app, ["demo", "--redis-url", lone_primary.url, *DEMO])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert_one_redacted_line(result.exit_code, result.stderr)
    assert PASSWORD not in result.stdout


def test_the_primary_lost_during_the_story_ends_the_demo_with_exit_3(lone_primary):
    told: list[str] = []
    with subprocess.Popen(
        [str(Path(sys.executable).with_name("stateful-route")), "demo", *DEMO],
        env={**os.environ, "REDIS_URL": lone_primary.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as demo:

        def read() -> None:
            assert demo.stderr is not None
            for line in demo.stderr:
                told.append(line)
                if line.startswith("key prefix:"):  # the story begins: every part is running
                    lone_primary.data[0].kill()

        reader = threading.Thread(target=read)
        reader.start()
        try:
            demo.wait(90)
        finally:
            demo.kill()
            reader.join(10)
    assert any(line.startswith("key prefix:") for line in told), "".join(told)
    assert_one_redacted_line(demo.returncode, "".join(told))


@pytest.mark.parametrize("when", ["named but down", "unknown"])
def test_admin_commands_where_no_sentinel_names_a_primary_exit_3(when):
    # Sentinels just started: their primary not up yet (named, soon called down), or a service
    # none of them monitors yet. Either way the Sentinels answer, naming no usable primary.
    group = SentinelGroup(replicas=0, password=PASSWORD, service="not-up-yet")
    try:
        group.start_sentinels()
        url = group.url if when == "named but down" else group.url.replace("not-up-yet", "unknown")
        for extra in ([], ["--json"]):
            args = ["pods", "games", "room", "--redis-url", url, "--timeout", "1", *extra]
            result = CliRunner().invoke(app, args)
            assert_one_redacted_line(result.exit_code, result.stderr)
            assert PASSWORD not in result.stdout
    finally:
        group.cleanup()
