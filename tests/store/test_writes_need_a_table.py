"""Links and reports are written only into a route that has a table: after the table is deleted
(or before it is first written), every call that would write one raises NoAvailablePod and
writes nothing, decided inside the same Lua script as the write, so nothing written after a
deletion outlives it (review: writes without a table, deletion mid-churn)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from stateful_route import ClientDriver, NoAvailablePod, RoutingState, ServerDriver
from stateful_route.controller.reconciler import Reconciler
from stateful_route.controller.spec import RouteRef, RouteSpec
from stateful_route.core.errors import StatefulRouteError
from tests.routes import NS, SVC, keys_under, make_route

WRITES: dict[str, Callable[[ClientDriver, ServerDriver], Awaitable[object]]] = {
    "set_linked_pod_if_absent": lambda c, s: c.set_linked_pod_if_absent(NS, "ua", SVC, 1),
    "compute_linked_pod": lambda c, s: c.compute_linked_pod(NS, "ub", SVC),
    "set_linked_pod": lambda c, s: s.set_linked_pod("uc"),
    "try_set_linked_pod": lambda c, s: s.try_set_linked_pod("ud"),
    "set_load_state": lambda c, s: s.set_load_state(3),
    "set_routing_state": lambda c, s: s.set_routing_state(RoutingState.DENY_NEW_CALL),
}


@pytest.mark.parametrize("created", [True, False], ids=["deleted", "never-created"])
@pytest.mark.parametrize("call", sorted(WRITES))
async def test_no_write_into_a_route_without_a_table(redis, prefix, call, created):
    if created:
        table = await make_route(redis, prefix, pods=2)
        await table.delete(NS, SVC)
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        server = ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix)
        before = await keys_under(redis, prefix)
        with pytest.raises(NoAvailablePod) as raised:
            await WRITES[call](client, server)
        assert (raised.value.namespace, raised.value.service) == (NS, SVC)
        assert await keys_under(redis, prefix) == before


@pytest.mark.parametrize("created", [True, False], ids=["deleted", "never-created"])
async def test_a_pod_of_a_route_without_a_table_leaves_no_trace(redis, prefix, created):
    """Not even its service in the namespace's set (issue 25: the set listed a service with no
    route after a pod of a just-deleted route reported Shutdown)."""
    if created:
        table = await make_route(redis, prefix, pods=2)
        await table.delete(NS, SVC)
    before = await keys_under(redis, prefix)
    async with ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix) as server:
        with pytest.raises(NoAvailablePod):
            await server.set_routing_state(RoutingState.SHUTDOWN)
    assert await keys_under(redis, prefix) == before


async def test_a_removal_keeps_no_link_once_the_table_is_gone(redis, prefix):
    table = await make_route(redis, prefix, pods=2)
    server = ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix)
    await server.set_linked_pod("u")
    await table.delete(NS, SVC, keep_service=True)  # the links stay, the table goes
    assert await server.remove_linked_pod("u", keep_seconds=60)
    left = {key.decode() for key in await keys_under(redis, prefix)}
    assert not any(":l:" in key or ":ps:" in key for key in left), left


async def test_deleting_a_route_mid_churn_leaves_nothing_behind(redis, prefix, make_redis):
    """Gateways place and pods confirm and report while the route is deleted: once they stop,
    nothing of the route is left (no report, no link, no pod set)."""
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    await make_route(redis, prefix, pods=3)
    stop = asyncio.Event()
    refused: dict[str, int] = {}

    async def gateway(client: ClientDriver, rnd: random.Random) -> None:
        while not stop.is_set():
            try:
                await client.compute_linked_pod(NS, f"u{rnd.randrange(200)}", SVC)
                await client.set_linked_pod_if_absent(NS, f"u{rnd.randrange(200)}", SVC, rnd.randrange(3))
            except NoAvailablePod:
                refused["gateway"] = refused.get("gateway", 0) + 1
            await asyncio.sleep(0)

    async def pod(server: ServerDriver, rnd: random.Random) -> None:
        while not stop.is_set():
            try:
                await server.set_load_state(rnd.randrange(10))
                await server.set_linked_pod(f"u{rnd.randrange(200)}")
                await server.set_routing_state(RoutingState.READY)
            except StatefulRouteError:
                refused["pod"] = refused.get("pod", 0) + 1
            await asyncio.sleep(0)

    async with (
        ClientDriver(make_redis(), namespace=NS, prefix=prefix) as g1,
        ClientDriver(make_redis(), namespace=NS, prefix=prefix) as g2,
    ):
        rnd = random.Random(seed)
        servers = [
            ServerDriver(make_redis(), namespace=NS, service=SVC, pod_index=i, prefix=prefix)
            for i in range(3)
        ]
        tasks = [asyncio.create_task(gateway(g, random.Random(rnd.random()))) for g in (g1, g2)]
        tasks += [asyncio.create_task(pod(s, random.Random(rnd.random()))) for s in servers]
        await asyncio.sleep(0.3)
        route = RouteRef(NS, "route", "uid-1", RouteSpec(stateful_set="game", service=SVC))
        await Reconciler(redis, prefix=prefix).remove(route)
        await asyncio.sleep(0.3)  # the writers go on against the deleted route
        stop.set()
        await asyncio.gather(*tasks)
    assert refused.get("gateway"), refused  # they did write after the deletion
    assert refused.get("pod"), refused
    assert await keys_under(redis, prefix) == {}
