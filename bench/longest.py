"""Figure 9: the longest single Redis command after a mass expiry (SLOWLOG, threshold 0).

One pod holds ``links`` temporary links, every one expired and none pruned yet (written straight
into its shards, as time leaves them). Then, each phase on a fresh copy of that state: gateways'
snapshots, the operator's table write and its pruning pass, new users' placements, and the
pod's eviction. Redis runs one command at a time, so the longest one is how long every other
client of that Redis may wait. Run it against a Redis nobody else uses: it sets SLOWLOG's
threshold to 0 (restored after).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from bench.figures import NS, PODS, SVC, Bench
from stateful_route import PodState, RouteTable
from stateful_route.store.eviction import evict
from stateful_route.store.keys import Keyring, RouteKeys
from stateful_route.store.links import LinkStore
from stateful_route.testing.shards import write_links

# The goal: no script runs longer than this at any size.
GOAL_MS = 5.0
# Commands a phase may send: SLOWLOG keeps this many, so none is missed.
_KEPT = 200_000


@dataclass(frozen=True)
class Phase:
    """One phase: its name, its longest command (which, how long in ms), how long it took (s)."""

    name: str
    command: str
    longest_ms: float
    p99_ms: float  # of the phase's script calls
    calls: int  # script calls the phase made
    seconds: float


async def expired_links(redis: Redis, route_keys: RouteKeys, pod: int, links: int) -> None:
    """Index ``links`` temporary links under ``pod``, all expired (scored 1 ms), without their link
    keys (expired keys are gone): what a mass expiry leaves before anything prunes."""
    entries = {f"x{pod}-{i}": 1.0 for i in range(links)}
    await write_links(redis, route_keys, pod, entries)
    await redis.zadd(route_keys.expiries, {str(pod): 1})


async def _slowlog(redis: Redis) -> list[tuple[str, float]]:
    """Every command since the last reset: (command, µs), our SLOWLOG reads left out. Commands a
    script runs are logged too; the script's own entry holds them, so the longest is a script's."""
    entries = await redis.slowlog_get(_KEPT)
    found = []
    for entry in entries:
        command = entry["command"]
        name = (command.decode() if isinstance(command, bytes) else str(command)).split(" ")[0].lower()
        if name in ("slowlog", "config"):
            continue
        found.append((name, float(entry["duration"])))
    return found


Step = Callable[[Redis, str, RouteKeys], Awaitable[object]]


async def _phase(bench: Bench, name: str, links: int, run: Step) -> Phase:
    async with bench.route(PODS) as (redis, prefix):
        route_keys = Keyring(prefix).route(NS, SVC)
        if run is _eviction:  # the pod is gone before its links expire: the eviction finds them
            await _terminating(redis, prefix)
        await expired_links(redis, route_keys, 0, links)
        await redis.slowlog_reset()
        started = time.perf_counter()
        await run(redis, prefix, route_keys)
        took = time.perf_counter() - started
        logged = await _slowlog(redis)
    command, us = max(logged, key=lambda entry: entry[1], default=("-", 0.0))
    scripts = sorted(us for name, us in logged if name == "evalsha") or [0.0]
    p99 = scripts[min(len(scripts) - 1, int(0.99 * len(scripts)))]
    return Phase(name, command, us / 1000, p99 / 1000, len(scripts), took)


async def _snapshots(redis: Redis, prefix: str, _: RouteKeys) -> None:
    table = RouteTable(redis, prefix=prefix, timeout=60)
    for _gateway in range(5):  # what each gateway does every 0.5 s
        await table.snapshot(NS, SVC)


async def _table_write(redis: Redis, prefix: str, _: RouteKeys) -> None:
    table = RouteTable(redis, prefix=prefix, timeout=60)
    await table.put_pods(NS, SVC, [PodState(i, load=1) for i in range(PODS)])  # the operator's tick


async def _pruning(redis: Redis, prefix: str, _: RouteKeys) -> None:
    table = RouteTable(redis, prefix=prefix, timeout=60)
    prune = getattr(table, "prune", None)  # absent before bounded pruning existed
    if prune is not None:
        await prune(NS, SVC)
    snapshot = await table.snapshot(NS, SVC)
    assert snapshot.links[0] == 0, snapshot.links


async def _placements(redis: Redis, prefix: str, route_keys: RouteKeys) -> None:
    store = LinkStore(redis, Keyring(prefix), timeout=60)
    for i in range(200):
        await store.place(route_keys, f"new-{i}", 300)


async def _terminating(redis: Redis, prefix: str) -> None:
    table = RouteTable(redis, prefix=prefix, timeout=60)
    await table.put_pods(NS, SVC, [PodState(0, terminating=True), *map(PodState, range(1, PODS))])


async def _eviction(redis: Redis, prefix: str, route_keys: RouteKeys) -> None:
    await evict(LinkStore(redis, Keyring(prefix), timeout=60), route_keys, 0, reason="bench", rebind_ttl=None)


PHASES = (
    ("snapshots (5, read-only)", _snapshots),
    ("table write (the operator's tick)", _table_write),
    ("pruning pass (until nothing is due)", _pruning),
    ("placements (200 new users)", _placements),
    ("eviction of the pod", _eviction),
)


async def measure(bench: Bench, links: int) -> list[Phase]:
    """Every phase, each after a fresh mass expiry of ``links`` links on pod 0."""
    redis = bench.redis(1)
    saved = await redis.config_get("slowlog-*")
    try:
        await redis.config_set("slowlog-log-slower-than", 0)
        await redis.config_set("slowlog-max-len", _KEPT)
        return [await _phase(bench, name, links, run) for name, run in PHASES]
    finally:
        for key, value in saved.items():
            await redis.config_set(str(key), str(value))
        await redis.slowlog_reset()
        await redis.aclose()
