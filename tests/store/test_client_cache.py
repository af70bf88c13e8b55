"""The client's cache and route view: default TTL, concurrency, freshness of the route view."""

from __future__ import annotations

import asyncio

import pytest

from stateful_route import ClientDriver, InvalidInput, PodState, RoutingState, ServerDriver
from tests.routes import NS, SVC, clients, make_route, until_routable
from tests.unit.test_cache import FakeClock


async def test_cache_ttl_defaults_to_link_ttl_minus_a_minute(redis, prefix):
    await make_route(redis, prefix, pods=2)
    clock = FakeClock()
    async with ClientDriver(redis, namespace=NS, prefix=prefix, clock=clock) as client:
        assert (client.link_ttl, client.cache_ttl) == (300, 240)
        pod = await client.compute_linked_pod(NS, "u", SVC)
        clock.now += 239
        assert client.get_linked_in_cache(NS, "u", SVC) == pod
        clock.now += 2
        assert client.get_linked_in_cache(NS, "u", SVC) is None
    with pytest.raises(InvalidInput, match="cache_ttl"):
        ClientDriver(redis, namespace=NS, link_ttl=60, cache_ttl=61)


async def test_cache_alone_set_get_expire(redis, prefix):
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        client.set_cache(NS, "a:b", "c", 1)
        client.set_cache(NS, "a", "b-c", 2)
        assert client.get_linked_in_cache(NS, "a:b", "c") == 1
        assert client.get_linked_in_cache(NS, "a", "b-c") == 2
        client.cache_expired(NS, "a:b", "c")
        assert client.get_linked_in_cache(NS, "a:b", "c") is None
        assert client.get_linked_in_cache(NS, "a", "b-c") == 2


async def test_concurrent_tasks_on_one_client_agree(make_redis, prefix):
    # A blocking pool queues tasks for its 20 connections, as a gateway's pool should.
    redis = make_redis(blocking_pool=20)
    await make_route(redis, prefix, pods=4)
    # 2,000 tasks queue for 20 connections: a generous timeout, as this checks agreement, not
    # speed (with 1 s, the last in the queue timed out now and then on a busy machine).
    async with ClientDriver(redis, namespace=NS, prefix=prefix, cache_size=50, timeout=10) as client:
        users = [f"u{i % 100}" for i in range(2_000)]
        answers = await asyncio.gather(*(client.compute_linked_pod(NS, uid, SVC) for uid in users))
        first = dict(zip(users, answers, strict=False))
        assert all(first[uid] == pod for uid, pod in zip(users, answers, strict=True))
        assert len(client.cache) <= 50


async def test_a_cached_pod_that_stops_being_routable_is_never_returned(redis, make_redis, prefix):
    table = await make_route(redis, prefix, pods=2)
    async with clients(make_redis, prefix, 1) as (client,):
        pod = await client.compute_linked_pod(NS, "u", SVC)
        assert client.get_linked_in_cache(NS, "u", SVC) == pod
        await table.update_pod(NS, SVC, PodState(pod, ready=False))
        await until_routable([client], pod, routable=False)
        assert await client.compute_linked_pod(NS, "u", SVC) == 1 - pod


# A raw write that bumps no version is seen on the route's snapshot turn instead
# (tests/store/test_mirror_pass.py): every write our scripts make bumps it.
@pytest.mark.parametrize("via", ["table", "server report"])
async def test_route_view_is_at_most_a_second_old(redis, make_redis, prefix, via):
    table = await make_route(redis, prefix, pods=3)
    async with (
        clients(make_redis, prefix, 1) as (client,),
        ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix) as server,
    ):
        assert await client.routable_pods(NS, SVC) == [0, 1, 2]
        loop = asyncio.get_running_loop()
        started = loop.time()
        if via == "table":
            await table.update_pod(NS, SVC, PodState(1, terminating=True))
        else:
            await server.set_routing_state(RoutingState.SHUTDOWN)
        await until_routable([client], 1, routable=False, within=1.0)
        assert loop.time() - started <= 1.0
        assert await client.routable_pods(NS, SVC) == [0, 2]
        assert await client.alive_pods(NS, SVC) == ([0, 2] if via != "server report" else [0, 1, 2])


async def test_route_view_methods(redis, prefix):
    table = await make_route(redis, prefix, pods=3)
    await table.update_pod(NS, SVC, PodState(0, routing=RoutingState.DENY_NEW_CALL))
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        assert await client.is_pod_routable(NS, SVC, 0) is True
        assert await client.is_pod_available(NS, SVC, 0) is False
        assert await client.is_pod_available(NS, SVC, 1) is True
        assert await client.is_pod_routable(NS, SVC, 7) is False
        assert await client.best_pod(NS, SVC) == 1
        await client.compute_linked_pod(NS, "u", SVC)
        # A placement bumps no version: the counts and best pod a call answers from are at most
        # max_age (1 s) old.
        await asyncio.sleep(1.05)
        assert await client.best_pod(NS, SVC) == 2


async def test_every_client_of_a_group_serves_the_namespace_it_was_given(make_redis, prefix):
    async with clients(make_redis, prefix, 3, namespace="lobby") as drivers:
        assert [d.namespaces for d in drivers] == [frozenset({"lobby"})] * 3
