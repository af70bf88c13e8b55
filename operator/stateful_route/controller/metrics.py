"""The operator's Prometheus metrics: one registry per operator instance, served on a port."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from stateful_route.core.errors import InvalidInput
from stateful_route.core.state import RouteSnapshot
from stateful_route.store.eviction import Eviction

__all__ = ["OperatorMetrics", "serve"]

ROUTE = ("namespace", "service")


class OperatorMetrics:
    """What the operator did, per route: links per pod, evictions, rebinds, table writes, errors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.links = Gauge("stateful_route_links", "Live links per pod.", [*ROUTE, "pod"], registry=r)
        self.routable = Gauge(
            "stateful_route_pod_routable", "1 if the pod is routable, else 0.", [*ROUTE, "pod"], registry=r
        )
        self.evictions = Counter(
            "stateful_route_evictions", "Pods evicted, by reason.", [*ROUTE, "reason"], registry=r
        )
        self.evicted_links = Counter(
            "stateful_route_evicted_links", "Links removed by evictions.", [*ROUTE, "reason"], registry=r
        )
        self.rebinds = Counter(
            "stateful_route_rebinds", "Evicted users placed again eagerly.", ROUTE, registry=r
        )
        self.table_writes = Counter(
            "stateful_route_table_writes", "Route-table writes that changed the table.", ROUTE, registry=r
        )
        self.handler_seconds = Histogram(
            "stateful_route_handler_seconds", "Time spent in each handler.", ["handler"], registry=r
        )
        self.redis_errors = Counter(
            "stateful_route_redis_errors", "Redis faults met while reconciling.", ["handler"], registry=r
        )

    def reconciled(
        self, namespace: str, service: str, snapshot: RouteSnapshot, evictions: list[Eviction], wrote: bool
    ) -> None:
        """Record one reconciliation's outcome."""
        route = (namespace, service)
        if wrote:
            self.table_writes.labels(*route).inc()
        for eviction in evictions:
            self.evictions.labels(*route, eviction.reason).inc()
            self.evicted_links.labels(*route, eviction.reason).inc(eviction.removed)
            self.rebinds.labels(*route).inc(eviction.rebound)
        routable = snapshot.routable
        for index in snapshot.pods:
            self.links.labels(*route, str(index)).set(snapshot.links.get(index, 0))
            self.routable.labels(*route, str(index)).set(1 if index in routable else 0)

    def forget_route(self, namespace: str, service: str) -> None:
        """Drop every series of a route the operator no longer maintains (deleted, or its
        StatefulRoute moved to another service): nothing would ever update them again."""
        per_route: list[tuple[Gauge | Counter, tuple[str, ...]]] = [
            (self.links, (*ROUTE, "pod")),
            (self.routable, (*ROUTE, "pod")),
            (self.evictions, (*ROUTE, "reason")),
            (self.evicted_links, (*ROUTE, "reason")),
            (self.rebinds, ROUTE),
            (self.table_writes, ROUTE),
        ]
        for metric, names in per_route:
            found = {
                tuple(sample.labels[name] for name in names)
                for family in metric.collect()
                for sample in family.samples
                if sample.labels.get("namespace") == namespace and sample.labels.get("service") == service
            }
            for values in found:
                with contextlib.suppress(KeyError):
                    metric.remove(*values)

    def forget(self, namespace: str, service: str, pods: list[int]) -> None:
        """Drop the per-pod series of pods (or a route) that no longer exist."""
        for index in pods:
            for gauge in (self.links, self.routable):
                with contextlib.suppress(KeyError):
                    gauge.remove(namespace, service, str(index))


@contextlib.contextmanager
def serve(metrics: OperatorMetrics, port: int | None, addr: str = "0.0.0.0") -> Iterator[int | None]:
    """Serve ``/metrics`` on ``port`` (0: a free one) while inside; yields the port, or None if off."""
    if port is None:
        yield None
        return
    try:
        server, thread = start_http_server(port, addr, registry=metrics.registry)
    except OSError as exc:
        raise InvalidInput("metrics_port", f"cannot serve metrics on port {port}: {exc.strerror}") from exc
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
