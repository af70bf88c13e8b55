"""The demo's end: its figures, and the invariants it checks against Redis and the gateways."""

from __future__ import annotations

from stateful_route import RouteTable
from stateful_route.controller.metrics import OperatorMetrics
from stateful_route.core.state import RouteSnapshot
from stateful_route.demo.summary import imbalance
from stateful_route.demo.traffic import Traffic
from stateful_route.testing.sim import NS, ROUTE

__all__ = ["conclude", "invariants"]


async def conclude(traffic: Traffic, table: RouteTable, metrics: OperatorMetrics) -> None:
    """Fill in the summary's figures, then check the invariants."""
    summary = traffic.summary
    took = sorted(traffic.took_ns)
    if took:
        summary.p50_ms = took[len(took) // 2] / 1e6
        summary.p99_ms = took[min(len(took) - 1, int(len(took) * 0.99))] / 1e6

    def total(name: str) -> int:
        return int(sum(s.value for m in metrics.registry.collect() if m.name == name for s in m.samples
                       if s.name.endswith("_total")))  # fmt: skip

    summary.evictions = total("stateful_route_evictions")
    summary.links_evicted = total("stateful_route_evicted_links")
    summary.rebinds = total("stateful_route_rebinds")
    summary.users_moved = sum(1 for n in traffic.moves.values() if n)
    summary.max_moves = max(traffic.moves.values(), default=0)
    summary.rollout_users_moved = sum(1 for n in traffic.rollout_moves.values() if n)
    summary.rollout_max_moves = max(traffic.rollout_moves.values(), default=0)
    summary.rollout_moved_twice = sum(1 for n in traffic.rollout_moves.values() if n > 1)
    snapshot = await table.snapshot(NS, ROUTE)
    summary.final_imbalance = imbalance(snapshot)
    summary.invariants = await invariants(traffic, snapshot)


async def invariants(traffic: Traffic, snapshot: RouteSnapshot) -> dict[str, bool]:
    """Each invariant the demo promises, and whether it held at the end."""
    summary = traffic.summary
    users = traffic.all_users()
    views = [await g.batch_get_linked_pod(NS, users, ROUTE) for g in traffic.gateways[:2]]
    linked = {uid: pod for pod, uids in views[0].items() for uid in uids}
    return {
        "gateways agree on every user's pod": views[0] == views[1],
        "every linked pod is routable": set(linked.values()) <= snapshot.routable,
        "per-pod counts equal the links": sum(snapshot.links.values()) == len(linked),
        "every evicted user was rebound": summary.rebinds == summary.links_evicted,
        "users were placed": summary.users_placed > 0,
    }
