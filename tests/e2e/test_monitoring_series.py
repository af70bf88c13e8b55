"""The dashboard and the alerts read only series our exporters really serve: the names (and the labels
their selectors match) are taken from the /metrics output of the real operator, run through
placements, an eviction and a Redis outage, and of a real gateway's PrometheusClientMetrics (the Go
client's prommetrics serves the same names: conformance/metrics/client.json, tested on both sides).
Along the way, the alerts' premises: a Redis outage counts errors and freezes the time of the last
reconciliation, and the route's available pods are counted."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from stateful_route import ClientDriver, RouteTable
from stateful_route.gateway.metrics import PrometheusClientMetrics
from stateful_route.testing.local_redis import free_port
from stateful_route.testing.sim import NS, ROUTE, operator
from tests.e2e.test_route_lifecycle import wait_for_table
from tests.promql import grafana_to_promql, matched_labels, metric_names
from tests.routes import poll_until
from tests.unit.test_monitoring_manifests import expressions as dashboard_expressions

ROOT = Path(__file__).parents[2]
RULE = ROOT / "manifests" / "monitoring" / "prometheusrule.yaml"
# The series a family of each type serves, by suffix (prometheus_client's text format).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}


class Exported:
    """Series names an endpoint serves, with the label names of their samples (None: no sample)."""

    def __init__(self) -> None:
        self.families: set[str] = set()
        self.series: dict[str, set[str] | None] = {}

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            self.families.add(family.name)
            for suffix in SUFFIXES[family.type]:
                self.series.setdefault(family.name + suffix, None)
            for sample in family.samples:
                self.series[sample.name] = (self.series[sample.name] or set()) | set(sample.labels)

    def unknown(self, expressions: list[str]) -> list[str]:
        """What the expressions read that is not served: names, and labels in selectors."""
        wrong = []
        for expr in expressions:
            wrong += [f"{name} in {expr!r}" for name in sorted(metric_names(expr) - self.series.keys())]
            for name, labels in matched_labels(expr).items():
                seen = self.series.get(name)
                if seen is None:
                    wrong.append(f"{name} has no sample to learn its labels from")
                    continue
                wrong += [f"label {label} of {name} in {expr!r}" for label in sorted(labels - seen)]
        return wrong


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        return str(response.read().decode())


def value(port: int, name: str) -> float:
    """The sum of the endpoint's samples named ``name``."""
    families = text_string_to_metric_families(metrics_text(port))
    return sum(s.value for f in families for s in f.samples if s.name == name)


@contextlib.contextmanager
def served(registry: CollectorRegistry) -> Iterator[int]:
    """A gateway's /metrics, on a free port."""
    server, thread = start_http_server(0, "127.0.0.1", registry=registry)
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def alert_expressions() -> list[str]:
    groups = yaml.safe_load(RULE.read_text())["spec"]["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


async def until(port: int, name: str, check: Callable[[float], bool], within: float = 10) -> float:
    """Poll the endpoint until the value of ``name`` passes ``check``; returns it."""

    async def passes() -> bool:
        return check(await asyncio.to_thread(value, port, name))

    await poll_until(passes, within=within, every=0.1)
    return await asyncio.to_thread(value, port, name)


async def test_dashboard_and_alerts_read_only_exported_series(cluster, private_redis, make_redis, prefix):
    server = private_redis()
    redis = make_redis(server.url)
    await cluster.start(3, rebind="Eager")
    ops = free_port()
    registry = CollectorRegistry()
    exported = Exported()
    async with operator(cluster, server.url, prefix, metrics_port=ops, redis_timeout=0.3):
        await wait_for_table(RouteTable(redis, prefix=prefix), [0, 1, 2])
        metrics = PrometheusClientMetrics(registry)
        with served(registry) as gateway:
            async with ClientDriver(redis, namespace=NS, prefix=prefix, metrics=metrics) as client:
                for _ in range(2):  # misses, then cache hits
                    for i in range(60):
                        await client.compute_linked_pod(NS, f"user-{i}", ROUTE)
                await cluster.delete_pod(2)  # an eviction, announced on the change channel
                await until(ops, "stateful_route_rebinds_total", lambda n: n == 20)
                await until(gateway, "stateful_route_client_change_lag_seconds_count", lambda n: n > 0)
                await until(gateway, "stateful_route_client_view_lag_seconds_count", lambda n: n > 0)
                exported.add(await asyncio.to_thread(metrics_text, gateway))
        await until(ops, "stateful_route_available_pods", lambda n: n == 2)
        exported.add(await asyncio.to_thread(metrics_text, ops))

        server.stop()  # Redis unreachable: errors counted, no reconciliation succeeds
        await until(ops, "stateful_route_redis_errors_total", lambda n: n >= 2)
        last = await asyncio.to_thread(value, ops, "stateful_route_last_reconcile_timestamp_seconds")
        await asyncio.sleep(2)  # two reconcile intervals
        exported.add(await asyncio.to_thread(metrics_text, ops))
        assert await asyncio.to_thread(value, ops, "stateful_route_last_reconcile_timestamp_seconds") == last
        await asyncio.to_thread(server.start)  # back: reconciling resumes
        await until(ops, "stateful_route_last_reconcile_timestamp_seconds", lambda t: t > last)

    assert not (wrong := exported.unknown(alert_expressions())), wrong
    dashboard = [grafana_to_promql(expr) for expr in dashboard_expressions()]
    assert not (wrong := exported.unknown(dashboard)), wrong
    # ... and the dashboard shows every family they serve (a counter's `_created` time aside).
    shown = {name for expr in dashboard for name in metric_names(expr)}
    suffixes = ("", "_total", "_bucket", "_count", "_sum")
    families = {f for f in exported.families if not f.endswith("_created")}
    assert {f for f in families if not {f + s for s in suffixes} & shown} == set()


async def test_a_route_scaled_to_zero_keeps_its_available_pods_series_at_zero(
    cluster, private_redis, make_redis, prefix
):
    # StatefulRouteNoAvailablePod matches available pods == 0: a route with no pod left must say 0,
    # not lose the series (while its last reconciliation keeps advancing).
    server = private_redis()
    await cluster.start(2)
    ops = free_port()
    async with operator(cluster, server.url, prefix, metrics_port=ops):
        await wait_for_table(RouteTable(make_redis(server.url), prefix=prefix), [0, 1])
        await until(ops, "stateful_route_available_pods", lambda n: n == 2)
        await cluster.scale(0)
        last = await until(ops, "stateful_route_links", lambda n: n == 0)
        stamp = await asyncio.to_thread(value, ops, "stateful_route_last_reconcile_timestamp_seconds")
        await until(ops, "stateful_route_last_reconcile_timestamp_seconds", lambda t: t > stamp)
        text = await asyncio.to_thread(metrics_text, ops)
        assert last == 0
        assert "stateful_route_links{" not in text
        assert f'stateful_route_available_pods{{namespace="{NS}",service="{ROUTE}"}} 0.0' in text, text
