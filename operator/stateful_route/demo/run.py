"""``stateful-route demo``: the real operator on an emulated cluster, real clients, a short story.

Everything runs in this process against a real Redis: kmock's Kubernetes API emulator, the
operator (kopf) watching it, gateways (``ClientDriver``) placing and looking up users, and the
pods (``ServerDriver``) reporting load and dropping users who leave. A script drains a pod,
deletes one (the StatefulSet brings it back), flaps one NotReady and scales the StatefulSet up.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from stateful_route import ClientDriver, NoAvailablePod, RouteSnapshot, RouteTable, ServerDriver
from stateful_route.controller.metrics import OperatorMetrics
from stateful_route.store import connection
from stateful_route.store.connection import delete_prefix
from stateful_route.testing.sim import NS, ROUTE, STS, Cluster, emulated_cluster, operator_thread

__all__ = ["DemoOptions", "Summary", "run_demo"]

GRACE = 2  # seconds a NotReady pod keeps its users
GATEWAYS = 3


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does: how long, how many pods and users, which random story."""

    duration: float = 45.0
    pods: int = 6
    users: int = 3000
    seed: int = 1


@dataclass
class Summary:
    """What happened, checked at the end (``ok`` is True when every invariant held)."""

    users_placed: int = 0
    lookups: int = 0
    no_available_pod: int = 0
    errors: list[str] = field(default_factory=list)
    evictions: int = 0
    links_evicted: int = 0
    rebinds: int = 0
    worst_imbalance: float = 1.0  # max links / mean links over available pods, worst sample
    final_imbalance: float = 1.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    interrupted: bool = False
    invariants: dict[str, bool] = field(default_factory=dict)
    story: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every invariant held and nothing failed."""
        return all(self.invariants.values()) and not self.errors

    def as_dict(self) -> dict[str, object]:
        """The summary as plain data (for ``--json``)."""
        return {**asdict(self), "ok": self.ok}


@dataclass
class DisplayState:
    """What the display shows while the demo runs (updated in place)."""

    snapshot: RouteSnapshot | None = None
    present: set[int] = field(default_factory=set)  # pods Kubernetes has
    lines: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0
    kubeconfig: str = ""  # the emulated cluster's, for watching and steering it with kubectl


class Traffic:
    """Users arriving, reconnecting and leaving through several gateways."""

    def __init__(self, gateways: list[ClientDriver], servers: dict[int, ServerDriver], target: int) -> None:
        self.gateways = gateways
        self.servers = servers
        self.target = target
        self.online: list[str] = []  # users with a session, for picking one at random
        self.where: dict[str, int] = {}  # uid -> the pod it was last told
        self.position: dict[str, int] = {}  # uid -> its index in ``online``
        self.created = 0
        self.took_ns: list[int] = []
        self.sessions: Counter[int] = Counter()  # lookups per pod since the last load report
        self.summary = Summary()
        self.stop = asyncio.Event()

    def all_users(self) -> list[str]:
        """Every user the demo has created (those who left have no link)."""
        return [f"user-{i}" for i in range(self.created)]

    async def gateway(self, client: ClientDriver, rng: random.Random) -> None:
        """One gateway's traffic, about 2,000 calls a second."""
        # Stopped by a flag, not by cancellation: redis-py can swallow a cancellation in flight.
        while not self.stop.is_set():
            for _ in range(20):
                await self._one(client, rng)
            await asyncio.sleep(0.01)

    async def _one(self, client: ClientDriver, rng: random.Random) -> None:
        roll = rng.random()
        if (len(self.online) < self.target and roll < 0.7) or not self.online:
            uid = f"user-{self.created}"  # arrives
            self.created += 1
        elif roll < 0.95:
            uid = self.online[rng.randrange(len(self.online))]  # reconnects
        else:
            await self._leave(self.online[rng.randrange(len(self.online))])
            return
        started = time.perf_counter_ns()
        try:
            pod = await client.compute_linked_pod(NS, uid, ROUTE)
        except NoAvailablePod:
            self.summary.no_available_pod += 1
            return
        except Exception as exc:  # reported in the summary: the demo fails loudly, not silently
            self.summary.errors.append(f"{type(exc).__name__}: {exc}")
            return
        self.took_ns.append(time.perf_counter_ns() - started)
        self.summary.lookups += 1
        self.sessions[pod] += 1
        if uid not in self.where:
            self.summary.users_placed += 1
            self.position[uid] = len(self.online)
            self.online.append(uid)
        self.where[uid] = pod

    async def _leave(self, uid: str) -> None:
        index = self.position.pop(uid)
        last = self.online.pop()
        if last != uid:  # swap-remove keeps picking O(1)
            self.online[index] = last
            self.position[last] = index
        pod = self.where.pop(uid)
        server = self.servers.get(pod)
        if server is not None:
            with contextlib.suppress(Exception):  # the pod may be gone; its link was evicted then
                await server.remove_linked_pod_with_id(uid, pod)

    async def report_loads(self) -> None:
        """What each pod does every second: report its load (sessions served, ÷100)."""
        while not self.stop.is_set():
            await asyncio.sleep(1)
            counts, self.sessions = self.sessions, Counter()
            for index, server in list(self.servers.items()):
                with contextlib.suppress(Exception):
                    await server.set_load_state(counts.get(index, 0) // 100)


def imbalance(snapshot: RouteSnapshot) -> float:
    """Max links over mean links among available pods (1.0 is perfect balance)."""
    counts = [snapshot.links.get(i, 0) for i in snapshot.available]
    mean = sum(counts) / len(counts) if counts else 0
    return max(counts) / mean if mean else 1.0


class Story:
    """The script: each step at a fraction of the duration, told on the live display."""

    def __init__(self, cluster: Cluster, live: DisplayState, pods: int, rng: random.Random) -> None:
        self.cluster = cluster
        self.live = live
        self.pods = pods
        drained, deleted, flapping = rng.sample(range(pods), 3)
        self.steps: list[tuple[float, str, Callable[[], Coroutine[Any, Any, None]]]] = [
            (0.15, f"drain {STS}-{drained}: keeps its users, takes no new ones",
             lambda: cluster.annotate(drained, "DenyNewCall")),
            (0.30, f"delete {STS}-{deleted}: its users are evicted and rebound",
             lambda: self._delete(deleted)),
            (0.45, f"{STS}-{deleted} is back (the StatefulSet recreated it)",
             lambda: self._create(deleted)),
            (0.55, f"{STS}-{flapping} flaps NotReady for {GRACE / 2:.0f}s (grace {GRACE}s): nobody moves",
             lambda: self._flap(flapping)),
            (0.70, f"scale up: {STS}-{pods} joins and takes new users",
             lambda: self._create(pods)),
            (0.85, f"undrain {STS}-{drained}", lambda: cluster.annotate(drained, None)),
        ]  # fmt: skip

    def say(self, line: str) -> None:
        elapsed = time.monotonic() - self.live.started
        self.live.lines.append(f"{elapsed:5.1f}s  {line}")

    async def _delete(self, index: int) -> None:
        await self.cluster.delete_pod(index)
        self.live.present.discard(index)

    async def _create(self, index: int) -> None:
        await self.cluster.create_pod(index)
        self.live.present.add(index)

    async def _flap(self, index: int) -> None:
        await self.cluster.set_ready(index, False)
        await asyncio.sleep(GRACE / 2)
        await self.cluster.set_ready(index, True)

    async def play(self, duration: float, summary: Summary) -> None:
        start = time.monotonic()
        pending: list[asyncio.Task[None]] = []
        for at, text, action in self.steps:
            await asyncio.sleep(max(0.0, start + at * duration - time.monotonic()))
            self.say(text)
            summary.story.append(text)
            pending.append(asyncio.create_task(action()))
        await asyncio.sleep(max(0.0, start + duration - time.monotonic()))
        await asyncio.gather(*pending)


async def _watch(
    table: RouteTable,
    cluster: Cluster,
    live: DisplayState,
    summary: Summary,
    stop: asyncio.Event,
    story: Story,
) -> None:
    """Refresh the displayed table, and tell each eviction the operator posted."""
    seen: set[str] = set()
    while not stop.is_set():
        with contextlib.suppress(Exception):
            live.snapshot = await table.snapshot(NS, ROUTE)
            summary.worst_imbalance = max(summary.worst_imbalance, imbalance(live.snapshot))
            for event in await cluster.events():
                name = event["metadata"]["name"]
                if name not in seen and event.get("reason") == "Evicted":
                    seen.add(name)
                    story.say(f"operator: {event.get('message')}")
        await asyncio.sleep(0.25)


@contextlib.asynccontextmanager
async def _redis(url: str, connections: int) -> AsyncIterator[connection.AnyRedis]:
    # Sentinel pools find the primary themselves and cannot block; one server's pool queues callers.
    redis = (
        connection.connect(url)
        if connection.is_sentinel_url(url)
        else Redis.from_pool(BlockingConnectionPool.from_url(url, max_connections=connections))
    )
    try:
        yield redis
    finally:
        await redis.aclose()


async def run_demo(
    url: str,
    options: DemoOptions,
    on_start: Callable[[DisplayState], contextlib.AbstractContextManager[object]],
) -> Summary:
    """Play the demo against the Redis at ``url``; ``on_start`` wraps the run with a display."""
    rng = random.Random(options.seed)
    prefix = f"demo-{secrets.token_hex(4)}"  # every key the demo writes lives under it
    live = DisplayState(present=set(range(options.pods)), duration=options.duration)
    metrics = OperatorMetrics()
    async with contextlib.AsyncExitStack() as stack:
        redis = await stack.enter_async_context(_redis(url, 20))
        stack.push_async_callback(delete_prefix, redis, prefix)
        cluster = await stack.enter_async_context(emulated_cluster())
        live.kubeconfig = str(cluster.kubeconfig)
        table = RouteTable(redis, prefix=prefix)
        await stack.enter_async_context(
            # In its own thread, like a pod of its own: kopf would otherwise take over Ctrl-C and
            # cancel the gateways' tasks when it stops.
            operator_thread(
                cluster, url, prefix, metrics=metrics, reconcile_interval=0.5, status_interval=1.0
            )
        )
        await cluster.start(options.pods, unroutableGraceSeconds=GRACE, rebind="Eager")
        await _until(lambda: _has_pods(table, options.pods), within=10)
        gateways = [
            await stack.enter_async_context(ClientDriver(redis, namespace=NS, prefix=prefix))
            for _ in range(GATEWAYS)
        ]
        servers = {
            i: ServerDriver(redis, namespace=NS, service=ROUTE, pod_index=i, prefix=prefix)
            for i in range(options.pods + 1)
        }
        traffic = Traffic(gateways, servers, options.users)
        summary = traffic.summary
        story = Story(cluster, live, options.pods, rng)
        workers = [
            asyncio.create_task(traffic.gateway(g, random.Random(options.seed + i)))
            for i, g in enumerate(gateways)
        ]
        workers.append(asyncio.create_task(traffic.report_loads()))
        workers.append(asyncio.create_task(_watch(table, cluster, live, summary, traffic.stop, story)))
        with on_start(live):
            try:
                await story.play(options.duration, summary)
                story.say("settling: every pod back, the operator done")
                await asyncio.sleep(2)
            except asyncio.CancelledError:  # Ctrl-C: stop the story, still summarise and clean up
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                summary.interrupted = True
            finally:
                traffic.stop.set()
                await asyncio.gather(*workers, return_exceptions=True)
        await _conclude(traffic, table, metrics)
        return summary


async def _conclude(traffic: Traffic, table: RouteTable, metrics: OperatorMetrics) -> None:
    """Fill in the summary's figures and check the invariants."""
    summary = traffic.summary
    took = sorted(traffic.took_ns)
    if took:
        summary.p50_ms = took[len(took) // 2] / 1e6
        summary.p99_ms = took[min(len(took) - 1, int(len(took) * 0.99))] / 1e6

    def total(name: str) -> int:
        return int(sum(s.value for m in metrics.registry.collect() if m.name == name for s in m.samples
                       if s.name.endswith("_total")))  # fmt: skip

    summary.evictions = total("stateful_route_evictions")
    summary.links_evicted = total("stateful_route_evicted_links")
    summary.rebinds = total("stateful_route_rebinds")
    snapshot = await table.snapshot(NS, ROUTE)
    summary.final_imbalance = imbalance(snapshot)

    users = traffic.all_users()
    views = [await g.batch_get_linked_pod(NS, users, ROUTE) for g in traffic.gateways[:2]]
    linked = {uid: pod for pod, uids in views[0].items() for uid in uids}
    summary.invariants = {
        "gateways agree on every user's pod": views[0] == views[1],
        "every linked pod is routable": set(linked.values()) <= snapshot.routable,
        "per-pod counts equal the links": sum(snapshot.links.values()) == len(linked),
        "every evicted user was rebound": summary.rebinds == summary.links_evicted,
        "users were placed": summary.users_placed > 0,
    }


async def _has_pods(table: RouteTable, pods: int) -> bool:
    return len((await table.snapshot(NS, ROUTE)).routable) == pods


async def _until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110  # polling Redis: there is no event to wait on
            await asyncio.sleep(0.1)
