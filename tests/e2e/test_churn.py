"""Consistency under churn: pods flap, die, drain and return while gateways keep asking.

Promise checked throughout: no answer names a pod that had been unroutable for more than one
second when the call began, and a user is never on two routable pods at once (a user's answer
changes only after the pod it left became unroutable).
"""

from __future__ import annotations

import asyncio
import random

from stateful_route import ClientDriver, RouteTable
from stateful_route.store.keys import changes_channel
from stateful_route.testing.churning import churn
from stateful_route.testing.judge import Findings, Timeline, ask, counts_agree, observe
from stateful_route.testing.sim import NS, ROUTE, operator
from tests.e2e.test_route_lifecycle import wait_for_table
from tests.routes import poll_until

PODS = 6
USERS = 20_000
CLIENTS = 4
CHURN_SECONDS = 40
STALENESS_BOUND = 1.0
SEED = 20261128


async def test_churn_keeps_the_promise(cluster, redis, make_redis, redis_url, prefix):
    rng = random.Random(SEED)
    await cluster.start(PODS, unroutableGraceSeconds=1, rebind="Eager")
    table = RouteTable(redis, prefix=prefix)
    timeline, findings = Timeline(PODS), Findings(bound=STALENESS_BOUND)
    async with operator(cluster, redis_url, prefix, reconcile_interval=0.5):
        await wait_for_table(table, list(range(PODS)))
        t0 = asyncio.get_running_loop().time()
        async with ClientDriver(make_redis(), namespace=NS, prefix=prefix) as first:
            for uid in range(USERS):  # everyone placed before the trouble starts
                await first.compute_linked_pod(NS, f"user-{uid}", ROUTE)
        print(f"\nplaced {USERS} in {asyncio.get_running_loop().time() - t0:.1f}s", flush=True)
        stop = asyncio.Event()
        observer = asyncio.create_task(
            observe(make_redis(), timeline, changes_channel(prefix, NS), stop, table, (NS, ROUTE))
        )
        drivers = [ClientDriver(make_redis(), namespace=NS, prefix=prefix) for _ in range(CLIENTS)]
        for driver in drivers:
            await driver.__aenter__()
        askers = [
            asyncio.create_task(
                ask(d, findings, random.Random(SEED + i), stop, users=USERS, route=(NS, ROUTE))
            )
            for i, d in enumerate(drivers)
        ]
        checks = 0
        try:
            churning = asyncio.create_task(churn(cluster, rng, CHURN_SECONDS, PODS))
            while not churning.done():
                await asyncio.sleep(5)
                agree, _ = await counts_agree(redis, table, (NS, ROUTE), PODS)
                assert agree, "per-pod link counts differ from the links that exist"
                checks += 1
            episodes = await churning
            # Settle: every pod back, the operator done evicting.
            await wait_for_table(table, list(range(PODS)), within=15)
            await asyncio.sleep(1.5)
        finally:
            stop.set()
            await asyncio.gather(*askers, observer)
            for driver in drivers:
                await driver.__aexit__(None, None, None)

        verdict = findings.judge(timeline)
        worst, stale, moves, refused = verdict.worst, verdict.stale, verdict.moves, verdict.refused
        print(
            f"\nchurn: {dict(episodes)}; {findings.count} answers, "
            f"{findings.errors['NoAvailablePod']} NoAvailablePod, "
            f"worst staleness {worst * 1000:.1f} ms (bound {STALENESS_BOUND:.0f} s), {len(moves)} moves "
            "off a routable pod"
        )
        assert findings.unexpected == []  # (d)
        assert refused == [], f"{len(refused)} NoAvailablePod while a pod was routable"
        assert stale == [], stale[:5]  # (b)
        assert worst <= STALENESS_BOUND
        assert moves == [], moves[:5]  # (a)
        assert findings.count > 50_000
        assert checks >= 5
        assert sum(episodes.values()) >= 20
        assert {"not-ready", "delete", "drain", "shutdown"} <= set(episodes)

        # At the end: counts match, nobody lost, every client names the same pod for everyone.
        agree, per_pod = await counts_agree(redis, table, (NS, ROUTE), PODS)
        assert agree
        assert sum(per_pod) == USERS
        users = [f"user-{i}" for i in range(USERS)]
        views = []
        for _ in range(2):
            async with ClientDriver(make_redis(), namespace=NS, prefix=prefix) as client:
                grouped = await client.batch_get_linked_pod(NS, users, ROUTE)
                views.append({uid: pod for pod, uids in grouped.items() for uid in uids})
        assert views[0] == views[1]
        assert len(views[0]) == USERS

        async def all_answers_routable() -> bool:
            routable = (await table.snapshot(NS, ROUTE)).routable
            return set(views[0].values()) <= routable

        await poll_until(all_answers_routable, within=2)
