"""``python -m bench.chaos [--duration 300] [--seed N]``: every fault at once, every answer judged.

The real operator (two replicas with kopf peering) runs on the emulated cluster with 8 pods
while 4 gateways serve 20,000 users through ``redis+sentinel://`` (a private primary, replica
and three Sentinels: never the shared Redis). A seeded schedule mixes pod deletions (at once
and graceful) and recreations, NotReady flaps and longer outages, drains, Shutdown reports,
rolling updates, operator stops and restarts (the standby takes over), Redis restarts,
Sentinel failovers (the primary killed), pub/sub connection kills and paused writes. Every
answer is judged as the churn test judges it (``stateful_route.testing.judge``); then the
operator must converge within CONVERGE_BOUND of the last fault, the link counts must equal
the links, and deleting the route must leave no key behind. Prints a table and exits 1 on any
violation.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

import redis
import typer
from rich.console import Console
from rich.table import Table

from stateful_route import ClientDriver, RouteTable, StoreUnavailable
from stateful_route.core import logs
from stateful_route.store.connection import RECHECK_PRIMARY, AnyRedis, connect
from stateful_route.store.keys import changes_channel
from stateful_route.testing.cleanup import delete_prefix
from stateful_route.testing.judge import Findings, Timeline, ask, counts_agree, observe
from stateful_route.testing.sentinel import SentinelGroup
from stateful_route.testing.sim import NS, ROUTE, Cluster, emulated_cluster, operator_thread

PODS = 8
GATEWAYS = 4
USERS = 20_000
STALENESS_BOUND = 1.0  # the promise, as in the churn test
CONVERGE_BOUND = 20.0
# Longer than a restart of the primary takes on a busy machine (up to ~3 s seen here): with
# 1000 ms a slow restart becomes a failover while the old primary returns acting as a second
# primary, and links written meanwhile are lost (see RELIABILITY.md).
DOWN_AFTER_MS = 5000  # the table whole again and counts agreeing, after the last fault ends
# After a primary is lost, gateways find the new one within RECHECK_PRIMARY and answer only
# from views read since within max_age (1 s): users re-placed until then lost their link with it.
HEAL = RECHECK_PRIMARY + 1.0
TAKEOVER_WINDOW = 3.0
WATCH_EVERY = 0.05  # how often every data server is asked its role
SETTLE_AFTER = 20.0  # answers this old are judged: the observer has caught up (or re-read) by then
PEERING = "stateful-route"
PRIORITIES = (100, 10)  # distinct: kopf pauses every replica that shares the top priority
POD_FAULTS = ("delete", "graceful-delete", "flap", "not-ready", "drain", "shutdown")
REDIS_FAULTS = ("redis-restart", "sentinel-failover", "pubsub-kill", "redis-pause")
ROUTE_ID = (NS, ROUTE)

console = Console(stderr=True)


@dataclass
class Report:
    """What one chaos run saw; ``violations`` must be empty."""

    seed: int
    duration: float
    operator_stops: bool = True  # whether operator replicas are stopped and restarted
    faults: Counter[str] = field(default_factory=Counter)
    findings: Findings = field(default_factory=lambda: Findings(bound=STALENESS_BOUND))
    timeline: Timeline = field(default_factory=lambda: Timeline(PODS))
    # When writes may have been lost: a primary killed, or two servers acting as primary.
    data_loss: list[tuple[float, float]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    # Moves off a routable pod right after an operator replica started or stopped (a defect
    # this run found; counted among the violations, and apart).
    takeover_moves: int = 0
    operator_changes: list[float] = field(default_factory=list)  # when a replica started or stopped
    fault_errors: list[str] = field(default_factory=list)  # the injector's own trouble (not judged)
    events: list[tuple[float, str]] = field(default_factory=list)  # (wall clock, "kind start|end")
    worst: float = 0.0
    replaced: int = 0
    stale_across_loss: list[str] = field(default_factory=list)
    unjudged: int = 0
    orphans: int = 0
    converged: float | None = None
    count_checks: int = 0

    def table(self) -> Table:
        """The summary printed at the end (and kept in RELIABILITY.md)."""
        out = Table("measure", "value", title=f"chaos: {self.duration:.0f} s, seed {self.seed}")
        for kind, count in sorted(self.faults.items()):
            out.add_row(f"faults: {kind}", str(count))
        out.add_row("faults: total", str(sum(self.faults.values())))
        out.add_row("answers (every one judged)", f"{self.findings.count:,}")
        for kind, count in sorted(self.findings.errors.items()):
            out.add_row(f"errors: {kind}", f"{count:,}")
        out.add_row("errors: unexpected", str(len(self.findings.unexpected)))
        out.add_row("worst staleness", f"{self.worst * 1000:.0f} ms (bound {STALENESS_BOUND * 1000:.0f} ms)")
        out.add_row("longest unavailability (one gateway)", f"{self.findings.longest_gap:.2f} s")
        out.add_row("moves across a lost primary (data loss)", str(self.replaced))
        out.add_row("stale answers across a lost primary (data loss)", str(len(self.stale_across_loss)))
        out.add_row("data-loss windows", str(len(self.data_loss)))
        out.add_row("moves while the judge's observer was deaf (not judged)", str(self.unjudged))
        deaf = sum(b - a for a, b in self.timeline.blind)
        out.add_row("observer deaf (total)", f"{deaf:.1f} s")
        out.add_row("observer resubscriptions", str(self.timeline.gaps))
        out.add_row("link-count checks", str(self.count_checks))
        out.add_row("orphan keys after deleting the route", str(self.orphans))
        converged = "never" if self.converged is None else f"{self.converged:.1f} s"
        out.add_row("converged after the last fault", f"{converged} (bound {CONVERGE_BOUND:.0f} s)")
        out.add_row("invariant violations", str(len(self.violations)))
        out.add_row(
            f"  of which moves ≤ {TAKEOVER_WINDOW:.0f} s after an operator start/stop",
            str(self.takeover_moves),
        )
        return out


class Operators:
    """Two operator replicas in threads, each stopped and started on its own."""

    def __init__(self, cluster: Cluster, url: str, prefix: str, report: Report) -> None:
        self.cluster, self.url, self.prefix, self.report = cluster, url, prefix, report
        self.running: dict[int, contextlib.AsyncExitStack] = {}

    async def start(self, priority: int) -> None:
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(
            operator_thread(self.cluster, self.url, self.prefix, peering=PEERING, priority=priority,
                            reconcile_interval=0.5, redis_timeout=2.0)
        )  # fmt: skip
        self.running[priority] = stack
        self.report.operator_changes.append(time.time())

    async def stop(self, priority: int) -> None:
        self.report.operator_changes.append(time.time())
        await self.running.pop(priority).aclose()

    async def close(self) -> None:
        for priority in list(self.running):
            await self.stop(priority)


class Chaos:
    """The fault schedule: episodes that each undo themselves, drawn from a seeded generator."""

    def __init__(self, cluster: Cluster, group: SentinelGroup, operators: Operators, report: Report) -> None:
        self.cluster, self.group, self.operators, self.report = cluster, group, operators, report
        self.rng = random.Random(report.seed)
        self.busy_pods: set[int] = set()
        self.pod_episodes: set[asyncio.Task[None]] = set()
        self.rolling = False
        self.redis_busy = False
        self.operator_busy = False
        self.revision = 1
        self.last_fault_end = 0.0

    def least_done(self, kinds: tuple[str, ...]) -> str:
        """One of the kinds injected least so far: every kind early, then an even mix."""
        fewest = min(self.report.faults[kind] for kind in kinds)
        return self.rng.choice([kind for kind in kinds if self.report.faults[kind] == fewest])

    def choose(self) -> tuple[str, Callable[[], Awaitable[None]]] | None:
        """A fault whose subjects are free now, or None."""
        options: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        free = [p for p in range(PODS) if p not in self.busy_pods]
        if not self.rolling and len(self.busy_pods) < 3 and free:
            pod, pod_kind = self.rng.choice(free), self.least_done(POD_FAULTS)
            options += [(pod_kind, functools.partial(self.pod_fault, pod, pod_kind))] * 3
        if not self.rolling and self.rng.random() < 0.1:
            options.append(("rolling-update", self.rolling_update))
        if not self.redis_busy:
            redis_kind = self.least_done(REDIS_FAULTS)
            options.append((redis_kind, functools.partial(self.redis_fault, redis_kind)))
        if self.report.operator_stops and not self.operator_busy:
            options.append(("operator-stop", self.operator_fault))
        return self.rng.choice(options) if options else None

    async def run(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        episodes: set[asyncio.Task[None]] = set()
        while loop.time() < deadline:
            await asyncio.sleep(self.rng.uniform(0.3, 1.5))
            chosen = self.choose()
            if chosen is not None:
                kind, episode = chosen
                self.report.faults[kind] += 1
                task = asyncio.create_task(self.guard(kind, episode()))
                for running in (episodes, self.pod_episodes) if kind in POD_FAULTS else (episodes,):
                    running.add(task)
                    task.add_done_callback(running.discard)
        await asyncio.gather(*episodes)

    async def guard(self, kind: str, episode: Awaitable[None]) -> None:
        self.report.events.append((time.time(), f"{kind} start"))
        try:
            await episode
        except Exception as exc:  # the injector failing is reported, never judged as routing
            self.report.fault_errors.append(f"{kind}: {exc!r}")
        finally:
            self.last_fault_end = time.monotonic()
            self.report.events.append((time.time(), f"{kind} end"))

    async def pod_fault(self, pod: int, kind: str) -> None:
        self.busy_pods.add(pod)
        self.report.events.append((time.time(), f"  pod {pod}"))
        try:
            if kind == "flap":  # NotReady for less than the grace
                await self.cluster.set_ready(pod, False)
                await asyncio.sleep(self.rng.uniform(0.2, 0.6))
                await self.cluster.set_ready(pod, True)
            elif kind == "not-ready":  # longer than the grace: its users are evicted
                await self.cluster.set_ready(pod, False)
                await asyncio.sleep(self.rng.uniform(2.0, 3.5))
                await self.cluster.set_ready(pod, True)
            elif kind == "delete":  # at once; the StatefulSet controller brings it back
                await self.cluster.delete_pod(pod)
                await asyncio.sleep(self.rng.uniform(1.0, 2.5))
                await self.cluster.create_pod(pod)
            elif kind == "graceful-delete":  # terminating for its grace, then gone, then back
                await self.cluster.remove_gracefully(pod, self.rng.uniform(1.0, 2.0))
                await asyncio.sleep(self.rng.uniform(0.3, 1.0))
                await self.cluster.create_pod(pod)
            else:  # drain, or Shutdown reported, from kubectl
                await self.cluster.annotate(pod, "DenyNewCall" if kind == "drain" else "Shutdown")
                await asyncio.sleep(self.rng.uniform(1.0, 3.0))
                await self.cluster.annotate(pod, None)
        finally:
            self.busy_pods.discard(pod)

    async def rolling_update(self) -> None:
        """Every pod replaced in turn (graceful deletion, then Ready on the new revision), once the
        pod faults under way have ended (no new ones start meanwhile)."""
        self.rolling = True
        try:
            await asyncio.gather(*self.pod_episodes)
            self.revision += 1
            await self.cluster.roll(f"rev-{self.revision}", grace=1.0, start_after=0.3)
        finally:
            self.rolling = False

    async def operator_fault(self) -> None:
        """Stop one replica (the active one or the standby); start it again a few seconds later."""
        self.operator_busy = True
        try:
            priority = self.rng.choice(PRIORITIES)
            await self.operators.stop(priority)
            await asyncio.sleep(self.rng.uniform(2.0, 5.0))
            await self.operators.start(priority)
        finally:
            self.operator_busy = False

    async def redis_fault(self, kind: str) -> None:
        self.redis_busy = True
        try:
            if kind == "redis-restart":  # a clean restart: the append-only file brings the data back
                await asyncio.to_thread(lambda: self.group.restart(self.group.primary_port()))
            elif kind == "sentinel-failover":
                killed = time.time()
                try:
                    await asyncio.to_thread(self.group.fail_primary)
                finally:
                    self.report.data_loss.append((killed, time.time() + HEAL))
            else:
                command = ("CLIENT", "KILL", "TYPE", "pubsub")
                if kind == "redis-pause":
                    command = ("CLIENT", "PAUSE", str(self.rng.randint(1500, 2500)), "WRITE")
                await asyncio.to_thread(self.primary_command, *command)
            await asyncio.sleep(self.rng.uniform(1.0, 3.0))  # the next Redis fault waits a little
        finally:
            self.redis_busy = False

    def primary_command(self, *command: str) -> None:
        with redis.Redis(port=self.group.primary_port(), socket_timeout=2) as primary:
            primary.execute_command(*command)


async def converge(redis_client: AnyRedis, table: RouteTable, since: float) -> float | None:
    """Seconds from ``since`` until every pod is in the table, routable and available and the
    counts agree; None if that takes more than CONVERGE_BOUND."""
    everyone = frozenset(range(PODS))
    while time.monotonic() < since + CONVERGE_BOUND:
        with contextlib.suppress(StoreUnavailable):
            snapshot = await table.snapshot(*ROUTE_ID)
            if snapshot.routable == everyone and snapshot.available == everyone:
                agree, _ = await counts_agree(redis_client, table, ROUTE_ID, PODS)
                if agree:
                    return time.monotonic() - since
        await asyncio.sleep(0.1)
    return None


async def check_counts(
    redis_client: AnyRedis, table: RouteTable, report: Report, stop: asyncio.Event
) -> None:
    """Every 5 s while the faults go on: per-pod link counts equal the links."""
    while not stop.is_set():
        await asyncio.sleep(5)
        with contextlib.suppress(StoreUnavailable, redis.RedisError, OSError, TimeoutError):
            agree, _ = await asyncio.wait_for(counts_agree(redis_client, table, ROUTE_ID, PODS), 5)
            report.count_checks += 1
            if not agree:
                report.violations.append("per-pod link counts differ from the links")


async def watch_primaries(group: SentinelGroup, report: Report, stop: asyncio.Event) -> None:
    """Record every window in which more than one data server acts as primary (a primary back
    from a restart that outlasted the Sentinels' patience, until they demote it)."""
    clients = {
        server.port: connect(
            f"redis://127.0.0.1:{server.port}/0", socket_timeout=0.3, socket_connect_timeout=0.3
        )
        for server in group.data
    }
    began: float | None = None
    try:
        while not stop.is_set():
            seen = time.time()
            masters = 0
            for client in clients.values():
                with contextlib.suppress(redis.RedisError, OSError, TimeoutError):
                    info = await client.info("replication")  # socket timeouts bound it
                    masters += info.get("role") == "master"
            if masters > 1 and began is None:
                began = seen - WATCH_EVERY
            elif masters <= 1 and began is not None:
                report.data_loss.append((began, time.time() + HEAL))
                began = None
            await asyncio.sleep(WATCH_EVERY)
        if began is not None:
            report.data_loss.append((began, time.time() + HEAL))
    finally:
        for client in clients.values():
            await client.aclose()


async def settle(report: Report, stop: asyncio.Event) -> None:
    """Judge answers as the run goes (memory stays flat): those older than the observer could
    still be catching up on, SETTLE_AFTER seconds."""
    while not stop.is_set():
        await asyncio.sleep(5)
        report.findings.settle(report.timeline, time.time() - SETTLE_AFTER, report.data_loss)


async def orphans(redis_client: AnyRedis, cluster: Cluster, prefix: str) -> list[str]:
    """Delete the route; every key it had must go (a key of no route is an orphan)."""
    await cluster.delete_route()
    deadline = time.monotonic() + 10
    left: list[str] = []
    while time.monotonic() < deadline:
        # A Sentinel round may find no primary on a busy machine: asked again, as a gateway would.
        with contextlib.suppress(redis.RedisError, OSError):
            left = [key.decode() async for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000)]
            if not any("{" in key for key in left):  # every key of a route carries its hash tag
                return []
        await asyncio.sleep(0.2)
    return left


@contextlib.asynccontextmanager
async def gateways(url: str, prefix: str) -> AsyncIterator[list[ClientDriver]]:
    async with contextlib.AsyncExitStack() as stack:
        drivers = []
        for _ in range(GATEWAYS):
            client = connect(url)
            stack.push_async_callback(client.aclose)
            drivers.append(await stack.enter_async_context(ClientDriver(client, namespace=NS, prefix=prefix)))
        yield drivers


async def chaos(duration: float, seed: int, users: int = USERS, *, operator_stops: bool = True) -> Report:
    """One chaos run; the report says what happened and what broke."""
    report = Report(seed=seed, duration=duration, operator_stops=operator_stops)
    prefix = f"chaos-{seed}"
    group = await asyncio.to_thread(SentinelGroup(persistent=True, down_after_ms=DOWN_AFTER_MS).start)
    try:
        url = group.url
        redis_client = connect(url)
        try:
            async with emulated_cluster() as cluster:
                await run(cluster, group, redis_client, url, prefix, report, users)
        finally:
            await redis_client.aclose()
    finally:
        await asyncio.to_thread(group.cleanup)
    return report


async def run(
    cluster: Cluster,
    group: SentinelGroup,
    redis_client: AnyRedis,
    url: str,
    prefix: str,
    report: Report,
    users: int,
) -> None:
    table = RouteTable(redis_client, prefix=prefix)
    await cluster.create_peering(PEERING)
    await cluster.start(PODS, unroutableGraceSeconds=1, rebind="Eager")
    operators = Operators(cluster, url, prefix, report)
    try:
        for priority in PRIORITIES:
            await operators.start(priority)
        if not await converge(redis_client, table, time.monotonic()):
            raise RuntimeError("the operator did not build the route table before the faults")
        async with gateways(url, prefix) as drivers:
            started = time.monotonic()
            await asyncio.gather(*(place(d, users, i) for i, d in enumerate(drivers)))
            took = time.monotonic() - started
            console.log(f"placed {users:,} users in {took:.1f} s; chaos for {report.duration:.0f} s")
            stop = asyncio.Event()
            watcher = connect(url)
            channel = changes_channel(prefix, NS)
            workers = [
                asyncio.create_task(observe(watcher, report.timeline, channel, stop, table, ROUTE_ID)),
                asyncio.create_task(check_counts(redis_client, table, report, stop)),
                asyncio.create_task(settle(report, stop)),
                asyncio.create_task(watch_primaries(group, report, stop)),
            ]
            for i, driver in enumerate(drivers):
                rng = random.Random(report.seed + i)
                workers.append(
                    asyncio.create_task(
                        ask(
                            driver,
                            report.findings,
                            rng,
                            stop,
                            users=users,
                            route=ROUTE_ID,
                            allowed=(StoreUnavailable,),
                        )
                    )
                )
            try:
                schedule = Chaos(cluster, group, operators, report)
                await schedule.run(report.duration)
                report.converged = await converge(redis_client, table, schedule.last_fault_end)
                if report.converged is None:
                    report.violations.append(f"not converged {CONVERGE_BOUND:.0f} s after the last fault")
                await asyncio.sleep(1.5)  # answers after convergence are judged too
            finally:
                stop.set()
                await asyncio.gather(*workers)
                await watcher.aclose()
        judge(report)
        left = await orphans(redis_client, cluster, prefix)
        report.orphans = len(left)
        report.violations += [f"orphan key {key}" for key in left]
    finally:
        await operators.close()
        with contextlib.suppress(StoreUnavailable, redis.RedisError, OSError):
            await delete_prefix(redis_client, prefix)


async def place(driver: ClientDriver, users: int, offset: int) -> None:
    for uid in range(offset, users, GATEWAYS):
        await driver.compute_linked_pod(NS, f"user-{uid}", ROUTE)


def judge(report: Report) -> None:
    verdict = report.findings.judge(report.timeline, report.data_loss)
    report.worst, report.replaced, report.unjudged = (
        verdict.worst,
        len(verdict.replaced),
        len(verdict.unjudged),
    )
    report.stale_across_loss = verdict.stale_across_loss
    report.takeover_moves = sum(
        any(0 <= at - change <= TAKEOVER_WINDOW for change in report.operator_changes)
        for at in verdict.moved_at
    )
    report.violations += verdict.violations
    report.violations += [f"unexpected error {error}" for error in report.findings.unexpected[:20]]
    if verdict.worst > STALENESS_BOUND:
        report.violations.append(f"worst staleness {verdict.worst:.3f} s")


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    duration: Annotated[float, typer.Option(help="Seconds of faults.")] = 300,
    seed: Annotated[int, typer.Option(help="Seeds the fault schedule and the users asked.")] = 20261128,
    users: Annotated[int, typer.Option(help="Users placed before the faults start.")] = USERS,
    operator_stops: Annotated[bool, typer.Option(help="Stop and restart operator replicas too.")] = True,
    mixed: Annotated[
        bool, typer.Option(help="Instead: release 0.1.0 beside this one under churn (bench.mixed).")
    ] = False,
) -> None:
    """Run the chaos schedule and print its table; exit 1 on any violation."""
    if mixed:
        from bench import mixed as mixed_releases  # only this mode needs the 0.1.0 archive

        raise typer.Exit(mixed_releases.run(duration, seed, users))
    logs.configure("kv", level=logging.ERROR)  # faults make the operator and gateways warn a lot
    report = asyncio.run(chaos(duration, seed, users, operator_stops=operator_stops))
    Console().print(report.table())
    for line in report.violations[:20]:
        console.print(f"[red]violation:[/] {line}", highlight=False)
    if report.violations:  # the faults around the first one, to see what caused it
        for at, event in report.events:
            console.print(f"{at:.3f} {event}", highlight=False)
    for line in report.stale_across_loss[:10]:
        console.print(f"[yellow]across a lost primary:[/] {line}", highlight=False)
    for line in report.fault_errors[:10]:
        console.print(f"[yellow]injector:[/] {line}", highlight=False)
    raise typer.Exit(1 if report.violations else 0)


if __name__ == "__main__":
    app()
