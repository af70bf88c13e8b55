"""A route deleted while a replica was paused stays deleted: that replica's index may still hold
the route, and a pod event then reconciles it. Its table, gone with the route, looks like a table
Redis lost, which the reconciler claims again; it does so only if the API server does not say the
route is gone."""

from __future__ import annotations

import pytest

from stateful_route import RoutingState
from stateful_route.controller.pods import PodRecord
from stateful_route.controller.reconciler import Reconciler
from stateful_route.controller.spec import RouteRef, RouteSpec
from tests.routes import NS, keys_under

PODS = [PodRecord(f"game-{i}", f"pod-{i}", i, True, False, RoutingState.READY) for i in range(2)]
ROUTE = RouteRef(NS, "room", "uid-1", RouteSpec(stateful_set="game", service="room"))


async def two_replicas_then_deleted(redis, prefix: str) -> Reconciler:
    """Both replicas configured the route; the active one removed it; the other did not hear."""
    active, paused = Reconciler(redis, prefix=prefix), Reconciler(redis, prefix=prefix)
    for replica in (paused, active):
        assert await replica.configure(ROUTE)
        assert await replica.reconcile(ROUTE, PODS) is not None
    await active.remove(ROUTE)
    assert await keys_under(redis, prefix) == {}
    return paused


async def test_a_route_the_api_server_no_longer_lists_is_not_written_back(redis, prefix):
    paused = await two_replicas_then_deleted(redis, prefix)
    asked = []

    async def exists() -> bool:
        asked.append(True)
        return False

    assert await paused.reconcile(ROUTE, PODS, exists=exists) is None
    assert asked == [True]
    assert await keys_under(redis, prefix) == {}
    assert paused.current(ROUTE.uid) is None  # forgotten: later events do nothing either
    assert await paused.reconcile(ROUTE, PODS, exists=exists) is None
    assert await paused.configure(ROUTE) is False
    assert await keys_under(redis, prefix) == {}


@pytest.mark.parametrize("answer", [True, None, "not asked"])
async def test_a_table_lost_with_redis_is_claimed_again_while_the_route_exists_or_nobody_can_say(
    redis, prefix, answer
):
    """What the question must not prevent: the route exists (or the API server cannot be asked,
    or no one asks): its table comes back, as after Redis lost its data."""
    paused = await two_replicas_then_deleted(redis, prefix)

    async def exists() -> bool | None:
        return answer if answer != "not asked" else None

    result = await paused.reconcile(ROUTE, PODS, exists=None if answer == "not asked" else exists)
    assert result is not None
    assert sorted((await paused.table.snapshot(NS, "room")).routable) == [0, 1]
    await paused.remove(ROUTE)
