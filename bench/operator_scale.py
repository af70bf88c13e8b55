"""Figure 12: the operator at scale against the real control plane. StatefulSets of 50 pods
(Parallel) with a route each, 5, then 10, then 20 of them (250, 500, 1,000 pods) in one namespace,
the real operator as a subprocess, the kubelet stand-in running the pods. At each size: the
operator's CPU time per pod event (process CPU from /proc over a window, less its idle rate, ÷ the
pod events it received, by its own metrics), its API requests per second (the API server's audit
log of its identity) and its memory. Then two storms at 1,000 pods, each timed from its last pod
event to the route tables in Redis matching the pods (every Ready, not terminating pod routable
under its own uid, no other): 200 pods deleted at once, and a rolling update of a 100-pod
StatefulSet with maxUnavailable 10.

``python -m bench.operator_scale --help``; ``python -m bench --only 12`` runs it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.console import Console

from bench.figures import Row
from bench.scale_cluster import Audit, Operator, PodWatch, Workload, audited_control_plane
from stateful_route import RouteTable
from stateful_route.testing import local_redis
from stateful_route.testing.kubelet import Kubelet

__all__ = ["Cost", "Scale", "Storm", "measure", "rows"]

NS = "scale"
PODS = 50  # per StatefulSet
SIZES = (5, 10, 20)  # StatefulSets (one route each)
GOAL_MS = 2.0  # CPU per pod event at 1,000 pods
GOAL_CONVERGED = 2.0  # seconds from a storm's last pod event to the tables matching the pods
GOAL_RSS_MIB = 200.0
console = Console(stderr=True)


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


@dataclass
class Cost:
    """What pod events cost the operator at one size."""

    pods: int
    kind: str  # "touch" (the operator's record unchanged) or "readiness" (the table changes)
    events: int  # pod events the operator received
    reconciled: int  # of them, those that reconciled (the others: unchanged or coalesced)
    seconds: float
    cpu_ms: float  # process CPU per event over the window
    net_ms: float  # the same less the idle rate (route ticks) over the window
    handler_ms: float  # wall time reconciling per event (Redis and the API included)
    requests_per_s: float  # API requests completed per second over the window (watches excluded)
    idle_cpu: float  # CPU seconds per second with no pod event (ticks)
    idle_requests_per_s: float
    requests: Counter[str] = field(default_factory=Counter)
    load: str = ""


@dataclass
class Storm:
    """One storm: from its start to its last pod event, then to the tables matching the pods."""

    name: str
    events: int  # pod events the bench saw
    seconds: float  # start to last pod event
    converged: float  # last pod event to the tables matching (negative: already matching)
    cpu: float  # operator CPU seconds from the start until converged
    requests: Counter[str] = field(default_factory=Counter)
    requests_per_s: float = 0.0
    load: str = ""


@dataclass
class Scale:
    """Everything figure 12 measured."""

    costs: list[Cost] = field(default_factory=list)
    storms: list[Storm] = field(default_factory=list)
    rss_mib: float = 0.0
    hwm_mib: float = 0.0
    kubelet_errors: list[str] = field(default_factory=list)
    operator_errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Run:
    """The cluster, the operator and the watch, with the measurements over them."""

    def __init__(
        self, workload: Workload, watch: PodWatch, operator: Operator, table: RouteTable, audit: Audit
    ) -> None:
        self.workload = workload
        self.watch = watch
        self.operator = operator
        self.table = table
        self.audit = audit
        self.names: list[str] = []  # the StatefulSets (and routes) made so far

    async def matched(self, names: list[str]) -> bool:
        """Whether each route's table shows its pods: every Ready pod that is not terminating
        routable, under its own uid, and no other pod routable."""
        snapshots = await self.table.snapshots([(NS, name) for name in names])
        for name, snapshot in zip(names, snapshots, strict=True):
            want = {
                i: p.uid for i, p in self.watch.by_stateful_set(name).items() if p.ready and not p.terminating
            }
            if snapshot.routable != set(want):
                return False
            instances = await self.table.instances(NS, name)
            if any(instances.get(i, "").rpartition(",")[0] != uid for i, uid in want.items()):
                return False
        return True

    async def converge(
        self,
        names: list[str],
        *,
        done: Callable[[], bool] = lambda: True,
        quiet: float = 3.0,
        within: float = 300,
    ) -> float:
        """Seconds from the last pod event to the tables matching; waits for ``quiet`` seconds
        without events (and ``done()``) to know the last one was the last."""
        deadline = time.monotonic() + within
        first: float | None = None  # when the tables began matching, with no event since
        seen = -1
        finished = False
        checked = 0.0
        while time.monotonic() < deadline:
            events = self.watch.events
            ok = await self.matched(names)
            now = time.monotonic()
            if not ok:
                first = None
            elif first is None or events != seen:
                first = now
            seen = events
            if now - checked > 0.5 and not finished:
                finished = await asyncio.to_thread(done)
                checked = now
            if first is not None and finished and now - max(first, self.watch.last_event) >= quiet:
                return first - self.watch.last_event
            await asyncio.sleep(0.02)
        raise TimeoutError(f"the route tables did not match the pods within {within} s")

    async def ready(self, size: int = PODS, names: list[str] | None = None) -> None:
        """Until every StatefulSet has ``size`` Ready pods and the tables show them."""
        names = names or self.names
        async with asyncio.timeout(600):
            while any(  # noqa: ASYNC110 - polling the watch's view
                sum(p.ready and not p.terminating for p in self.watch.by_stateful_set(n).values()) != size
                for n in names
            ):
                await asyncio.sleep(0.2)
        await self.converge(names, quiet=1.0)

    async def cost(self, pods: int, kind: str, act: Callable[[], None], idle: float) -> Cost:
        """The operator's cost per pod event while ``act`` makes events (in a thread)."""
        op = self.operator
        start, offset = op.usage(), self.audit.end()
        await asyncio.sleep(idle)
        idled, idle_offset = op.usage(), self.audit.end()
        idle_rate = (idled.cpu - start.cpu) / idle
        idle_requests, _ = self.audit.since(offset)
        before = op.events()
        began = time.monotonic()
        await asyncio.to_thread(act)
        # Until the operator has handled what it was sent: its count still for a second.
        last: Counter[str] = Counter()
        while (now := op.events()) != last:
            last = now
            await asyncio.sleep(1.0)
        seconds = time.monotonic() - began - 1.0
        after = op.usage()
        requests, _ = self.audit.since(idle_offset)
        received = {k: now[k] - before[k] for k in ("reconciled", "coalesced", "unchanged")}
        events = max(1, sum(received.values()))
        cpu = after.cpu - idled.cpu
        return Cost(
            pods=pods,
            kind=kind,
            events=sum(received.values()),
            reconciled=received["reconciled"],
            seconds=seconds,
            cpu_ms=cpu / events * 1000,
            net_ms=max(0.0, cpu - idle_rate * seconds) / events * 1000,
            handler_ms=(now["seconds_us"] - before["seconds_us"]) / 1000 / events,
            requests_per_s=_calls(requests) / seconds,
            idle_cpu=idle_rate,
            idle_requests_per_s=_calls(idle_requests) / idle,
            requests=requests,
            load=_load(),
        )

    async def storm(
        self, name: str, names: list[str], act: Callable[[], None], done: Callable[[], bool]
    ) -> Storm:
        op = self.operator
        start, offset, events = op.usage(), self.audit.end(), self.watch.events
        began = time.monotonic()
        await asyncio.to_thread(act)
        converged = await self.converge(names, done=done)
        end = op.usage()
        requests, _ = self.audit.since(offset)
        seconds = self.watch.last_event - began
        return Storm(
            name=name,
            events=self.watch.events - events,
            seconds=seconds,
            converged=converged,
            cpu=end.cpu - start.cpu,
            requests=requests,
            requests_per_s=_calls(requests) / max(seconds + converged, 0.001),
            load=_load(),
        )

    def touches(self, count: int) -> Callable[[], None]:
        def act() -> None:
            with self.watch._lock:
                names = sorted(self.watch.pods)
            for n in range(count):
                self.workload.touch(names[n % len(names)], f"{time.time()}")

        return act

    def flips(self, kubelet: Kubelet, count: int) -> Callable[[], None]:
        def act() -> None:
            chosen = [f"{self.names[n % len(self.names)]}-{n // len(self.names)}" for n in range(count)]
            for pod in chosen:
                kubelet.set_ready(NS, pod, False)
            for pod in chosen:
                kubelet.set_ready(NS, pod, True)

        return act


def _calls(requests: Counter[str]) -> int:
    """Requests other than watches (a watch completes when it ends: it is a stream, not a call)."""
    return sum(n for what, n in requests.items() if not what.startswith("watch "))


async def measure(
    folder: Path, redis_url: str, *, sizes: tuple[int, ...] = SIZES, touches: int = 400, flips: int = 40,
    idle: float = 10.0, profile: Path | None = None, source: Path | None = None,
) -> Scale:  # fmt: skip
    """Figure 12, in ``folder`` (the control plane's data and logs, the operator's log)."""
    result = Scale()
    prefix = f"bs{secrets.token_hex(3)}"
    redis = Redis.from_url(redis_url)
    with audited_control_plane(folder) as (plane, kubeconfig, log), Kubelet(plane.kubeconfig) as kubelet:
        workload = Workload(plane, NS)
        workload.create_namespace(kubelet)
        operator = Operator(
            folder, namespace=NS, redis_url=redis_url, prefix=prefix, kubeconfig=kubeconfig,
            profile=profile, source=source,
        )  # fmt: skip
        with operator, PodWatch(workload.core, NS) as watch:
            run = Run(workload, watch, operator, RouteTable(redis, prefix=prefix, timeout=5), Audit(log))
            for count in sizes:
                for n in range(len(run.names), count):
                    run.names.append(f"game-{n:02d}")
                    await asyncio.to_thread(workload.create, run.names[-1], PODS)
                pods = count * PODS
                console.log(f"figure 12: {pods} pods in {count} StatefulSets (load {_load()})")
                await run.ready()
                result.costs.append(await run.cost(pods, "touch", run.touches(touches), idle))
                result.costs.append(await run.cost(pods, "readiness", run.flips(kubelet, flips), idle))
                await run.ready()
            deleted = 200 // len(run.names)
            console.log(f"figure 12: storm, {deleted * len(run.names)} pods deleted at once (load {_load()})")
            storm = await run.storm(
                f"{deleted * len(run.names)} pods deleted at once",
                run.names,
                lambda: workload.delete_ordinals(range(deleted)),
                lambda: all(len(watch.by_stateful_set(n)) == PODS for n in run.names),
            )
            result.storms.append(storm)
            big = run.names[0]
            await asyncio.to_thread(workload.scale, big, 100)
            await run.ready(100, [big])
            console.log(f"figure 12: storm, rolling update of 100 pods, maxUnavailable 10 (load {_load()})")
            result.storms.append(
                await run.storm(
                    "rolling update of a 100-pod StatefulSet, maxUnavailable 10",
                    [big],
                    lambda: workload.roll(big, 10),
                    lambda: workload.rolled(big),
                )
            )
            usage = operator.usage()
            result.rss_mib, result.hwm_mib = usage.rss_mib, usage.hwm_mib
            result.kubelet_errors = kubelet.errors_in(NS)
        result.operator_errors = operator.errors()
        workload.client.close()
    with contextlib.suppress(Exception):
        await redis.aclose()
    return result


def rows(scale: Scale) -> list[Row]:
    """Figure 12's lines of the results table."""
    out = []
    for cost in scale.costs:
        at_goal = cost.pods >= 1000 and cost.kind == "touch"
        out.append(
            Row(
                f"12. operator, {cost.pods:,} pods in {cost.pods // PODS} StatefulSets: CPU per pod event "
                f"({'annotation touched' if cost.kind == 'touch' else 'readiness flipped, table written'})",
                f"{cost.net_ms:.2f} ms net of ticks ({cost.cpu_ms:.2f} ms gross; {cost.handler_ms:.1f} ms in "
                f"reconciling; {cost.events:,} events ({cost.reconciled:,} reconciled) "
                f"in {cost.seconds:.1f} s; {cost.requests_per_s:.1f} API "
                f"requests/s, idle {cost.idle_requests_per_s:.1f}/s and {cost.idle_cpu * 100:.0f} % CPU; "
                f"load {cost.load})",
                target=f"≤ {GOAL_MS:g} ms at 1,000 pods" if cost.pods >= 1000 else "—",
                met=(cost.net_ms <= GOAL_MS) if at_goal else None,
            )
        )
    for storm in scale.storms:
        out.append(
            Row(
                f"12. operator, storm: {storm.name} (last pod event → tables match)",
                f"{storm.converged:.2f} s ({storm.events:,} pod events over {storm.seconds:.1f} s; "
                f"{storm.cpu:.1f} s CPU; {storm.requests_per_s:.1f} API requests/s; load {storm.load})",
                target=f"≤ {GOAL_CONVERGED:g} s",
                met=storm.converged <= GOAL_CONVERGED,
            )
        )
    out.append(
        Row(
            "12. operator memory at the end (RSS; peak)",
            f"{scale.rss_mib:.0f} MiB; {scale.hwm_mib:.0f} MiB",
            target=f"≤ {GOAL_RSS_MIB:g} MiB",
            met=scale.hwm_mib <= GOAL_RSS_MIB,
        )
    )
    return out


def report(scale: Scale) -> None:
    """The rows, the API requests by kind, and anything that went wrong, on the console."""
    for r in rows(scale):
        console.print(f"[bold]{r.figure}[/]: {r.ours}  (target {r.target}; met: {r.met})")
    for cost in scale.costs:
        top = ", ".join(f"{what} {n}" for what, n in cost.requests.most_common(6))
        console.print(f"  {cost.pods} pods, {cost.kind}: {top}")
    for storm in scale.storms:
        top = ", ".join(f"{what} {n}" for what, n in storm.requests.most_common(6))
        console.print(f"  {storm.name}: {top}")
    for error in scale.kubelet_errors[:5] + scale.operator_errors[:5]:
        console.print(f"  [red]{error}[/]")


async def run_with_redis(
    work: Callable[[str], Awaitable[Scale]], redis_url: str | None
) -> Scale:  # a private server unless one is named
    with local_redis.redis_url(redis_url) as url:
        return await work(url)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    redis_url: Annotated[str | None, typer.Option(envvar="REDIS_URL")] = None,
    sizes: Annotated[
        list[int] | None, typer.Option("--size", help="StatefulSets of 50 pods, in turn (repeatable).")
    ] = None,
    touches: Annotated[int, typer.Option(help="Annotation touches per size.")] = 400,
    flips: Annotated[int, typer.Option(help="Pods made NotReady and Ready again per size.")] = 40,
    idle: Annotated[float, typer.Option(help="Seconds of the idle window before each measurement.")] = 10.0,
    folder: Annotated[Path | None, typer.Option(help="Keep the control plane's data and logs here.")] = None,
    profile: Annotated[Path | None, typer.Option(help="Run the operator under cProfile; stats here.")] = None,
    operator_source: Annotated[
        Path | None, typer.Option(help="Run the operator from this checkout's operator/ folder instead.")
    ] = None,
) -> None:
    """Measure figure 12 (the operator against a real control plane at 1,000 pods) and print it."""
    chosen = tuple(sizes or SIZES)
    with tempfile.TemporaryDirectory(prefix="sr-scale-") as temporary:
        where = folder or Path(temporary)

        async def work(url: str) -> Scale:
            return await measure(
                where, url, sizes=chosen, touches=touches, flips=flips, idle=idle, profile=profile,
                source=operator_source,
            )  # fmt: skip

        report(asyncio.run(run_with_redis(work, redis_url)))


if __name__ == "__main__":
    app()
