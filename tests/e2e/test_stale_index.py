"""A pod whose deletion kopf never heard of (a watch gap, a replica paused by peering) is found
by the periodic census, taken out of the table, and its users rebound."""

from __future__ import annotations

import logging

from stateful_route import ClientDriver, RouteTable
from stateful_route.testing.sim import NS, ROUTE, operator
from tests.e2e.test_route_lifecycle import wait_for_table
from tests.routes import poll_until


async def test_the_census_catches_a_deletion_the_index_missed(cluster, redis, redis_url, prefix, caplog):
    await cluster.start(3, rebind="Eager")
    table = RouteTable(redis, prefix=prefix)
    options = {"census_interval": 0.5, "census_clock_margin": 0, "reconcile_interval": 0.5}
    async with operator(cluster, redis_url, prefix, **options):
        await wait_for_table(table, [0, 1, 2])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            for i in range(300):
                await client.compute_linked_pod(NS, f"user-{i}", ROUTE)
        caplog.set_level(logging.WARNING, logger="stateful_route.operator")
        cluster.lose_deletion(2)

        async def dropped() -> bool:
            s = await table.snapshot(NS, ROUTE)
            return sorted(s.pods) == [0, 1] and sum(s.links.values()) == 300

        await poll_until(dropped, within=5, every=0.1)
    assert "event=stale_index namespace=games route=room pods=game-2" in caplog.text


async def test_a_table_change_confirmed_by_the_api_drops_a_deletion_the_index_missed(
    cluster, redis, redis_url, prefix
):
    """Another pod's change is written from a fresh list, not from the index: a pod deleted
    unheard leaves the table with it, long before any census, and nobody is rebound onto it (an
    outside review proved that confirming only the changed pod kept the deleted one for a minute)."""
    await cluster.start(3, rebind="Eager", unroutableGraceSeconds=0)
    table = RouteTable(redis, prefix=prefix)
    options = {"census_interval": 600, "reconcile_interval": 0.5}  # no census within the test
    users = [f"user-{i}" for i in range(60)]
    async with operator(cluster, redis_url, prefix, **options):
        await wait_for_table(table, [0, 1, 2])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            for uid in users:
                await client.compute_linked_pod(NS, uid, ROUTE)
            cluster.lose_deletion(2)
            await cluster.set_ready(0, False)

            async def only_pod_1_routable() -> bool:
                s = await table.snapshot(NS, ROUTE)
                return sorted(s.pods) == [0, 1] and sorted(s.routable) == [1]

            await poll_until(only_pod_1_routable, within=5, every=0.1)
            answers = {await client.compute_linked_pod(NS, uid, ROUTE) for uid in users}
            assert answers == {1}
