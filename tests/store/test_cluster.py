"""The same behaviours on a 3-master Redis Cluster as on one server: no CROSSSLOT, same results."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stateful_route import ClientDriver, PodState, RouteTable, ServerDriver
from stateful_route.store.connection import AnyRedis, connect, is_cluster_url
from stateful_route.store.eviction import evict
from stateful_route.store.keys import Keyring
from stateful_route.store.links import LinkStore
from stateful_route.store.migration import Migrator
from stateful_route.testing.cleanup import delete_prefix
from tests.routes import NS, poll_until
from tests.store.layout_1 import OldRelease

ROOM, LOBBY = "room", "lobby"


async def scenario(redis: AnyRedis, prefix: str) -> dict[str, Any]:
    """Every core behaviour once; returns what each step answered."""
    table = RouteTable(redis, prefix=prefix)
    await table.put_pods(NS, ROOM, [PodState(i) for i in range(4)])
    await table.put_pods(NS, LOBBY, [PodState(i) for i in range(2)])
    seen: dict[str, Any] = {}
    users = [f"user-{i}" for i in range(400)]
    async with (
        ClientDriver(redis, namespace=NS, prefix=prefix) as client,
        ClientDriver(redis, namespace=NS, prefix=prefix) as other,
    ):
        seen["placed"] = [await client.compute_linked_pod(NS, uid, ROOM) for uid in users]
        seen["other agrees"] = [await other.compute_linked_pod(NS, uid, ROOM) for uid in users]
        seen["lobby"] = [await client.compute_linked_pod(NS, uid, LOBBY) for uid in users[:10]]
        seen["services"] = await client.get_link_service(NS, "user-1")
        seen["batch"] = await client.batch_get_linked_pod(NS, users, ROOM)
        seen["if absent"] = [
            await client.set_linked_pod_if_absent(NS, "newcomer", ROOM, 3),
            await other.set_linked_pod_if_absent(NS, "newcomer", ROOM, 1),
        ]
        server = ServerDriver(redis, namespace=NS, service=ROOM, pod_index=2, prefix=prefix)
        seen["persist"] = await server.set_linked_pod("user-2")
        seen["remove wrong pod"] = await server.remove_linked_pod_with_id("user-3", 0)
        seen["stored"] = await client.get_linked_pod_not_cache(NS, "user-2", ROOM)
        await table.configure(NS, ROOM, max_links_per_pod=1000, link_ttl=600)
        await server.set_load_state(0)  # a report re-scores the pod (one slot too)
        store = LinkStore(redis, Keyring(prefix))
        moved = await store.place(Keyring(prefix).route(NS, ROOM), "user-5", 300, exclude=1)
        seen["moved off 1"] = moved and (moved.pod, moved.ttl)

        await table.update_pod(NS, ROOM, PodState(0, terminating=True))
        done = await evict(store, Keyring(prefix).route(NS, ROOM), 0, reason="test", rebind_ttl=300)
        seen["evicted"] = (done.removed, done.rebound)

        async def followed() -> bool:  # the change channel reaches the client's view
            return await client.routable_pods(NS, ROOM) == [1, 2, 3]

        await poll_until(followed, within=1.5)
        # Which rebound user lands where depends on their order in pod 0's set (by expiry, in ms),
        # which differs between two concurrent runs; how many land where does not.
        after = await other.batch_get_linked_pod(NS, users, ROOM)
        seen["after eviction"] = {pod: len(uids) for pod, uids in after.items()}
        evicted = {uid for i, uid in enumerate(users) if seen["placed"][i] == 0}
        seen["others stayed"] = all(
            seen["placed"][int(uid.removeprefix("user-"))] == pod
            for pod, uids in after.items()
            for uid in uids
            if uid not in evicted and uid != "user-5"
        )
        seen["links"] = (await table.snapshot(NS, ROOM)).links
        seen["pod 2 users"] = len([uid async for uid in server.linked_users()])
        seen["handed off"] = await server.hand_off("user-2")  # persistent on pod 2, one slot too
        seen["hand off again"] = await server.hand_off("user-2")
        seen["pod 2 users after"] = len([uid async for uid in server.linked_users()])
        seen["subscribed"] = client.subscribed.is_set()
        # Versions of routes in different slots (one MGET per slot on a cluster), and the
        # mirror's passes, which read them.
        seen["versions"] = await table.versions([(NS, ROOM), (NS, LOBBY), (NS, "none")])
        await poll_until(lambda: asyncio.sleep(0, client._mirror.probes >= 2), within=3)
    return seen


@pytest.fixture
async def cluster_redis(redis_cluster_url: str, prefix: str):
    client = connect(redis_cluster_url)
    yield client
    await delete_prefix(client, prefix)
    await client.aclose()


async def test_a_cluster_gives_the_same_answers_as_one_server(
    cluster_redis, redis, prefix, redis_cluster_url
):
    assert is_cluster_url(redis_cluster_url)
    on_cluster, on_one = await asyncio.gather(scenario(cluster_redis, prefix), scenario(redis, prefix))
    assert on_cluster == on_one
    assert on_one["placed"] == on_one["other agrees"]
    assert sorted(on_one["placed"].count(p) for p in range(4)) == [100, 100, 100, 100]
    assert on_one["services"] == {ROOM: on_one["placed"][1], LOBBY: on_one["lobby"][1]}
    assert on_one["if absent"] == [3, 3]
    assert on_one["placed"][5] == 1
    assert on_one["moved off 1"] == (0, 600)  # the best pod but 1, with the route's link TTL
    assert on_one["others stayed"]
    assert on_one["evicted"] == (101, 101)  # user-5 joined pod 0
    links = on_one["links"]
    assert (links[0], sum(links.values())) == (0, 401)  # 400 users and the newcomer
    assert max(links.values()) - min(links[p] for p in (1, 2, 3)) <= 2
    assert on_one["handed off"] in (1, 3)  # the best pod but 2 (pod 0 is terminating)
    assert on_one["hand off again"] is None  # no longer linked to pod 2
    assert on_one["pod 2 users after"] == on_one["pod 2 users"] - 1 == links[2] - 1
    assert on_one["subscribed"] is True
    assert on_one["versions"][2] == 0
    assert on_one["versions"][:2] == [
        (await RouteTable(redis, prefix=prefix).snapshot(NS, service)).version for service in (ROOM, LOBBY)
    ]


async def test_keys_of_one_route_live_in_one_slot_of_the_cluster(cluster_redis, prefix):
    await scenario(cluster_redis, prefix)
    found = [key async for key in cluster_redis.scan_iter(match=f"{prefix}:{{{NS}/{ROOM}}}*")]
    assert len(found) > 400  # links, per-pod sets, the table
    assert len({await cluster_redis.cluster_keyslot(key) for key in found}) == 1


async def test_a_full_migration_finds_every_layout_1_set_on_a_cluster(cluster_redis, prefix):
    """The migration's SCAN for layout-1 sets (review 1, D2) covers every master: a set of a pod
    above every index the route knows, and stale entries an old REMOVE left, on a cluster too."""
    old = OldRelease(cluster_redis, prefix, service=ROOM)  # type: ignore[arg-type]
    await old.configure()
    await old.put_pods(dict.fromkeys(range(3), "1,0,0,0"))
    for i in range(60):
        await old.set_linked_pod(f"u{i}", int((await old.place(f"u{i}"))[0]))
    table = RouteTable(cluster_redis, prefix=prefix)
    migrator = Migrator(cluster_redis, table.keyring, 2.0)
    assert (await migrator.migrate(NS, ROOM)).moved.keys() == {0, 1, 2}
    for i in range(10):
        await old.remove(f"u{i}")
        await old.set_linked_pod(f"u{10 + i}", 5)
    done = await migrator.migrate(NS, ROOM, full=True)
    assert (done.done, done.moved, done.stale) == (True, {5: 10}, 20)
    await table.put_pods(NS, ROOM, [PodState(i) for i in range(6)])
    links = (await table.snapshot(NS, ROOM)).links
    assert (sum(links.values()), links[5]) == (50, 10)
