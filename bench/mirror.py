"""Figures 10, 11 and 15: what a gateway's route mirror costs Redis, and how far behind it runs.

10. An idle gateway after lookups of many names that have no route (and one that has): the
    views it keeps and the commands per second it sends while idle (INFO commandstats).
11. The change channel under a flood of table writes (two writer processes, ``rate`` writes a
    second in all, over ``routes`` routes): how long after its publication a gateway applied
    each change's routability, and re-read the whole view covering it (the client metrics'
    ``change_lag`` / ``view_lag`` hooks), and how many snapshots it read per message.
15. An idle gateway following 10,000 routes: how long each full pass of its mirror takes (the
    client metrics' ``mirror_pass`` hook), the oldest view it holds meanwhile (the staleness
    promise: none older than ``max_age``), and the CPU a pass costs the gateway and Redis.
Run against a Redis nobody else uses: figures 10 and 15 read its command counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import statistics
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis

from bench.figures import NS, SVC, Bench
from stateful_route import ClientDriver, NoAvailablePod, PodState, RouteTable

# The goal of figure 11: the latest state of each route applied within this of its publication.
GOAL_LAG = 0.1
# The goal of figure 15: a full pass over every followed route within max_age - refresh_interval.
GOAL_PASS = 0.5


@dataclass(frozen=True)
class Idle:
    """Figure 10: names asked about, views kept, commands a second while idle."""

    unknown: int
    views: int
    per_second: float


async def _evalsha_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def idle_gateway(bench: Bench, unknown: int, seconds: float = 5.0) -> Idle:
    """Figure 10: ``unknown`` names without a route and one route looked up, then idle."""
    async with (
        bench.route() as (redis, prefix),
        ClientDriver(bench.redis(4), namespace=NS, prefix=prefix) as client,
    ):
        for i in range(unknown):
            with contextlib.suppress(NoAvailablePod):
                await client.compute_linked_pod(NS, "u", f"none-{i}")
        await client.compute_linked_pod(NS, "u", SVC)
        views = len(client._views[NS])
        await asyncio.sleep(1.0)  # a refresh pass under way ends
        before, started = await _evalsha_calls(redis), time.perf_counter()
        await asyncio.sleep(seconds)
        sent = await _evalsha_calls(redis) - before
        return Idle(unknown, views, sent / (time.perf_counter() - started))


@dataclass
class _Lags:
    """The client metrics hooks, kept as lists."""

    change: list[float] = field(default_factory=list)
    view: list[float] = field(default_factory=list)

    def cache_hit(self) -> None: ...

    def cache_miss(self) -> None: ...

    def redis_call(self, seconds: float) -> None: ...

    def change_lag(self, seconds: float) -> None:
        self.change.append(seconds)

    def view_lag(self, seconds: float) -> None:
        self.view.append(seconds)


@dataclass(frozen=True)
class Flood:
    """Figure 11: writes made and their rate; lags in seconds (p50, p99, max); reads per message."""

    writes: int
    rate: float
    change: tuple[float, float, float]
    view: tuple[float, float, float]
    reads_per_message: float
    caught_up: float  # seconds after the last write until every view showed the last version
    cpu_us: float  # the gateway process's CPU per message (µs), whatever the machine's load


async def _caught_up(client: ClientDriver, latest: dict[str, int]) -> None:
    """Until every view shows its route's latest version, whole (polled: the bench observes)."""
    behind = dict(latest)
    while behind:
        for service, version in list(behind.items()):
            view = client._views[NS].get(service)
            if view is not None and view.version >= version and not view.partial:
                del behind[service]
        await asyncio.sleep(0.005)


def _spread(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values) or [0.0]
    return (
        statistics.median(ordered),
        ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        ordered[-1],
    )


def _writer(url: str, prefix: str, services: list[str], rate: float, seconds: float, out: object) -> None:
    """One writer process: ``rate`` table writes a second, round robin over ``services``."""

    async def run() -> int:
        redis = Redis.from_url(url)
        table = RouteTable(redis, prefix=prefix, timeout=10)
        done = 0
        start = time.perf_counter()
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                await table.update_pod(NS, services[i % len(services)], PodState(0, load=i % 1000 + 1))

        tasks = []
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * rate)
            while done < due:
                tasks.append(asyncio.create_task(one(done)))
                done += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
        await redis.aclose()
        return done

    out.put(asyncio.run(run()))  # type: ignore[attr-defined]


async def flood(bench: Bench, rate: float, routes: int, seconds: float) -> Flood:
    """Figure 11: a gateway following ``routes`` routes while two processes write their tables
    ``rate`` times a second in all, for ``seconds``."""
    services = [f"{SVC}-{i}" for i in range(routes)]
    async with bench.route() as (redis, prefix):
        table = RouteTable(redis, prefix=prefix)
        for service in services:
            await table.put_pods(NS, service, [PodState(i) for i in range(4)])
        lags = _Lags()
        async with ClientDriver(bench.redis(8), namespace=NS, prefix=prefix, metrics=lags) as client:
            for service in services:
                await client.route_view(NS, service)
            reads = client._mirror.reads
            context = multiprocessing.get_context("spawn")
            queue = context.Queue()
            halves = [services[: routes // 2] or services, services[routes // 2 :] or services]
            writers = [
                context.Process(target=_writer, args=(bench.url, prefix, half, rate / 2, seconds, queue))
                for half in halves
            ]
            for process in writers:
                process.start()
            started, cpu = time.perf_counter(), time.process_time()
            counts = [await asyncio.to_thread(queue.get) for _ in writers]
            for process in writers:
                await asyncio.to_thread(process.join)
            elapsed = time.perf_counter() - started
            ended = time.perf_counter()
            snapshots = await table.snapshots([(NS, s) for s in services])
            latest = {s: snapshot.version for s, snapshot in zip(services, snapshots, strict=True)}
            await _caught_up(client, latest)
            caught_up = time.perf_counter() - ended
            writes = sum(counts)
            read = client._mirror.reads - reads
            cpu = time.process_time() - cpu
    return Flood(
        writes,
        writes / elapsed,
        _spread(lags.change),
        _spread(lags.view),
        read / max(1, writes),
        caught_up,
        cpu / max(1, writes) * 1e6,
    )


@dataclass(frozen=True)
class Pass:
    """Figure 15: a gateway following ``routes`` routes, idle: its full passes over them (seconds,
    p50 and max) and the oldest view seen while they ran (its age against ``max_age``)."""

    routes: int
    passes: tuple[float, ...]
    oldest: float
    max_age: float
    cpu: float  # this process's CPU seconds per pass (what a pass costs, whatever the machine's load)
    redis_us: float  # Redis time per route read (INFO commandstats: EVALSHA)
    redis_cpu: float  # Redis's CPU seconds per pass (INFO cpu)
    per_second: float  # commands a second the idle gateway sent (INFO commandstats, every command)
    oldest_whole: float  # the oldest snapshot (counts, best pod) seen, whatever its routability's age


async def full_pass(bench: Bench, routes: int, pods: int = 4, seconds: float = 10.0) -> Pass:
    """Figure 15: ``routes`` routes of ``pods`` pods followed by one idle gateway for ``seconds``:
    how long each full pass of its mirror takes, and the oldest view it holds at any moment
    (sampled every 100 ms; the staleness promise is that none is older than ``max_age``)."""
    services = [f"{SVC}-{i}" for i in range(routes)]
    async with bench.route() as (redis, prefix):
        table = RouteTable(redis, prefix=prefix, timeout=30)
        for start in range(0, routes, 500):
            await asyncio.gather(
                *(
                    table.put_pods(NS, s, [PodState(i) for i in range(pods)])
                    for s in services[start : start + 500]
                )
            )
        passes = _Passes()
        async with ClientDriver(
            bench.redis(8), namespace=NS, prefix=prefix, metrics=passes, max_routes=routes, timeout=10
        ) as client:
            for start in range(0, routes, 50):
                await asyncio.gather(*(client.route_view(NS, s) for s in services[start : start + 50]))
            max_age = client._mirror._max_age
            passes.seconds.clear()
            await redis.config_resetstat()
            cpu, redis_cpu = time.process_time(), await _redis_cpu(redis)
            oldest = oldest_whole = 0.0
            started = time.monotonic()
            ends = started + seconds
            while time.monotonic() < ends:
                await asyncio.sleep(0.1)
                now = time.monotonic()
                views = client._views[NS].values()
                oldest = max(oldest, max(now - (view.valid_until - max_age) for view in views))
                whole = (getattr(view, "whole_until", view.valid_until) for view in views)
                oldest_whole = max(oldest_whole, max(now - (until - max_age) for until in whole))
            elapsed = time.monotonic() - started
            cpu, redis_cpu = time.process_time() - cpu, await _redis_cpu(redis) - redis_cpu
            stats = await redis.info("commandstats")
            redis_us = float(stats.get("cmdstat_evalsha", {}).get("usec_per_call", 0.0))
            # The mirror's commands: snapshot scripts and version reads (commandstats also counts
            # the commands scripts run inside, so every command summed would count those too).
            sent = sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "mget"))
    done = max(1, len(passes.seconds))
    return Pass(
        routes,
        tuple(passes.seconds),
        oldest,
        max_age,
        cpu / done,
        redis_us,
        redis_cpu / done,
        sent / elapsed,
        oldest_whole,
    )


async def _redis_cpu(redis: Redis) -> float:
    cpu = await redis.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


@dataclass
class _Passes(_Lags):
    """The client metrics hooks, keeping the mirror's full passes."""

    seconds: list[float] = field(default_factory=list)

    def mirror_pass(self, seconds: float) -> None:
        self.seconds.append(seconds)
