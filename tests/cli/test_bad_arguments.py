"""Bad arguments get one line on stderr and exit 2 (never a traceback, never exit 1, which means
"not found" to a script); with ``--json`` the same error is a JSON object on stdout."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from click.testing import Result
from typer.testing import CliRunner

from stateful_route.cli.app import app
from tests.routes import NS, SVC

BAD_URLS = {
    "port not a number": "redis://127.0.0.1:abc/0",
    "password with a slash": "redis://:Sekr/Etpw@127.0.0.1:6379/0",
    "option not a number": "redis://127.0.0.1:6379/0?socket_timeout=abc",
    "not a redis url": "http://127.0.0.1:6379/0",
}


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def assert_one_line_exit_2(result: Result, *, as_json: bool) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert "Sekr" not in result.output
    assert "Etpw" not in result.output
    if as_json:
        assert json.loads(result.stdout)["error"]
    return line


@pytest.mark.parametrize("url", BAD_URLS.values(), ids=BAD_URLS.keys())
@pytest.mark.parametrize("as_json", [False, True])
def test_an_admin_command_with_a_bad_url(url: str, as_json: bool):
    result = run("pods", NS, SVC, "--redis-url", url, *(["--json"] if as_json else []))
    assert "redis_url" in assert_one_line_exit_2(result, as_json=as_json)


@pytest.mark.parametrize("url", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_the_operator_and_the_demo_with_a_bad_url(url: str):
    line = assert_one_line_exit_2(run("operator", "-n", NS, "--redis-url", url), as_json=False)
    assert "redis_url" in line
    line = assert_one_line_exit_2(run("demo", "--redis-url", url, "--duration", "5"), as_json=False)
    assert "redis_url" in line
    result = run("demo", "--redis-url", url, "--duration", "5", "--json")
    assert "redis_url" in assert_one_line_exit_2(result, as_json=True)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_metrics_port_out_of_range_or_in_use(busy_port: int):
    line = assert_one_line_exit_2(run("operator", "-n", NS, "--metrics-port", "99999"), as_json=False)
    assert "--metrics-port" in line
    assert "65535" in line
    line = assert_one_line_exit_2(run("operator", "-n", NS, "--metrics-port", str(busy_port)), as_json=False)
    assert str(busy_port) in line
    assert "metrics" in line


@pytest.mark.parametrize(
    "args",
    [
        ["pods", NS],  # SERVICE missing
        ["pods", NS, SVC, "--timeout", "abc"],
        ["lookup", NS, SVC, "u", "--no-such-flag"],
        ["drain", NS, SVC, "three"],
    ],
    ids=["missing argument", "bad option value", "unknown option", "bad argument type"],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_usage_errors_honour_json(args: list[str], as_json: bool):
    result = run(*args, *(["--json"] if as_json else []))
    assert_one_line_exit_2(result, as_json=as_json)
    if not as_json:
        assert result.stdout == ""
