"""The first pod of a rolling update: no pod runs the new revision until its replacement is
Ready, so its users, evicted when it goes, wait for that replacement (PodPending, bounded by
spec.rolloutWaitSeconds) instead of being placed on a pod the rollout replaces next."""

from __future__ import annotations

import asyncio

import pytest

from stateful_route import ClientDriver, PodPending, RouteTable
from stateful_route.testing.sim import NS, ROUTE, Cluster
from tests.e2e.test_rollout_placement import outdated_in_status, place
from tests.e2e.test_route_lifecycle import running_route, wait_for_table
from tests.routes import poll_until


async def first_pod_gone(cluster: Cluster, table: RouteTable, client: ClientDriver) -> list[str]:
    """Users on 3 pods; a rollout begins and pod 2 goes (not yet replaced): its users, evicted."""
    early = await place(client, "early", 30)
    on_2 = sorted(uid for uid, pod in early.items() if pod == 2)
    await cluster.start_rollout("rev-2")
    await outdated_in_status(cluster, [0, 1, 2])
    await cluster.remove_gracefully(2, grace=1, exit_after=0.1)

    async def evicted() -> bool:
        return 2 not in (await table.snapshot(NS, ROUTE)).pods

    await poll_until(evicted, within=10, every=0.05)
    return on_2


@pytest.mark.parametrize("rebind", ["Eager", "Lazy"])
async def test_users_of_the_first_replaced_pod_wait_for_its_replacement(
    cluster, redis, redis_url, prefix, rebind
):
    async with running_route(cluster, redis, redis_url, prefix, 3, rebind=rebind) as (table, client):
        on_2 = await first_pod_gone(cluster, table, client)
        for uid in on_2:  # they come back before the new pod 2 is Ready
            with pytest.raises(PodPending):
                await client.compute_linked_pod(NS, uid, ROUTE)
        assert await client.batch_get_linked_pod(NS, on_2, ROUTE) == {}
        assert await client.compute_linked_pod(NS, "newcomer", ROUTE) in {0, 1}  # never nowhere

        await cluster.create_pod(2)  # rev-2, Ready
        await wait_for_table(table, [2])
        assert [await client.compute_linked_pod(NS, uid, ROUTE) for uid in on_2] == [2] * len(on_2)


async def test_the_wait_ends_after_rollout_wait_seconds(cluster, redis, redis_url, prefix):
    spec = {"rebind": "Eager", "rolloutWaitSeconds": 1}
    async with running_route(cluster, redis, redis_url, prefix, 3, **spec) as (table, client):
        on_2 = await first_pod_gone(cluster, table, client)
        await asyncio.sleep(1.2)  # no replacement within the wait: placed on outdated pods after all

        async def placed() -> bool:
            grouped = await client.batch_get_linked_pod(NS, on_2, ROUTE)
            return sorted(uid for uids in grouped.values() for uid in uids) == on_2 and set(grouped) <= {0, 1}

        await poll_until(placed, within=3, every=0.1)
        assert {await client.compute_linked_pod(NS, uid, ROUTE) for uid in on_2} <= {0, 1}
