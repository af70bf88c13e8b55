"""Issue 25: a route that goes without its deletion handler leaves no table behind. Nobody would
update such a table, yet gateways keep answering from it (a wrong-pod defect). Whatever path
the deletion took, a table whose owner the API server no longer lists is removed (its links too,
unless the route kept them), at the operator's start, when kopf sees the route go, and on every
sweep while other routes tick."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from stateful_route import ClientDriver, RouteTable
from stateful_route.core.constants import PLURAL
from stateful_route.testing.sim import NS, ROUTE, STS, Cluster, operator
from tests.e2e.test_operator_defects import keys_of
from tests.e2e.test_route_lifecycle import wait_for_table
from tests.routes import poll_until


async def gone_with_links(redis: Any, prefix: str, *, kept: bool) -> bool:
    """Whether the route's table is gone: only its links (and the service in the namespace's set,
    for ``get_link_service``) left, if it kept them, else nothing at all."""
    table = RouteTable(redis, prefix=prefix)
    left = await keys_of(redis, prefix, ROUTE)
    links = [k for k in left if ":l:" in k or ":ps:" in k]
    if kept:
        return left == links and bool(links) and await table.services(NS) == [ROUTE]
    return not left and await table.services(NS) == []


async def nothing_left(redis: Any, prefix: str, services: list[str]) -> bool:
    """Whether the route left no key, and the namespace's set holds just ``services``."""
    table = RouteTable(redis, prefix=prefix)
    return await keys_of(redis, prefix, ROUTE) == [] and await table.services(NS) == services


async def settled(check: Callable[[], Awaitable[bool]], within: float = 3) -> None:
    """Wait for ``check()``; the test's own assertions then say what is left, if anything."""
    with contextlib.suppress(TimeoutError):
        await poll_until(check, within=within, every=0.05)


async def place(redis: Any, prefix: str, users: int) -> None:
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        for i in range(users):
            await client.compute_linked_pod(NS, f"u{i}", ROUTE)


async def test_a_route_deleted_before_kopf_put_its_finalizer_on_it_leaves_no_table(
    cluster: Cluster, redis, redis_url, prefix
):
    """kopf starts a new route's timer in the same cycle that asks for its finalizer: the route's
    first ticks ran (and claimed and wrote its table) before the finalizer was on it, so a
    deletion in between removed the route at once and route_deleted never ran."""
    await cluster.create_stateful_set(3)
    for index in range(3):
        await cluster.create_pod(index)
    asked, release = asyncio.Event(), asyncio.Event()
    handle = cluster.api._handle

    async def finalizer_held(request: Any) -> Any:
        resource = request.resource
        if (
            request.method.value == "PATCH"
            and resource is not None
            and resource.plural == PLURAL
            and "finalizers" in json.dumps(request.data)  # kopf sends a JSON patch
        ):
            asked.set()
            await release.wait()
        return await handle(request)

    cluster.api._handle = finalizer_held
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix, reconcile_interval=0.05):
        await cluster.create_route()
        await asyncio.wait_for(asked.wait(), 5)
        await asyncio.sleep(0.5)  # ten ticks while the finalizer is on its way
        await cluster.delete_route()  # no finalizer yet: the route is gone at once
        release.set()

        await settled(lambda: nothing_left(redis, prefix, []))
        assert await keys_of(redis, prefix, ROUTE) == []
        assert await table.services(NS) == []


@pytest.mark.parametrize("kept", [False, True], ids=["links-removed", "links-kept"])
async def test_a_table_whose_route_went_while_no_operator_ran_is_removed_at_start(
    cluster: Cluster, redis, redis_url, prefix, kept
):
    """A route stuck in deletion while the operator is down, its finalizer removed by hand."""
    await cluster.start(3, keepLinksOnDelete=kept)
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix, reconcile_interval=0.1):
        await wait_for_table(table, [0, 1, 2])
        await place(redis, prefix, 20)
    await cluster.delete_route()
    await cluster.remove_route_finalizers()
    assert not await cluster.routes()
    async with operator(cluster, redis_url, prefix, reconcile_interval=0.1):
        assert await gone_with_links(redis, prefix, kept=kept)  # the start swept it


async def test_a_table_whose_route_went_unseen_is_removed_while_other_routes_tick(
    cluster: Cluster, redis, redis_url, prefix
):
    """The watch never tells of the deletion: the sweep of another route's tick finds the table."""
    await cluster.start(3)
    await cluster.create_route("other", statefulSetName=STS, service="lobby")
    table = RouteTable(redis, prefix=prefix)
    options = {"reconcile_interval": 0.1, "census_interval": 0.3}
    async with operator(cluster, redis_url, prefix, **options):
        await wait_for_table(table, [0, 1, 2])
        await place(redis, prefix, 20)
        cluster.lose_route_deletion()

        await settled(lambda: nothing_left(redis, prefix, ["lobby"]))
        assert await keys_of(redis, prefix, ROUTE) == []
        assert await table.services(NS) == ["lobby"]
        assert (await table.snapshot(NS, "lobby")).pods  # the other route's table is left alone
