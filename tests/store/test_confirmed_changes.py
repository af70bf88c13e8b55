"""A change to a route's table is made only as a fresh list of the pods confirms it: a stale
index (a replica resumed after a peering pause) neither evicts a Ready pod nor writes it
unroutable."""

from __future__ import annotations

import dataclasses
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

    async def confirm() -> list[PodRecord]:
        asked.append(True)
        return LIVE

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

    async def failing() -> None:
        return None

    result = await reconciler.reconcile(ROUTE, STALE, confirm=None if confirm == "none" else failing)
    assert result is not None
    assert [e.pod for e in result.evictions] == [1]
    assert 1 not in result.snapshot.routable


async def test_no_list_is_taken_when_nothing_changes(redis, prefix):
    reconciler = await settled(redis, prefix)

    async def confirm() -> list[PodRecord]:
        raise AssertionError("listed although the index changes nothing")

    assert await reconciler.reconcile(ROUTE, LIVE, confirm=confirm) is not None
