"""The demo's hints: the admin commands name its Redis and key prefix, shell-quoted, and never print
a password."""

from __future__ import annotations

import shlex

from stateful_route.demo.story import DisplayState
from stateful_route.demo.view import admin_hint


def commands(hint: str) -> list[list[str]]:
    return [shlex.split(line.split("$ ", 1)[1], comments=True) for line in hint.splitlines() if "$ " in line]


def test_the_commands_name_the_demos_redis_and_prefix():
    url = "rediss://127.0.0.1:6380/0?ssl_ca_certs=/tmp/my ca.pem&x=1"
    hint = admin_hint(DisplayState(redis_url=url, prefix="demo-0a1b2c3d"))
    assert hint.startswith("key prefix: demo-0a1b2c3d ")
    pods, lookup = commands(hint)
    target = ["--redis-url", url, "--prefix", "demo-0a1b2c3d"]
    assert pods[1:] == ["pods", "games", "room", *target]
    assert lookup[1:] == ["lookup", "games", "room", "user-0", *target]


def test_a_password_is_never_printed():
    hint = admin_hint(DisplayState(redis_url="redis://admin:s3cret@10.0.0.5:6379/0", prefix="demo-1"))
    assert "s3cret" not in hint
    assert "admin" not in hint
    (pods, _) = commands(hint)
    assert pods[pods.index("--redis-url") + 1] == "redis://***@10.0.0.5:6379/0"
    assert "put the URL's password back" in hint
