"""From the pods Kubernetes shows to the route table we want (pure; the clocks are passed in).

A NotReady pod is *suspect* for the route's grace period: it keeps its users but takes no new
ones (written as DenyNewCall), so a flapping pod does not move everyone. After the grace it is
written not ready, which makes it unroutable and gets it evicted.

Under the Handoff termination policy a terminating pod that is still Ready is written routable
but DenyNewCall until its deadline (its ``deletionTimestamp``); it stops being routable when it
reports Shutdown, turns NotReady, reaches the deadline or is gone. During a rolling update (or a
scale-down) pods about to be replaced are *outdated*: written DenyNewCall as long as some pod
that stays takes new users, so nobody is placed on a pod that will be replaced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field

from stateful_route.controller.pods import PodRecord
from stateful_route.controller.rollouts import StatefulSetRecord
from stateful_route.core.state import PodPhase, PodState, RoutingState

__all__ = ["Plan", "plan", "unroutable_reason"]


@dataclass(frozen=True, slots=True)
class Plan:
    """The table to write: pods Kubernetes has, and pods the table still has but Kubernetes not."""

    pods: dict[int, PodState]
    gone: frozenset[int]
    suspects: frozenset[int]  # NotReady within their grace
    phases: dict[int, PodPhase] = field(default_factory=dict)  # terminating (Handoff) or outdated
    held_back: bool = False  # outdated pods take no new users: a pod that stays does
    uids: dict[int, str] = field(default_factory=dict)  # the pod (incarnation) behind each index

    def with_gone_fenced(self) -> list[PodState]:
        """The table with gone pods still present but terminating (unroutable until evicted)."""
        return [*self.pods.values(), *(PodState(i, ready=False, terminating=True) for i in self.gone)]

    @property
    def outdated(self) -> frozenset[int]:
        """Pods a rolling update or a scale-down will replace."""
        return frozenset(i for i, phase in self.phases.items() if phase.outdated)


def plan(
    records: Iterable[PodRecord],
    in_table: Mapping[int, PodState],
    *,
    grace: float,
    not_ready_since: MutableMapping[str, float],
    now: float,
    wall: float = 0.0,
    handoff: bool = False,
    stateful_set: StatefulSetRecord | None = None,
    blocked: frozenset[int] = frozenset(),
) -> Plan:
    """The desired table. ``not_ready_since`` (pod uid → first seen NotReady, on the ``now``
    clock) is updated. ``wall`` is Unix time, compared with termination deadlines when
    ``handoff``; ``blocked`` are pods that take no new users whatever the table says (their own
    report or the route's cap), so they do not count as somewhere new users can go."""
    chosen: dict[int, PodRecord] = {}
    for rec in records:
        # Two pods with one ordinal exist briefly while a pod is replaced: the live one wins.
        if rec.ordinal not in chosen or chosen[rec.ordinal].terminating:
            chosen[rec.ordinal] = rec
    pods: dict[int, PodState] = {}
    phases: dict[int, PodPhase] = {}
    suspects: set[int] = set()
    for index, rec in chosen.items():
        if rec.terminating and handoff and rec.ready and rec.deadline is not None and wall < rec.deadline:
            not_ready_since.pop(rec.uid, None)
            pods[index] = PodState(index, routing=max(rec.routing, RoutingState.DENY_NEW_CALL))
            phases[index] = PodPhase(terminating_until=rec.deadline)
            continue
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
    held_back = False
    if stateful_set is not None:
        outdated = [r for r in chosen.values() if stateful_set.outdated(r)]
        held_back = _hold_back_outdated(pods, phases, outdated, blocked)
    gone = frozenset(i for i in in_table if i not in pods)
    uids = {index: rec.uid for index, rec in chosen.items()}
    return Plan(pods, gone, frozenset(suspects), phases, held_back, uids)


def _hold_back_outdated(
    pods: dict[int, PodState], phases: dict[int, PodPhase], outdated: list[PodRecord], blocked: frozenset[int]
) -> bool:
    """Mark outdated pods, and keep new users off them while a pod that stays takes new users;
    whether they are kept off."""
    old = {rec.ordinal for rec in outdated}
    for index in old:
        phases[index] = dataclasses.replace(phases.get(index, PodPhase()), outdated=True)
    if not any(p.available and i not in blocked for i, p in pods.items() if i not in old):
        return False  # never leave new users with nowhere to go
    for index in old:
        pod = pods[index]
        pods[index] = dataclasses.replace(pod, routing=max(pod.routing, RoutingState.DENY_NEW_CALL))
    return True


def unroutable_reason(pod: PodState | None, grace: float) -> str:
    """Why a pod is unroutable, for events and metrics."""
    if pod is None:
        return "deleted"
    if pod.terminating:
        return "terminating"
    if pod.routing is RoutingState.SHUTDOWN:
        return "shutdown"
    return f"not ready for {grace:g}s"
