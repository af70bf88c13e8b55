"""Figure 7: what a rolling update does to users. 6 pods behind the real operator on the emulated
cluster, users arriving, looking up their pod about once a second and leaving, Eager rebind, a
full rolling update; for every user, how many times its pod changed.

Variants, in one run against the same Redis: today's behaviour (``onTermination: Evict``, the
operator blind to StatefulSets), Handoff with rollout-aware placement, the same with each
pod calling ``ServerDriver.hand_off_all`` in its preStop hook, and that with
``rolloutWaitSeconds: 0`` (users of the first replaced pod placed at once on outdated pods instead
of waiting for the new revision).
``python -m bench.rollout [--quick] [--redis-url URL]`` measures this figure alone (``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from redis.asyncio import BlockingConnectionPool, Redis

from bench.figures import Row
from stateful_route import ClientDriver, NoAvailablePod, PodPending, RouteTable, ServerDriver
from stateful_route.testing.cleanup import delete_prefix
from stateful_route.testing.sim import NS, ROUTE, Cluster, emulated_cluster, operator_thread

__all__ = ["VARIANTS", "Moves", "Variant", "measure", "row"]

PODS = 6
GATEWAYS = 3


@dataclass(frozen=True)
class Variant:
    """How the route and the pods behave during the rollout."""

    name: str
    on_termination: str  # the route's spec.onTermination
    aware: bool  # the operator sees the StatefulSet (rollout-aware placement)
    hand_off: bool = False  # pods call ServerDriver.hand_off_all in their preStop hook
    wait: int = 10  # the route's spec.rolloutWaitSeconds


VARIANTS = [
    Variant("today: Evict, not rollout-aware", "Evict", aware=False),
    Variant("Handoff + rollout-aware", "Handoff", aware=True),
    Variant("Handoff + rollout-aware + hand_off_all", "Handoff", aware=True, hand_off=True),
    Variant("Handoff + rollout-aware + hand_off_all, rolloutWaitSeconds 0", "Handoff", True, True, wait=0),
]


@dataclass
class Moves:
    """What one variant's rollout did to users."""

    variant: str
    seconds: float = 0.0  # the rolling update, first deletion to last pod Ready
    users: int = 0  # users online at some point during the rollout
    on_replaced: int = 0  # users linked to a pod when the rollout began (every pod is replaced)
    moved: int = 0  # users whose pod changed at least once
    moved_twice: int = 0  # users whose pod changed more than once
    max_moves: int = 0
    arrived: int = 0  # users who arrived during the rollout
    arrived_moved: int = 0  # of them, users whose pod changed
    split: int = 0  # moves away from a pod still running and holding the user's state
    # Before the first updated pod is Ready, new users can only go to outdated pods: the users
    # that step moves twice or places on a pod replaced later, and everyone else.
    twice_others: int = 0  # users moved more than once who were not on the first replaced pod
    arrived_later_moved: int = 0  # users who arrived after the first updated pod was Ready, moved
    no_pod: int = 0  # lookups answered NoAvailablePod (PodPending not included)
    pending: int = 0  # lookups answered PodPending (the user waits for an updated pod)
    waited: int = 0  # users answered PodPending at least once
    longest_wait: float = 0.0  # seconds from a user's first PodPending to its next answer
    errors: list[str] = field(default_factory=list)


class Users:
    """Users arriving, looking up their pod about once a second, and leaving (a pod they leave
    drops their link); counts every change of pod seen by a lookup."""

    def __init__(self, gateways: list[ClientDriver], servers: dict[int, ServerDriver], online: int) -> None:
        self.gateways = gateways
        self.servers = servers
        self.online: set[str] = set()
        self.arrivals: dict[str, float] = {}  # uid -> when it arrived
        self.window = (0.0, 0.0)  # the rolling update, start and end
        self.first_ready = 0.0  # when the first updated pod was Ready
        self.first_users: set[str] = set()  # users on the first replaced pod when it began
        self.target = online
        self.created = 0
        self.where: dict[str, int] = {}
        self.moves: Counter[str] = Counter()
        self.split: set[str] = set()
        self.running_old: set[int] = set()  # pods terminating but still running (holding state)
        self.handed_off: set[str] = set()  # users a pod saved and handed off before the move
        self.no_pod = 0
        self.pending: Counter[str] = Counter()
        self.waiting_since: dict[str, float] = {}  # users answered PodPending, since when
        self.longest_wait = 0.0
        self.errors: list[str] = []
        self.stop = asyncio.Event()
        self.rng = random.Random(7)

    def arrive(self) -> str:
        uid = f"u{self.created}"
        self.created += 1
        self.online.add(uid)
        self.arrivals[uid] = time.monotonic()
        return uid

    async def look_up(self, client: ClientDriver, uid: str) -> None:
        try:
            pod = await client.compute_linked_pod(NS, uid, ROUTE)
        except PodPending:
            self.pending[uid] += 1
            self.waiting_since.setdefault(uid, time.monotonic())
            return
        except NoAvailablePod:
            self.no_pod += 1
            return
        since = self.waiting_since.pop(uid, None)
        if since is not None:
            self.longest_wait = max(self.longest_wait, time.monotonic() - since)
        before = self.where.get(uid)
        if before is not None and before != pod:
            self.moves[uid] += 1
            if before in self.running_old and uid not in self.handed_off:
                self.split.add(uid)
        self.where[uid] = pod

    async def leave(self, uid: str) -> None:
        self.online.discard(uid)
        pod = self.where.get(uid)
        if pod is not None:
            with contextlib.suppress(Exception):  # the pod may be gone; its link was evicted then
                await self.servers[pod].remove_linked_pod_with_id(uid, pod)

    async def run(self, index: int) -> None:
        """One gateway's share: every user looked up about once a second, the lookups spread over
        the second; a user stays about 30 s."""
        client = self.gateways[index]
        while not self.stop.is_set():
            started = time.monotonic()
            mine = [uid for uid in list(self.online) if hash(uid) % len(self.gateways) == index]
            for n, uid in enumerate(mine):
                if uid not in self.online:
                    continue
                if self.rng.random() < 1 / 30:
                    await self.leave(uid)
                    continue
                try:
                    await self.look_up(client, uid)
                except Exception as exc:  # counted, shown in the report
                    self.errors.append(repr(exc))
                if n % 50 == 0:  # spread over the second: a burst would miss gaps between bursts
                    await asyncio.sleep(max(0.0, started + 0.9 * n / len(mine) - time.monotonic()))
            while len(self.online) < self.target:
                uid = self.arrive()
                if hash(uid) % len(self.gateways) == index:
                    await self.look_up(client, uid)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


@contextlib.asynccontextmanager
async def _redis(url: str) -> AsyncIterator[tuple[Redis, str]]:
    redis = Redis.from_pool(BlockingConnectionPool.from_url(url, max_connections=40))
    prefix = f"br{secrets.token_hex(3)}"
    try:
        yield redis, prefix
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()


async def measure(url: str, variant: Variant, *, users: int, grace: float) -> Moves:
    """One rolling update of 6 pods under ``variant``, with ``users`` online."""
    result = Moves(variant.name)
    async with _redis(url) as (redis, prefix), emulated_cluster() as cluster:
        cluster.stateful_set_visible = variant.aware
        async with operator_thread(cluster, url, prefix, reconcile_interval=0.5):
            await cluster.start(
                PODS, rebind="Eager", onTermination=variant.on_termination, rolloutWaitSeconds=variant.wait
            )
            table = RouteTable(redis, prefix=prefix)
            await _until_available(table)
            async with contextlib.AsyncExitStack() as stack:
                gateways = [
                    await stack.enter_async_context(ClientDriver(redis, namespace=NS, prefix=prefix))
                    for _ in range(GATEWAYS)
                ]
                servers = {
                    i: ServerDriver(redis, namespace=NS, service=ROUTE, pod_index=i, prefix=prefix)
                    for i in range(PODS)
                }
                flow = Users(gateways, servers, users)
                workers = [asyncio.create_task(flow.run(i)) for i in range(GATEWAYS)]
                try:
                    await asyncio.sleep(4)  # steady state: users placed, arriving and leaving
                    await _roll(cluster, flow, variant, grace, result)
                    await asyncio.sleep(3)  # the last evictions and the stragglers' lookups
                finally:
                    flow.stop.set()
                    await asyncio.gather(*workers, return_exceptions=True)
    _count(flow, result)
    return result


async def _until_available(table: RouteTable) -> None:
    async with asyncio.timeout(10):
        while len((await table.snapshot(NS, ROUTE)).available) < PODS:  # noqa: ASYNC110 - polling Redis
            await asyncio.sleep(0.05)


async def _roll(cluster: Cluster, flow: Users, variant: Variant, grace: float, result: Moves) -> None:
    """The rolling update, with the pods' preStop behaviour of ``variant``."""
    began = time.monotonic()
    result.on_replaced = len(flow.online)
    flow.moves.clear()

    async def pre_stop(index: int) -> None:
        flow.running_old.add(index)
        try:
            if variant.hand_off:
                await _hand_off_all(flow, index, grace)
            else:
                await asyncio.sleep(grace)  # the pod serves its users until it is killed
        finally:
            flow.running_old.discard(index)

    def replacing(index: int) -> None:
        if index == PODS - 1:
            flow.first_users = {uid for uid, pod in flow.where.items() if pod == index}
        elif not flow.first_ready:
            flow.first_ready = time.monotonic()  # the previous step ended with its new pod Ready

    await cluster.roll("rev-2", grace, pre_stop=pre_stop, start_after=0.5, step=replacing)
    result.seconds = time.monotonic() - began
    flow.window = (began, time.monotonic())


async def _hand_off_all(flow: Users, index: int, grace: float) -> None:
    async def save(uid: str) -> None:
        flow.handed_off.add(uid)  # where a real pod would persist or push the user's state

    await flow.servers[index].hand_off_all(before=save, within=grace)


def _count(flow: Users, result: Moves) -> None:
    began, ended = flow.window
    moves = flow.moves
    result.users = sum(1 for uid, at in flow.arrivals.items() if at <= ended and uid in flow.where)
    result.moved = sum(1 for n in moves.values() if n)
    result.moved_twice = sum(1 for n in moves.values() if n > 1)
    result.max_moves = max(moves.values(), default=0)
    arrived = [uid for uid, at in flow.arrivals.items() if began <= at <= ended]
    result.arrived = len(arrived)
    result.arrived_moved = sum(1 for uid in arrived if moves[uid])
    result.split = len(flow.split)
    result.twice_others = sum(1 for uid, n in moves.items() if n > 1 and uid not in flow.first_users)
    result.arrived_later_moved = sum(
        1 for uid in arrived if moves[uid] and flow.arrivals[uid] > flow.first_ready
    )
    result.no_pod = flow.no_pod
    result.pending = sum(flow.pending.values())
    result.waited = len(flow.pending)
    result.longest_wait = flow.longest_wait
    result.errors = flow.errors[:5]


def row(moves: Moves, *, baseline: bool) -> Row:
    """The figure's line for one variant; today's behaviour is the baseline (no target)."""
    ours = (
        f"{moves.moved:,} of {moves.users:,} users moved, {moves.moved_twice:,} more than once "
        f"(max {moves.max_moves}); arrivals during it moved: {moves.arrived_moved:,} of "
        f"{moves.arrived:,} ({moves.arrived_later_moved:,} of those who came after the first "
        f"updated pod was Ready); moved off a pod still holding their state: {moves.split:,}; "
        f"moved twice though not on the first replaced pod: {moves.twice_others:,}; "
        f"NoAvailablePod: {moves.no_pod:,}; PodPending: {moves.pending:,} answers to {moves.waited:,} "
        f"users (longest wait {moves.longest_wait:.1f} s); {moves.seconds:.0f} s"
    )
    met = moves.max_moves <= 1 and moves.arrived_moved == 0 and moves.split == 0 and not moves.errors
    return Row(
        f"7. rolling update, 6 pods, Eager: {moves.variant}",
        ours,
        target="—" if baseline else "max 1 move; arrivals 0; split 0",
        met=None if baseline else met,
    )


def main(argv: list[str] | None = None) -> None:
    """Measure figure 7 alone and print it (``--help`` lists the options)."""
    from stateful_route.testing import local_redis

    parser = argparse.ArgumentParser(
        prog="python -m bench.rollout",
        description="Figure 7 of BENCHMARKS.md alone: a rolling update of 6 pods behind the real "
        "operator, each variant in turn, printing how often each user's pod changed.",
    )
    parser.add_argument("--quick", action="store_true", help="1,000 users instead of 3,000, shorter graces")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL"),
        help="the Redis to use (default: REDIS_URL, else 127.0.0.1:6379, else a private redis-server)",
    )
    args = parser.parse_args(argv)
    users, grace = (1000, 2) if args.quick else (3000, 4)
    with local_redis.redis_url(args.redis_url) as url:
        for variant in VARIANTS:
            print(asyncio.run(measure(url, variant, users=users, grace=grace)))


if __name__ == "__main__":
    main()
