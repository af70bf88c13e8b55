"""What the demo reports at the end, and the balance figure it samples while running."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from stateful_route.core.state import RouteSnapshot

__all__ = ["Summary", "imbalance"]


@dataclass
class Summary:
    """What happened, checked at the end (``ok`` is True when every invariant held)."""

    users_placed: int = 0
    lookups: int = 0
    no_available_pod: int = 0
    pod_pending: int = 0  # lookups of users waiting for their pod's replacement in the rollout
    errors: list[str] = field(default_factory=list)
    evictions: int = 0
    deleted_pod_links: int = 0  # links the story's deleted pod held when it was deleted
    links_evicted: int = 0
    rebinds: int = 0
    users_moved: int = 0  # users whose pod changed at least once (seen by their lookups)
    max_moves: int = 0  # the most times one user's pod changed
    # The same, for the rolling update alone: from each user's link when it began, through the
    # user's answers, to its link at the end (Traffic.rollout_begins, rollout_ends).
    rollout_users_moved: int = 0
    rollout_max_moves: int = 0
    rollout_moved_twice: int = 0  # users the rolling update moved more than once
    worst_imbalance: float = 1.0  # max links / mean links over available pods, worst sample
    final_imbalance: float = 1.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    interrupted: bool = False
    invariants: dict[str, bool] = field(default_factory=dict)
    story: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every invariant held and nothing failed."""
        return all(self.invariants.values()) and not self.errors

    def as_dict(self) -> dict[str, object]:
        """The summary as plain data (for ``--json``)."""
        return {**asdict(self), "ok": self.ok}


def imbalance(snapshot: RouteSnapshot) -> float:
    """Max links over mean links among available pods (1.0 is perfect balance)."""
    counts = [snapshot.links.get(i, 0) for i in snapshot.available]
    mean = sum(counts) / len(counts) if counts else 0
    return max(counts) / mean if mean else 1.0
