"""Where the demo finds Redis: the given URL, else a private redis-server, else one line of help."""

from __future__ import annotations

import pytest
import redis
from typer.testing import CliRunner

from stateful_route.cli.app import app
from stateful_route.testing.local_redis import answers, free_port, redis_url


def test_a_private_server_is_started_when_nothing_answers_and_removed_after():
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with redis_url(dead) as url:
        assert url != dead
        assert answers(url)
    assert not answers(url)


def test_without_redis_and_without_redis_server_the_demo_says_how_in_one_line():
    dead = f"redis://127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(
        app, ["demo", "--redis-url", dead, "--duration", "5"], env={"PATH": "/nonexistent"}
    )
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "REDIS_URL" in line
    assert "redis-server" in line


@pytest.mark.e2e  # the whole demo: the operator against the emulated cluster
def test_the_demo_leaves_other_keys_alone(private_redis):
    # A private server: other suites sharing the machine's Redis run demos of their own.
    redis_url = private_redis().url
    client = redis.Redis.from_url(redis_url)
    client.set("someone-else:key", "untouched")
    try:
        result = CliRunner().invoke(
            app,
            ["demo", "--redis-url", redis_url, "--duration", "5", "--pods", "3", "--users", "100", "--json"],
        )
        assert result.exit_code == 0, result.output
        assert client.get("someone-else:key") == b"untouched"
        assert list(client.scan_iter(match="demo-*")) == []
    finally:
        client.delete("someone-else:key")
