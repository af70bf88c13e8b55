"""The client's optional metrics hooks: counted when given, absent (no cost) when not."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from stateful_route import ClientDriver
from stateful_route.gateway.metrics import PrometheusClientMetrics
from tests.routes import NS, SVC, make_route


async def test_hits_misses_and_redis_round_trips_are_counted(redis, prefix):
    await make_route(redis, prefix, pods=2)
    registry = CollectorRegistry()
    metrics = PrometheusClientMetrics(registry)
    async with ClientDriver(redis, namespace=NS, prefix=prefix, metrics=metrics) as client:
        pods = {await client.compute_linked_pod(NS, "user-1", SVC) for _ in range(10)}
        await client.compute_linked_pod(NS, "user-2", SVC)
    assert len(pods) == 1
    assert registry.get_sample_value("stateful_route_client_cache_misses_total") == 2
    assert registry.get_sample_value("stateful_route_client_cache_hits_total") == 9
    # Two placements, and the first one's registration of the service (once per route).
    assert registry.get_sample_value("stateful_route_client_redis_seconds_count") == 3
    assert registry.get_sample_value("stateful_route_client_redis_seconds_sum") > 0


async def test_without_metrics_the_lookup_is_the_plain_method(redis, prefix):
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        assert "compute_linked_pod" not in vars(client)
    async with ClientDriver(
        redis, namespace=NS, prefix=prefix, metrics=PrometheusClientMetrics(CollectorRegistry())
    ) as c:
        assert "compute_linked_pod" in vars(c)
