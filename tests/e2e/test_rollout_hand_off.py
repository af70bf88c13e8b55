"""Hand-offs during a rolling update: a pod never hands a user off onto a pod the rollout is
about to replace (the user would move twice); once an updated pod takes users, it hands off to it."""

from __future__ import annotations

import asyncio

import pytest

from stateful_route import PodPending, ServerDriver
from stateful_route.testing.sim import NS, ROUTE
from tests.e2e.test_rollout_placement import outdated_in_status, place
from tests.e2e.test_route_lifecycle import running_route, wait_for_table
from tests.routes import poll_until


def server(redis, prefix: str, index: int) -> ServerDriver:
    return ServerDriver(redis, namespace=NS, service=ROUTE, pod_index=index, prefix=prefix)


async def test_no_hand_off_onto_an_outdated_pod_while_no_updated_pod_takes_users(
    cluster, redis, redis_url, prefix
):
    async with running_route(cluster, redis, redis_url, prefix, 3, rebind="Eager") as (table, client):
        early = await place(client, "early", 30)
        on_2 = sorted(uid for uid, pod in early.items() if pod == 2)
        await cluster.start_rollout("rev-2")
        await outdated_in_status(cluster, [0, 1, 2])

        # The first pod of the rollout is deleted; pods 0 and 1 are outdated and no pod runs
        # rev-2: every hand-off would land on a pod replaced next. The users stay on pod 2.
        await cluster.terminate(2, grace=30)
        await wait_for_table(table, [0, 1])
        pod_2 = server(redis, prefix, 2)
        assert [await pod_2.hand_off(uid) for uid in on_2] == [None] * len(on_2)
        # hand_off_all stops at once: no updated pod can start before pod 2 goes.
        started = asyncio.get_running_loop().time()
        result = await pod_2.hand_off_all(within=30)
        assert asyncio.get_running_loop().time() - started < 5
        assert (result.moved, result.left, result.waiting) == (0, len(on_2), len(on_2))

        # It reported Shutdown: the operator evicts its users, who wait for the new pod 2.
        async def evicted() -> bool:
            return await client.batch_get_linked_pod(NS, on_2, ROUTE) == {}

        await poll_until(evicted, within=5, every=0.05)
        for uid in on_2:
            with pytest.raises(PodPending):
                await client.compute_linked_pod(NS, uid, ROUTE)

        # The new pod 2 (rev-2) is Ready and takes them; pod 1 is deleted next: its users go to
        # pod 2 only.
        await cluster.delete_pod(2)
        await cluster.create_pod(2)
        await wait_for_table(table, [2])
        assert [await client.compute_linked_pod(NS, uid, ROUTE) for uid in on_2] == [2] * len(on_2)
        on_1 = sorted(uid for uid, pod in early.items() if pod == 1)
        await cluster.terminate(1, grace=30)
        await outdated_in_status(cluster, [0, 1])
        pod_1 = server(redis, prefix, 1)
        assert [await pod_1.hand_off(uid) for uid in on_1] == [2] * len(on_1)
