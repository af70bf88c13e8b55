"""Optional metrics hooks of the client library, and a Prometheus implementation of them.

``ClientDriver(metrics=None)`` (the default) costs nothing: no hook is called and the lookup
path is the plain one. Pass any object with these three methods to count what you like; if it
also has ``change_lag(seconds)`` and ``view_lag(seconds)`` (see ``ChangeLag``), the route
mirror reports how far behind the change channel it is, and with ``mirror_pass(seconds)`` how
long each re-read of every followed route takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["ChangeLag", "ClientMetrics", "PrometheusClientMetrics"]


class ClientMetrics(Protocol):
    """What a ClientDriver reports when given one."""

    def cache_hit(self) -> None:
        """``compute_linked_pod`` answered from the local cache."""

    def cache_miss(self) -> None:
        """``compute_linked_pod`` had to ask Redis."""

    def redis_call(self, seconds: float) -> None:
        """One link-store round trip to Redis took ``seconds`` (faults included)."""


class ChangeLag(Protocol):
    """Optional hooks of a ClientMetrics: the change channel's lag, measured from the moment
    Redis published a change (its clock) to this process's clock (so clock skew adds to it)."""

    def change_lag(self, seconds: float) -> None:
        """A table change's routability was applied ``seconds`` after its publication."""

    def view_lag(self, seconds: float) -> None:
        """A route's whole view (pods, availability, counts) was re-read ``seconds`` after the
        earliest change it covers was published (later changes coalesced into the same read)."""

    def mirror_pass(self, seconds: float) -> None:
        """A re-read of every followed route took ``seconds``: while it stays under ``max_age``
        minus ``refresh_interval``, no view ages past ``max_age`` (lookups never wait for a read)."""


_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class PrometheusClientMetrics:
    """ClientMetrics as Prometheus series (needs ``prometheus-client``)::

    stateful_route_client_cache_hits_total, stateful_route_client_cache_misses_total,
    stateful_route_client_redis_seconds, stateful_route_client_change_lag_seconds and
    stateful_route_client_view_lag_seconds (histograms; see ChangeLag).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Histogram

        registry = REGISTRY if registry is None else registry
        self._hits = Counter(
            "stateful_route_client_cache_hits", "Lookups answered from the local cache.", registry=registry
        )
        self._misses = Counter(
            "stateful_route_client_cache_misses", "Lookups that asked Redis.", registry=registry
        )
        self._redis = Histogram(
            "stateful_route_client_redis_seconds",
            "Link-store round trips to Redis.",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )
        self._change_lag = Histogram(
            "stateful_route_client_change_lag_seconds",
            "From a route change's publication to its routability applied here.",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self._view_lag = Histogram(
            "stateful_route_client_view_lag_seconds",
            "From a route change's publication to the re-read of the whole view covering it.",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )

    def cache_hit(self) -> None:
        """Count a cache hit."""
        self._hits.inc()

    def cache_miss(self) -> None:
        """Count a cache miss."""
        self._misses.inc()

    def redis_call(self, seconds: float) -> None:
        """Observe one Redis round trip."""
        self._redis.observe(seconds)

    def change_lag(self, seconds: float) -> None:
        """Observe the change channel's lag (routability)."""
        self._change_lag.observe(seconds)

    def view_lag(self, seconds: float) -> None:
        """Observe the change channel's lag (whole views)."""
        self._view_lag.observe(seconds)
