"""Where the demo finds Redis: the given URL, else a private redis-server, else one line of help."""

from __future__ import annotations

import json

import pytest
import redis
from typer.testing import CliRunner

from stateful_route.cli.app import app
from stateful_route.testing.local_redis import NamedRedisDown, answers, free_port, redis_url


def test_a_private_server_is_started_when_none_is_named_nothing_answers_and_removed_after(mocker):
    # Nothing answers at the default (pointed at a dead port: this machine may run a Redis on 6379).
    dead = f"redis://127.0.0.1:{free_port()}/0"
    mocker.patch("stateful_route.testing.local_redis.DEFAULT_URL", dead)
    with redis_url(None) as url:
        assert url != dead
        assert answers(url)
    assert not answers(url)


def test_a_named_redis_that_does_not_answer_is_an_error_never_replaced():
    dead = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with pytest.raises(NamedRedisDown, match="no Redis answers") as raised, redis_url(dead):
        pytest.fail("a dead named Redis was used")
    assert "s3cret" not in str(raised.value)


def test_the_demo_with_a_named_dead_redis_exits_3_with_the_url_redacted():
    dead = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(app, ["demo", "--duration", "5", "--json"], env={"REDIS_URL": dead})
    assert result.exit_code == 3
    assert "s3cret" not in result.output + result.stderr
    assert json.loads(result.stdout)["error"].startswith("no Redis answers at redis://")


def test_without_redis_and_without_redis_server_the_demo_says_how_in_one_line(mocker):
    mocker.patch("stateful_route.testing.local_redis.DEFAULT_URL", f"redis://127.0.0.1:{free_port()}/0")
    result = CliRunner().invoke(
        app, ["demo", "--duration", "5"], env={"PATH": "/nonexistent", "REDIS_URL": None}
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
