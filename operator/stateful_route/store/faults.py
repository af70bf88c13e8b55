"""Turns Redis faults into typed errors within a deadline, so a fault is never a wrong answer.

Every way redis-py reports that Redis cannot serve now (a connection refused or cut, a timeout,
a Redis Cluster that is down, reconfiguring or cannot be reached at all, a replica that is
read-only during a failover) is StoreUnavailable; a script's refusal of a route written by a
newer layout is LayoutTooNew; any other Redis error is StoreError.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import TypeVar

from redis import exceptions as redis_errors

from stateful_route.core.errors import LayoutTooNew, StoreError, StoreUnavailable

__all__ = ["FAULTS", "UNAVAILABLE", "guarded", "typed"]

T = TypeVar("T")

UNAVAILABLE: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    # Cluster faults: ClusterDownError, MasterDownError (ClusterError), TRYAGAIN during a slot
    # migration, a read-only node mid-failover, and RedisClusterException, which is not a
    # RedisError (no reachable seed node, slots not covered, a server not in cluster mode).
    redis_errors.ClusterError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    redis_errors.RedisClusterException,
    OSError,
    TimeoutError,
)

FAULTS: tuple[type[Exception], ...] = (*UNAVAILABLE, redis_errors.RedisError)

# How a script refuses a route of a newer layout (lua/include/layout.lua).
_TOO_NEW = re.compile(r"LAYOUT_TOO_NEW route layout (\d+), this release knows (\d+)")


def typed(exc: Exception) -> StoreError:
    """The typed error for a fault redis-py (or the socket under it) raised."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, redis_errors.ResponseError) and (found := _TOO_NEW.search(str(exc))):
        return LayoutTooNew(int(found[1]), int(found[2]))
    if isinstance(exc, UNAVAILABLE):
        return StoreUnavailable(f"redis unavailable: {type(exc).__name__}: {exc}")
    return StoreError(f"redis error: {type(exc).__name__}: {exc}")


async def guarded(call: Awaitable[T], seconds: float) -> T:
    """Await a Redis call; raise StoreUnavailable if it fails or takes longer than ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            return await call
    except FAULTS as exc:
        raise typed(exc) from exc
