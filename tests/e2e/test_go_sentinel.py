"""The Go client behind Redis Sentinel finds the primary as the Python client does: it follows a
real failover (only StoreUnavailable meanwhile, service back within the bound the Python client
is held to, no wrong pod), keeps answering with a minority of Sentinels hung or dead, takes the
latest failover's primary when a minority of Sentinels name another, and fails typed, never
echoing the password, when no Sentinel answers."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from stateful_route import ClientDriver, PodState, RouteTable
from stateful_route.store.connection import RECHECK_PRIMARY, AnyRedis, connect
from stateful_route.store.sentinels import ASK_WITHIN, Sentinels
from stateful_route.testing.cleanup import delete_prefix
from stateful_route.testing.local_redis import free_port
from stateful_route.testing.sentinel import SentinelGroup
from tests.go_replay import Answer, GoReplay, PythonReplay, outcomes
from tests.routes import NS, SVC

pytestmark = pytest.mark.sentinel

PODS = 4
PASSWORD = "s3nt/nel:pa@ss"  # percent-encoded in the URL
# As tests/e2e/test_sentinel.py: promotion takes 2-6 s here, the bound leaves room for a loaded machine.
RECOVERY_BOUND = 12.0


async def route(admin: AnyRedis, prefix: str) -> RouteTable:
    """The route, written with room for a loaded machine (the Sentinels are asked first)."""
    table = RouteTable(admin, prefix=prefix, timeout=5)
    await table.put_pods(NS, SVC, [PodState(i) for i in range(PODS)])
    return table


def compute(uids: list[str]) -> list[dict[str, str]]:
    return [{"op": "compute_linked_pod", "uid": uid, "service": SVC} for uid in uids]


async def test_go_follows_a_sentinel_failover(go_replay: Path, prefix: str) -> None:
    group = SentinelGroup(password=PASSWORD)
    try:
        await asyncio.to_thread(group.start)
        admin = connect(group.url)
        try:
            table = await route(admin, prefix)
            await _follow_failover(go_replay, group, table, prefix)
        finally:
            await delete_prefix(admin, prefix)
            await admin.aclose()
    finally:
        group.cleanup()


async def _follow_failover(go_replay: Path, group: SentinelGroup, table: RouteTable, prefix: str) -> None:
    users = [f"user-{i}" for i in range(200)]
    async with GoReplay(go_replay, group.url, prefix, timeout=2) as go:
        assert go.subscribed
        before = {
            uid: answer["value"] for uid, answer in zip(users, await go.play(compute(users)), strict=True)
        }
        assert set(before.values()) <= set(range(PODS))
        old = group.primary_port()
        assert (await go.play([{"op": "primary"}]))[0]["value"] == f"127.0.0.1:{old}"
        seen: list[tuple[str, Answer]] = []
        stop = asyncio.Event()

        async def ask() -> None:
            n = 0
            while not stop.is_set():
                # Known users, and every fifth a new one (placed on whichever primary answers).
                batch = [users[(n + i) % len(users)] if i % 5 else f"fresh-{n + i}" for i in range(10)]
                n += 10
                seen.extend(zip(batch, await go.play(compute(batch)), strict=True))

        asker = asyncio.create_task(ask())
        await asyncio.sleep(0.5)
        killed = time.time()
        group.server(old).kill()
        new = await asyncio.to_thread(group.wait_for_new_primary, old)

        async def served() -> bool:
            failed = [answer["end"] for _, answer in seen if "error" in answer]
            return bool(failed) and any("error" not in a and a["start"] > max(failed) for _, a in seen)

        deadline = time.monotonic() + RECOVERY_BOUND + 5
        while not await served() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # traffic on the new primary
        stop.set()
        await asker
        primary = (await go.play([{"op": "primary"}]))[0]["value"]
        # The route mirror follows a table change made on the new primary.
        await table.remove_pod(NS, SVC, PODS - 1)
        routable = {"op": "routable_pods", "service": SVC}
        deadline = time.monotonic() + 3
        while (await go.play([routable]))[0]["value"] != list(range(PODS - 1)):
            assert time.monotonic() < deadline, "the Go client's view did not follow the new primary"
            await asyncio.sleep(0.05)

    errors = [answer for _, answer in seen if "error" in answer]
    kinds = Counter(answer["error"] for answer in errors)
    recovered = max(answer["end"] for answer in errors) - killed
    print(
        f"\nGo client: primary {old} -> {new}; last error {recovered:.2f}s after the kill; "
        f"{len(seen)} calls, {dict(kinds)}"
    )
    assert set(kinds) == {"StoreUnavailable"}
    assert recovered <= RECOVERY_BOUND
    assert primary == f"127.0.0.1:{new}"
    assert [
        (uid, a["value"])
        for uid, a in seen
        if uid in before and "error" not in a and a["value"] != before[uid]
    ] == []
    assert all(PASSWORD not in answer["message"] for answer in errors)


async def test_go_with_a_sentinel_hung_a_forced_failover_and_a_sentinel_dead(
    sentinel_group: SentinelGroup, go_replay: Path, prefix: str
) -> None:
    """Placements answered throughout, in phases: one Sentinel hung (SIGSTOP), then a failover
    Sentinel is asked for (the old primary lives on, demoted: the client must leave it), then
    another Sentinel dead. No error but StoreUnavailable during the switch, none otherwise."""
    group = sentinel_group
    admin = connect(group.url)
    await route(admin, prefix)
    placed: dict[str, list[tuple[str, Answer]]] = {}
    try:
        # A call's timeout of 2 s: a hung Sentinel costs each call at most AskWithin (0.3 s) here,
        # while a client that waited on it would wait out its socket timeouts (3 s in go-redis).
        async with GoReplay(go_replay, group.url, prefix, timeout=2) as go:

            async def place(phase: str, seconds: float, stop: asyncio.Event | None = None) -> None:
                end = time.monotonic() + seconds
                answers = placed.setdefault(phase, [])
                while time.monotonic() < end and not (stop and stop.is_set()):
                    batch = [f"{phase}-{len(answers) + i}" for i in range(5)]
                    answers.extend(zip(batch, await go.play(compute(batch)), strict=True))
                    await asyncio.sleep(0.02)

            await place("before", 0.5)
            hung, _, dead = (sentinel.process for sentinel in group.sentinels)
            assert hung is not None
            assert dead is not None
            os.kill(hung.pid, signal.SIGSTOP)
            try:
                await place("hung", 2.0)
            finally:
                os.kill(hung.pid, signal.SIGCONT)

            old = group.primary_port()
            stop = asyncio.Event()
            switching = asyncio.create_task(place("switch", 60, stop))
            asked = time.time()
            with redis.Redis(port=group.sentinel_ports[1], socket_timeout=5) as sentinel:
                sentinel.sentinel_failover(group.service)
            new = await asyncio.to_thread(group.wait_for_new_primary, old)
            switched = time.time()
            await asyncio.sleep(RECHECK_PRIMARY + ASK_WITHIN + 0.5)
            stop.set()
            await switching
            primary = (await go.play([{"op": "primary"}]))[0]["value"]

            os.kill(dead.pid, signal.SIGKILL)
            await place("dead", 2.0)

        every = [answer for answers in placed.values() for _, answer in answers]
        slowest = max(answer["end"] - answer["start"] for answer in every)
        kinds = Counter(answer.get("error") for _, answer in placed["switch"])
        print(
            f"\nGo client: {len(every)} placements, slowest {slowest:.3f}s; across the failover "
            f"{old} -> {new}: {dict(kinds)}"
        )
        assert primary == f"127.0.0.1:{new}"
        assert set(kinds) <= {None, "StoreUnavailable"}
        assert [a for phase in ("before", "hung", "dead") for _, a in placed[phase] if "error" in a] == []
        # No wrong answer: the Python client finds on the new primary each user where the Go client
        # placed it, but those placed on the old one from just before the failover (not replicated)
        # until the client had to notice it (the old primary still takes writes until Sentinel
        # demotes it; the Python client has the same window).
        noticed = switched + RECHECK_PRIMARY + ASK_WITHIN
        kept = {
            uid: answer["value"]
            for answers in placed.values()
            for uid, answer in answers
            if "error" not in answer and not asked - 0.2 < answer["end"] < noticed
        }
        async with ClientDriver(admin, namespace=NS, prefix=prefix, timeout=5) as client:
            stored = {uid: await client.compute_linked_pod(NS, uid, SVC) for uid in kept}
        assert stored == kept
        assert any(uid.startswith("switch") for uid in kept)  # placed on the new primary
    finally:
        await delete_prefix(admin, prefix)
        await admin.aclose()


async def test_go_takes_the_latest_failover_over_a_lying_minority(
    stale_and_fresh_sentinels: tuple[SentinelGroup, SentinelGroup], go_replay: Path, prefix: str
) -> None:
    never, once = stale_and_fresh_sentinels
    stale = ("127.0.0.1", never.sentinel_ports[0])
    fresh = [("127.0.0.1", port) for port in once.sentinel_ports[:2]]
    dead = ("127.0.0.1", free_port())
    expected = f"127.0.0.1:{once.primary_port()}"
    for sentinels in ([stale, *fresh], [*fresh, stale], [stale, fresh[0], dead]):
        hosts = ",".join(f"{host}:{port}" for host, port in sentinels)
        async with GoReplay(go_replay, f"redis+sentinel://{hosts}/{once.service}/0", prefix, timeout=2) as go:
            (answer,) = await go.play([{"op": "primary"}])
        python = Sentinels(sentinels, {})
        try:
            host, port = await python.discover_master(once.service)
        finally:
            await python.aclose()
        assert (answer["value"], f"{host}:{port}") == (expected, expected), sentinels


async def test_no_sentinel_answering_is_a_typed_error_without_the_password(
    go_replay: Path, prefix: str
) -> None:
    hosts = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    url = f"redis+sentinel://:{quote(PASSWORD, safe='')}@{hosts}/mymaster/0"
    calls = compute(["u"])
    async with GoReplay(go_replay, url, prefix) as go:
        go_answers = await go.play(calls)
    assert not go.subscribed
    python = connect(url)
    try:
        async with ClientDriver(python, namespace=NS, prefix=prefix) as client:
            py_answers = await PythonReplay(python, client, NS, prefix).play(calls)
    finally:
        await python.aclose()
    assert outcomes(go_answers) == outcomes(py_answers) == [(None, "StoreUnavailable")]
    message = go_answers[0]["message"]
    assert "no Sentinel named a primary" in message
    assert "s3nt" not in message + go.stderr.decode()
