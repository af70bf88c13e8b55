"""The route's linkTTLSeconds governs links placed by gateways, not the gateways' own link_ttl."""

from __future__ import annotations

from stateful_route import ClientDriver, RouteTable
from stateful_route.testing.sim import NS, ROUTE, Cluster, operator
from tests.routes import poll_until


async def test_gateways_place_links_for_the_routes_link_ttl(cluster: Cluster, redis, redis_url, prefix):
    # Issue 11, point 7: the operator stored linkTTLSeconds, but only its own eager rebinds used it.
    await cluster.start(2, linkTTLSeconds=7)
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix):

        async def table_ready() -> bool:
            return sorted((await table.snapshot(NS, ROUTE)).available) == [0, 1]

        await poll_until(table_ready, within=10, every=0.05)
        async with ClientDriver(redis, namespace=NS, prefix=prefix, link_ttl=300) as client:
            await client.compute_linked_pod(NS, "alice", ROUTE)
            await client.set_linked_pod_if_absent(NS, "bob", ROUTE, 1)
        route_keys = table.keyring.route(NS, ROUTE)
        for uid in ("alice", "bob"):
            assert 0 < await redis.pttl(route_keys.link(uid)) <= 7000, uid

        async def status_counts_them() -> bool:
            return ((await cluster.route()).get("status") or {}).get("links") == 2

        await poll_until(status_counts_them, within=10, every=0.1)
