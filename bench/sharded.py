"""Figure 16: the prototype of a route sharded over Redis Cluster masters (docs/sharded-routes.md).

A route of ``pods`` pods is split into K sub-routes, each an ordinary route table (written by
``RouteTable``) whose name is chosen so that its hash tag lands on its own master; a user's
sub-route is chosen by a hash of the uid. The same workload runs with K = 1 (one master serves
the whole route, as today) and with K = the cluster's masters, on a private 3-master cluster.

Capacity is Redis CPU: the CPU each master's process used over the workload (``INFO cpu``; the
time its scripts took, from ``INFO commandstats``, is reported too). The busiest master saturates
first, so a route's capacity is ``operations / busiest master's CPU seconds``.
Throughput of the one client process is reported too, but on a 2-core machine shared by the
client and three servers it measures the client, not Redis.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import secrets
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis as SyncRedis
from redis.asyncio import RedisCluster

from bench.figures import NS, PODS, WORKERS
from bench.measure import concurrently
from stateful_route import PodState, RouteTable
from stateful_route.store.keys import Keyring, RouteKeys
from stateful_route.store.links import LinkStore
from stateful_route.testing.local_redis import PrivateCluster

__all__ = ["Phase", "Sharded", "measure", "sub_routes"]

# The goals of issue 21 for building the feature.
GOAL_SCALE = 2.5
GOAL_BALANCE = 1.05
# Share of cache misses for users already linked in the mixed workload (the rest are new users).
KEPT_SHARE = 0.95


@dataclass(frozen=True)
class Phase:
    """One workload on K sub-routes: Redis CPU per master, the capacity it implies, throughput."""

    name: str
    ops: int
    usec: tuple[float, ...]  # CPU (µs) each master's process used
    script_usec: tuple[float, ...]  # time running the clients' commands (commandstats)
    seconds: float  # wall time of the one client process

    @property
    def capacity(self) -> float:
        """Operations per second when the busiest master's core is saturated."""
        return self.ops / (max(self.usec) / 1e6)

    @property
    def script_capacity(self) -> float:
        """The same from the scripts' time alone (what INFO commandstats counts)."""
        return self.ops / (max(self.script_usec) / 1e6)

    def __add__(self, other: Phase) -> Phase:
        """Two rounds of the same workload as one."""
        return Phase(
            self.name,
            self.ops + other.ops,
            tuple(a + b for a, b in zip(self.usec, other.usec, strict=True)),
            tuple(a + b for a, b in zip(self.script_usec, other.script_usec, strict=True)),
            self.seconds + other.seconds,
        )

    @property
    def usec_per_op(self) -> float:
        """Redis CPU per operation, summed over masters (what sharding adds in total)."""
        return sum(self.usec) / self.ops

    @property
    def script_usec_per_op(self) -> float:
        """Script time per operation, summed over masters."""
        return sum(self.script_usec) / self.ops


@dataclass(frozen=True)
class Sharded:
    """Figure 16 for one K: its phases and the balance of links over pods, summed over sub-routes."""

    k: int
    phases: tuple[Phase, ...]
    balance: float  # max/min links per pod after every phase
    users: tuple[int, ...]  # users per sub-route


def sub_routes(cluster: RedisCluster, service: str, k: int) -> list[str]:
    """``k`` sub-route names of ``service`` whose hash tags live on ``k`` different masters."""
    chosen: dict[str, str] = {}
    keyring = Keyring("x")
    for j in range(10_000):
        name = f"{service}-s{j}"
        node = cluster.get_node_from_key(keyring.route(NS, name).pods)
        assert node is not None
        chosen.setdefault(node.name, name)
        if len(chosen) == k:
            return list(chosen.values())
    raise RuntimeError(f"fewer than {k} masters")


def _pick(uid: str, k: int) -> int:
    """The sub-route of ``uid``: any hash the clients share (the Go client would use the same)."""
    return zlib.crc32(uid.encode()) % k


# The commands a client sends in these workloads. commandstats also counts the commands a
# script runs, inside the script's own time: summing every line would count them twice.
_SENT = ("cmdstat_evalsha", "cmdstat_publish")


def _cpu(nodes: Sequence[SyncRedis]) -> list[float]:
    """CPU (µs) each server process has used (INFO cpu, user + system): commands, sockets,
    cluster bus and all; unlike commandstats' wall time, not inflated when the machine is busy."""
    spent = []
    for node in nodes:
        cpu = node.info("cpu")
        spent.append((float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])) * 1e6)
    return spent


def _script_usec(nodes: Sequence[SyncRedis]) -> list[float]:
    """Time (µs) each node spent running the clients' commands since its stats were reset."""
    return [sum(float(v["usec"]) for k, v in n.info("commandstats").items() if k in _SENT) for n in nodes]


async def _phase(
    name: str, nodes: Sequence[SyncRedis], uids: Sequence[str], place: object, workers: int
) -> Phase:
    for node in nodes:
        node.config_resetstat()
    before = _cpu(nodes)
    started = time.perf_counter()
    await concurrently(place, len(uids), workers)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    cpu = [after - b for after, b in zip(_cpu(nodes), before, strict=True)]
    scripts = _script_usec(nodes)
    return Phase(name, len(uids), tuple(cpu), tuple(scripts), seconds)


async def _run(cluster: PrivateCluster, k: int, users: int, rounds: int) -> Sharded:
    """``rounds`` rounds of both workloads (new users each round) on K sub-routes, ``WORKERS``
    calls in flight per sub-route (so each master sees the load one master sees with K = 1)."""
    workers = WORKERS * k
    redis = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port, max_connections=workers + 4)
    nodes = [SyncRedis(port=node.port) for node in cluster.nodes]
    prefix = f"s{secrets.token_hex(2)}"
    try:
        await redis.initialize()
        names = sub_routes(redis, "room", k)
        table = RouteTable(redis, prefix=prefix)
        store = LinkStore(redis, Keyring(prefix), timeout=10)
        routes: list[RouteKeys] = [store.keyring.route(NS, name) for name in names]
        for name in names:
            await table.put_pods(NS, name, [PodState(i) for i in range(PODS)])

        def placer(population: Sequence[str]) -> object:
            async def place(i: int) -> None:
                uid = population[i]
                await store.place(routes[_pick(uid, k)], uid, 300)

            return place

        everyone: set[str] = set()
        placed: list[Phase] = []
        kept: list[Phase] = []
        for r in range(rounds):
            new = [f"n{r}-{i}" for i in range(users)]
            placed.append(await _phase("first placement", nodes, new, placer(new), workers))
            # 95 % cache misses of linked users (their link kept), 5 % new users, interleaved.
            every = round(1 / (1 - KEPT_SHARE))
            mix = [f"m{r}-{i}" if i % every == 0 else new[i] for i in range(users)]
            name = f"{KEPT_SHARE:.0%} kept / {1 - KEPT_SHARE:.0%} new"
            kept.append(await _phase(name, nodes, mix, placer(mix), workers))
            everyone.update(new, mix)
        first, mixed = functools.reduce(operator.add, placed), functools.reduce(operator.add, kept)
        per_pod = [0] * PODS
        for name in names:
            for pod, count in (await table.snapshot(NS, name)).links.items():
                per_pod[pod] += count
        counts = [0] * k
        for uid in everyone:
            counts[_pick(uid, k)] += 1
        return Sharded(k, (first, mixed), max(per_pod) / max(1, min(per_pod)), tuple(counts))
    finally:
        await redis.aclose()
        for node in nodes:
            node.flushall()  # the cluster is the bench's own
            node.close()


async def measure(users: int, rounds: int = 3) -> tuple[Sharded, Sharded]:
    """Figure 16 on a private 3-master cluster: K = 1 (one master), then K = 3."""
    cluster = PrivateCluster(3)
    try:
        await asyncio.to_thread(cluster.start)
        one = await _run(cluster, 1, users, rounds)
        three = await _run(cluster, len(cluster.nodes), users, rounds)
        return one, three
    finally:
        cluster.cleanup()
