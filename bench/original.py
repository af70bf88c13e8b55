"""A faithful Python port of the client this project replaces (DESIGN.md, "The origin").

Kept only to measure against; its defects are the point and must not be fixed here:
- the cache is keyed by fields joined with ':' and its TTL is hard-coded;
- the best pod is chosen from the client's own view of reported loads, refreshed now and then;
- the link is written with a plain SET after the choice (no atomic placement, no CAS);
- batch lookup is one GET round trip per user, and errors are swallowed.
"""

from __future__ import annotations

import time

from cachetools import TTLCache
from redis.asyncio import Redis

CACHE_TTL = 240  # hard-coded, as in the original
LINK_TTL = 300
VIEW_REFRESH = 1.0  # the original re-read pod loads on a timer


class OriginalClient:
    """The original client driver's lookup path, in Python."""

    def __init__(self, redis: Redis, *, prefix: str, cache_size: int = 100_000) -> None:
        self._redis = redis
        self._prefix = prefix
        self._cache: TTLCache[str, int] = TTLCache(maxsize=cache_size, ttl=CACHE_TTL)
        self._loads: dict[int, int] = {}
        self._read_at = float("-inf")

    def _key(self, ns: str, service: str, uid: str) -> str:
        return f"{self._prefix}:link:{ns}:{service}:{uid}"

    def _loads_key(self, ns: str, service: str) -> str:
        return f"{self._prefix}:load:{ns}:{service}"

    async def _view(self, ns: str, service: str) -> dict[int, int]:
        if time.monotonic() - self._read_at > VIEW_REFRESH:
            raw = await self._redis.hgetall(self._loads_key(ns, service))
            self._loads = {int(pod): int(load) for pod, load in raw.items()}
            self._read_at = time.monotonic()
        return self._loads

    async def compute_linked_pod(self, ns: str, uid: str, service: str) -> int | None:
        key = self._key(ns, service, uid)
        pod = self._cache.get(key)
        view = await self._view(ns, service)
        if pod is not None and pod in view:
            return pod
        raw = await self._redis.get(key)
        if raw is not None and int(raw) in view:
            self._cache[key] = int(raw)
            return int(raw)
        if not view:
            return None
        best = min(view, key=lambda p: (view[p], p))  # from this client's own, stale view
        await self._redis.set(key, best, ex=LINK_TTL)  # no atomic placement
        self._cache[key] = best
        return best

    async def batch_get_linked_pod(self, ns: str, uids: list[str], service: str) -> dict[int, list[str]]:
        grouped: dict[int, list[str]] = {}
        for uid in uids:  # one round trip per user
            try:
                raw = await self._redis.get(self._key(ns, service, uid))
            except Exception:  # the original swallowed errors and returned what it had
                continue
            if raw is not None:
                grouped.setdefault(int(raw), []).append(uid)
        return grouped


async def report_loads(redis: Redis, prefix: str, ns: str, service: str, loads: dict[int, int]) -> None:
    """What the original's pods did every second: publish how many users each one has."""
    await redis.hset(f"{prefix}:load:{ns}:{service}", mapping={str(p): n for p, n in loads.items()})
