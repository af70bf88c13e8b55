"""The demo's end: its figures, and the invariants it checks against Redis and the gateways."""

from __future__ import annotations

from collections import Counter

from stateful_route import ClientDriver, RouteTable
from stateful_route.controller.metrics import OperatorMetrics
from stateful_route.core.errors import StatefulRouteError
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
    snapshot = await table.snapshot(NS, ROUTE)
    summary.final_imbalance = imbalance(snapshot)
    linked = await _stored_links(traffic)
    traffic.rollout_ends(linked)
    summary.rollout_users_moved = sum(1 for n in traffic.rollout_moves.values() if n)
    summary.rollout_max_moves = max(traffic.rollout_moves.values(), default=0)
    summary.rollout_moved_twice = sum(1 for n in traffic.rollout_moves.values() if n > 1)
    summary.invariants = await invariants(traffic, snapshot, linked)


async def _stored_links(traffic: Traffic) -> dict[str, int]:
    """Every user's stored link: uid -> pod (users without one left out)."""
    stored = await traffic.gateways[0].batch_get_linked_pod(NS, traffic.all_users(), ROUTE)
    return {uid: pod for pod, uids in stored.items() for uid in uids}


async def invariants(traffic: Traffic, snapshot: RouteSnapshot, linked: dict[str, int]) -> dict[str, bool]:
    """Each invariant the demo promises, and whether it held at the end. Each compares two
    independent things, so each can fail: the gateways' own answers against each other and the
    stored links (``linked``), the per-pod sets against the links pod by pod, the evictions
    against what the deleted pod held."""
    summary = traffic.summary
    answers = [await _answers(gateway, linked) for gateway in traffic.gateways]
    counts = {pod: n for pod, n in snapshot.links.items() if n}
    return {
        "gateways agree on every user's pod": all(found == linked for found in answers),
        "every linked pod is routable": set(linked.values()) <= snapshot.routable,
        "per-pod counts equal the links": counts == dict(Counter(linked.values())),
        "the deleted pod's users were evicted and every evicted user rebound": (
            summary.rebinds == summary.links_evicted
            and (summary.deleted_pod_links == 0 or summary.links_evicted > 0)
        ),
        "users were placed": summary.users_placed > 0,
        "the rolling update moved each user at most once": summary.rollout_max_moves <= 1,
    }


async def _answers(gateway: ClientDriver, linked: dict[str, int]) -> dict[str, int | None]:
    """What the gateway answers each linked user (as it would route them), None on an error."""
    found: dict[str, int | None] = {}
    for uid in linked:
        try:
            found[uid] = await gateway.compute_linked_pod(NS, uid, ROUTE)
        except StatefulRouteError:
            found[uid] = None
    return found
