"""Regression tests for the operator's defects of issue 11, each against the real operator on
the emulator: deleted routes stay deleted, proven deletions are kept per route, a changed spec
leaves nothing behind, reports belong to one pod instance, one service has one route, a pod
never Ready is not routable, and a grace survives a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from stateful_route import ClientDriver, RouteTable, RoutingState, ServerDriver
from stateful_route.testing.sim import NS, ROUTE, Cluster, operator
from tests.e2e.test_route_lifecycle import status_of, wait_for_table
from tests.routes import poll_until


async def keys_of(redis: aioredis.Redis, prefix: str, service: str) -> list[str]:
    """Every key of one route's hash tag, except its version (kept on purpose: it never goes back)."""
    found = [k.decode() async for k in redis.scan_iter(match=f"{prefix}:{{{NS}/{service}}}:*", count=1000)]
    return sorted(k for k in found if not k.endswith(":ver"))


@contextlib.asynccontextmanager
async def flapping(cluster: Cluster, index: int, every: float = 0.005) -> AsyncIterator[None]:
    """Flip a pod Ready/NotReady every few milliseconds while the block runs."""
    stop = asyncio.Event()

    async def flap() -> None:
        ready = False
        while not stop.is_set():
            await cluster.set_ready(index, ready)
            ready = not ready
            await asyncio.sleep(every)
        await cluster.set_ready(index, True)

    task = asyncio.create_task(flap())
    try:
        yield
    finally:
        stop.set()
        await task


async def test_a_route_deleted_while_its_pod_flaps_is_not_written_back(cluster, redis, redis_url, prefix):
    await cluster.start(3)
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix, reconcile_interval=0.1):
        await wait_for_table(table, [0, 1, 2])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            for i in range(30):
                await client.compute_linked_pod(NS, f"u{i}", ROUTE)
        async with flapping(cluster, 1):
            await asyncio.sleep(0.3)
            await cluster.delete_route()
            await asyncio.sleep(1.5)
        await asyncio.sleep(1)  # the last pod events are handled
        assert await keys_of(redis, prefix, ROUTE) == []
        assert await table.services(NS) == []


async def test_a_deletion_proved_by_one_routes_census_is_kept_when_another_route_counts(
    cluster, redis, redis_url, prefix
):
    await cluster.start(3, rebind="Eager")
    for index in range(2):
        await cluster.create_pod(index, sts="chat")
    await cluster.create_route("chat", statefulSetName="chat")
    table = RouteTable(redis, prefix=prefix)
    options = {"census_interval": 0.3, "census_clock_margin": 0, "reconcile_interval": 0.1}
    async with operator(cluster, redis_url, prefix, **options):
        await wait_for_table(table, [0, 1, 2])
        cluster.lose_deletion(2)

        async def dropped() -> bool:
            return sorted((await table.snapshot(NS, ROUTE)).pods) == [0, 1]

        await poll_until(dropped, within=5, every=0.05)
        # Both censuses run several times more: the deleted pod must never come back.
        for _ in range(30):
            assert sorted((await table.snapshot(NS, ROUTE)).pods) == [0, 1]
            await asyncio.sleep(0.05)


async def test_changing_the_service_moves_the_route_and_leaves_nothing_of_the_old_one(
    cluster, redis, redis_url, prefix
):
    await cluster.start(3)
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix, reconcile_interval=0.05):
        await wait_for_table(table, [0, 1, 2])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            for i in range(30):
                await client.compute_linked_pod(NS, f"u{i}", ROUTE)
        async with flapping(cluster, 1, every=0.02):  # pod events carry the old spec meanwhile
            await cluster.update_route(service="lobby")

            async def moved() -> bool:
                return sorted((await table.snapshot(NS, "lobby")).pods) == [0, 1, 2]

            await poll_until(moved, within=5, every=0.05)
            # Ticks and pod events with the old spec must not bring the old service back.
            for _ in range(20):
                assert await keys_of(redis, prefix, ROUTE) == []
                await asyncio.sleep(0.05)
        assert await table.services(NS) == ["lobby"]

        async def mirrored() -> bool:
            return (await status_of(cluster)).get("service") == "lobby"

        await poll_until(mirrored, within=5, every=0.1)
        await cluster.delete_route()

        async def gone() -> bool:
            return await keys_of(redis, prefix, "lobby") == []

        await poll_until(gone, within=5, every=0.05)


async def test_changing_the_service_keeps_the_old_links_when_the_route_says_so(
    cluster, redis, redis_url, prefix
):
    await cluster.start(2, keepLinksOnDelete=True)
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            pod = await client.compute_linked_pod(NS, "u", ROUTE)
            await cluster.update_route(service="lobby")

            async def moved() -> bool:
                return not (await table.snapshot(NS, ROUTE)).pods and bool(
                    (await table.snapshot(NS, "lobby")).pods
                )

            await poll_until(moved, within=5, every=0.05)
            assert await client.get_linked_pod_not_cache(NS, "u", ROUTE) == pod
            kept = table.keyring.route(NS, ROUTE)
            left = await keys_of(redis, prefix, ROUTE)
            assert all(k.startswith((kept.links, kept.pod_links)) for k in left), left


async def test_changing_the_stateful_set_evicts_the_old_pods_users(cluster, redis, redis_url, prefix):
    await cluster.start(3)
    for index in range(2):
        await cluster.create_pod(index, sts="next")
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1, 2])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            for i in range(30):
                await client.compute_linked_pod(NS, f"u{i}", ROUTE)
            await cluster.update_route(statefulSetName="next")

            async def moved() -> bool:
                s = await table.snapshot(NS, ROUTE)
                return sorted(s.pods) == [0, 1] and sum(s.links.values()) == 0

            # The users were on game-N: next-N is another pod, so nobody is silently moved there.
            await poll_until(moved, within=5, every=0.05)
            assert await client.get_linked_pod_not_cache(NS, "u0", ROUTE) is None


async def test_a_recreated_pod_does_not_inherit_its_predecessors_shutdown_report(
    cluster, redis, redis_url, prefix
):
    await cluster.start(3)
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1, 2])
        async with ServerDriver(redis, namespace=NS, service=ROUTE, pod_index=2, prefix=prefix) as game_2:
            await game_2.set_routing_state(RoutingState.SHUTDOWN)
        await wait_for_table(table, [0, 1])
    # While the operator is away, the StatefulSet replaces game-2 (a new pod, a new uid).
    await cluster.delete_pod(2)
    await cluster.create_pod(2)
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1, 2], within=5)


async def test_a_report_made_where_no_pod_is_does_not_stick_to_the_next_pod(
    cluster, redis, redis_url, prefix
):
    """Randomized scenario seed 3454473594: a pod driver reported Shutdown for an index whose pod
    was gone from the table; the report stayed and stuck to the StatefulSet's next pod there,
    Ready but never routable."""
    await cluster.start(3)
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1, 2])
        await cluster.delete_pod(2)

        async def gone() -> bool:
            return 2 not in (await table.snapshot(NS, ROUTE)).pods

        await poll_until(gone, within=5, every=0.05)
        async with ServerDriver(redis, namespace=NS, service=ROUTE, pod_index=2, prefix=prefix) as nobody:
            await nobody.set_routing_state(RoutingState.SHUTDOWN)
        await cluster.create_pod(2)
        await wait_for_table(table, [0, 1, 2], within=5)


async def test_a_second_route_for_the_same_service_is_refused_and_the_first_is_intact(
    cluster, redis, redis_url, prefix
):
    await cluster.start(3)
    await cluster.create_pod(0, sts="other")
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix, reconcile_interval=0.1, status_interval=0.2):
        await wait_for_table(table, [0, 1, 2])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            users = {f"u{i}": await client.compute_linked_pod(NS, f"u{i}", ROUTE) for i in range(30)}
        await cluster.create_route("rival", statefulSetName="other", service=ROUTE)

        async def refused() -> bool:
            status = dict((await cluster.route("rival")).get("status") or {})
            conditions = {c["type"]: c for c in status.get("conditions") or ()}
            warned = any(
                e.get("reason") == "ServiceConflict" and e.get("type") == "Warning"
                for e in await cluster.events()
            )
            return warned and conditions.get("Ready", {}).get("reason") == "ServiceConflict"

        await poll_until(refused, within=5, every=0.1)
        for _ in range(20):
            snapshot = await table.snapshot(NS, ROUTE)
            assert sorted(snapshot.pods) == [0, 1, 2]
            assert sum(snapshot.links.values()) == 30
            await asyncio.sleep(0.05)
        await cluster.delete_route("rival")
        await asyncio.sleep(1)
        snapshot = await table.snapshot(NS, ROUTE)
        assert sorted(snapshot.pods) == [0, 1, 2]
        assert sum(snapshot.links.values()) == 30
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            assert {uid: await client.get_linked_pod_not_cache(NS, uid, ROUTE) for uid in users} == users


async def test_a_pod_never_seen_ready_is_not_routable(cluster, redis, redis_url, prefix):
    await cluster.start(2, unroutableGraceSeconds=30)
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1])
        # The StatefulSet scales up: its new pod starts NotReady.
        await cluster.patch_stateful_set({"spec": {"replicas": 3}, "status": {"replicas": 3}})
        await cluster.create_pod(2, ready=False)

        async def listed() -> bool:
            return 2 in (await table.snapshot(NS, ROUTE)).pods

        await poll_until(listed, within=5, every=0.05)
        await asyncio.sleep(0.3)
        assert not (await table.snapshot(NS, ROUTE)).pods[2].routable
        # Once Ready it is routable, and a later flap gets the grace.
        await cluster.set_ready(2, True)
        await wait_for_table(table, [0, 1, 2])
        await cluster.set_ready(2, False)
        await wait_for_table(table, [0, 1])
        assert (await table.snapshot(NS, ROUTE)).pods[2].routable


async def test_a_pod_event_reconciles_every_route_while_routes_change(
    cluster, redis, redis_url, prefix, caplog
):
    await cluster.start(3)
    caplog.set_level(logging.ERROR)
    async with operator(cluster, redis_url, prefix), flapping(cluster, 1, every=0.002):
        for i in range(12):
            await cluster.create_route(f"extra-{i}")
            await asyncio.sleep(0.02)
        for i in range(12):
            await cluster.delete_route(f"extra-{i}")
            await asyncio.sleep(0.02)
    assert "changed size during iteration" not in caplog.text


async def test_an_operator_restart_during_a_grace_does_not_restart_it(cluster, redis, redis_url, prefix):
    await cluster.start(3, unroutableGraceSeconds=3)
    table = RouteTable(redis, prefix=prefix)
    loop = asyncio.get_running_loop()
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1, 2])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            for i in range(30):
                await client.compute_linked_pod(NS, f"u{i}", ROUTE)
        await cluster.set_ready(1, False)
        started = loop.time()
        await wait_for_table(table, [0, 2])
        await asyncio.sleep(2)
    async with operator(cluster, redis_url, prefix):

        async def evicted() -> bool:
            return not (await table.snapshot(NS, ROUTE)).pods[1].routable

        await poll_until(evicted, within=10, every=0.05)
        # Evicted about when the grace ends (a tick later at most), not a whole grace after the restart.
        assert loop.time() - started < 3 + 1.5


async def test_an_invalid_route_keeps_no_service_from_a_valid_one(cluster, redis, redis_url, prefix):
    await cluster.create_route("broken", service=ROUTE, rebind="Sometimes")  # refused by its handlers
    await cluster.start(2)
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1])
