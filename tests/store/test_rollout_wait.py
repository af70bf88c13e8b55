"""Users evicted early in a rolling update wait (a bounded time) for a pod that is not outdated:
their lookups raise PodPending instead of placing them on a pod the rollout replaces next."""

from __future__ import annotations

import asyncio

import pytest

from stateful_route import NoAvailablePod, PodPending, PodState, RouteTable
from stateful_route.core.state import PodPhase
from stateful_route.store import eviction
from stateful_route.store.links import LinkStore
from tests.routes import NS, SVC, clients, make_route

OUTDATED = PodPhase(outdated=True)


async def evict_pod_2(redis, table: RouteTable, hold: float) -> list[str]:
    """Pod 2 of 3 (all outdated, none updated) is gone: its users are evicted, marked waiting."""
    store = LinkStore(redis, table.keyring)
    route_keys = table.keyring.route(NS, SVC)
    await table.put_phases(NS, SVC, {0: OUTDATED, 1: OUTDATED})
    await table.put_pods(NS, SVC, [PodState(0), PodState(1), PodState(2, ready=False, terminating=True)])
    unlinked: list[str] = []
    await eviction.evict(
        store, route_keys, 2, reason="deleted", rebind_ttl=None, unlinked=unlinked, hold=hold
    )
    return unlinked


async def test_an_evicted_user_waits_for_a_pod_that_is_not_outdated(redis, make_redis, prefix):
    table = await make_route(redis, prefix, pods=3)
    async with clients(make_redis, prefix, 1) as (client,):
        placed = {f"u{i}": await client.compute_linked_pod(NS, f"u{i}", SVC) for i in range(9)}
        on_2 = sorted(uid for uid, pod in placed.items() if pod == 2)
        assert on_2 == await evict_pod_2(redis, table, hold=30)

        for uid in on_2:
            with pytest.raises(PodPending) as pending:
                await client.compute_linked_pod(NS, uid, SVC)
            assert 25 < pending.value.wait_at_most <= 30
            assert isinstance(pending.value, NoAvailablePod)  # code that retries those handles it
        assert await client.batch_get_linked_pod(NS, on_2, SVC) == {}  # nothing was written
        # Users never evicted are placed as before, on the outdated pods: they have nowhere else.
        assert await client.compute_linked_pod(NS, "new", SVC) in {0, 1}

        # The new pod 2 (not outdated) takes users: the waiting users go there, once.
        await table.put_pods(NS, SVC, [PodState(i) for i in range(3)])
        await table.put_phases(NS, SVC, {})
        assert [await client.compute_linked_pod(NS, uid, SVC) for uid in on_2] == [2] * len(on_2)
        prefix_waiting = table.keyring.route(NS, SVC).waiting
        assert [await redis.exists(prefix_waiting + uid) for uid in on_2] == [0] * len(on_2)


async def test_the_wait_is_bounded(redis, make_redis, prefix):
    table = await make_route(redis, prefix, pods=3)
    async with clients(make_redis, prefix, 1) as (client,):
        for i in range(9):
            await client.compute_linked_pod(NS, f"u{i}", SVC)
        waiting = await evict_pod_2(redis, table, hold=0.3)
        with pytest.raises(PodPending):
            await client.compute_linked_pod(NS, waiting[0], SVC)
        await asyncio.sleep(0.35)
        # The wait is over: placed on an outdated pod rather than left without one.
        assert await client.compute_linked_pod(NS, waiting[0], SVC) in {0, 1}


async def test_no_wait_without_a_hold(redis, make_redis, prefix):
    table = await make_route(redis, prefix, pods=3)
    async with clients(make_redis, prefix, 1) as (client,):
        placed = {f"u{i}": await client.compute_linked_pod(NS, f"u{i}", SVC) for i in range(9)}
        unmarked = await evict_pod_2(redis, table, hold=0)
        assert unmarked == sorted(uid for uid, pod in placed.items() if pod == 2)
        assert await client.compute_linked_pod(NS, unmarked[0], SVC) in {0, 1}


@pytest.mark.parametrize("wait", [5, 0])
async def test_a_user_of_an_outdated_pod_gone_before_its_eviction_waits_too(redis, make_redis, prefix, wait):
    # The operator writes the pod unroutable, then evicts its users: a lookup in between finds
    # the link to the unroutable pod. It waits as the eviction would have it wait (the route's
    # rollout wait), unless the route has none.
    table = await make_route(redis, prefix, pods=3)
    await table.configure(NS, SVC, rollout_wait=wait)
    async with clients(make_redis, prefix, 1) as (client,):
        placed = {f"u{i}": await client.compute_linked_pod(NS, f"u{i}", SVC) for i in range(9)}
        uid = min(uid for uid, pod in placed.items() if pod == 2)
        await table.put_phases(NS, SVC, {i: OUTDATED for i in range(3)})
        await table.put_pods(NS, SVC, [PodState(0), PodState(1), PodState(2, ready=False, terminating=True)])
        if wait:
            with pytest.raises(PodPending) as pending:
                await client.compute_linked_pod(NS, uid, SVC)
            assert 4 < pending.value.wait_at_most <= 5
            with pytest.raises(PodPending):  # marked: it goes on waiting
                await client.compute_linked_pod(NS, uid, SVC)
        else:
            assert await client.compute_linked_pod(NS, uid, SVC) in {0, 1}


async def unroutable_outdated_pod_2(redis, make_redis, prefix, wait: float) -> tuple[RouteTable, str]:
    """All three pods outdated, pod 2 written unroutable and its users NOT evicted (the operator
    is down, or has not got there yet); a user of pod 2."""
    table = await make_route(redis, prefix, pods=3)
    await table.configure(NS, SVC, rollout_wait=wait)
    async with clients(make_redis, prefix, 1) as (client,):
        placed = {f"u{i}": await client.compute_linked_pod(NS, f"u{i}", SVC) for i in range(9)}
    await table.put_phases(NS, SVC, {i: OUTDATED for i in range(3)})
    await table.put_pods(NS, SVC, [PodState(0), PodState(1), PodState(2, ready=False, terminating=True)])
    return table, min(uid for uid, pod in placed.items() if pod == 2)


async def test_a_wait_spent_is_not_begun_again_while_nobody_evicts_the_link(redis, make_redis, prefix):
    """Outside review: with the operator down the user's link kept pointing to the unroutable
    pod, and each lookup after the wait ran out marked it waiting again, without end."""
    _, uid = await unroutable_outdated_pod_2(redis, make_redis, prefix, wait=0.3)
    async with clients(make_redis, prefix, 1) as (client,):
        with pytest.raises(PodPending):
            await client.compute_linked_pod(NS, uid, SVC)
        await asyncio.sleep(0.35)
        assert await client.compute_linked_pod(NS, uid, SVC) in {0, 1}  # placed, not marked again


async def test_an_eviction_after_a_lookup_does_not_lengthen_the_wait(redis, make_redis, prefix):
    """Outside review: a lookup between the pod turning unroutable and its eviction marked the
    user, then the eviction marked it again for the whole wait (1.8 s waited for a 1 s wait)."""
    table, uid = await unroutable_outdated_pod_2(redis, make_redis, prefix, wait=1)
    async with clients(make_redis, prefix, 1) as (client,):
        with pytest.raises(PodPending):
            await client.compute_linked_pod(NS, uid, SVC)
        await asyncio.sleep(0.5)
        store = LinkStore(redis, table.keyring)
        await eviction.evict(
            store, table.keyring.route(NS, SVC), 2, reason="deleted", rebind_ttl=None, hold=1
        )
        with pytest.raises(PodPending) as pending:
            await client.compute_linked_pod(NS, uid, SVC)
        assert pending.value.wait_at_most <= 0.55  # what is left of the first wait, not a new one


async def test_a_shorter_wait_set_on_the_route_applies_to_waits_under_way(redis, make_redis, prefix):
    table, uid = await unroutable_outdated_pod_2(redis, make_redis, prefix, wait=30)
    async with clients(make_redis, prefix, 1) as (client,):
        with pytest.raises(PodPending):
            await client.compute_linked_pod(NS, uid, SVC)
        await table.configure(NS, SVC, rollout_wait=0)
        assert await client.compute_linked_pod(NS, uid, SVC) in {0, 1}
