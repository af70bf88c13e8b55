"""The operator migrates a route the layout-1 release wrote when it starts, and says so where
kubectl shows it: ``status.layout``, ``status.migration``, and Events at the start and the end."""

from __future__ import annotations

from stateful_route import RouteTable
from stateful_route.core.constants import LAYOUT
from stateful_route.testing.sim import NS, ROUTE, operator
from tests.routes import poll_until
from tests.store.layout_1 import OldRelease

READY = "1,0,0,0"
PODS = 4
USERS = 400


async def test_a_migration_shows_in_the_routes_status_and_events(cluster, redis, redis_url, prefix):
    await cluster.start(PODS)
    uid = (await cluster.route())["metadata"]["uid"]
    old = OldRelease(redis, prefix, ns=NS, service=ROUTE)  # the old release's operator and clients
    await old.configure(owner=uid)
    await old.put_pods(dict.fromkeys(range(PODS), READY), owner=uid)
    for i in range(USERS):
        pod = int((await old.place(f"user-{i}"))[0])
        if i % 4 == 0:
            await old.set_linked_pod(f"user-{i}", pod)
    assert await redis.hget(old.base + "cfg", "layout") is None

    async with operator(cluster, redis_url, prefix):

        async def migrated() -> bool:
            found = (await cluster.route()).get("status", {})
            return found.get("migration", {}).get("state") == "Succeeded" and "links" in found

        await poll_until(migrated, within=15)
        status = (await cluster.route())["status"]
        events = [e for e in await cluster.events() if e["involvedObject"]["name"] == ROUTE]

    assert status["layout"] == LAYOUT
    migration = status["migration"]
    assert "layoutBefore" not in migration  # the old release recorded none
    assert (migration["layoutAfter"], migration["moved"]) == (LAYOUT, USERS)
    assert migration["startedAt"] <= migration["finishedAt"]
    assert f"{USERS} links moved into shards" in migration["message"]
    assert status["links"] == USERS  # counts exact: every old link found in the shards
    reasons = [e["reason"] for e in events]
    assert "MigrationStarted" in reasons
    assert "Migrated" in reasons
    assert reasons.index("MigrationStarted") < reasons.index("Migrated"), reasons
    per_pod = {row["index"]: row["links"] for row in status["pods"]}
    assert (await RouteTable(redis, prefix=prefix).snapshot(NS, ROUTE)).links == per_pod


async def test_a_route_of_this_layout_shows_its_layout_and_no_migration(cluster, redis, redis_url, prefix):
    await cluster.start(2)
    async with operator(cluster, redis_url, prefix):

        async def written() -> bool:
            return "layout" in (await cluster.route()).get("status", {})

        await poll_until(written, within=10)
        status = (await cluster.route())["status"]
        events = [e["reason"] for e in await cluster.events() if e["involvedObject"]["name"] == ROUTE]
    assert status["layout"] == LAYOUT
    assert "migration" not in status
    assert not {"MigrationStarted", "Migrated"} & set(events)
