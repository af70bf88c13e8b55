"""From the pods Kubernetes shows to the route table we want (pure; the clock is passed in).

A NotReady pod is *suspect* for the route's grace period: it keeps its users but takes no new
ones (written as DenyNewCall), so a flapping pod does not move everyone. After the grace it is
written not ready, which makes it unroutable and gets it evicted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass

from stateful_route.controller.pods import PodRecord
from stateful_route.core.state import PodState, RoutingState

__all__ = ["Plan", "plan", "unroutable_reason"]


@dataclass(frozen=True, slots=True)
class Plan:
    """The table to write: pods Kubernetes has, and pods the table still has but Kubernetes not."""

    pods: dict[int, PodState]
    gone: frozenset[int]
    suspects: frozenset[int]  # NotReady within their grace

    def with_gone_fenced(self) -> list[PodState]:
        """The table with gone pods still present but terminating (unroutable until evicted)."""
        return [*self.pods.values(), *(PodState(i, ready=False, terminating=True) for i in self.gone)]


def plan(
    records: Iterable[PodRecord],
    in_table: Mapping[int, PodState],
    *,
    grace: float,
    not_ready_since: MutableMapping[str, float],
    now: float,
) -> Plan:
    """The desired table. ``not_ready_since`` (pod uid → first seen NotReady) is updated."""
    chosen: dict[int, PodRecord] = {}
    for rec in records:
        # Two pods with one ordinal exist briefly while a pod is replaced: the live one wins.
        if rec.ordinal not in chosen or chosen[rec.ordinal].terminating:
            chosen[rec.ordinal] = rec
    pods: dict[int, PodState] = {}
    suspects: set[int] = set()
    for index, rec in chosen.items():
        if rec.ready or rec.terminating:
            not_ready_since.pop(rec.uid, None)
            pods[index] = PodState(index, ready=rec.ready, terminating=rec.terminating, routing=rec.routing)
            continue
        previous = in_table.get(index)
        if previous is not None and not previous.ready and not previous.terminating:
            since = not_ready_since.setdefault(rec.uid, now - grace)  # already past its grace
        else:
            since = not_ready_since.setdefault(rec.uid, now)
        if now - since < grace:
            suspects.add(index)
            pods[index] = PodState(index, routing=max(rec.routing, RoutingState.DENY_NEW_CALL))
        else:
            pods[index] = PodState(index, ready=False, routing=rec.routing)
    live_uids = {rec.uid for rec in chosen.values()}
    for uid in [uid for uid in not_ready_since if uid not in live_uids]:
        del not_ready_since[uid]
    gone = frozenset(i for i in in_table if i not in pods)
    return Plan(pods, gone, frozenset(suspects))


def unroutable_reason(pod: PodState | None, grace: float) -> str:
    """Why a pod is unroutable, for events and metrics."""
    if pod is None:
        return "deleted"
    if pod.terminating:
        return "terminating"
    if pod.routing is RoutingState.SHUTDOWN:
        return "shutdown"
    return f"not ready for {grace:g}s"
