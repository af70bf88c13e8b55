"""Temporary and persistent links, removals with a kept link, lookups across services."""

from __future__ import annotations

import asyncio

from redis.asyncio.connection import AbstractConnection

from stateful_route import PodState, ServerDriver
from tests.routes import NS, SVC, clients, make_route, poll_until


async def test_temporary_links_expire_after_link_ttl(redis, prefix):
    await make_route(redis, prefix, pods=2)
    async with clients(lambda: redis, prefix, 1, link_ttl=1, cache_ttl=0.5) as (client,):
        pod = await client.compute_linked_pod(NS, "brief", SVC)
        assert await client.get_linked_pod_not_cache(NS, "brief", SVC) == pod
        await asyncio.sleep(1.2)
        assert await client.get_linked_pod_not_cache(NS, "brief", SVC) is None
        assert await client.get_linked_pod(NS, "brief", SVC) is None


async def test_persistent_links_do_not_expire_and_temporary_ones_are_ignored_by_if_persist(redis, prefix):
    await make_route(redis, prefix, pods=2)
    async with (
        clients(lambda: redis, prefix, 1, link_ttl=1, cache_ttl=0.5) as (client,),
        ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix) as server,
    ):
        await client.set_linked_pod_if_absent(NS, "temp", SVC, 0)
        assert await server.set_linked_pod("kept") is None
        client.cache.clear()
        assert await client.get_linked_pod_in_cache_or_if_persist(NS, "temp", SVC) is None
        assert await client.get_linked_pod_in_cache_or_if_persist(NS, "kept", SVC) == 1
        await asyncio.sleep(1.2)
        assert await client.get_linked_pod_not_cache(NS, "temp", SVC) is None
        assert await client.get_linked_pod_not_cache(NS, "kept", SVC) == 1
        assert await redis.pttl(f"{prefix}:{{{NS}/{SVC}}}:l:kept") == -1


async def test_server_driver_confirms_tries_and_removes_links(redis, prefix):
    await make_route(redis, prefix, pods=3)
    async with (
        ServerDriver(redis, namespace=NS, service=SVC, pod_index=0, prefix=prefix) as pod0,
        ServerDriver(redis, namespace=NS, service=SVC, pod_index=2, prefix=prefix) as pod2,
        clients(lambda: redis, prefix, 1) as (client,),
    ):
        await client.set_linked_pod_if_absent(NS, "u", SVC, 2)
        # A temporary link does not stop another pod from taking the user...
        assert await pod0.try_set_linked_pod("u") == (True, 0)
        # ...a persistent one does.
        assert await pod2.try_set_linked_pod("u") == (False, 0)
        assert await pod2.set_linked_pod("u") == 0
        assert await client.get_linked_pod_not_cache(NS, "u", SVC) == 2

        # Compare-and-delete: the wrong pod changes nothing.
        assert await pod0.remove_linked_pod_with_id("u", 0) is False
        assert await client.get_linked_pod_not_cache(NS, "u", SVC) == 2
        assert await pod0.remove_linked_pod_with_id("u", 2) is True
        assert await client.get_linked_pod_not_cache(NS, "u", SVC) is None
        assert await pod0.remove_linked_pod("u") is False

        snapshot = await client.route_view(NS, SVC)
        assert snapshot.snapshot.links == {0: 0, 1: 0, 2: 0}


async def test_removal_can_keep_a_temporary_link_for_a_while(redis, prefix):
    await make_route(redis, prefix, pods=2)
    async with (
        ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix) as server,
        clients(lambda: redis, prefix, 1) as (client,),
    ):
        await server.set_linked_pod("returning")
        assert await server.remove_linked_pod("returning", keep_seconds=1) is True
        await asyncio.sleep(0.1)  # the removal's announcement reaches the client (and clears it)
        assert await client.get_linked_pod_not_cache(NS, "returning", SVC) == 1
        assert await client.get_linked_pod_in_cache_or_if_persist(NS, "returning", SVC) == 1  # cached
        client.cache.clear()
        assert await client.get_linked_pod_in_cache_or_if_persist(NS, "returning", SVC) is None  # temporary
        await asyncio.sleep(1.2)
        assert await client.get_linked_pod_not_cache(NS, "returning", SVC) is None


async def test_server_removal_reaches_other_clients_caches_at_once(redis, make_redis, prefix):
    await make_route(redis, prefix, pods=2)
    async with (
        ServerDriver(redis, namespace=NS, service=SVC, pod_index=0, prefix=prefix) as server,
        clients(make_redis, prefix, 2) as drivers,
    ):
        for driver in drivers:
            assert await driver.compute_linked_pod(NS, "leaver", SVC) == 0
            assert driver.get_linked_in_cache(NS, "leaver", SVC) == 0
        await server.remove_linked_pod("leaver")

        async def forgotten() -> bool:
            return all(d.get_linked_in_cache(NS, "leaver", SVC) is None for d in drivers)

        await poll_until(forgotten, within=1)


async def test_get_link_service_lists_every_service_of_the_user(redis, prefix):
    for service in ("lobby", "room", "chat"):
        await make_route(redis, prefix, pods=2, service=service)
    async with clients(lambda: redis, prefix, 1) as (client,):
        assert await client.get_link_service(NS, "u1") == {}
        lobby = await client.compute_linked_pod(NS, "u1", "lobby")
        chat = await client.set_linked_pod_if_absent(NS, "u1", "chat", 1)
        assert await client.get_link_service(NS, "u1") == {"lobby": lobby, "chat": chat}


async def test_batch_lookup_is_one_round_trip_and_returns_every_linked_user(redis, prefix, mocker):
    table = await make_route(redis, prefix, pods=4)
    users = [f"u{i}" for i in range(5_000)]
    async with clients(lambda: redis, prefix, 1) as (client,):
        await table.put_pods(NS, SVC, [PodState(i) for i in range(4)])
        placed = {uid: await client.compute_linked_pod(NS, uid, SVC) for uid in users[:4_000]}
        sends = mocker.spy(AbstractConnection, "send_packed_command")
        grouped = await client.batch_get_linked_pod(NS, users, SVC)
        # 5 MGETs of 1,000 keys, pipelined into one write (the mirror's refreshes are not MGETs).
        batches = [c for c in sends.call_args_list if b"MGET" in b"".join(_chunks(c.args[1]))]
        assert len(batches) == 1
        assert sum(len(uids) for uids in grouped.values()) == 4_000
        assert {uid: pod for pod, uids in grouped.items() for uid in uids} == placed
        assert await client.batch_get_linked_pod(NS, [], SVC) == {}


def _chunks(packed: object) -> list[bytes]:
    if isinstance(packed, bytes | bytearray | memoryview):
        return [bytes(packed)]
    return [bytes(chunk) for chunk in packed]  # type: ignore[attr-defined]
