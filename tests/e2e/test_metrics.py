"""The operator's Prometheus endpoint, scraped over HTTP while it evicts and rebinds."""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from stateful_route import ClientDriver, RouteTable
from stateful_route.testing.local_redis import free_port
from stateful_route.testing.sim import NS, ROUTE, operator
from tests.e2e.test_route_lifecycle import wait_for_table
from tests.routes import poll_until


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_links_evictions_rebinds_and_writes(cluster, redis, redis_url, prefix):
    await cluster.start(3, rebind="Eager")
    port = free_port()
    route = (("namespace", NS), ("service", ROUTE))
    async with operator(cluster, redis_url, prefix, metrics_port=port):
        table = RouteTable(redis, prefix=prefix)
        await wait_for_table(table, [0, 1, 2])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            for i in range(300):
                await client.compute_linked_pod(NS, f"user-{i}", ROUTE)
        await cluster.delete_pod(2)

        async def counted() -> bool:
            found = await asyncio.to_thread(scrape, port)
            return found.get(("stateful_route_rebinds_total", route)) == 100

        await poll_until(counted, within=5, every=0.1)
        found = await asyncio.to_thread(scrape, port)
        deleted = (*route, ("reason", "deleted"))
        assert found[("stateful_route_evictions_total", tuple(sorted(deleted)))] == 1
        assert found[("stateful_route_evicted_links_total", tuple(sorted(deleted)))] == 100

        async def gauges_follow() -> bool:
            now = await asyncio.to_thread(scrape, port)
            links = {dict(k[1])["pod"]: v for k, v in now.items() if k[0] == "stateful_route_links"}
            return links == {"0": 150, "1": 150}  # pod 2's series is gone with the pod

        await poll_until(gauges_follow, within=5, every=0.1)
        assert found[("stateful_route_table_writes_total", route)] >= 2
        assert found[("stateful_route_handler_seconds_count", (("handler", "pod_changed"),))] >= 1
        assert found.get(("stateful_route_redis_errors_total", (("handler", "route_tick"),)), 0) == 0
