"""Deleting what a demo, a benchmark or a test wrote: every key under its own prefix."""

from __future__ import annotations

from redis.asyncio import RedisCluster

from stateful_route.store.connection import AnyRedis

__all__ = ["delete_prefix"]


async def delete_prefix(redis: AnyRedis, prefix: str, batch: int = 10_000) -> None:
    """Unlink every key under ``<prefix>:`` (what a demo, bench or test wrote), ``batch`` keys per
    command on one server; one at a time on a cluster, where the keys span slots."""
    doomed: list[bytes] = []
    async for key in redis.scan_iter(match=f"{prefix}:*", count=batch):
        if isinstance(redis, RedisCluster):
            await redis.unlink(key)
            continue
        doomed.append(key)
        if len(doomed) == batch:
            await redis.unlink(*doomed)
            doomed.clear()
    if doomed:
        await redis.unlink(*doomed)
