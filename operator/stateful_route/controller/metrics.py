"""The operator's Prometheus metrics: one registry per operator instance, served on a port.

The per-pod gauges (links, routable) and the route's available-pod count are exported only while
this replica keeps reconciling the route: with HA, a replica that kopf's peering paused stops
reconciling, and its last values would otherwise be scraped forever next to the active replica's
current ones. The time of the last reconciliation is the exception: it must stay to show that
reconciling stopped (alerts take its newest value over every replica).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stateful_route.core.errors import InvalidInput
from stateful_route.core.state import RouteSnapshot
from stateful_route.store.eviction import Eviction

__all__ = ["OperatorMetrics", "RouteGauges", "serve"]

ROUTE = ("namespace", "service")


class RouteGauges(Collector):
    """Links and routability per pod and the count of available pods per route, for the routes
    reconciled within the last ``stale_after`` seconds (a paused or cut-off replica's routes fade
    out instead of freezing)."""

    def __init__(self, stale_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stale_after = stale_after
        self._clock = clock
        self._lock = threading.Lock()  # scrapes run in the HTTP server's thread
        self._routes: dict[tuple[str, str], tuple[float, dict[int, tuple[int, bool]]]] = {}
        self._available: dict[tuple[str, str], int] = {}

    def update(self, namespace: str, service: str, snapshot: RouteSnapshot) -> None:
        """The route's pods as just reconciled."""
        routable = snapshot.routable
        pods = {i: (snapshot.links.get(i, 0), i in routable) for i in snapshot.pods}
        with self._lock:
            self._routes[(namespace, service)] = (self._clock(), pods)
            self._available[(namespace, service)] = len(snapshot.available)

    def forget(self, namespace: str, service: str, pods: list[int]) -> None:
        """Drop pods that no longer exist. The route's count stays, 0 once no pod is left: a route
        scaled to 0 is the case the "no available pod" alert is for (``forget_route`` drops it)."""
        with self._lock:
            found = self._routes.get((namespace, service))
            if found is not None:
                at, known = found
                self._routes[(namespace, service)] = (at, {i: v for i, v in known.items() if i not in pods})

    def forget_route(self, namespace: str, service: str) -> None:
        """Drop every pod of a route."""
        with self._lock:
            self._routes.pop((namespace, service), None)
            self._available.pop((namespace, service), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The fresh routes' series."""
        labels = [*ROUTE, "pod"]
        links = GaugeMetricFamily("stateful_route_links", "Live links per pod.", labels=labels)
        routable = GaugeMetricFamily(
            "stateful_route_pod_routable", "1 if the pod is routable, else 0.", labels=labels
        )
        available = GaugeMetricFamily(
            "stateful_route_available_pods", "Pods that take new users.", labels=list(ROUTE)
        )
        cutoff = self._clock() - self._stale_after
        with self._lock:
            fresh = [
                (route, pods, self._available.get(route, 0))
                for route, (at, pods) in self._routes.items()
                if at >= cutoff
            ]
        for (namespace, service), pods, count_available in fresh:
            available.add_metric([namespace, service], count_available)
            for index, (count, is_routable) in sorted(pods.items()):
                links.add_metric([namespace, service, str(index)], count)
                routable.add_metric([namespace, service, str(index)], 1 if is_routable else 0)
        yield links
        yield routable
        yield available


class OperatorMetrics:
    """What the operator did, per route: links per pod, evictions, rebinds, table writes, errors,
    and when it last reconciled each route.

    ``stale_after``: how long a route's per-pod series outlive its last reconciliation (the
    operator reconciles every route each second while it is active), by ``clock``; ``wall_clock``
    (Unix seconds) dates the last reconciliation."""

    def __init__(
        self,
        stale_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._wall_clock = wall_clock
        self.registry = CollectorRegistry()
        r = self.registry
        self.pods = RouteGauges(stale_after, clock)
        r.register(self.pods)
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
        self.pod_events = Counter(
            "stateful_route_pod_events",
            "Pod events received, by outcome: reconciled, coalesced (a reconciliation already waiting "
            "does it), unchanged (nothing the operator reads changed).",
            ["outcome"],
            registry=r,
        )
        self.redis_errors = Counter(
            "stateful_route_redis_errors", "Redis faults met while reconciling.", ["handler"], registry=r
        )
        self.last_reconcile = Gauge(
            "stateful_route_last_reconcile_timestamp_seconds",
            "When this replica last reconciled the route (Unix seconds).",
            ROUTE,
            registry=r,
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
        self.pods.update(namespace, service, snapshot)
        self.last_reconcile.labels(*route).set(self._wall_clock())

    def forget_route(self, namespace: str, service: str) -> None:
        """Drop every series of a route the operator no longer maintains (deleted, or its
        StatefulRoute moved to another service): nothing would ever update them again."""
        self.pods.forget_route(namespace, service)
        per_route: list[tuple[Counter | Gauge, tuple[str, ...]]] = [
            (self.evictions, (*ROUTE, "reason")),
            (self.evicted_links, (*ROUTE, "reason")),
            (self.rebinds, ROUTE),
            (self.table_writes, ROUTE),
            (self.last_reconcile, ROUTE),
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
        """Drop the per-pod series of pods that no longer exist (the route's own series stay)."""
        self.pods.forget(namespace, service, pods)


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
