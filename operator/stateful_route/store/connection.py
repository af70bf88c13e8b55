"""Connecting to Redis from a URL: one server, or a Redis Cluster when the URL says so.

``redis://[:password@]host:port/db`` (``rediss://`` for TLS, ``?ssl_ca_certs=/path/ca.pem`` for a
private CA) is one server; adding ``cluster=true`` to the query (``redis://host:7000/0?cluster=true``)
connects to a Redis Cluster through that seed node. Every key of one route shares a hash tag,
so every script and pipeline stays in one slot either way.
"""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis, RedisCluster

from stateful_route.core.errors import InvalidInput

__all__ = ["AnyRedis", "connect", "delete_prefix", "is_cluster_url", "seed_url"]

AnyRedis: TypeAlias = Redis | RedisCluster

_TRUE = {"1", "true", "yes", "on"}


def _split(url: str) -> tuple[str, bool]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    flags = [value.lower() for name, value in query if name == "cluster"]
    rest = [(name, value) for name, value in query if name != "cluster"]
    return urlunsplit(parts._replace(query=urlencode(rest))), any(flag in _TRUE for flag in flags)


def seed_url(url: str) -> str:
    """``url`` without the cluster flag: the one server it names (a cluster's seed node)."""
    return _split(url)[0]


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` asks for Redis Cluster (``?cluster=true``)."""
    return _split(url)[1]


def connect(url: str, **options: Any) -> AnyRedis:
    """An asyncio client for ``url``: ``Redis``, or ``RedisCluster`` with ``?cluster=true``."""
    plain, cluster = _split(url)
    if not plain.startswith(("redis://", "rediss://")):
        raise InvalidInput("redis_url", "must start with redis:// or rediss://")
    if cluster:
        return RedisCluster.from_url(plain, **options)
    return Redis.from_url(plain, **options)


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
