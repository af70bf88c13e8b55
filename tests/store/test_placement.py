"""Placement is atomic and balanced; "if absent" means if absent; rebind is compare-and-swap."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from stateful_route import NoAvailablePod, PodState, RoutingState
from tests.routes import NS, SVC, clients, make_route, until_routable


@pytest.mark.slow  # seconds of exploration: in make test, not in the fast loop
async def test_concurrent_clients_place_new_users_evenly_and_agree(redis, make_redis, prefix):
    await make_route(redis, prefix, pods=8)
    users = [f"user-{i}" for i in range(20_000)]
    async with clients(make_redis, prefix, 16) as drivers:

        async def place(driver, share):
            return {uid: await driver.compute_linked_pod(NS, uid, SVC) for uid in share}

        # Each client places its own slice of users, all at once.
        placed_parts = await asyncio.gather(*(place(d, users[i::16]) for i, d in enumerate(drivers)))
        placed = {uid: pod for part in placed_parts for uid, pod in part.items()}
        counts = Counter(placed.values())
        mean = len(users) / 8
        assert sorted(counts) == list(range(8))
        assert all(abs(n - mean) <= 0.05 * mean for n in counts.values()), counts

        # Every client, asked about every user, names the same pod.
        for driver in drivers:
            seen = await driver.batch_get_linked_pod(NS, users, SVC)
            assert {uid: pod for pod, uids in seen.items() for uid in uids} == placed
        asked = await asyncio.gather(*(d.compute_linked_pod(NS, users[7], SVC) for d in drivers))
        assert set(asked) == {placed[users[7]]}


async def test_placement_prefers_lower_load_and_skips_unavailable(redis, prefix):
    table = await make_route(redis, prefix, pods=3)
    await table.update_pod(NS, SVC, PodState(0, routing=RoutingState.DENY_NEW_CALL))
    await table.update_pod(NS, SVC, PodState(1, load=5))
    async with clients(lambda: redis, prefix, 1) as (client,):
        assert [await client.compute_linked_pod(NS, f"u{i}", SVC) for i in range(7)] == [2] * 5 + [1, 2]


async def test_no_available_pod_raises_and_writes_no_link(redis, prefix):
    await make_route(redis, prefix, pods=2)
    table = await make_route(redis, prefix, pods=0)
    await table.put_pods(NS, SVC, [PodState(0, ready=False), PodState(1, terminating=True)])
    async with clients(lambda: redis, prefix, 1) as (client,):
        with pytest.raises(NoAvailablePod):
            await client.compute_linked_pod(NS, "alice", SVC)
        assert await client.get_linked_pod_not_cache(NS, "alice", SVC) is None


async def test_max_links_per_pod_makes_a_full_pod_unavailable(redis, prefix):
    table = await make_route(redis, prefix, pods=2)
    await table.configure(NS, SVC, max_links_per_pod=2)
    async with clients(lambda: redis, prefix, 1) as (client,):
        pods = [await client.compute_linked_pod(NS, f"u{i}", SVC) for i in range(4)]
        assert sorted(pods) == [0, 0, 1, 1]
        with pytest.raises(NoAvailablePod):
            await client.compute_linked_pod(NS, "one-too-many", SVC)


async def test_set_if_absent_has_exactly_one_winner(redis, make_redis, prefix):
    await make_route(redis, prefix, pods=8)
    async with clients(make_redis, prefix, 8) as drivers:
        for round_ in range(20):
            uid = f"contested-{round_}"
            answers = await asyncio.gather(
                *(d.set_linked_pod_if_absent(NS, uid, SVC, pod) for pod, d in enumerate(drivers))
            )
            stored = await drivers[0].get_linked_pod_not_cache(NS, uid, SVC)
            assert stored is not None
            assert set(answers) == {stored}
            # A later call with another pod changes nothing.
            assert await drivers[1].set_linked_pod_if_absent(NS, uid, SVC, (stored + 1) % 8) == stored
            assert await drivers[2].get_linked_pod_not_cache(NS, uid, SVC) == stored


async def test_set_if_absent_links_only_to_a_routable_pod(redis, prefix):
    """Outside review: if-absent stored links to a pod Shutdown for seconds and to a pod the route
    never had, and lookups answered them for the link's whole life."""
    table = await make_route(redis, prefix, pods=3)
    await table.update_pod(NS, SVC, PodState(2, routing=RoutingState.SHUTDOWN))
    async with clients(lambda: redis, prefix, 1) as (client,):
        await until_routable([client], 2, False)
        for pod in (2, 7):
            with pytest.raises(NoAvailablePod) as refused:
                await client.set_linked_pod_if_absent(NS, f"to-{pod}", SVC, pod)
            assert refused.value.pod == pod
            assert f"pod {pod} is not a routable pod" in str(refused.value)
            assert await client.get_linked_pod_not_cache(NS, f"to-{pod}", SVC) is None
        # A link to a pod no longer routable is no link: it moves to the pod asked for.
        assert await client.set_linked_pod_if_absent(NS, "moved", SVC, 1) == 1
        await table.update_pod(NS, SVC, PodState(1, ready=False))
        await until_routable([client], 1, False)
        assert await client.set_linked_pod_if_absent(NS, "moved", SVC, 0) == 0
        assert await client.get_linked_pod_not_cache(NS, "moved", SVC) == 0
        assert (await table.snapshot(NS, SVC)).links.get(1, 0) == 0


async def test_pod_zero_is_a_pod_not_an_absence(redis, prefix):
    await make_route(redis, prefix, pods=1)
    async with clients(lambda: redis, prefix, 1) as (client,):
        assert await client.set_linked_pod_if_absent(NS, "zero", SVC, 0) == 0
        assert await client.set_linked_pod_if_absent(NS, "zero", SVC, 5) == 0
        assert await client.get_linked_pod_not_cache(NS, "zero", SVC) == 0
        assert await client.get_linked_pod_not_cache(NS, "nobody", SVC) is None


async def test_rebind_moves_the_link_once_and_racing_clients_agree(redis, make_redis, prefix):
    table = await make_route(redis, prefix, pods=4)
    users = [f"u{i}" for i in range(200)]
    # Hundreds of racing calls open connections at once: a timeout for agreement, not for speed.
    async with clients(make_redis, prefix, 6, timeout=10) as drivers:
        first = {uid: await drivers[0].compute_linked_pod(NS, uid, SVC) for uid in users}
        on_dead = [uid for uid, pod in first.items() if pod == 2]
        await table.update_pod(NS, SVC, PodState(2, terminating=True))
        await until_routable(drivers, 2, routable=False)
        # All clients race to recompute the users of the dead pod.
        answers = await asyncio.gather(
            *(d.compute_linked_pod(NS, uid, SVC) for uid in on_dead for d in drivers)
        )
        by_user: dict[str, set[int]] = {}
        for (uid, _), pod in zip([(u, d) for u in on_dead for d in drivers], answers, strict=True):
            by_user.setdefault(uid, set()).add(pod)
        assert all(len(pods) == 1 and 2 not in pods for pods in by_user.values()), by_user
        # Users of live pods did not move.
        for uid, pod in first.items():
            if pod != 2:
                assert await drivers[3].compute_linked_pod(NS, uid, SVC) == pod
        snapshot = await table.snapshot(NS, SVC)
        assert snapshot.links[2] == 0
        assert sum(snapshot.links.values()) == len(users)
