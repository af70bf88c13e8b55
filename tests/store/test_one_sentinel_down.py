"""One of three Sentinels dead (SIGKILL) or hung (SIGSTOP) while the primary, the replica and
the other two Sentinels are healthy: clients keep working. It is the first Sentinel of the URL,
the one a client that asks them in order asks first."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from stateful_route import ClientDriver
from stateful_route.store.connection import connect
from stateful_route.testing.cleanup import delete_prefix
from tests.routes import NS, SVC, make_route

pytestmark = pytest.mark.sentinel

PODS = 3
TIMEOUT = 1.0  # ClientDriver's default call timeout
FAULT = 3.0  # seconds of calls while the Sentinel is down: several re-checks of the primary


async def place_new_users(driver: ClientDriver, name: str, seconds: float) -> dict[str, int]:
    """A new user every 20 ms for ``seconds`` (each one needs Redis, never the cache): the pod
    each got. Any error, StoreUnavailable included, fails the test."""
    loop = asyncio.get_running_loop()
    placed: dict[str, int] = {}
    end = loop.time() + seconds
    while loop.time() < end:
        uid = f"{name}-{len(placed)}"
        placed[uid] = await driver.compute_linked_pod(NS, uid, SVC)
        await asyncio.sleep(0.02)
    return placed


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["dead", "hung"])
async def test_clients_keep_answering_with_one_sentinel_down(sentinel_group, prefix, fault):
    url = sentinel_group.url
    redis = connect(url)  # the docs' way to build a gateway's client, default options
    await make_route(redis, prefix, pods=PODS)
    first = sentinel_group.sentinels[0].process
    assert first is not None
    try:
        async with ClientDriver(redis, namespace=NS, prefix=prefix, timeout=TIMEOUT) as driver:
            placed = await place_new_users(driver, "before", 0.5)
            os.kill(first.pid, fault)
            try:
                placed |= await place_new_users(driver, "during", FAULT)
            finally:
                if fault == signal.SIGSTOP:
                    os.kill(first.pid, signal.SIGCONT)
            placed |= await place_new_users(driver, "after", 0.5)
        assert set(placed.values()) <= set(range(PODS))
        # No wrong answer: a fresh client (an empty cache) finds each user where it was placed.
        other = connect(url)
        try:
            async with ClientDriver(other, namespace=NS, prefix=prefix, timeout=TIMEOUT) as fresh:
                stored = {uid: await fresh.compute_linked_pod(NS, uid, SVC) for uid in placed}
        finally:
            await other.aclose()
        assert stored == placed
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()
