"""The reconciler writes a route only with the spec it last configured, never after the route's
removal, and never over a table another route owns; Redis refuses the writes that slip past."""

from __future__ import annotations

import pytest

from stateful_route import PodState, RoutingState
from stateful_route.controller.pods import PodRecord
from stateful_route.controller.reconciler import Reconciler
from stateful_route.controller.spec import RouteRef, RouteSpec
from stateful_route.core.errors import NotOwner
from tests.routes import NS, keys_under

RECORDS = [PodRecord(f"game-{i}", f"pod-{i}", i, True, False, RoutingState.READY) for i in range(2)]


def route(service: str, uid: str = "uid-1", name: str = "room") -> RouteRef:
    return RouteRef(NS, name, uid, RouteSpec(stateful_set="game", service=service))


async def keys_of(redis, prefix: str, service: str) -> list[bytes]:
    return sorted(k for k in await keys_under(redis, prefix) if f"{{{NS}/{service}}}".encode() in k)


async def test_a_reconcile_carrying_an_older_spec_writes_nothing(redis, prefix):
    """Issue 11, "a route_tick that ran with the old spec right after a spec update": confirmed.
    kopf hands a timer the body as it was when the tick began, and the reconciler wrote whatever
    spec it was given, so a tick spanning an update wrote the old service's table back after the
    update had moved the route. Now only the spec last configured is reconciled."""
    reconciler = Reconciler(redis, prefix=prefix)
    old, new = route("room"), route("lobby")
    assert await reconciler.configure(old)
    assert await reconciler.reconcile(old, RECORDS) is not None
    assert await reconciler.configure(new, old)  # the update handler: the old service is left
    assert await reconciler.reconcile(old, RECORDS) is None  # the tick that began before it
    assert await reconciler.reconcile(new, RECORDS) is not None
    assert await keys_of(redis, prefix, "room") == []
    assert sorted((await reconciler.table.snapshot(NS, "lobby")).pods) == [0, 1]


async def test_a_removed_route_is_never_written_again(redis, prefix):
    reconciler = Reconciler(redis, prefix=prefix)
    room = route("room")
    assert await reconciler.configure(room)
    await reconciler.reconcile(room, RECORDS)
    await reconciler.remove(room)
    assert await reconciler.reconcile(room, RECORDS) is None  # a pod event still in flight
    assert not await reconciler.configure(room)  # a tick or a retry still in flight
    assert await keys_of(redis, prefix, "room") == []
    # A writer that slipped past all that (another process still holding the route) is refused.
    with pytest.raises(NotOwner) as refused:
        await reconciler.table.put_pods(NS, "room", [PodState(0)], owner=room.uid)
    assert not refused.value.claimed
    assert await keys_of(redis, prefix, "room") == []


async def test_a_table_owned_by_another_route_is_neither_written_nor_removed(redis, prefix):
    reconciler = Reconciler(redis, prefix=prefix)
    first, second = route("room"), route("room", uid="uid-2", name="rival")
    assert await reconciler.configure(first)
    await reconciler.reconcile(first, RECORDS[:1])
    before = await keys_under(redis, prefix)
    with pytest.raises(NotOwner) as refused:
        await reconciler.table.put_pods(NS, "room", [PodState(5)], owner=second.uid)
    assert refused.value.claimed
    assert not await reconciler.configure(second, claim=False)  # refused: it only leaves
    await reconciler.remove(second)  # deleting the refused route removes nothing of the first
    assert await keys_under(redis, prefix) == before


async def test_a_route_moved_while_its_old_spec_was_forgotten_leaves_its_old_table(redis, prefix):
    """SR_SCENARIO_SEED=4087537571: r2 owned "lobby"; the operator restarted, and r2's first event
    was its update to "room", which r3 owns, so r2 was refused. The refusal only left a table the
    reconciler remembered (none after the restart), so "lobby" stayed, owned by a route that no
    longer names it. Any other service whose table the route owns is left now, and on deletion."""
    r2, r3 = route("lobby", uid="uid-2", name="r2"), route("room", uid="uid-3", name="r3")
    before = Reconciler(redis, prefix=prefix)
    assert await before.configure(r2)
    await before.reconcile(r2, RECORDS)
    assert await before.configure(r3)
    await before.reconcile(r3, RECORDS)
    restarted = Reconciler(redis, prefix=prefix)  # remembers no spec
    moved = route("room", uid="uid-2", name="r2")
    assert not await restarted.configure(moved, claim=False)  # refused: r3 keeps "room"
    assert await keys_of(redis, prefix, "lobby") == []
    assert await restarted.table.services(NS) == ["room"]
    assert await restarted.table.owner(NS, "room") == r3.uid
    # And a route deleted by an operator that never saw its old spec leaves its old table too.
    r1 = route("lobby", uid="uid-1", name="r1")
    assert await before.configure(r1)
    await before.reconcile(r1, RECORDS)
    await Reconciler(redis, prefix=prefix).remove(route("room", uid="uid-1", name="r1"))
    assert await keys_of(redis, prefix, "lobby") == []
    assert await keys_of(redis, prefix, "room")  # r3's, untouched
