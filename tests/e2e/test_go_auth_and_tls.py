"""The Go client through Redis AUTH (an ACL user and its password) and TLS (the test CA), to one
server and behind Sentinels: it answers as the Python client does, and a wrong password, a plain
connection to a TLS port or an unknown CA is StoreUnavailable in both clients, with no password
in the Go client's messages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from stateful_route import ClientDriver, PodState, RouteTable
from stateful_route.store.connection import connect
from stateful_route.testing.local_redis import PrivateRedis, Tls
from stateful_route.testing.sentinel import SentinelGroup
from tests.go_replay import Call, GoReplay, PythonReplay, outcomes
from tests.routes import NS, SVC

USER, PASSWORD = "gateway", "g0:pa/ss@word"  # percent-encoded in URLs
WRONG = "Wr0ng-pa55"
TIMEOUT = 5.0
USERS = [f"user-{i}" for i in range(30)]
CALLS: list[Call] = [
    *({"op": "compute_linked_pod", "uid": uid, "service": SVC} for uid in USERS),
    {"op": "get_linked_pod_not_cache", "uid": "user-3", "service": SVC},
    {"op": "get_link_service", "uid": "user-4"},
    {"op": "batch_get_linked_pod", "uids": USERS, "service": SVC},
    {"op": "set_linked_pod_if_absent", "uid": "newcomer", "service": SVC, "pod": 1},
    {"op": "server.set_load_state", "service": SVC, "pod": 0, "load": 40},
    {"op": "compute_linked_pod", "uid": "after-report", "service": SVC},
    {"op": "routable_pods", "service": SVC},
]


async def both_answer_alike(go_replay: Path, url: str, prefix: str) -> None:
    """Go plays CALLS under one prefix, Python under another, on identical tables: equal answers.
    Every call may take TIMEOUT: what is compared is the answers, not how fast a loaded machine
    gives them."""
    redis = connect(url)
    try:
        answers = []
        for each in (f"{prefix}go", f"{prefix}py"):
            await RouteTable(redis, prefix=each, timeout=TIMEOUT).put_pods(
                NS, SVC, [PodState(i) for i in range(3)]
            )
        async with GoReplay(go_replay, url, f"{prefix}go", timeout=TIMEOUT) as go:
            assert go.subscribed
            answers.append(outcomes(await go.play(CALLS)))
        async with ClientDriver(redis, namespace=NS, prefix=f"{prefix}py", timeout=TIMEOUT) as client:
            python = PythonReplay(redis, client, NS, f"{prefix}py", timeout=TIMEOUT)
            answers.append(outcomes(await python.play(CALLS)))
    finally:
        await redis.aclose()
    assert answers[0] == answers[1]
    assert all(error is None for _, error in answers[0])


async def both_unavailable(go_replay: Path, url: str, prefix: str, secret: str) -> None:
    """Both clients answer a call with StoreUnavailable; the Go client's words hold no ``secret``."""
    calls: list[Call] = [{"op": "compute_linked_pod", "uid": "u", "service": SVC}]
    async with GoReplay(go_replay, url, prefix, timeout=0.5) as go:
        go_answers = await go.play(calls)
    python = connect(url, socket_connect_timeout=0.5)
    try:
        async with ClientDriver(python, namespace=NS, prefix=prefix, timeout=0.5) as client:
            py_answers = await PythonReplay(python, client, NS, prefix).play(calls)
    finally:
        await python.aclose()
    assert outcomes(go_answers) == outcomes(py_answers) == [(None, "StoreUnavailable")]
    assert secret not in go_answers[0]["message"] + go.stderr.decode()


def acl_url(server: PrivateRedis, password: str) -> str:
    return f"redis://{USER}:{quote(password, safe='')}@127.0.0.1:{server.port}/0"


async def test_go_through_an_acl_user(
    private_redis: Callable[..., PrivateRedis], go_replay: Path, prefix: str
) -> None:
    server = private_redis("--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all", password=PASSWORD)
    await both_answer_alike(go_replay, acl_url(server, PASSWORD), prefix)
    await both_unavailable(go_replay, acl_url(server, WRONG), prefix, WRONG)


async def test_go_through_tls(
    private_redis: Callable[..., PrivateRedis], tls_files: Tls, go_replay: Path, prefix: str
) -> None:
    server = private_redis(tls=tls_files, password=PASSWORD)
    assert server.url.startswith("rediss://")
    await both_answer_alike(go_replay, server.url, prefix)
    auth = f":{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}/0"
    await both_unavailable(go_replay, f"redis://{auth}", prefix, "g0")  # plain to a TLS port
    await both_unavailable(go_replay, f"rediss://{auth}", prefix, "g0")  # the test CA not trusted


@pytest.mark.sentinel
async def test_go_behind_sentinels_over_tls(tls_files: Tls, go_replay: Path, prefix: str) -> None:
    """rediss+sentinel://: TLS to the Sentinels and to the primary, the password to the primary."""
    group = SentinelGroup(password=PASSWORD, tls=tls_files)
    try:
        await asyncio.to_thread(group.start)
        assert group.url.startswith("rediss+sentinel://")
        await both_answer_alike(go_replay, group.url, prefix)
        async with GoReplay(go_replay, group.url, prefix) as go:
            (answer,) = await go.play([{"op": "primary"}])
        assert answer["value"] == f"127.0.0.1:{group.primary_port()}"
    finally:
        group.cleanup()
