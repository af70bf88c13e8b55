"""Evicting a pod's users: compare-and-delete in bounded batches, then (Eager) placing them again."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from stateful_route.store import keys
from stateful_route.store.links import BATCH, LinkStore

__all__ = ["Eviction", "evict"]


@dataclass(frozen=True, slots=True)
class Eviction:
    """What one eviction did."""

    pod: int
    reason: str
    removed: int
    rebound: int
    at: str  # RFC 3339, UTC

    @property
    def message(self) -> str:
        """The text of the Kubernetes event posted on the route."""
        text = f"evicted {self.removed} links from pod {self.pod}: {self.reason}"
        return f"{text}; rebound {self.rebound}" if self.rebound else text


async def evict(
    store: LinkStore,
    route_keys: keys.RouteKeys,
    pod: int,
    *,
    reason: str,
    rebind_ttl: float | None,
    batch: int = BATCH,
    unlinked: list[str] | None = None,
    hold: float = 0,
) -> Eviction:
    """Remove every link to ``pod`` (only links that still point there), tell the clients, and when
    ``rebind_ttl`` is given place the evicted users again with the clients' balanced placement,
    never on ``pod`` itself (it may still be available, e.g. ``stateful-route evict --rebind``).
    ``rebind_ttl`` is the rebound links' lifetime when the route's policy sets none. The users
    unlinked and not rebound are appended to ``unlinked`` when given (to rebind them later).
    ``hold`` > 0 marks the users unlinked as waiting that many seconds at most for a pod that is
    not outdated (``LinkStore.evict_batch``)."""
    removed = rebound = 0
    await store.migrator.absorb(route_keys, pod)  # users a layout-1 release linked: evicted too
    while True:
        left, uids = await store.evict_batch(route_keys, pod, batch, hold=hold)
        removed += len(uids)
        if rebind_ttl is not None and uids:
            placed = await store.place_many(route_keys, uids, rebind_ttl, exclude=pod)
            rebound += sum(p is not None for p in placed)
        elif unlinked is not None:
            unlinked.extend(uids)
        if left == 0:
            break
    await store.announce_eviction(route_keys, pod)
    at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return Eviction(pod, reason, removed, rebound, at)
