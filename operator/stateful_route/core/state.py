"""Plain data of the route table: routing states and pod states. No I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stateful_route.core import validation

__all__ = ["PodPhase", "PodState", "RouteSnapshot", "RoutingState", "ServiceId"]

# (namespace, service): what clients route by, and the name of one route table in Redis. Not to
# be confused with a StatefulRoute object's (namespace, name): see controller.spec.RouteName.
ServiceId = tuple[str, str]


class RoutingState(enum.IntEnum):
    """What a pod accepts; a higher value is more restrictive, so combining is ``max``."""

    READY = 0
    DENY_NEW_CALL = 1
    SHUTDOWN = 2

    @property
    def label(self) -> str:
        """The spelling used in annotations, CR status and the CLI."""
        return _LABELS[self]

    @classmethod
    def parse(cls, text: str) -> RoutingState:
        """Read an annotation value (``Ready``, ``DenyNewCall``, ``Shutdown``; any case)."""
        try:
            return _BY_LABEL[text.strip().lower()]
        except (KeyError, AttributeError):
            raise validation.invalid(
                "routing", f"must be one of {', '.join(_LABELS.values())}, got {text!r}"
            ) from None


_LABELS = {
    RoutingState.READY: "Ready",
    RoutingState.DENY_NEW_CALL: "DenyNewCall",
    RoutingState.SHUTDOWN: "Shutdown",
}
_BY_LABEL = {label.lower(): state for state, label in _LABELS.items()}


@dataclass(frozen=True, slots=True)
class PodState:
    """One pod of a route as the route table knows it.

    ``ready``/``terminating`` come from Kubernetes, ``routing`` is the more restrictive of
    the drain annotation and the pod's own report, ``load`` is what the pod reports.
    """

    index: int
    ready: bool = True
    terminating: bool = False
    routing: RoutingState = RoutingState.READY
    load: int = 0

    def __post_init__(self) -> None:
        validation.pod_index(self.index, "index")
        validation.flag("ready", self.ready)
        validation.flag("terminating", self.terminating)
        if not isinstance(self.routing, RoutingState):
            raise validation.invalid("routing", f"must be a RoutingState, got {self.routing!r:.40}")
        validation.load(self.load)

    @property
    def alive(self) -> bool:
        """The pod is up: ready and not terminating, whatever its routing state."""
        return self.ready and not self.terminating

    @property
    def routable(self) -> bool:
        """Existing users may keep going here: alive and not Shutdown."""
        return self.alive and self.routing is not RoutingState.SHUTDOWN

    @property
    def available(self) -> bool:
        """New users may be placed here: routable and Ready (capacity is checked in Redis)."""
        return self.alive and self.routing is RoutingState.READY


@dataclass(frozen=True, slots=True)
class RouteSnapshot:
    """The route table of one service read at one instant, with live link counts per pod."""

    pods: dict[int, PodState]
    links: dict[int, int]
    available: frozenset[int]  # new users may go here (capacity included)
    best: int | None
    version: int = 0  # the route's version when read: later snapshots have higher ones
    born: int = 0  # when this incarnation of the route was first written (Redis ms; 0: unknown)
    # Whether every count is exact. False after a mass expiry, while more shards are due than one
    # read counts: a count may then also hold links that expired since its pod was last pruned
    # (an upper bound; ``RouteTable.prune`` makes them exact again).
    exact: bool = True

    @property
    def routable(self) -> frozenset[int]:
        """Pods existing users may keep using."""
        return frozenset(i for i, pod in self.pods.items() if pod.routable)


@dataclass(frozen=True, slots=True)
class PodPhase:
    """Why the operator keeps a pod that is still routable from new users: it is terminating
    under the Handoff policy (until ``terminating_until``, Unix seconds: its
    ``deletionTimestamp``), or outdated by a rolling update or a scale-down under way (hand-offs
    never move a user onto an outdated pod)."""

    terminating_until: float | None = None
    outdated: bool = False

    @property
    def label(self) -> str | None:
        """``Terminating``, ``Outdated`` or None."""
        if self.terminating_until is not None:
            return "Terminating"
        return "Outdated" if self.outdated else None

    def encode(self) -> str:
        """``"<deadline or empty>,<0|1>"``, as stored in the route's phase hash."""
        until = "" if self.terminating_until is None else f"{self.terminating_until:.3f}"
        return f"{until},{int(self.outdated)}"

    @classmethod
    def decode(cls, raw: str) -> PodPhase:
        """The inverse of ``encode``; an unreadable entry reads as no phase."""
        until, _, outdated = raw.partition(",")
        try:
            return cls(float(until) if until else None, outdated == "1")
        except ValueError:
            return cls()
