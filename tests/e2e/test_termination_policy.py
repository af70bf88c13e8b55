"""spec.onTermination: with Handoff a terminating pod that is still Ready keeps its users (taking
no new ones) until the first of four triggers; with Evict its users go at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from stateful_route import ClientDriver, RouteTable, RoutingState, ServerDriver
from stateful_route.cli.admin import Admin
from stateful_route.testing.sim import NS, ROUTE, Cluster
from tests.e2e.test_route_lifecycle import running_route, status_of, wait_for_table
from tests.routes import poll_until

USERS = 300
LEAVING = 2


async def links_on(table: RouteTable, pod: int) -> int:
    return (await table.snapshot(NS, ROUTE)).links.get(pod, 0)


async def evicted(table: RouteTable, within: float) -> float:
    """Seconds until the leaving pod holds no links."""
    started = time.monotonic()

    async def empty() -> bool:
        return await links_on(table, LEAVING) == 0

    await poll_until(empty, within=within, every=0.05)
    return time.monotonic() - started


async def placed(client: ClientDriver) -> dict[str, int]:
    return {f"u{i}": await client.compute_linked_pod(NS, f"u{i}", ROUTE) for i in range(USERS)}


async def kept_while_terminating(
    cluster: Cluster, table: RouteTable, client: ClientDriver, redis: Any, prefix: str, grace: float
) -> list[str]:
    """Terminate the leaving pod and check it keeps its users, takes no new ones and shows as
    Terminating with its deadline; returns its users."""
    users = await placed(client)
    mine = sorted(uid for uid, pod in users.items() if pod == LEAVING)
    assert len(mine) == USERS // 3
    await cluster.terminate(LEAVING, grace)
    await wait_for_table(table, [0, 1])
    assert await links_on(table, LEAVING) == len(mine)
    assert await client.is_pod_routable(NS, ROUTE, LEAVING)
    assert {await client.compute_linked_pod(NS, f"new-{i}", ROUTE) for i in range(30)} == {0, 1}
    assert {await client.compute_linked_pod(NS, uid, ROUTE) for uid in mine} == {LEAVING}

    rows = await Admin(redis, prefix=prefix, timeout=2).pods(NS, ROUTE)
    row = next(r for r in rows if r["pod"] == LEAVING)
    assert row["state"] == "Terminating"
    assert row["terminating_until"].endswith("Z")

    async def status_says_terminating() -> bool:
        pods = (await status_of(cluster)).get("pods", [])
        return any(p["index"] == LEAVING and p["state"] == "Terminating" for p in pods)

    await poll_until(status_says_terminating, within=5, every=0.1)
    (entry,) = [p for p in (await status_of(cluster))["pods"] if p["index"] == LEAVING]
    assert entry["terminatingUntil"] == row["terminating_until"]
    assert entry["routable"]
    assert not entry["available"]
    return mine


async def run_trigger(
    cluster: Cluster,
    redis: Any,
    redis_url: str,
    prefix: str,
    trigger: Callable[[], Awaitable[None]],
    *,
    grace: float = 60,
) -> tuple[dict[str, int], float]:
    """Start, check the Handoff hold, pull ``trigger``; the leaving pod's users' pods after, and
    how long the eviction took."""
    async with running_route(cluster, redis, redis_url, prefix, 3, rebind="Eager") as (table, client):
        mine = await kept_while_terminating(cluster, table, client, redis, prefix, grace)
        await trigger()
        took = await evicted(table, within=5)
        after = {uid: await client.compute_linked_pod(NS, uid, ROUTE) for uid in mine}
    assert len(after) == USERS // 3
    return after, took


async def test_handoff_keeps_users_until_the_pod_reports_shutdown(cluster, redis, redis_url, prefix):
    async def shutdown() -> None:
        server = ServerDriver(redis, namespace=NS, service=ROUTE, pod_index=LEAVING, prefix=prefix)
        await server.set_routing_state(RoutingState.SHUTDOWN)

    after, _ = await run_trigger(cluster, redis, redis_url, prefix, shutdown)
    assert set(after.values()) == {0, 1}


async def test_handoff_keeps_users_until_the_pod_stops_being_ready(cluster, redis, redis_url, prefix):
    # NotReady while terminating needs no unroutableGraceSeconds (10 s): it is evicted at once.
    after, took = await run_trigger(
        cluster, redis, redis_url, prefix, lambda: cluster.set_ready(LEAVING, False)
    )
    assert set(after.values()) == {0, 1}
    assert took < 3


async def test_handoff_keeps_users_until_the_deletion_timestamp_passes(cluster, redis, redis_url, prefix):
    grace = 4.0
    marked = time.time()

    async def wait_for_deadline() -> None:
        await asyncio.sleep(max(0.0, marked + grace - 1.5 - time.time()))
        assert await links_on(RouteTable(redis, prefix=prefix), LEAVING) > 0  # still kept just before

    after, _ = await run_trigger(cluster, redis, redis_url, prefix, wait_for_deadline, grace=grace)
    assert time.time() >= marked + grace - 1  # the deadline is written to the second
    assert "deletionTimestamp" in (await cluster.pod(LEAVING))["metadata"]  # the pod is still there
    assert set(after.values()) == {0, 1}


async def test_handoff_keeps_users_until_the_pod_is_gone(cluster, redis, redis_url, prefix):
    after, took = await run_trigger(cluster, redis, redis_url, prefix, lambda: cluster.delete_pod(LEAVING))
    assert set(after.values()) == {0, 1}
    assert took < 3


async def test_evict_policy_evicts_a_terminating_pod_at_once(cluster, redis, redis_url, prefix):
    spec = {"rebind": "Eager", "onTermination": "Evict"}
    async with running_route(cluster, redis, redis_url, prefix, 3, **spec) as (table, client):
        users = await placed(client)
        mine = [uid for uid, pod in users.items() if pod == LEAVING]
        await cluster.terminate(LEAVING, 60)
        assert await evicted(table, within=3) < 3
        assert not await client.is_pod_routable(NS, ROUTE, LEAVING)
        assert {await client.compute_linked_pod(NS, uid, ROUTE) for uid in mine} <= {0, 1}
        rows = await Admin(redis, prefix=prefix, timeout=2).pods(NS, ROUTE)
        assert next(r for r in rows if r["pod"] == LEAVING)["state"] == "NotReady"
        messages = [e["message"] for e in await cluster.events() if e.get("reason") == "Evicted"]
        assert messages == [f"evicted {len(mine)} links from pod {LEAVING}: terminating; rebound {len(mine)}"]
