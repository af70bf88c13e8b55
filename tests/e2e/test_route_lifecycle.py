"""The real operator against the emulated Kubernetes API: tables, status, evictions, drains."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from stateful_route import ClientDriver, RouteTable
from stateful_route.testing.sim import NS, ROUTE, Cluster, operator
from tests.routes import poll_until


async def status_of(cluster: Cluster) -> dict[str, Any]:
    return dict((await cluster.route()).get("status") or {})


async def test_a_route_with_four_pods_comes_up_with_its_status(cluster, redis, redis_url, prefix):
    await cluster.start(4, rebind="Eager")
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix):

        async def table_ready() -> bool:
            snapshot = await table.snapshot(NS, ROUTE)
            return sorted(snapshot.available) == [0, 1, 2, 3]

        await poll_until(table_ready, within=10, every=0.05)
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            for uid in range(8):
                await client.compute_linked_pod(NS, f"u{uid}", ROUTE)

        async def status_shows_links() -> bool:
            return (await status_of(cluster)).get("links") == 8

        await poll_until(status_shows_links, within=10, every=0.1)
        status = await status_of(cluster)
        assert status["service"] == ROUTE
        assert status["summary"] == "4/4"
        assert status["bestPod"] == 0
        assert [p["links"] for p in status["pods"]] == [2, 2, 2, 2]
        assert [p["name"] for p in status["pods"]] == [f"game-{i}" for i in range(4)]
        assert all(p["ready"] and p["routable"] and p["available"] for p in status["pods"])
        assert status["conditions"][0]["status"] == "True"


async def wait_for_table(table: RouteTable, available: list[int], within: float = 10) -> None:
    async def matches() -> bool:
        return sorted((await table.snapshot(NS, ROUTE)).available) == available

    await poll_until(matches, within=within, every=0.05)


@contextlib.asynccontextmanager
async def running_route(
    cluster: Cluster, redis: aioredis.Redis, redis_url: str, prefix: str, pods: int, **spec: Any
) -> AsyncIterator[tuple[RouteTable, ClientDriver]]:
    """A route (``spec``) over ``pods`` ready pods, the operator at work on it and a gateway's
    ClientDriver; entered once the route's table has every pod available."""
    await cluster.start(pods, **spec)
    table = RouteTable(redis, prefix=prefix)
    async with (
        operator(cluster, redis_url, prefix),
        ClientDriver(redis, namespace=NS, prefix=prefix) as client,
    ):
        await wait_for_table(table, list(range(pods)))
        yield table, client


async def test_a_deleted_pods_users_are_evicted_and_rebound_evenly(cluster, redis, redis_url, prefix):
    await cluster.start(4, rebind="Eager")
    table = RouteTable(redis, prefix=prefix)
    users = [f"user-{i}" for i in range(10_000)]
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1, 2, 3])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            before = {uid: await client.compute_linked_pod(NS, uid, ROUTE) for uid in users}
        assert sum(pod == 3 for pod in before.values()) == 2_500

        loop = asyncio.get_running_loop()
        started = loop.time()
        await cluster.delete_pod(3)

        async def rebound() -> bool:
            snapshot = await table.snapshot(NS, ROUTE)
            return 3 not in snapshot.pods and sum(snapshot.links.values()) == len(users)

        await poll_until(rebound, within=5, every=0.05)
        assert loop.time() - started <= 5
        snapshot = await table.snapshot(NS, ROUTE)
        assert all(abs(n - 10_000 / 3) <= 0.05 * 10_000 / 3 for n in snapshot.links.values()), snapshot.links
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            after = await client.batch_get_linked_pod(NS, users, ROUTE)
        assert sum(len(uids) for uids in after.values()) == len(users)
        moved = {uid for pod, uids in after.items() for uid in uids if before[uid] != pod}
        assert moved == {uid for uid, pod in before.items() if pod == 3}  # nobody else moved

        async def evicted_event() -> bool:
            return any(e.get("reason") == "Evicted" for e in await cluster.events())

        await poll_until(evicted_event, within=5, every=0.1)
        messages = [e["message"] for e in await cluster.events() if e.get("reason") == "Evicted"]
        assert messages == ["evicted 2500 links from pod 3: deleted; rebound 2500"]

        async def status_has_eviction() -> bool:
            return (await status_of(cluster)).get("lastEviction", {}).get("links") == 2_500

        await poll_until(status_has_eviction, within=5, every=0.1)
        assert (await status_of(cluster))["summary"] == "3/3"


async def test_a_not_ready_pod_is_evicted_only_after_the_grace(cluster, redis, redis_url, prefix):
    spec = {"unroutableGraceSeconds": 2}
    async with running_route(cluster, redis, redis_url, prefix, 3, **spec) as (table, client):
        users = {f"u{i}": await client.compute_linked_pod(NS, f"u{i}", ROUTE) for i in range(30)}
        on_1 = sorted(uid for uid, pod in users.items() if pod == 1)

        # A flap shorter than the grace: pod 1 takes no new users but keeps its own.
        await cluster.set_ready(1, False)
        await wait_for_table(table, [0, 2])
        assert await client.is_pod_routable(NS, ROUTE, 1)
        assert [await client.compute_linked_pod(NS, uid, ROUTE) for uid in on_1] == [1] * len(on_1)
        await cluster.set_ready(1, True)
        await wait_for_table(table, [0, 1, 2])
        await asyncio.sleep(2.5)
        assert (await table.snapshot(NS, ROUTE)).links[1] == len(on_1)

        # NotReady for longer than the grace: evicted then, not before.
        loop = asyncio.get_running_loop()
        started = loop.time()
        await cluster.set_ready(1, False)

        async def evicted() -> bool:
            return (await table.snapshot(NS, ROUTE)).links.get(1) == 0

        await poll_until(evicted, within=6, every=0.05)
        assert loop.time() - started >= 2
        assert all([await client.compute_linked_pod(NS, uid, ROUTE) != 1 for uid in on_1])


async def test_drain_annotation_stops_new_placements_and_shutdown_evicts(cluster, redis, redis_url, prefix):
    async with running_route(cluster, redis, redis_url, prefix, 3) as (table, client):
        first = await client.compute_linked_pod(NS, "early", ROUTE)
        assert first == 0
        await cluster.annotate(0, "DenyNewCall")
        await wait_for_table(table, [1, 2])
        assert {await client.compute_linked_pod(NS, f"late-{i}", ROUTE) for i in range(10)} == {1, 2}
        assert await client.compute_linked_pod(NS, "early", ROUTE) == 0  # existing users stay

        await cluster.annotate(0, "Shutdown")

        async def evicted() -> bool:
            return (await table.snapshot(NS, ROUTE)).links.get(0) == 0

        await poll_until(evicted, within=5, every=0.05)
        assert await client.compute_linked_pod(NS, "early", ROUTE) in (1, 2)

        await cluster.annotate(0, None)
        await wait_for_table(table, [0, 1, 2])


async def test_a_route_the_operator_cannot_use_says_why_in_its_status(cluster, redis, redis_url, prefix):
    """kmock does not evaluate the CRD's CEL rules, like a cluster whose CRD lacks them: the route
    gets in, and its status must say why nothing is routed; the valid route beside it works."""
    await cluster.start(1)
    await cluster.create_route("room.v2")
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(RouteTable(redis, prefix=prefix), [0])

        async def explained() -> bool:
            found = (await cluster.route("room.v2")).get("status") or {}
            conditions = found.get("conditions") or [{}]
            return conditions[0].get("reason") == "InvalidSpec"

        await poll_until(explained, within=10, every=0.1)
        condition = ((await cluster.route("room.v2"))["status"]["conditions"])[0]
        assert condition["status"] == "False"
        assert "spec.service" in condition["message"]
        await asyncio.sleep(2)  # let kopf finish the route's handling cycle before it is stopped
