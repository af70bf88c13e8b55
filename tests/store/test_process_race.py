"""Eight processes compute links for the same users at once: one pod per user, all agree."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from stateful_route import ClientDriver, RouteTable
from tests.routes import NS, SVC, make_route

PROCESSES = 8
USERS = 10_000


def compute_all(url: str, prefix: str, seed: int) -> list[int]:
    """In a child process: every user's pod, asked in a random order by 16 concurrent tasks."""

    async def run() -> list[int]:
        redis = Redis.from_pool(BlockingConnectionPool.from_url(url, max_connections=20))
        order = list(range(USERS))
        random.Random(seed).shuffle(order)
        found = [-1] * USERS
        async with ClientDriver(redis, namespace=NS, prefix=prefix, timeout=10) as client:

            async def share(part: list[int]) -> None:
                for i in part:
                    found[i] = await client.compute_linked_pod(NS, f"user-{i}", SVC)

            await asyncio.gather(*(share(order[w::16]) for w in range(16)))
        await redis.aclose()
        return found

    return asyncio.run(run())


@pytest.mark.slow
async def test_eight_processes_agree_on_one_pod_per_user_and_counts_match(redis, redis_url, prefix):
    await make_route(redis, prefix, pods=8)
    with ProcessPoolExecutor(PROCESSES, mp_context=get_context("spawn")) as pool:
        loop = asyncio.get_running_loop()
        answers = await asyncio.gather(
            *(loop.run_in_executor(pool, compute_all, redis_url, prefix, seed) for seed in range(PROCESSES))
        )
    assert all(a == answers[0] for a in answers)
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        stored = await client.batch_get_linked_pod(NS, [f"user-{i}" for i in range(USERS)], SVC)
    assert {uid: pod for pod, uids in stored.items() for uid in uids} == {
        f"user-{i}": pod for i, pod in enumerate(answers[0])
    }
    links = (await RouteTable(redis, prefix=prefix).snapshot(NS, SVC)).links
    assert links == {pod: len(uids) for pod, uids in stored.items()}
    assert max(links.values()) - min(links.values()) <= 1
