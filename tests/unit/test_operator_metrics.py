"""The operator's per-route series the alerts rely on: available pods fade with the route's other
gauges when reconciling stops, the time of the last reconciliation stays (that is how an alert
sees that reconciling stopped), and both go with the route."""

from __future__ import annotations

from stateful_route.controller.metrics import OperatorMetrics
from stateful_route.core.state import PodState, RouteSnapshot, RoutingState


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def series(metrics: OperatorMetrics) -> dict[tuple[str, str, str], float]:
    """(name, service, pod) -> value of every sample with a service label."""
    return {
        (s.name, s.labels["service"], s.labels.get("pod", "")): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if "service" in s.labels
    }


def snapshot() -> RouteSnapshot:
    pods = {0: PodState(0), 1: PodState(1, routing=RoutingState.DENY_NEW_CALL), 2: PodState(2, ready=False)}
    return RouteSnapshot(pods, {0: 5, 1: 7}, frozenset({0}), 0)


def test_available_pods_fade_with_the_route_and_the_last_reconciliation_stays():
    wall, monotonic = Clock(1_700_000_000.0), Clock(100.0)
    metrics = OperatorMetrics(stale_after=5.0, clock=monotonic, wall_clock=wall)
    metrics.reconciled("games", "room", snapshot(), [], wrote=False)
    found = series(metrics)
    assert found[("stateful_route_available_pods", "room", "")] == 1
    assert found[("stateful_route_pod_routable", "room", "1")] == 1
    assert found[("stateful_route_pod_routable", "room", "2")] == 0
    assert found[("stateful_route_last_reconcile_timestamp_seconds", "room", "")] == wall.now

    monotonic.now += 6  # no reconciliation for longer than stale_after: paused, or stuck
    found = series(metrics)
    assert ("stateful_route_available_pods", "room", "") not in found
    assert ("stateful_route_links", "room", "0") not in found
    assert found[("stateful_route_last_reconcile_timestamp_seconds", "room", "")] == 1_700_000_000.0

    wall.now += 6
    metrics.reconciled("games", "room", snapshot(), [], wrote=False)
    found = series(metrics)
    assert found[("stateful_route_available_pods", "room", "")] == 1
    assert found[("stateful_route_last_reconcile_timestamp_seconds", "room", "")] == wall.now


def test_a_route_with_no_available_pod_says_zero():
    metrics = OperatorMetrics()
    drained = RouteSnapshot({0: PodState(0, routing=RoutingState.DENY_NEW_CALL)}, {0: 3}, frozenset(), None)
    metrics.reconciled("games", "room", drained, [], wrote=False)
    assert series(metrics)[("stateful_route_available_pods", "room", "")] == 0


def test_every_series_of_a_forgotten_route_goes():
    metrics = OperatorMetrics()
    metrics.reconciled("games", "room", snapshot(), [], wrote=True)
    metrics.reconciled("games", "lobby", snapshot(), [], wrote=True)
    metrics.forget_route("games", "room")
    assert {service for _, service, _ in series(metrics)} == {"lobby"}
    metrics.forget_route("games", "lobby")
    assert series(metrics) == {}


def test_a_route_scaled_to_zero_says_zero_available_pods():
    # The "no available pod" alert matches == 0: a route with no pod left must not lose the series.
    metrics = OperatorMetrics()
    metrics.reconciled("games", "room", snapshot(), [], wrote=True)
    empty = RouteSnapshot({}, {}, frozenset(), None)
    metrics.reconciled("games", "room", empty, [], wrote=True)
    metrics.forget("games", "room", [0, 1, 2])  # every pod gone
    found = series(metrics)
    assert found[("stateful_route_available_pods", "room", "")] == 0
    assert not {pod for _, _, pod in found if pod}  # no per-pod series left
    metrics.reconciled("games", "room", empty, [], wrote=False)
    metrics.forget("games", "room", [])
    assert series(metrics)[("stateful_route_available_pods", "room", "")] == 0
