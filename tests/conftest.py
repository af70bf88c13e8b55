"""Shared fixtures: a real Redis (the machine's, or a private one), per-test key prefixes."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis.asyncio as aioredis

from stateful_route.local_redis import PrivateRedis, answers

MACHINE_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL, else the machine's Redis, else a private redis-server started for this run."""
    url = os.environ.get("REDIS_URL", MACHINE_REDIS)
    if answers(url):
        yield url
        return
    if shutil.which("redis-server") is None:
        pytest.fail(f"no Redis answers at {url} and redis-server is not on PATH")
    server = PrivateRedis().start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test or run uses."""
    return f"t{secrets.token_hex(4)}"


RedisFactory = Callable[..., aioredis.Redis]


@pytest.fixture
async def make_redis(redis_url: str, prefix: str) -> AsyncIterator[RedisFactory]:
    """Makes asyncio clients (closed at teardown) and deletes every key under ``prefix`` after."""
    made: list[aioredis.Redis] = []

    def make(url: str | None = None, *, blocking_pool: int = 0, **options: object) -> aioredis.Redis:
        if blocking_pool:  # tasks queue for one of N connections instead of failing
            pool = aioredis.BlockingConnectionPool.from_url(
                url or redis_url, max_connections=blocking_pool, **options
            )
            client = aioredis.Redis.from_pool(pool)
        else:
            client = aioredis.Redis.from_url(url or redis_url, **options)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    cleaner = aioredis.Redis.from_url(redis_url)
    try:
        async for key in cleaner.scan_iter(match=f"{prefix}:*", count=1000):
            await cleaner.unlink(key)
    finally:
        await cleaner.aclose()
        for client in made:
            await client.aclose()


@pytest.fixture
def redis(make_redis: RedisFactory) -> aioredis.Redis:
    """An asyncio client of the test Redis."""
    return make_redis()


@pytest.fixture
def private_redis() -> Iterator[Callable[..., PrivateRedis]]:
    """Starts private redis-server processes (faults, restarts); all stopped at teardown."""
    servers: list[PrivateRedis] = []

    def start(*extra: str) -> PrivateRedis:
        server = PrivateRedis(*extra).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.cleanup()
