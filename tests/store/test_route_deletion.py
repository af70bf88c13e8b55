"""Deleting a route removes every key under its hash-tagged prefix, links to pods outside its
table included, and nothing of any other route (issue 11, point 12)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from stateful_route import ClientDriver, PodState, ServerDriver
from stateful_route.controller.reconciler import Reconciler
from stateful_route.controller.spec import RouteRef, RouteSpec
from stateful_route.store import keys
from stateful_route.store.links import LinkStore
from tests.routes import NS, SVC, keys_under, make_route


async def fill(redis: aioredis.Redis, prefix: str) -> keys.RouteKeys:
    """A route of 3 pods with links of every kind, among them some to pods not in its table."""
    table = await make_route(redis, prefix, pods=8)
    async with (
        ClientDriver(redis, namespace=NS, prefix=prefix) as client,
        ServerDriver(redis, namespace=NS, service=SVC, pod_index=9, prefix=prefix) as pod9,
    ):
        assert await client.set_linked_pod_if_absent(NS, "seven", SVC, 7) == 7
        await table.put_pods(NS, SVC, [PodState(i) for i in range(3)])  # pod 7 leaves the table
        for i in range(10):
            await client.compute_linked_pod(NS, f"u{i}", SVC)
        await pod9.set_linked_pod("confirmed-by-a-gone-pod")
        await pod9.set_load_state(3)
    k = keys.Keyring(prefix).route(NS, SVC)
    await redis.set(k.link("corrupt"), "not-a-pod")
    return k


def route_spec(keep_links: bool) -> RouteRef:
    spec = RouteSpec(stateful_set="game", service=SVC, keep_links_on_delete=keep_links)
    return RouteRef(NS, "route", "uid-1", spec)


async def test_deleting_a_route_removes_links_to_pods_outside_its_table(redis, prefix):
    await make_route(redis, prefix, pods=2, service="other")  # a neighbour that must survive
    neighbour = await keys_under(redis, prefix)
    k = await fill(redis, prefix)
    reconciler = Reconciler(redis, prefix=prefix)
    removal = await reconciler.remove(route_spec(keep_links=False))
    assert removal.pods == [0, 1, 2]
    assert removal.links == 13  # 10 placed, pod 7's, pod 9's, the corrupt one
    left = await keys_under(redis, prefix)
    assert [key for key in left if key.startswith(k.base.encode())] == []
    assert {key: v for key, v in left.items() if b"services" not in key} == {
        key: v for key, v in neighbour.items() if b"services" not in key
    }
    assert await redis.smembers(keys.services_key(prefix, NS)) == {b"other"}


async def test_keep_links_on_delete_keeps_links_only(redis, prefix):
    k = await fill(redis, prefix)
    await Reconciler(redis, prefix=prefix).remove(route_spec(keep_links=True))
    left = {key.decode() for key in await keys_under(redis, prefix)}
    assert {key for key in left if key.startswith(k.base)} == {
        *(k.link(f"u{i}") for i in range(10)),
        k.link("seven"),
        k.link("confirmed-by-a-gone-pod"),
        k.link("corrupt"),
        *(k.pod(pod) for pod in (0, 1, 2, 7, 9)),  # each pod's shards
        *(k.shard(pod, 0) for pod in (0, 1, 2, 7, 9)),  # one shard each: few users
        k.link_counts,
        k.expiries,  # indexes when the kept temporary links expire
    }


async def test_keep_links_on_delete_keeps_the_service_findable(redis, prefix):
    """Kept links stay visible to ``get_link_service`` (the service stays in the namespace's set),
    while a route deleted without keepLinksOnDelete leaves the set."""
    await fill(redis, prefix)
    await Reconciler(redis, prefix=prefix).remove(route_spec(keep_links=True))
    assert await redis.smembers(keys.services_key(prefix, NS)) == {SVC.encode()}
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        assert await client.get_link_service(NS, "seven") == {SVC: 7}
    await Reconciler(redis, prefix=prefix).remove(route_spec(keep_links=False))
    assert await redis.smembers(keys.services_key(prefix, NS)) == set()


@pytest.mark.cluster
async def test_deleting_a_route_on_a_cluster(redis_cluster_url, prefix):
    cluster = aioredis.RedisCluster.from_url(redis_cluster_url.replace("?cluster=true", ""))
    try:
        keyring = keys.Keyring(prefix)
        routes = [keyring.route(NS, f"svc{i}") for i in range(6)]  # over several nodes
        for k in routes:
            await cluster.set(k.link("u"), "1")
            await cluster.zadd(k.pod(1), {"u": 1})
            await cluster.hset(k.pods, "1", "1,0,0,0")
        store = LinkStore(cluster, keyring)
        assert await store.delete_route(routes[0]) == 1
        for k in routes[1:]:
            assert await cluster.exists(k.link("u"), k.pod(1), k.pods) == 3
        assert await cluster.exists(routes[0].link("u"), routes[0].pod(1), routes[0].pods) == 0
        for k in routes[1:]:
            await store.delete_route(k)
    finally:
        await cluster.aclose()
