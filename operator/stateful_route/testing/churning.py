"""Pod trouble for consistency runs: flaps, outages, deletions, drains and Shutdown reports.

Shared by the churn test and the mixed-releases run; what the gateways answered meanwhile is
judged by ``stateful_route.testing.judge``.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from stateful_route.testing.sim import Cluster

__all__ = ["KINDS", "churn"]

KINDS = ("flap", "not-ready", "delete", "drain", "shutdown")


async def churn(cluster: Cluster, rng: random.Random, seconds: float, pods: int) -> Counter[str]:
    """Random pod trouble among ``pods`` pods for ``seconds``, at most two pods at a time, each
    episode undone after a while; returns how many episodes of each kind ran."""
    loop = asyncio.get_running_loop()
    done: Counter[str] = Counter()
    busy: set[int] = set()

    async def episode(pod: int, kind: str) -> None:
        try:
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
            done[kind] += 1
        finally:
            busy.discard(pod)

    episodes = []
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        free = [p for p in range(pods) if p not in busy]
        if len(busy) < 2 and free:
            pod = rng.choice(free)
            busy.add(pod)
            kind = rng.choice(KINDS)
            episodes.append(asyncio.create_task(episode(pod, kind)))
    await asyncio.gather(*episodes)
    return done
