"""From the pods Kubernetes shows to the route table we want (pure; the clock is passed in).

A NotReady pod that was Ready is *suspect* for the route's grace period: it keeps its users but
takes no new ones (written as DenyNewCall), so a flapping pod does not move everyone. After the
grace it is written not ready, which makes it unroutable and gets it evicted. A pod never seen
Ready gets no grace: it is not routable until it is Ready.

What the planner must remember between runs lives in Redis with the table, one *instance*
per index, ``"<pod uid>,<note>"``: the note is ``r`` (seen Ready), ``n`` (never seen Ready) or
the Unix time in milliseconds since which the pod has been NotReady. So a restarted operator
neither restarts a grace nor gives one to a pod that never earned it, and a new uid at an index
is a new pod.

Under the Handoff termination policy a terminating pod that is still Ready is written routable
but DenyNewCall until its deadline (its ``deletionTimestamp``); it stops being routable when it
reports Shutdown, turns NotReady, reaches the deadline or is gone. During a rolling update (or a
scale-down) pods about to be replaced are *outdated*: written DenyNewCall as long as some pod
that stays takes new users, so nobody is placed on a pod that will be replaced. Those held back
for that reason alone are written *held* too: the updated pods may stop taking new users between
two runs (reaching the cap, or draining themselves), and placement then takes a held pod instead
of leaving new users with nowhere to go.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from stateful_route.controller.pods import PodRecord, timestamp
from stateful_route.controller.rollouts import StatefulSetRecord
from stateful_route.core.state import PodPhase, PodState, RoutingState

__all__ = ["Plan", "plan", "unroutable_reason"]

SEEN_READY, NEVER_READY = "r", "n"


@dataclass(frozen=True, slots=True)
class Plan:
    """The table to write: pods Kubernetes has, and pods the table still has but Kubernetes not."""

    pods: dict[int, PodState]
    gone: frozenset[int]
    suspects: frozenset[int]  # NotReady within their grace
    phases: dict[int, PodPhase] = field(default_factory=dict)  # terminating (Handoff) or outdated
    held_back: bool = False  # outdated pods take no new users: a pod that stays does
    uids: dict[int, str] = field(default_factory=dict)  # the pod (incarnation) behind each index
    instances: dict[int, str] = field(default_factory=dict)  # index -> "<pod uid>,<note>", kept in Redis
    held: frozenset[int] = frozenset()  # outdated pods DenyNewCall for that reason alone

    def with_gone_fenced(self, replaced: frozenset[int] = frozenset()) -> list[PodState]:
        """The table with gone pods, and indices whose pod was ``replaced``, present but terminating
        (unroutable until their links are evicted)."""
        fenced = self.gone | replaced
        return [
            *(state for index, state in self.pods.items() if index not in fenced),
            *(PodState(i, ready=False, terminating=True) for i in sorted(fenced)),
        ]

    @property
    def outdated(self) -> frozenset[int]:
        """Pods a rolling update or a scale-down will replace."""
        return frozenset(i for i, phase in self.phases.items() if phase.outdated)


def plan(
    records: Iterable[PodRecord],
    in_table: Mapping[int, PodState],
    instances: Mapping[int, str],
    *,
    grace: float,
    now: float,
    handoff: bool = False,
    stateful_set: StatefulSetRecord | None = None,
    blocked: frozenset[int] = frozenset(),
) -> Plan:
    """The desired table. ``instances`` are those written last time; ``now`` is Unix time (grace
    starts are kept in Redis, and termination deadlines are Unix times); ``blocked`` are pods that
    take no new users whatever the table says (their own report or the route's cap), so they do
    not count as somewhere new users can go."""
    chosen: dict[int, PodRecord] = {}
    for rec in records:
        # Two pods with one ordinal exist briefly while a pod is replaced: the live one wins.
        # Two live ones mean a stale index (a deletion missed while paused): the StatefulSet
        # created the newer after the older was gone, so the newer wins.
        if rec.ordinal not in chosen or _newer(rec, chosen[rec.ordinal]):
            chosen[rec.ordinal] = rec
    pods: dict[int, PodState] = {}
    phases: dict[int, PodPhase] = {}
    notes: dict[int, str] = {}
    suspects: set[int] = set()
    for index, rec in chosen.items():
        if rec.terminating and handoff and rec.ready and rec.deadline is not None and now < rec.deadline:
            pods[index] = PodState(index, routing=max(rec.routing, RoutingState.DENY_NEW_CALL))
            phases[index] = PodPhase(terminating_until=rec.deadline)
            notes[index] = SEEN_READY
            continue
        if rec.ready or rec.terminating:
            pods[index] = PodState(index, ready=rec.ready, terminating=rec.terminating, routing=rec.routing)
            notes[index] = SEEN_READY if rec.ready else _note(instances.get(index), rec.uid) or NEVER_READY
            continue
        since = _not_ready_since(rec, in_table.get(index), instances.get(index), grace, now)
        if since is None:
            pods[index] = PodState(index, ready=False, routing=rec.routing)
            notes[index] = NEVER_READY
            continue
        notes[index] = str(round(since * 1000))
        if now - since < grace:
            suspects.add(index)
            pods[index] = PodState(index, routing=max(rec.routing, RoutingState.DENY_NEW_CALL))
        else:
            pods[index] = PodState(index, ready=False, routing=rec.routing)
    held_back, held = False, frozenset[int]()
    if stateful_set is not None:
        outdated = [r for r in chosen.values() if stateful_set.outdated(r)]
        held_back, held = _hold_back_outdated(pods, phases, outdated, blocked)
    gone = frozenset(i for i in in_table if i not in pods)
    uids = {index: rec.uid for index, rec in chosen.items()}
    written = {index: f"{uids[index]},{note}" for index, note in notes.items()}
    return Plan(pods, gone, frozenset(suspects), phases, held_back, uids, written, held)


def _newer(rec: PodRecord, than: PodRecord) -> bool:
    """Whether ``rec`` replaced ``than`` at their ordinal: live over terminating, then created later."""
    if rec.terminating != than.terminating:
        return than.terminating
    return (timestamp(rec.created) or 0.0) > (timestamp(than.created) or 0.0)


def _note(instance: str | None, uid: str) -> str | None:
    """The note written for this very pod (same uid), if any."""
    if instance is None:
        return None
    written_uid, _, note = instance.rpartition(",")
    return note if written_uid == uid else None


def _not_ready_since(
    rec: PodRecord, previous: PodState | None, instance: str | None, grace: float, now: float
) -> float | None:
    """Since when the NotReady pod has been NotReady after being Ready; None if never seen Ready.
    Last written Ready, it turned NotReady since the last run: when, the Ready condition's
    lastTransitionTime says (an operator that was down did not see it), else now. That time has
    whole seconds, so the pod turned within the second after it: its end is taken, so the
    grace is never shortened."""
    turned = now if rec.not_ready_since is None else min(now, rec.not_ready_since + 1)
    note = _note(instance, rec.uid)
    if note is not None:
        if note == SEEN_READY:
            return turned
        return int(note) / 1000 if note.isdigit() else None
    if instance is not None or previous is None:
        return None  # a new pod at this index (another uid), or one never written
    # A table written before instances were kept: trust what it says of the pod.
    if previous.alive:
        return turned
    return now - grace if not previous.terminating else None


def _hold_back_outdated(
    pods: dict[int, PodState], phases: dict[int, PodPhase], outdated: list[PodRecord], blocked: frozenset[int]
) -> tuple[bool, frozenset[int]]:
    """Mark outdated pods, and keep new users off them while a pod that stays takes new users;
    whether they are kept off, and those kept off for that reason alone (held: see the module's
    docstring)."""
    old = {rec.ordinal for rec in outdated}
    for index in old:
        phases[index] = dataclasses.replace(phases.get(index, PodPhase()), outdated=True)
    if not any(p.available and i not in blocked for i, p in pods.items() if i not in old):
        return False, frozenset()  # never leave new users with nowhere to go
    held: set[int] = set()
    for index in old:
        pod = pods[index]
        if pod.available:
            held.add(index)
        pods[index] = dataclasses.replace(pod, routing=max(pod.routing, RoutingState.DENY_NEW_CALL))
    return True, frozenset(held)


def unroutable_reason(pod: PodState | None, grace: float) -> str:
    """Why a pod is unroutable, for events and metrics."""
    if pod is None:
        return "deleted"
    if pod.terminating:
        return "terminating"
    if pod.routing is RoutingState.SHUTDOWN:
        return "shutdown"
    return f"not ready for {grace:g}s"
