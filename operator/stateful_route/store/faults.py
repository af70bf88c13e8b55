"""Turns Redis faults into typed errors within a deadline, so a fault is never a wrong answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from redis import exceptions as redis_errors

from stateful_route.core.errors import StoreError, StoreUnavailable

__all__ = ["guarded"]

T = TypeVar("T")

_UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError, TimeoutError)


async def guarded(call: Awaitable[T], seconds: float) -> T:
    """Await a Redis call; raise StoreUnavailable if it fails or takes longer than ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            return await call
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}: {exc}") from exc
    except redis_errors.RedisError as exc:
        raise StoreError(f"redis error: {exc}") from exc
