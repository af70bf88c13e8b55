"""Rebinding never lands on the pod being left; the route's link TTL governs every placement."""

from __future__ import annotations

import asyncio

import pytest

from stateful_route import NoAvailablePod, PodState, RoutingState
from stateful_route.store.eviction import evict
from stateful_route.store.links import LinkStore, Placement
from tests.routes import NS, SVC, clients, make_route


async def test_evicting_an_available_pod_with_rebind_ends_and_moves_everyone_off_it(redis, prefix):
    # Issue 11, point 6: the evicted pod was still the best one, so each batch of rebound users
    # went straight back to it and the eviction never ended.
    table = await make_route(redis, prefix, pods=3)
    store = LinkStore(redis, table.keyring)
    route_keys = table.keyring.route(NS, SVC)
    users = [f"u{i}" for i in range(60)]
    await store.place_many(route_keys, users, 60)
    on_zero = [u for u, pod in zip(users, await store.read_many(route_keys, users), strict=True) if pod == 0]
    async with asyncio.timeout(10):
        done = await evict(store, route_keys, 0, reason="test", rebind_ttl=60, batch=5)
    assert done.removed == done.rebound == len(on_zero) == 20
    assert 0 not in await store.read_many(route_keys, users)
    assert (await table.snapshot(NS, SVC)).links == {0: 0, 1: 30, 2: 30}


async def test_place_with_exclude_moves_the_user_off_that_pod_and_never_chooses_it(redis, prefix):
    table = await make_route(redis, prefix, pods=2)
    store = LinkStore(redis, table.keyring)
    route_keys = table.keyring.route(NS, SVC)
    assert await store.place(route_keys, "alice", 60) == Placement(0, 60, "placed")
    assert await store.place(route_keys, "alice", 60, exclude=0) == Placement(1, 60, "rebound")
    kept = await store.place(route_keys, "alice", 60, exclude=0)
    assert kept is not None
    assert (kept.pod, kept.outcome) == (1, "kept")
    assert (await table.snapshot(NS, SVC)).links == {0: 0, 1: 1}
    # Pod 0 is the best pod for a new user, but excluded; with pod 1 full, nothing is left.
    await table.configure(NS, SVC, max_links_per_pod=1)
    assert await store.place(route_keys, "bob", 60, exclude=0) is None
    assert await store.place_many(route_keys, ["bob", "carol"], 60, exclude=0) == [None, None]
    assert await store.read_many(route_keys, ["bob", "carol"]) == [None, None]
    assert await store.place_many(route_keys, ["bob", "carol"], 60) == [0, None]


async def test_the_routes_link_ttl_governs_links_placed_by_gateways_and_rebinds(redis, prefix):
    # Issue 11, point 7: gateways placed links with their own link_ttl (300 s), whatever the route said.
    table = await make_route(redis, prefix, pods=2)
    await table.configure(NS, SVC, link_ttl=5)
    route_keys = table.keyring.route(NS, SVC)
    async with clients(lambda: redis, prefix, 1, link_ttl=300) as (client,):
        await client.compute_linked_pod(NS, "alice", SVC)
        await client.set_linked_pod_if_absent(NS, "bob", SVC, 1)
        await LinkStore(redis, table.keyring).place_many(route_keys, ["carol"], 300)
        for uid in ("alice", "bob", "carol"):
            assert 0 < await redis.pttl(route_keys.link(uid)) <= 5000, uid
        # The client's link_ttl is the fallback for a route without a policy.
        await table.configure(NS, SVC, link_ttl=None)
        await client.compute_linked_pod(NS, "dave", SVC)
        assert await redis.pttl(route_keys.link("dave")) > 200_000


async def test_a_full_pod_leaves_the_available_set_and_returns_when_freed(redis, prefix):
    table = await make_route(redis, prefix, pods=2)
    await table.configure(NS, SVC, max_links_per_pod=1)
    await table.update_pod(NS, SVC, PodState(1, routing=RoutingState.DENY_NEW_CALL))
    store = LinkStore(redis, table.keyring)
    route_keys = table.keyring.route(NS, SVC)
    async with clients(lambda: redis, prefix, 1) as (client,):
        assert await client.compute_linked_pod(NS, "alice", SVC) == 0
        assert await redis.zrange(route_keys.available, 0, -1) == []
        with pytest.raises(NoAvailablePod):
            await client.compute_linked_pod(NS, "bob", SVC)
        await store.unlink(route_keys, "alice", expected=None, keep=0)
        assert await redis.zrange(route_keys.available, 0, -1, withscores=True) == [(b"0", 0.0)]
        assert await client.compute_linked_pod(NS, "bob", SVC) == 0
