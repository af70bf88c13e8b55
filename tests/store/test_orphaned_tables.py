"""Orphaned tables (issue 25): a table whose owner the API server no longer lists is removed by
the sweep, as its route said (links kept or not), unless a listed route names the service (the
route keeping it adopts the table); the removal is fenced by the owner it read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from stateful_route import ClientDriver, PodState, RouteTable, RoutingState
from stateful_route.controller.pods import PodRecord
from stateful_route.controller.reconciler import Reconciler
from stateful_route.controller.spec import Listed, RouteRef, RouteSpec
from stateful_route.core.errors import NotOwner
from tests.routes import NS, keys_under

PODS = [PodRecord(f"game-{i}", f"pod-{i}", i, True, False, RoutingState.READY) for i in range(2)]


def route(uid: str, service: str, *, keep_links: bool = False) -> RouteRef:
    spec = RouteSpec(stateful_set="game", service=service, keep_links_on_delete=keep_links)
    return RouteRef(NS, f"route-{uid}", uid, spec)


async def written(reconciler: Reconciler, *routes: RouteRef) -> None:
    for made in routes:
        assert await reconciler.configure(made)
        assert await reconciler.reconcile(made, PODS) is not None


def answer(listed: Listed | None) -> Callable[[], Awaitable[Listed | None]]:
    async def listed_now() -> Listed | None:
        return listed

    return listed_now


async def test_the_sweep_removes_only_tables_no_listed_route_owns_or_names(redis, prefix):
    reconciler = Reconciler(redis, prefix=prefix)
    live, dead, adopted = route("live", "room"), route("dead", "lobby"), route("dead-2", "hall")
    await written(reconciler, live, dead, adopted)
    # "hall" is named by a live route (refused until now): it is left to that route to adopt.
    listed = Listed(frozenset({"live", "refused"}), frozenset({"room", "hall"}))
    assert await reconciler.sweep(NS, answer(listed)) == ["lobby"]
    table = RouteTable(redis, prefix=prefix)
    assert await table.services(NS) == ["hall", "room"]
    assert await table.owner(NS, "lobby") is None
    assert not (await table.snapshot(NS, "lobby")).pods
    assert (await table.snapshot(NS, "room")).pods
    assert await table.owner(NS, "hall") == "dead-2"
    assert await reconciler.configure(dead) is False  # a route proved gone is never written again


async def test_an_orphaned_table_keeps_its_links_if_its_route_said_so(redis, prefix):
    reconciler = Reconciler(redis, prefix=prefix)
    await written(reconciler, route("dead", "room", keep_links=True))
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        for i in range(5):
            await client.compute_linked_pod(NS, f"u{i}", "room")
    assert await reconciler.sweep(NS, answer(Listed(frozenset(), frozenset()))) == ["room"]
    left = {k.decode().rpartition("}:")[2] for k in await keys_under(redis, prefix)}
    assert {f"l:u{i}" for i in range(5)} <= left
    assert not left & {"pods", "cfg", "ids", "avail"}  # the table went
    assert await RouteTable(redis, prefix=prefix).services(NS) == ["room"]  # links still findable


async def test_nothing_is_removed_when_the_api_server_cannot_say(redis, prefix):
    reconciler = Reconciler(redis, prefix=prefix)
    await written(reconciler, route("dead", "room"))
    before = await keys_under(redis, prefix)
    assert await reconciler.sweep(NS, answer(None)) == []
    assert await keys_under(redis, prefix) == before


async def test_a_table_claimed_while_the_routes_are_listed_is_not_removed(redis, prefix):
    """The owner is read before the list: a route claiming the table meanwhile keeps it."""
    reconciler, other = Reconciler(redis, prefix=prefix), Reconciler(redis, prefix=prefix)
    await written(reconciler, route("dead", "room"))
    newcomer = route("new", "room")

    async def listed() -> Listed:
        await written(other, newcomer)  # claimed after the sweep read the dead owner
        return Listed(frozenset(), frozenset())  # an older list: neither route in it

    await reconciler.sweep(NS, listed)
    table = RouteTable(redis, prefix=prefix)
    assert await table.owner(NS, "room") == "new"
    assert sorted((await table.snapshot(NS, "room")).pods) == [0, 1]


async def test_disowning_a_vanished_route_removes_every_table_it_owns_and_no_other(redis, prefix):
    """By uid alone: a route that vanished may have had an invalid last spec, or another service."""
    reconciler = Reconciler(redis, prefix=prefix)
    gone, other = route("gone", "room"), route("other", "lobby")
    await written(reconciler, gone, other)
    removal = await reconciler.disown(NS, "gone")
    assert removal.pods == [0, 1]
    table = RouteTable(redis, prefix=prefix)
    assert await table.services(NS) == ["lobby"]
    assert await reconciler.reconcile(gone, PODS) is None
    assert (await reconciler.disown(NS, "gone")).pods == []  # once is enough


async def test_the_sweep_takes_out_of_the_set_services_with_neither_table_nor_links(redis, prefix):
    reconciler = Reconciler(redis, prefix=prefix)
    await written(reconciler, route("live", "room"), route("kept", "hall", keep_links=True))
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        await client.compute_linked_pod(NS, "u", "hall")
    await reconciler.remove(route("kept", "hall", keep_links=True))  # its links stay
    await redis.sadd(reconciler.table.keyring.services(NS), "lobby")  # a writer racing a deletion
    listed = Listed(frozenset({"live"}), frozenset({"room"}))
    assert await reconciler.sweep(NS, answer(listed)) == []
    assert await reconciler.table.services(NS) == ["hall", "room"]


async def test_a_write_refused_for_want_of_a_table_leaves_the_set_as_it_was(redis, prefix):
    table = RouteTable(redis, prefix=prefix)
    with pytest.raises(NotOwner):
        await table.put_pods(NS, "room", [PodState(0)], owner="gone")
    assert await table.services(NS) == []


async def test_the_namespaces_with_services_are_found_for_the_start_sweep(redis, prefix):
    """Watching every namespace, the start sweeps those that have services in Redis."""
    reconciler = Reconciler(redis, prefix=prefix)
    await written(reconciler, route("a", "room"))
    other = RouteRef("other-ns", "r", "b", RouteSpec(stateful_set="game", service="lobby"))
    await written(reconciler, other)
    assert await reconciler.table.namespaces() == sorted([NS, "other-ns"])
