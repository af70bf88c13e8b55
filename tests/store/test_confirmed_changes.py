"""A change to a route's table is made only as a fresh list of the pods confirms it: a stale
index (a replica resumed after a peering pause) neither evicts a Ready pod nor writes it
unroutable. A change of one pod is confirmed by a list of that pod alone; more, by a list of all."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest

from stateful_route import ClientDriver, RoutingState
from stateful_route.controller.pods import PodRecord
from stateful_route.controller.reconciler import Reconciler
from stateful_route.controller.spec import Rebind, RouteRef, RouteSpec
from tests.routes import NS

LIVE = [PodRecord(f"game-{i}", f"pod-{i}", i, True, False, RoutingState.READY) for i in range(3)]
# What a paused replica's index kept of pod 1: NotReady for far longer than the grace.
STALE = [*LIVE[:1], dataclasses.replace(LIVE[1], ready=False, not_ready_since=time.time() - 600), LIVE[2]]
ROUTE = RouteRef(NS, "room", "uid-1", RouteSpec(stateful_set="game", service="room", rebind=Rebind.EAGER))


async def settled(redis, prefix: str) -> Reconciler:
    reconciler = Reconciler(redis, prefix=prefix)
    assert await reconciler.configure(ROUTE)
    await reconciler.reconcile(ROUTE, LIVE)
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        for user in range(90):
            await client.compute_linked_pod(NS, f"user-{user}", "room")
    return reconciler


async def test_a_stale_not_ready_record_is_checked_against_a_fresh_list(redis, prefix):
    reconciler = await settled(redis, prefix)
    asked = []

    async def confirm(name: str | None) -> list[PodRecord]:
        asked.append(True)
        return [r for r in LIVE if name in (None, r.name)]

    result = await reconciler.reconcile(ROUTE, STALE, confirm=confirm)
    assert result is not None
    assert asked == [True]
    assert not result.evictions
    assert result.snapshot.links[1] == 30
    assert 1 in result.snapshot.routable


@pytest.mark.parametrize("confirm", ["none", "failing"])
async def test_without_a_fresh_list_the_index_is_acted_on(redis, prefix, confirm):
    """What the confirmation prevents: the stale record evicts pod 1 (also when the list fails:
    the index is all there is then)."""
    reconciler = await settled(redis, prefix)

    async def failing(name: str | None) -> None:
        return None

    result = await reconciler.reconcile(ROUTE, STALE, confirm=None if confirm == "none" else failing)
    assert result is not None
    assert [e.pod for e in result.evictions] == [1]
    assert 1 not in result.snapshot.routable


async def test_no_list_is_taken_when_nothing_changes(redis, prefix):
    reconciler = await settled(redis, prefix)

    async def confirm(name: str | None) -> list[PodRecord]:
        raise AssertionError("listed although the index changes nothing")

    assert await reconciler.reconcile(ROUTE, LIVE, confirm=confirm) is not None


async def test_a_one_pod_change_is_checked_against_that_pod_alone(redis, prefix):
    """The common case (one readiness flip): the fresh list asks for the changed pod by name, not
    for all of them, and the table follows what it says."""
    reconciler = await settled(redis, prefix)
    asked: list[str | None] = []

    async def confirm(name: str | None) -> list[PodRecord]:
        asked.append(name)
        return [r for r in LIVE if name in (None, r.name)]

    result = await reconciler.reconcile(ROUTE, STALE, confirm=confirm)
    assert result is not None
    assert asked == ["game-1"]
    assert not result.evictions
    assert 1 in result.snapshot.routable


async def test_a_pod_the_one_pod_list_lacks_is_gone(redis, prefix):
    """The pod asked for is not listed any more (deleted meanwhile): the table follows the API."""
    reconciler = await settled(redis, prefix)

    async def confirm(name: str | None) -> list[PodRecord]:
        return [r for r in LIVE if r.name != "game-1" and name in (None, r.name)]

    result = await reconciler.reconcile(ROUTE, STALE, confirm=confirm)
    assert result is not None
    assert [e.pod for e in result.evictions] == [1]
    assert sorted(result.snapshot.pods) == [0, 2]


@pytest.mark.parametrize("seed", range(12))
async def test_a_stale_index_never_writes_the_table(redis, prefix, seed):
    """Generated: the API has some pods Ready and some never Ready; the index got the readiness
    of one to three of them wrong. Nothing is written or evicted, and the fresh list asks for the
    one pod by name when one differs, for all of them otherwise."""
    rng = random.Random(seed)
    print(f"seed {seed}")
    count = rng.randint(3, 6)
    ready = [rng.random() < 0.7 for _ in range(count)]
    live = [PodRecord(f"game-{i}", f"pod-{i}", i, r, False, RoutingState.READY) for i, r in enumerate(ready)]
    wrong = set(rng.sample(range(count), rng.randint(1, 3)))
    stale = [
        dataclasses.replace(r, ready=not r.ready, not_ready_since=time.time() - 600 if r.ready else None)
        if r.ordinal in wrong
        else r
        for r in live
    ]
    reconciler = Reconciler(redis, prefix=prefix)
    assert await reconciler.configure(ROUTE)
    await reconciler.reconcile(ROUTE, live)
    before = await reconciler.table.snapshot(NS, "room")
    asked: list[str | None] = []

    async def confirm(name: str | None) -> list[PodRecord]:
        asked.append(name)
        return [r for r in live if name in (None, r.name)]

    result = await reconciler.reconcile(ROUTE, stale, confirm=confirm)
    assert result is not None
    assert not result.wrote
    assert not result.evictions
    assert result.snapshot.pods == before.pods
    assert asked == ([f"game-{next(iter(wrong))}"] if len(wrong) == 1 else [None])


async def test_a_one_pod_answer_that_changes_more_is_checked_against_the_full_list(redis, prefix):
    """The pod asked for comes back under another ordinal (its index label says so): the plan then
    changes more than the pod asked for, and only a full list may confirm that."""
    reconciler = await settled(redis, prefix)
    asked: list[str | None] = []

    async def confirm(name: str | None) -> list[PodRecord]:
        asked.append(name)
        if name is None:
            return LIVE
        return [dataclasses.replace(LIVE[1], ordinal=5, ready=False, not_ready_since=time.time() - 600)]

    result = await reconciler.reconcile(ROUTE, STALE, confirm=confirm)
    assert result is not None
    assert asked == ["game-1", None]
    assert not result.evictions
    assert sorted(result.snapshot.pods) == [0, 1, 2]


async def test_a_one_pod_change_beside_a_hand_off_is_checked_against_the_full_list(redis, prefix):
    """A pod terminating under Handoff is in view (one pod's state then depends on the others'):
    even a change of one pod asks for them all."""
    reconciler = Reconciler(redis, prefix=prefix)
    assert await reconciler.configure(ROUTE)
    leaving = dataclasses.replace(LIVE[2], terminating=True, deadline=time.time() + 600)
    live = [*LIVE[:2], leaving]
    await reconciler.reconcile(ROUTE, live)
    asked: list[str | None] = []

    async def confirm(name: str | None) -> list[PodRecord]:
        asked.append(name)
        return [r for r in live if name in (None, r.name)]

    result = await reconciler.reconcile(ROUTE, [*STALE[:2], leaving], confirm=confirm)
    assert result is not None
    assert asked == [None]
    assert not result.evictions
    assert 1 in result.snapshot.routable
