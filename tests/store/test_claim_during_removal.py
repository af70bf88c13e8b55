"""A route that claims a service while the operator is still removing the table of the route that
had it (randomized operator scenario seed 2743674520: r2 deleted, r3 created on the same service).
The removal deleted the table, then swept every key under the service's prefix and took the
service out of the namespace's set; r3's claim landed in between, so the sweep deleted r3's new
policy or the set lost the service for good (r3's table of no pods never changed again, so nothing
listed it again): `get_link_service` and the orphan census no longer saw a live route's table."""

from __future__ import annotations

import asyncio

from stateful_route import RouteTable
from stateful_route.controller.reconciler import Reconciler
from stateful_route.controller.spec import RouteRef, RouteSpec
from tests.routes import NS

SERVICE = "lobby"


def route(uid: str) -> RouteRef:
    return RouteRef(NS, f"route-{uid}", uid, RouteSpec(stateful_set="game", service=SERVICE))


async def test_a_claim_made_while_the_previous_owners_table_is_removed_keeps_its_table(redis, prefix):
    reconciler = Reconciler(redis, prefix=prefix)
    table = RouteTable(redis, prefix=prefix)
    old, new = route("old"), route("new")
    assert await reconciler.configure(old)
    assert await reconciler.reconcile(old, []) is not None

    # Hold the removal between deleting the table and sweeping the service's keys, where the
    # new route's claim landed in the scenario.
    entered, release = asyncio.Event(), asyncio.Event()
    sweep = reconciler.store.delete_route

    async def held_sweep(*args, **kwargs):
        entered.set()
        await release.wait()
        return await sweep(*args, **kwargs)

    reconciler.store.delete_route = held_sweep  # type: ignore[method-assign]
    removal = asyncio.create_task(reconciler.remove(old))
    await asyncio.wait_for(entered.wait(), 5)
    claim = asyncio.create_task(reconciler.configure(new))
    await asyncio.sleep(0.2)  # an unserialized claim is done by now
    release.set()
    await asyncio.wait_for(removal, 5)
    assert await asyncio.wait_for(claim, 5)
    assert await reconciler.reconcile(new, []) is not None

    assert await table.owner(NS, SERVICE) == "new"
    assert SERVICE in await table.services(NS)
