"""The Python gateway's Prometheus series are those of conformance/metrics/client.json, the list the Go
client's prommetrics package is tested against (clients/go/prommetrics): one set of names."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry

from stateful_route.gateway.metrics import PrometheusClientMetrics

SHARED = Path(__file__).resolve().parents[2] / "conformance" / "metrics" / "client.json"


def exposed() -> list[dict[str, object]]:
    """What PrometheusClientMetrics exposes, as the shared list spells it (name as exposed)."""
    registry = CollectorRegistry()
    PrometheusClientMetrics(registry)
    found: list[dict[str, object]] = []
    for family in registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        metric: dict[str, object] = {"name": name, "type": family.type, "help": family.documentation}
        buckets = [float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")]
        if buckets:
            metric["buckets"] = [b for b in buckets if b != float("inf")]
        found.append(metric)
    return found


def test_python_gateway_series_are_the_shared_list():
    shared = json.loads(SHARED.read_text())["metrics"]
    assert exposed() == shared
