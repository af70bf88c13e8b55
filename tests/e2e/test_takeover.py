"""A replica that takes over (peering) acts on what Kubernetes shows now, not on what its index
held when it was paused: with every pod Ready and staying so, a takeover writes no pod
unroutable and moves no user.

Seeded rounds: the standby (priority 10) is active and sees some pods NotReady; the higher
priority replica starts and pauses it; meanwhile those pods turn Ready again and others are
replaced (deleted, created again under a new uid); once the table is whole again the active
replica stops, and the standby resumes with an index from before its pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import time

import pytest

from stateful_route import ClientDriver, RouteTable
from stateful_route.store.keys import changes_channel
from stateful_route.testing.judge import Timeline, observe
from stateful_route.testing.sim import NS, ROUTE, Cluster, operator_thread
from tests.e2e.test_ha_peering import PEERING
from tests.e2e.test_route_lifecycle import wait_for_table
from tests.routes import poll_until

pytestmark = pytest.mark.slow

PODS = 8
ROUNDS = 3
WINDOW = 2.0  # how long after a takeover every pod must stay routable
SEED = int(os.environ.get("TAKEOVER_SEED", random.randrange(1_000_000)))


async def links(table: RouteTable) -> dict[int, int]:
    return dict((await table.snapshot(NS, ROUTE)).links)


async def evicted(cluster: Cluster) -> int:
    return sum(e.get("reason") == "Evicted" for e in await cluster.events())


async def all_routable(table: RouteTable) -> bool:
    snapshot = await table.snapshot(NS, ROUTE)
    return sorted(snapshot.available) == list(range(PODS))


async def test_a_takeover_leaves_ready_pods_routable_and_users_in_place(cluster, redis, redis_url, prefix):
    print(f"seed {SEED} (TAKEOVER_SEED to repeat)")
    rng = random.Random(SEED)
    await cluster.create_peering(PEERING)
    await cluster.start(PODS, unroutableGraceSeconds=1, rebind="Eager")
    table = RouteTable(redis, prefix=prefix)
    options = {"peering": PEERING, "reconcile_interval": 0.2, "census_interval": 0.5}
    timeline = Timeline(PODS)
    stop = asyncio.Event()
    watcher = asyncio.create_task(
        observe(redis, timeline, changes_channel(prefix, NS), stop, table, (NS, ROUTE))
    )
    failures: list[str] = []
    try:
        async with contextlib.AsyncExitStack() as standby:
            await standby.enter_async_context(
                operator_thread(cluster, redis_url, prefix, priority=10, **options)
            )
            await wait_for_table(table, list(range(PODS)))
            async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
                for user in range(800):
                    await client.compute_linked_pod(NS, f"user-{user}", ROUTE)
            for round_ in range(ROUNDS):
                flapped = rng.sample(range(PODS), 2)
                replaced = rng.choice([i for i in range(PODS) if i not in flapped])
                # The standby, active now, sees these NotReady (past their grace: evicted).
                for index in flapped:
                    await cluster.set_ready(index, False, stamped=True)
                try:
                    await poll_until(functools.partial(_unroutable, table, flapped), within=10, every=0.05)
                except TimeoutError:  # the replica acts on an index from before its pause
                    failures.append(f"round {round_}: NotReady pods {flapped} still routable after 10 s")
                    break
                async with operator_thread(cluster, redis_url, prefix, priority=100, **options):
                    await asyncio.sleep(1.5)  # the standby pauses: its index stops here
                    for index in flapped:
                        await cluster.set_ready(index, True, stamped=True)
                    await cluster.delete_pod(replaced)
                    await cluster.create_pod(replaced)
                    await poll_until(lambda: all_routable(table), within=10, every=0.05)
                    await asyncio.sleep(1.0)  # the new pods' users placed, nothing in flight
                    before = (await links(table), await evicted(cluster))
                    taken_over = time.time()
                # The active replica stopped: the standby resumes, every pod Ready throughout.
                await asyncio.sleep(WINDOW)
                after = (await links(table), await evicted(cluster))
                for pod in range(PODS):
                    if timeline.unroutable_between(pod, taken_over, time.time()):
                        failures.append(f"round {round_}: pod {pod} written unroutable after the takeover")
                if after != before:
                    failures.append(f"round {round_}: links/evictions {before} -> {after}")
    finally:
        stop.set()
        await watcher
    assert not failures, f"seed {SEED}: {failures}"


async def _unroutable(table: RouteTable, pods: list[int]) -> bool:
    snapshot = await table.snapshot(NS, ROUTE)
    return not set(pods) & set(snapshot.routable)
