"""Figures 13 and 14: Redis CPU per operation, and the capacity of one route on one Redis core.

One route lives in one hash slot, so one Redis core serves all of it: what one operation costs
Redis (INFO commandstats ``usec_per_call``, after ``CONFIG RESETSTAT``) is the route's capacity.
Our operations run through the real client (``LinkStore``), so what is measured is what runs; the
original's through ``bench/original.py``. The machine is shared: every cost is measured in several
short repetitions, and both the minimum (other jobs only ever add time on Redis's thread) and the
median are kept.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from bench.figures import NS, SVC, Bench, _uids
from bench.measure import concurrently
from bench.original import OriginalClient, report_loads
from stateful_route.store.keys import Keyring
from stateful_route.store.links import LinkStore

POD_COUNTS = (8, 512)
OPERATIONS = {"first": "first placement", "kept": "cache miss of a linked user (kept)", "read": "read"}
GOALS_US = {"first": 20.0, "kept": 5.0, "read": 3.0}
CAPACITY_GOAL = 150_000
KEPT_SHARE = 0.95  # figure 14's mix: 95 % cache misses of linked users, 5 % new users
CLIENTS = 4  # concurrent callers: enough to keep Redis busy without queueing much behind it

# INFO commandstats entries each side's operations cost Redis: our one script; the original's
# GET, SET and its once-a-second HGETALL of the pods' loads.
OURS = ("evalsha",)
ORIGINAL = ("get", "set", "hgetall")


@dataclass(frozen=True)
class Cost:
    """Redis µs per operation over the repetitions: the least disturbed and the typical one."""

    low: float
    median: float

    @staticmethod
    def of(samples: list[float]) -> Cost:
        return Cost(min(samples), statistics.median(samples))

    def describe(self) -> str:
        return f"{self.low:.1f} µs (median {self.median:.1f})"


@dataclass(frozen=True)
class OpCosts:
    """Figure 13 at one size: first placement, kept (a linked user's cache miss), read."""

    pods: int
    first: Cost
    kept: Cost
    read: Cost

    def capacity(self, *, median: bool = False) -> float:
        """Figure 14: operations per second of one Redis core for the 95/5 mix (from the least
        disturbed costs, or the medians)."""
        kept, first = (self.kept.median, self.first.median) if median else (self.kept.low, self.first.low)
        return 1e6 / (KEPT_SHARE * kept + (1 - KEPT_SHARE) * first)


async def usec_per_op(redis: Redis, commands: tuple[str, ...], run: Callable[[], Awaitable[int]]) -> float:
    """Redis µs per operation of ``run`` (which returns how many it did): the usec INFO
    commandstats counts for ``commands`` from a ``CONFIG RESETSTAT`` to the end of the run. Only
    meaningful on a Redis nobody else uses; commands a script runs are inside its own usec."""
    await redis.config_resetstat()
    done = await run()
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in commands) / float(done)


def _repetitions(bench: Bench) -> tuple[int, int]:
    """How many repetitions, of how many operations each: many short ones, so that some fall
    between other jobs' bursts on a shared machine."""
    return (12, 200) if bench.quick else (30, 200)


def _prefill(bench: Bench) -> int:
    """Links placed on the route before measuring (shards split, sets of a realistic size)."""
    return 10_000 if bench.quick else 50_000


async def ours(bench: Bench, pods: int) -> OpCosts:
    """Figure 13, ours, on a fresh route of ``pods`` pods holding ``_prefill`` links: each
    repetition places new users, then places linked users (kept: their gateways' cache missed),
    then reads them."""
    reps, n = _repetitions(bench)
    async with bench.route(pods) as (redis, prefix):
        store = LinkStore(redis, Keyring(prefix), timeout=60)
        route_keys = Keyring(prefix).route(NS, SVC)
        samples: dict[str, list[float]] = {"first": [], "kept": [], "read": []}
        linked = _uids(_prefill(bench), "prefill")
        await store.place_many(route_keys, linked, 300)

        def timed(call: Callable[[str], Awaitable[object]], uids: list[str]) -> Callable[[], Awaitable[int]]:
            async def run() -> int:
                await concurrently(lambda i: call(uids[i]), len(uids), CLIENTS)
                return len(uids)

            return run

        async def place(uid: str) -> object:
            return await store.place(route_keys, uid, 300)

        async def read(uid: str) -> object:
            return await store.read(route_keys, uid)

        for rep in range(reps):
            new = _uids(n, f"first{rep}")
            samples["first"].append(await usec_per_op(redis, OURS, timed(place, new)))
            linked.extend(new)
            # Linked users drawn from the whole route (seeded: runs compare).
            some = random.Random(rep).sample(linked, n)
            samples["kept"].append(await usec_per_op(redis, OURS, timed(place, some)))
            samples["read"].append(await usec_per_op(redis, OURS, timed(read, some)))
        return OpCosts(pods, *(Cost.of(samples[op]) for op in ("first", "kept", "read")))


async def original(bench: Bench, pods: int) -> OpCosts:
    """Figure 13, the original's layout, measured the same way: a first placement is its GET and
    SET (and its HGETALL of loads once a second); a linked user's cache miss and a read are a GET
    (a fresh client, so its own cache misses)."""
    reps, n = _repetitions(bench)
    async with bench.route(pods) as (redis, prefix), bench.redis(CLIENTS) as callers:
        await report_loads(redis, prefix, NS, SVC, dict.fromkeys(range(pods), 0))
        samples: dict[str, list[float]] = {"first": [], "kept": []}
        for rep in range(reps):
            uids = _uids(n, f"first{rep}")
            for op in ("first", "kept"):
                client = OriginalClient(callers, prefix=prefix, cache_size=n)

                async def run(client: OriginalClient = client, uids: list[str] = uids) -> int:
                    await concurrently(lambda i: client.compute_linked_pod(NS, uids[i], SVC), n, CLIENTS)
                    return n

                samples[op].append(await usec_per_op(redis, ORIGINAL, run))
        kept = Cost.of(samples["kept"])
        return OpCosts(pods, Cost.of(samples["first"]), kept, kept)


async def noop_us(bench: Bench) -> float:
    """A script that does nothing, measured the same way: the floor of any EVALSHA (and a gauge of
    how busy the machine was)."""
    reps, n = _repetitions(bench)
    async with bench.redis(CLIENTS) as redis:
        script = redis.register_script("return 1")

        async def run() -> int:
            await concurrently(lambda i: script(), n, CLIENTS)
            return n

        await script()
        return min([await usec_per_op(redis, OURS, run) for _ in range(reps)])
