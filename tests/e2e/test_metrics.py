"""The operator's Prometheus endpoint, scraped over HTTP while it evicts and rebinds."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Awaitable, Callable

from prometheus_client.parser import text_string_to_metric_families

from stateful_route import ClientDriver, RouteTable
from stateful_route.controller.metrics import OperatorMetrics
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


def route_series(metrics: OperatorMetrics, service: str) -> set[tuple[str, str]]:
    """(metric, pod or reason) of every series of the route's service."""
    return {
        (sample.name, sample.labels.get("pod") or sample.labels.get("reason", ""))
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.labels.get("service") == service
    }


async def test_no_series_outlives_the_service_the_operator_maintains(cluster, redis, redis_url, prefix):
    """A service changed (room -> lobby) or a route deleted: every series of the service the
    operator no longer maintains goes; only the new service's are reported."""
    await cluster.start(3, rebind="Eager")
    metrics = OperatorMetrics()
    async with operator(cluster, redis_url, prefix, metrics=metrics):
        table = RouteTable(redis, prefix=prefix)
        await wait_for_table(table, [0, 1, 2])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            for i in range(30):
                await client.compute_linked_pod(NS, f"user-{i}", ROUTE)
        await cluster.delete_pod(2)  # an eviction: counters with a reason too

        def has(service: str, series: tuple[str, str]) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return series in route_series(metrics, service)

            return check

        await poll_until(has(ROUTE, ("stateful_route_evictions_total", "deleted")), within=5, every=0.05)
        assert ("stateful_route_links", "1") in route_series(metrics, ROUTE)
        await cluster.update_route(service="lobby")
        await poll_until(has("lobby", ("stateful_route_links", "1")), within=5, every=0.05)
        await poll_until(lambda: _empty(metrics, ROUTE), within=5, every=0.05)
        await cluster.delete_route()
        await poll_until(lambda: _empty(metrics, "lobby"), within=5, every=0.05)


async def _empty(metrics: OperatorMetrics, service: str) -> bool:
    return not route_series(metrics, service)


async def test_pod_events_that_change_nothing_the_operator_reads_are_counted_not_reconciled(
    cluster, redis, redis_url, prefix
):
    await cluster.start(3)
    port = free_port()

    def events(outcome: str) -> float:
        return scrape(port).get(("stateful_route_pod_events_total", (("outcome", outcome),)), 0.0)

    async with operator(cluster, redis_url, prefix, metrics_port=port):
        table = RouteTable(redis, prefix=prefix)
        await wait_for_table(table, [0, 1, 2])
        reconciled, unchanged = (
            await asyncio.to_thread(events, "reconciled"),
            await asyncio.to_thread(events, "unchanged"),
        )
        for n in range(9):
            await cluster.touch(n % 3, str(n))

        async def counted() -> bool:
            return await asyncio.to_thread(events, "unchanged") >= unchanged + 9

        await poll_until(counted, within=5, every=0.05)
        assert await asyncio.to_thread(events, "reconciled") == reconciled
        # A change the operator reads is reconciled at once (not left to the tick).
        await cluster.set_ready(1, False)

        async def reconciled_once() -> bool:
            return await asyncio.to_thread(events, "reconciled") == reconciled + 1

        await poll_until(reconciled_once, within=5, every=0.05)
        assert 1 not in (await table.snapshot(NS, ROUTE)).available
