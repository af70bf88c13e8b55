"""Pod events that change nothing the operator reads are not reconciled, and a burst of them for
one route queues at most one reconciliation behind the one running (which reads the index when it
starts, so it covers every event that found it waiting)."""

from __future__ import annotations

import asyncio
import dataclasses
import random

from stateful_route.controller import rollouts
from stateful_route.controller.context import Coalescer, Seen
from stateful_route.controller.pods import PodRecord
from stateful_route.core.state import RoutingState


def pod(uid: str = "u0", *, ready: bool = True) -> PodRecord:
    return PodRecord(f"game-{uid}", uid, 0, ready, False, RoutingState.READY, created="2026-12-07T00:00:00Z")


def test_only_an_event_that_changes_the_record_is_news():
    seen: Seen[PodRecord] = Seen()
    first = pod()
    assert seen.news(None, "u0", first)  # kopf's listing at start: never seen
    seen.handled("u0", first)
    assert not seen.news("MODIFIED", "u0", pod())  # another annotation, a status field: equal record
    assert seen.news("MODIFIED", "u0", pod(ready=False))
    assert seen.news("MODIFIED", "u0", dataclasses.replace(first, routing=RoutingState.SHUTDOWN))
    assert seen.news("MODIFIED", "u1", pod("u1"))  # another pod (a new uid at the ordinal)
    assert seen.news("DELETED", "u0", first)  # always: the pod leaves the table
    assert seen.news("MODIFIED", "u0", first)  # and is forgotten
    assert seen.news("MODIFIED", "u0", None)  # no record: nothing to compare


def test_a_record_is_news_until_a_reconciliation_handled_it():
    """A reconciliation that failed leaves the record news: the next equal event tries again."""
    seen: Seen[PodRecord] = Seen()
    assert seen.news("MODIFIED", "u0", pod())
    assert seen.news("MODIFIED", "u0", pod())
    seen.handled("u0", pod())
    assert not seen.news("MODIFIED", "u0", pod())


def test_a_stateful_sets_status_counts_are_no_news():
    seen: Seen[rollouts.StatefulSetRecord] = Seen()
    body = {"metadata": {"name": "game"}, "spec": {"replicas": 3}, "status": {"readyReplicas": 2}}
    seen.handled("s", rollouts.record(body))
    assert not seen.news("MODIFIED", "s", rollouts.record({**body, "status": {"readyReplicas": 3}}))
    assert seen.news("MODIFIED", "s", rollouts.record({**body, "status": {"updateRevision": "game-b"}}))
    assert seen.news("MODIFIED", "s", rollouts.record({**body, "spec": {"replicas": 4}}))


async def test_a_burst_runs_one_reconciliation_and_at_most_one_more_with_the_latest_state():
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    coalescer = Coalescer()
    state = {"room": 0}  # what the index holds for the route: the number of the latest event
    seen_by_runs: list[int] = []
    running = 0
    most = 0

    async def work() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        seen_by_runs.append(state["room"])  # read when the run starts, as handlers read the index
        await asyncio.sleep(rng.uniform(0.001, 0.01))
        running -= 1

    async def event(n: int) -> bool:
        await asyncio.sleep(rng.uniform(0, 0.05))
        state["room"] = max(state["room"], n)  # kopf indexes the event before the handler runs
        return await coalescer.run("room", work)

    events = rng.randint(50, 200)
    ran = await asyncio.gather(*(event(n) for n in range(1, events + 1)))
    assert most == 1  # one route's reconciliations never overlap
    assert seen_by_runs[-1] == events  # the last run saw the last event
    assert sum(ran) == len(seen_by_runs) < events  # the others were covered by a waiting run
    assert seen_by_runs == sorted(seen_by_runs)


async def test_routes_do_not_wait_for_each_other():
    coalescer = Coalescer()
    started: list[str] = []
    release = asyncio.Event()

    async def work(name: str) -> None:
        started.append(name)
        await release.wait()

    slow = asyncio.create_task(coalescer.run("room", lambda: work("room")))
    await asyncio.sleep(0)
    other = asyncio.create_task(coalescer.run("chat", lambda: work("chat")))
    await asyncio.sleep(0.01)
    assert started == ["room", "chat"]
    release.set()
    assert await slow
    assert await other
