"""The client's local link cache: bounded, per-entry expiry, tuple keys that cannot collide."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["CacheKey", "LinkCache"]

# (namespace, service, uid): a tuple, not a joined string, so ("a:b", "c") and ("a", "b:c") differ.
CacheKey = tuple[str, str, str]


class LinkCache:
    """Cached links ``(namespace, service, uid) → pod``, each living at most ``ttl`` seconds.

    Entries are ``(pod, deadline)`` in an OrderedDict bounded first-in first-out, so a read is one
    C-level dict lookup and one comparison (cachetools' FIFOCache adds a Python-level
    ``__getitem__``, 20 ns of a hit; its TLRUCache far more: BENCHMARKS.md, figure 1). An expired
    entry is never returned and is dropped when next read; the size bound holds regardless.

    Every operation is synchronous, so concurrent asyncio tasks cannot interleave inside one;
    ``entries`` is exposed for the client's hit path, which reads it without a method call.
    """

    def __init__(self, *, size: int, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.clock = clock
        self.size = size
        self.entries: OrderedDict[CacheKey, tuple[int, float]] = OrderedDict()

    def get(self, key: CacheKey) -> int | None:
        """The cached pod, or None if absent or expired."""
        found = self.entries.get(key)
        if found is None:
            return None
        if found[1] > self.clock():
            return found[0]
        self.entries.pop(key, None)
        return None

    def put(
        self, key: CacheKey, pod: int, remaining: float | None = None, *, since: float | None = None
    ) -> None:
        """Cache a link for ``ttl`` seconds, or less when the stored link expires sooner, counted
        from ``since`` (a reading of ``clock``; default now)."""
        ttl = self.ttl if remaining is None else min(self.ttl, remaining)
        now = self.clock()
        deadline = (now if since is None else min(since, now)) + ttl
        if deadline > now:
            entries = self.entries
            entries[key] = (pod, deadline)
            entries.move_to_end(key)  # a refreshed link starts a new life at the back of the line
            if len(entries) > self.size:
                entries.popitem(last=False)
        else:
            self.entries.pop(key, None)

    def drop(self, key: CacheKey) -> None:
        """Forget one link."""
        self.entries.pop(key, None)

    def drop_pods(self, namespace: str, service: str, pods: frozenset[int]) -> int:
        """Forget every cached link to any of ``pods`` (one pass); returns how many were dropped."""
        doomed = [
            key
            for key, value in list(self.entries.items())
            if value[0] in pods and key[0] == namespace and key[1] == service
        ]
        for key in doomed:
            self.entries.pop(key, None)
        return len(doomed)

    def clear(self) -> None:
        """Forget everything (after a gap in the change channel)."""
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: Any) -> bool:
        try:
            return self.get(key) is not None
        except TypeError:  # an unhashable key is simply not cached
            return False
