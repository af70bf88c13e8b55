"""A reconciliation that writes nothing and prunes nothing reads the table once (a tick, every
second per route); one that changes the table reads it again, and reports the table it wrote."""

from __future__ import annotations

import dataclasses

from stateful_route import ClientDriver, RouteTable
from stateful_route.controller.reconciler import Reconciler
from tests.store.test_confirmed_changes import LIVE, ROUTE, settled


def counted_snapshots(reconciler: Reconciler) -> list[str]:
    """The routes whose snapshot the reconciler reads from now on (each read still made)."""
    reads: list[str] = []
    real = reconciler.table.snapshot

    async def snapshot(namespace: str, service: str):  # type: ignore[no-untyped-def]
        reads.append(service)
        return await real(namespace, service)

    reconciler.table.snapshot = snapshot  # type: ignore[method-assign]
    return reads


async def test_a_reconciliation_that_changes_nothing_reads_the_table_once(redis, prefix):
    reconciler = await settled(redis, prefix)
    reads = counted_snapshots(reconciler)
    result = await reconciler.reconcile(ROUTE, LIVE)
    assert result is not None
    assert not result.wrote
    assert reads == ["room"]
    fresh = await RouteTable(redis, prefix=prefix).snapshot(ROUTE.namespace, "room")
    assert result.snapshot == fresh  # what a second read would have said


async def test_a_reconciliation_that_writes_reads_the_table_it_wrote(redis, prefix):
    reconciler = await settled(redis, prefix)
    reads = counted_snapshots(reconciler)
    drained = [*LIVE[:2], dataclasses.replace(LIVE[2], ready=False)]
    result = await reconciler.reconcile(ROUTE, drained)
    assert result is not None
    assert result.wrote
    assert len(reads) >= 2
    assert 2 not in result.snapshot.available  # NotReady: takes no new users
    assert result.snapshot == await RouteTable(redis, prefix=prefix).snapshot(ROUTE.namespace, "room")


async def test_links_placed_between_ticks_are_counted_by_the_next(redis, prefix):
    reconciler = await settled(redis, prefix)
    first = await reconciler.reconcile(ROUTE, LIVE)
    async with ClientDriver(redis, namespace=ROUTE.namespace, prefix=prefix) as client:
        for user in range(9):
            await client.compute_linked_pod(ROUTE.namespace, f"late-{user}", "room")
    second = await reconciler.reconcile(ROUTE, LIVE)
    assert first is not None
    assert second is not None
    assert sum(second.snapshot.links.values()) == sum(first.snapshot.links.values()) + 9
