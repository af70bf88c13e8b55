"""A route's migration as its status and Events show it (pure): started, then done or failed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stateful_route.controller.status import rfc3339
from stateful_route.store.migration import Migration

__all__ = ["MigrationReport"]


@dataclass
class MigrationReport:
    """One migration of a route by this operator: ``state`` is Running until it is Succeeded,
    Unfinished (a layout-1 writer still runs: the next start finishes it) or Failed (``error``)."""

    started: float  # Unix seconds
    state: str = "Running"
    migration: Migration | None = None  # what it did, once done
    finished: float | None = None
    error: str | None = None

    @property
    def ran(self) -> bool:
        """Whether there was anything to migrate (a failed attempt counts): else no event."""
        done = self.migration
        return done is None or done.before != done.after or bool(done.moved) or bool(done.stale)

    @property
    def layout(self) -> int | None:
        """The layout the route's data has now, when known."""
        return None if self.migration is None else self.migration.after

    def finish(self, migration: Migration, now: float) -> None:
        self.migration, self.finished = migration, now
        self.state = "Succeeded" if migration.done else "Unfinished"

    def fail(self, error: str, now: float) -> None:
        self.error, self.finished, self.state = error, now, "Failed"

    def event(self) -> tuple[str, str]:
        """The Kubernetes event (reason, message) for the current state."""
        if self.state == "Running":
            return "MigrationStarted", "migrating the route's Redis data to this release's layout"
        if self.state == "Failed":
            return "MigrationFailed", f"migration failed (retried): {self.error}"
        assert self.migration is not None
        return ("Migrated" if self.migration.done else "MigrationUnfinished"), self.migration.message

    def status(self) -> dict[str, Any]:
        """``status.migration`` (``layoutBefore`` absent: the route recorded none)."""
        found: dict[str, Any] = {"state": self.state, "startedAt": rfc3339(self.started)}
        if self.finished is not None:
            found["finishedAt"] = rfc3339(self.finished)
        done = self.migration
        if done is not None:
            moved, stale = sum(done.moved.values()), done.stale + done.dropped
            found |= {"moved": moved, "stale": stale, "checked": done.checked}
            # Left out when unknown (a route written before layouts were recorded): a null in a
            # merge patch would delete the field instead.
            layouts = {"layoutBefore": done.before, "layoutAfter": done.after}
            found |= {name: layout for name, layout in layouts.items() if layout is not None}
        found["message"] = self.event()[1]
        return found
