"""Which routes a gateway's mirror follows: routes that exist and were asked about lately, bounded.

Following a route costs Redis a snapshot read every ``refresh_interval``, so a mirror must not
follow a name forever because someone once asked about it: a route is followed from the first
read that finds its table until ``keep`` seconds after it was last asked about, and at most
``size`` routes at once (beyond that, the least recently asked about is forgotten first).
"""

from __future__ import annotations

from collections.abc import Callable

from cachetools import TLRUCache

from stateful_route.core.state import ServiceId

__all__ = ["Followed"]


def _until(_key: ServiceId, until: float, _now: float) -> float:
    return until


class Followed(TLRUCache[ServiceId, float]):
    """``{route: followed until}``: a cachetools TLRUCache whose entries expire at their value
    (``ask`` pushes it ``keep`` seconds on), least recently asked about evicted beyond ``size``.
    Evictions for size are kept in ``evicted`` until taken: unlike expiry (whose links have
    all expired from the cache, see ``ClientDriver``), they may leave cached links behind."""

    def __init__(self, size: int, keep: float, clock: Callable[[], float]) -> None:
        super().__init__(maxsize=size, ttu=_until, timer=clock)
        self.keep = keep
        self.clock = clock
        self.evicted: list[ServiceId] = []
        self.expired: list[ServiceId] = []

    def ask(self, route: ServiceId) -> None:
        """Someone asked about ``route``: follow it for ``keep`` seconds more."""
        self[route] = self.clock() + self.keep

    def popitem(self) -> tuple[ServiceId, float]:
        """Evict the least recently asked-about route (the cache is full); remember it."""
        route, until = super().popitem()
        self.evicted.append(route)
        return route, until

    def take_evicted(self) -> list[ServiceId]:
        """Routes evicted for size since the last call."""
        evicted, self.evicted = self.evicted, []
        return evicted

    def expire(self, time: float | None = None) -> list[tuple[ServiceId, float]]:
        """Drop the routes whose time is up (TLRUCache calls it on every write too); remember them."""
        expired = list(super().expire(time))
        self.expired.extend(route for route, _ in expired)
        return expired

    def take_expired(self) -> list[ServiceId]:
        """Routes nobody asked about for ``keep`` seconds, no longer followed, since the last call."""
        self.expire()
        expired, self.expired = self.expired, []
        return expired
