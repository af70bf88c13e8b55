"""The demo's script of pod events (drain, delete, flap, scale up, rolling update), told as it
plays, and the state the live display shows."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from stateful_route.core.state import PodPhase, RouteSnapshot
from stateful_route.demo.summary import Summary
from stateful_route.testing.sim import STS, Cluster

__all__ = ["GRACE", "DisplayState", "Story"]

GRACE = 2  # seconds a NotReady pod keeps its users
ROLLOUT_GRACE = 1.5  # terminationGracePeriodSeconds of the pods in the rolling update


@dataclass
class DisplayState:
    """What the display shows while the demo runs (updated in place)."""

    snapshot: RouteSnapshot | None = None
    phases: dict[int, PodPhase] = field(default_factory=dict)  # terminating (Handoff) or outdated
    present: set[int] = field(default_factory=set)  # pods Kubernetes has
    lines: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0
    kubeconfig: str = ""  # the emulated cluster's, for watching and steering it with kubectl
    redis_url: str = ""  # the demo's Redis and key prefix, for inspecting it with the admin commands
    prefix: str = ""


class Story:
    """The script: each step at a fraction of the duration, told on the live display."""

    def __init__(
        self,
        cluster: Cluster,
        live: DisplayState,
        pods: int,
        rng: random.Random,
        rollout_begins: Callable[[], Awaitable[None]],
    ) -> None:
        self.cluster = cluster
        self.rollout_begins = rollout_begins  # awaited just before the rolling update begins
        self.live = live
        self.pods = pods
        self.held_at_deletion = 0
        drained, deleted, flapping = rng.sample(range(pods), 3)
        self.steps: list[tuple[float, str, Callable[[], Coroutine[Any, Any, None]]]] = [
            (0.08, f"drain {STS}-{drained}: keeps its users, takes no new ones",
             lambda: cluster.annotate(drained, "DenyNewCall")),
            (0.16, f"delete {STS}-{deleted}: its users are evicted and rebound",
             lambda: self._delete(deleted)),
            (0.24, f"{STS}-{deleted} is back (the StatefulSet recreated it)",
             lambda: self._create(deleted)),
            (0.30, f"{STS}-{flapping} flaps NotReady for {GRACE / 2:.0f}s (grace {GRACE}s): nobody moves",
             lambda: self._flap(flapping)),
            (0.36, f"scale up: {STS}-{pods} joins and takes new users",
             lambda: self._scale_up(pods + 1)),
            (0.42, f"undrain {STS}-{drained}", lambda: cluster.annotate(drained, None)),
            (0.46, "rolling update to rev-2, highest pod first: pods not yet updated keep their users "
                   "and take no new ones; a terminating pod keeps its users until its deadline",
             lambda: self._roll(pods + 1)),
        ]  # fmt: skip

    def say(self, line: str) -> None:
        elapsed = time.monotonic() - self.live.started
        self.live.lines.append(f"{elapsed:5.1f}s  {line}")

    async def _delete(self, index: int) -> None:
        # What it held is what the operator must evict (the check at the end holds it to that).
        snapshot = self.live.snapshot
        self.held_at_deletion += snapshot.links.get(index, 0) if snapshot is not None else 0
        await self.cluster.delete_pod(index)
        self.live.present.discard(index)

    async def _create(self, index: int) -> None:
        await self.cluster.create_pod(index)
        self.live.present.add(index)

    async def _scale_up(self, replicas: int) -> None:
        await self.cluster.scale(replicas)
        self.live.present.add(replicas - 1)

    async def _roll(self, replicas: int) -> None:
        await self.rollout_begins()

        def replacing(index: int) -> None:
            self.say(f"rolling update: {STS}-{index} terminates (grace {ROLLOUT_GRACE:g}s)")

        await self.cluster.roll("rev-2", ROLLOUT_GRACE, start_after=0.5, step=replacing)
        self.live.present = set(range(replicas))
        self.say("rolling update done: every pod runs rev-2")

    async def _flap(self, index: int) -> None:
        await self.cluster.set_ready(index, False)
        await asyncio.sleep(GRACE / 2)
        await self.cluster.set_ready(index, True)

    async def play(self, duration: float, summary: Summary) -> None:
        start = time.monotonic()
        pending: list[asyncio.Task[None]] = []
        try:
            for at, text, action in self.steps:
                await asyncio.sleep(max(0.0, start + at * duration - time.monotonic()))
                self.say(text)
                summary.story.append(text)
                pending.append(asyncio.create_task(action()))
            await asyncio.sleep(max(0.0, start + duration - time.monotonic()))
            await asyncio.gather(*pending)
        finally:  # interrupted: no step goes on behind the summary's back
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
