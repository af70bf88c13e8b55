"""Redis stopped mid-traffic and started again: loud errors meanwhile, never a wrong pod, and
the same clients recover by themselves."""

from __future__ import annotations

import asyncio
import random

import pytest

from stateful_route import ClientDriver, NoAvailablePod, PodState, RouteTable, StoreUnavailable
from stateful_route.store.connection import connect
from stateful_route.store.keys import Keyring
from stateful_route.store.links import LinkStore
from tests.routes import NS, SVC, make_route, poll_until

USERS = 500


async def test_clients_fail_loudly_while_redis_is_down_and_recover_after(make_redis, private_redis, prefix):
    server = private_redis()
    redis = make_redis(server.url, blocking_pool=8, socket_connect_timeout=0.3)
    await make_route(redis, prefix, pods=3)
    outcomes: dict[str, int] = {"right": 0, "unavailable": 0}
    wrong: list[str] = []
    async with ClientDriver(redis, namespace=NS, prefix=prefix, timeout=0.3) as client:
        placed = {f"u{i}": await client.compute_linked_pod(NS, f"u{i}", SVC) for i in range(USERS)}
        stop = asyncio.Event()

        async def traffic() -> None:
            rng = random.Random(7)
            while not stop.is_set():
                uid = f"u{rng.randrange(USERS)}"
                loop = asyncio.get_running_loop()
                started = loop.time()
                try:
                    pod = await client.compute_linked_pod(NS, uid, SVC)
                except StoreUnavailable:
                    outcomes["unavailable"] += 1
                    assert loop.time() - started < 1.0  # within the timeout, not a hang
                    await asyncio.sleep(0.01)
                    continue
                if pod != placed[uid]:
                    wrong.append(f"{uid}: {pod} != {placed[uid]}")
                outcomes["right"] += 1
                await asyncio.sleep(0)

        worker = asyncio.create_task(traffic())
        await asyncio.sleep(0.3)
        server.stop()
        await asyncio.sleep(2.5)  # well past the view's max age: every call must now fail
        assert outcomes["unavailable"] > 0
        stop.set()
        await worker
        assert wrong == []

        # Redis returns empty (it keeps nothing); whoever owns the table writes it again (the
        # operator does, see tests/e2e). The same client serves again, placing users afresh.
        await asyncio.to_thread(server.start)
        await make_route(redis, prefix, pods=3)

        async def serves() -> bool:
            try:
                return await client.compute_linked_pod(NS, "u1", SVC) in range(3)
            except (StoreUnavailable, NoAvailablePod):
                return False

        await poll_until(serves, within=5, every=0.1)
        again = [await client.compute_linked_pod(NS, f"u{i}", SVC) for i in range(USERS)]
        assert sorted(again.count(p) for p in range(3)) == [166, 167, 167]


async def test_after_redis_restarts_empty_the_namespace_service_set_is_rebuilt(
    make_redis, private_redis, redis_url, prefix
):
    """``get_link_service`` and ``stateful-route links`` read the namespace's service set: the
    same table writer and the same client must write it again into an emptied Redis."""
    server = private_redis()
    redis = make_redis(server.url, socket_connect_timeout=0.3)
    table = await make_route(redis, prefix, pods=3)  # the writer the operator keeps for its life
    await table.put_pods(NS, "lobby", [PodState(i) for i in range(2)])
    async with ClientDriver(redis, namespace=NS, prefix=prefix, timeout=0.3) as client:
        await client.compute_linked_pod(NS, "u1", SVC)
        await client.set_linked_pod_if_absent(NS, "u1", "lobby", 1)
        assert set(await client.get_link_service(NS, "u1")) == {SVC, "lobby"}

        server.stop()
        await asyncio.to_thread(server.start)  # empty: it keeps nothing

        async def serves() -> bool:
            try:
                await table.put_pods(NS, SVC, [PodState(i) for i in range(3)])  # the operator's tick
                await table.put_pods(NS, "lobby", [PodState(i) for i in range(2)])
                await client.compute_linked_pod(NS, "u1", SVC)
                await client.set_linked_pod_if_absent(NS, "u1", "lobby", 1)
            except StoreUnavailable:
                return False
            return True

        await poll_until(serves, within=5, every=0.1)
        fresh = LinkStore(make_redis(server.url), Keyring(prefix))  # what the CLI reads with
        assert set(await fresh.links_of_user(NS, "u1")) == {SVC, "lobby"}
        assert set(await client.get_link_service(NS, "u1")) == {SVC, "lobby"}


@pytest.mark.parametrize("kind", ["pooled", "blocking-pooled"])
async def test_the_first_call_after_a_restart_succeeds(private_redis, kind):
    """A pooled connection that Redis dropped (restarted empty) is retried once on a fresh one,
    so the operator's first tick after the restart succeeds instead of failing on it."""
    server = private_redis()
    client = connect(server.url) if kind == "pooled" else connect(server.url, max_connections=2)
    table = RouteTable(client, prefix="restart", timeout=2.0)
    try:
        for _ in range(3):  # every pooled connection was used before the restart
            await asyncio.gather(
                *(table.put_pods(NS, SVC, [PodState(i) for i in range(2)]) for _ in range(2))
            )
            server.kill()
            server.start()
            failures = 0
            for _ in range(2):  # two ticks: both must succeed, on the connections pooled before
                try:
                    assert await table.put_pods(NS, SVC, [PodState(i) for i in range(2)]) in (True, False)
                except StoreUnavailable:
                    failures += 1
            assert failures == 0
            assert sorted((await table.snapshot(NS, SVC)).pods) == [0, 1]
    finally:
        await client.aclose()
