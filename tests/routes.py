"""Helpers that set up routes and drivers in a test's own key prefix."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from stateful_route import ClientDriver, PodState, RouteTable

NS = "games"
SVC = "room"


async def make_route(
    redis: aioredis.Redis, prefix: str, pods: int = 8, *, ns: str = NS, service: str = SVC
) -> RouteTable:
    """A route table with ``pods`` ready pods, indices 0..pods-1."""
    table = RouteTable(redis, prefix=prefix)
    await table.put_pods(ns, service, [PodState(i) for i in range(pods)])
    return table


@contextlib.asynccontextmanager
async def clients(
    make_redis: Callable[..., aioredis.Redis], prefix: str, count: int, **options: Any
) -> AsyncIterator[list[ClientDriver]]:
    """``count`` independent ClientDrivers, each with its own Redis connection pool, all serving
    ``namespace`` (default NS) and built with the same ``options``."""
    namespace = options.pop("namespace", NS)  # once: popping per driver left the others on NS
    async with contextlib.AsyncExitStack() as stack:
        drivers = [
            await stack.enter_async_context(
                ClientDriver(make_redis(), namespace=namespace, prefix=prefix, **options)
            )
            for _ in range(count)
        ]
        yield drivers


async def poll_until(check: Callable[[], Awaitable[bool]], within: float, every: float = 0.005) -> None:
    """Wait until ``check()`` is true; TimeoutError (failing the test) after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    async with asyncio.timeout(within):
        while not await check():
            # Also by the clock: a check that swallows the timeout's cancellation (seen with many
            # operators and Redis clients in one process) would otherwise keep this loop going.
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"not true within {within} s")
            await asyncio.sleep(every)


async def until_routable(drivers: list[ClientDriver], pod: int, routable: bool, within: float = 1.5) -> None:
    """Wait until every driver's route view agrees that ``pod`` is (not) routable; the promised
    staleness bound is one second, so this fails after ``within`` seconds."""

    async def agreed() -> bool:
        return all([await d.is_pod_routable(NS, SVC, pod) == routable for d in drivers])

    await poll_until(agreed, within)


async def keys_under(redis: aioredis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key under ``prefix`` with its type and value, to prove that nothing was written."""
    found: dict[bytes, Any] = {}
    async for key in redis.scan_iter(match=f"{prefix}:*"):
        kind = (await redis.type(key)).decode()
        value: Any = {
            "string": redis.get,
            "hash": redis.hgetall,
            "zset": lambda k: redis.zrange(k, 0, -1, withscores=True),
            "set": redis.smembers,
        }[kind](key)
        found[key] = (kind, await value)
    return found
