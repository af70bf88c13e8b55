"""Bad arguments get one line on stderr and exit 2 (never a traceback, never exit 1, which means
"not found" to a script); with ``--json`` the same error is a JSON object on stdout."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from click.testing import Result
from typer.testing import CliRunner

from stateful_route import InvalidInput
from stateful_route.cli.app import app
from tests.routes import NS, SVC

BAD_URLS = {
    "port not a number": "redis://127.0.0.1:abc/0",
    "password with a slash": "redis://:Sekr/Etpw@127.0.0.1:6379/0",
    "option not a number": "redis://127.0.0.1:6379/0?socket_timeout=abc",
    "not a redis url": "http://127.0.0.1:6379/0",
    # Options no connection takes, or values it refuses: bad input now, not a traceback or "Redis
    # unavailable" at the first command; the option's name may be a pasted secret, so not echoed.
    "unknown option": "redis://:Sekr@127.0.0.1:6379/0?Etpw=1",
    "TLS option on a plain url": "redis://127.0.0.1:6379/0?ssl_keyfile=/Sekr/Etpw",
    "refused value": "rediss://127.0.0.1:6379/0?ssl_cert_reqs=SekrEtpw",
    "protocol out of range": "redis://127.0.0.1:6379/0?protocol=9",
    "unknown option, sentinel": "redis+sentinel://127.0.0.1:1/mymaster?Etpw=Sekr",
    "unknown option, cluster": "redis://127.0.0.1:6379/0?cluster=true&Etpw=Sekr",
    "cluster neither true nor false": "redis://:SekrEtpw@127.0.0.1:6379/0?cluster=maybe",
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


BAD_OPERATOR_OPTIONS = {
    "prefix with a space": (["-n", NS, "--prefix", "x y"], "prefix"),
    "prefix of 40 chars": (["-n", NS, "--prefix", "p" * 40], "prefix"),
    "prefix with a brace": (["-n", NS, "--prefix", "a{b}"], "prefix"),
    "namespace not a DNS label": (["--namespace", "BAD_NS"], "namespace"),
    "second namespace bad": (["-n", NS, "-n", "games.eu"], "namespace"),
    "namespace too long": (["-n", "n" * 64], "namespace"),
    "peering not a name": (["-A", "--peering", "Bad Peer"], "peering"),
    "peering lifetime too short": (["-A", "--peering", "p", "--peering-lifetime", "9"], "peering_lifetime"),
    "liveness not http": (["-A", "--liveness", "ftp://0.0.0.0:8080/healthz"], "liveness"),
    "liveness port not a number": (["-A", "--liveness", "http://0.0.0.0:x/healthz"], "liveness"),
    "kubeconfig missing": (["-n", NS, "--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig"),
}


@pytest.mark.parametrize(("args", "field"), BAD_OPERATOR_OPTIONS.values(), ids=BAD_OPERATOR_OPTIONS.keys())
def test_the_operator_checks_every_option_before_starting(monkeypatch, args: list[str], field: str):
    async def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the operator started with a bad option")

    monkeypatch.setattr("stateful_route.controller.runner.run", started)
    line = assert_one_line_exit_2(run("operator", *args), as_json=False)
    assert line.startswith(f"error: {field}:"), line


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"namespaces": ["BAD_NS"]}, "namespace"),
        ({"peering": "-x"}, "peering"),
        ({"liveness": "localhost:8080"}, "liveness"),
    ],
)
async def test_the_operator_library_entry_point_checks_its_options(options: dict[str, object], field: str):
    from stateful_route.controller.config import OperatorConfig
    from stateful_route.controller.runner import run as run_operator

    with pytest.raises(InvalidInput) as bad:
        await run_operator(OperatorConfig(redis_url="redis://127.0.0.1:6379/0"), **options)
    assert bad.value.field == field
    with pytest.raises(InvalidInput) as bad:
        OperatorConfig(redis_url="redis://127.0.0.1:6379/0", prefix="x y")
    assert bad.value.field == "prefix"


def test_a_redis_url_given_without_its_flag_is_refused_without_echoing_its_password():
    """Click names the arguments it refused; a URL given without --redis-url must not leak (review 4)."""
    url = "redis://:hunter2@127.0.0.1:1/0"
    for args in (
        ["pods", "games", "room", url, "--json"],
        ["pods", "games", "room", "--", "--redis-url", url],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2
        assert "hunter2" not in result.stdout + result.stderr
        assert "redis://***@127.0.0.1:1/0" in result.stderr


OPERATOR_ERRORS_AT_START = {
    **{name: (args, field) for name, (args, field) in BAD_OPERATOR_OPTIONS.items()},
    "bad url with a password": (
        ["-n", NS, "--redis-url", "redis://:Sekr/Etpw@127.0.0.1:6379/0"],
        "redis_url",
    ),
    "metrics port out of range": (["-n", NS, "--metrics-port", "99999"], None),
    "unknown option": (["-n", NS, "--no-such-flag"], None),
    "no namespace": ([], None),
    "both -n and -A": (["-n", NS, "-A"], None),
}


@pytest.mark.parametrize(
    ("args", "field"), OPERATOR_ERRORS_AT_START.values(), ids=OPERATOR_ERRORS_AT_START.keys()
)
@pytest.mark.parametrize("where", ["first", "last", "equals"])
def test_with_json_logs_the_operators_errors_at_start_are_json_log_lines(
    monkeypatch, args: list[str], field: str | None, where: str
):
    """`--log-format json`: a log pipeline reads the error that stopped the operator as it reads the
    operator's events (one JSON object, level error, event invalid_option); nothing on stdout."""

    async def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the operator started with a bad option")

    monkeypatch.setattr("stateful_route.controller.runner.run", started)
    json_logs = {
        "first": ["--log-format", "json"],
        "last": ["--log-format", "json"],
        "equals": ["--log-format=json"],
    }
    argv = [*json_logs[where], *args] if where == "first" else [*args, *json_logs[where]]
    result = run("operator", *argv)
    line = assert_one_line_exit_2(result, as_json=False)
    assert result.stdout == ""
    entry = json.loads(line)
    assert entry["level"] == "error"
    assert entry["event"] == "invalid_option"
    assert entry["logger"] == "stateful_route.operator"
    assert entry["error"]
    assert entry["msg"].startswith("event=invalid_option")
    assert entry.get("field") == field
    assert {"ts", "exit"} <= entry.keys()
    assert entry["exit"] == 2


def test_with_kv_logs_the_operators_errors_at_start_stay_plain_lines():
    line = assert_one_line_exit_2(
        run("operator", "--log-format", "kv", "-n", NS, "--prefix", "x y"), as_json=False
    )
    assert line.startswith("error: prefix:"), line


def test_with_json_logs_a_metrics_port_in_use_is_a_json_log_line(busy_port: int):
    result = run("operator", "-n", NS, "--metrics-port", str(busy_port), "--log-format", "json")
    entry = json.loads(assert_one_line_exit_2(result, as_json=False))
    assert (entry["event"], entry["field"], entry["level"]) == ("invalid_option", "metrics_port", "error")
    assert str(busy_port) in entry["error"]
