"""Pod trouble for consistency runs: flaps, outages, deletions, drains and Shutdown reports.

Shared by the churn test and the mixed-releases run; what the gateways answered meanwhile is
judged by ``stateful_route.testing.judge``.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from stateful_route.testing.sim import Cluster

__all__ = ["KINDS", "churn", "episodes"]

KINDS = ("flap", "not-ready", "delete", "drain", "shutdown")


async def churn(cluster: Cluster, rng: random.Random, seconds: float, pods: int) -> Counter[str]:
    """Random pod trouble among ``pods`` pods for ``seconds``, at most two pods at a time, each
    episode undone after a while; returns how many episodes of each kind ran."""

    async def episode(pod: int, kind: str) -> None:
        if kind == "flap":  # NotReady for less than the grace
            await cluster.set_ready(pod, False)
            await asyncio.sleep(rng.uniform(0.2, 0.6))
            await cluster.set_ready(pod, True)
        elif kind == "not-ready":  # longer than the grace: evicted
            await cluster.set_ready(pod, False)
            await asyncio.sleep(rng.uniform(2.0, 3.5))
            await cluster.set_ready(pod, True)
        elif kind == "delete":  # the StatefulSet controller brings it back
            await cluster.delete_pod(pod)
            await asyncio.sleep(rng.uniform(1.0, 2.5))
            await cluster.create_pod(pod)
        else:  # drain, or shut down, from kubectl
            await cluster.annotate(pod, "DenyNewCall" if kind == "drain" else "Shutdown")
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            await cluster.annotate(pod, None)

    return await episodes(episode, rng, seconds, pods, KINDS, gap=(0.3, 1.2))


async def episodes(
    episode: Callable[[int, str], Awaitable[None]],
    rng: random.Random,
    seconds: float,
    pods: int,
    kinds: Sequence[str],
    *,
    gap: tuple[float, float],
    at_once: int = 2,
) -> Counter[str]:
    """For ``seconds``, every ``gap`` (a random wait in that range) start ``episode(pod, kind)`` on
    a random pod not in one already, at most ``at_once`` at a time, then wait for the last to end.
    Returns how many episodes of each kind ended."""
    loop = asyncio.get_running_loop()
    done: Counter[str] = Counter()
    busy: set[int] = set()

    async def run(pod: int, kind: str) -> None:
        try:
            await episode(pod, kind)
            done[kind] += 1
        finally:
            busy.discard(pod)

    started = []
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        await asyncio.sleep(rng.uniform(*gap))
        free = [p for p in range(pods) if p not in busy]
        if len(busy) < at_once and free:
            pod = rng.choice(free)
            busy.add(pod)
            started.append(asyncio.create_task(run(pod, rng.choice(kinds))))
    await asyncio.gather(*started)
    return done
