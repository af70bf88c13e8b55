"""Every key a Lua script touches hashes to the slot of the key it declares (Redis Cluster-safe)."""

from __future__ import annotations

import asyncio
import contextlib

from redis.crc import key_slot

from stateful_route import ClientDriver, PodState, RouteTable, RoutingState, ServerDriver
from stateful_route.store.links import LinkStore
from tests.routes import NS, SVC, make_route

SCRIPT_KEYLESS = {"TIME", "PUBLISH"}  # TIME takes no key; PUBLISH takes a channel


async def test_every_script_stays_in_one_slot(redis, make_redis, prefix):
    table = await make_route(redis, prefix, pods=3)
    monitor_client = make_redis()
    touched: list[bytes] = []  # keys used by commands run inside scripts
    declared: list[bytes] = []  # the key each EVALSHA declares (Redis Cluster routes on it)

    async def watch(monitor) -> None:
        async for entry in monitor.listen():
            parts = entry["command"].split(" ")
            name = parts[0].strip('"').upper()
            # MONITOR shows every client of a shared Redis: keep this test's keys (all of them
            # start with its prefix, including the namespace's service set a script must not touch).
            if entry.get("client_type") == "lua":
                if name not in SCRIPT_KEYLESS and parts[1].strip('"').startswith(prefix):
                    touched.append(parts[1].strip('"').encode())
            elif name == "EVALSHA" and parts[3].strip('"').startswith(prefix):
                declared.append(parts[3].strip('"').encode())

    async with monitor_client.monitor() as monitor:
        watcher = asyncio.create_task(watch(monitor))
        await asyncio.sleep(0.1)
        async with (
            ClientDriver(redis, namespace=NS, prefix=prefix) as client,
            ServerDriver(redis, namespace=NS, service=SVC, pod_index=2, prefix=prefix) as server,
        ):
            await client.compute_linked_pod(NS, "u1", SVC)
            await client.set_linked_pod_if_absent(NS, "u2", SVC, 1)
            await server.set_linked_pod("u1")
            await server.try_set_linked_pod("u2")
            await server.set_load_state(3)
            await server.set_routing_state(RoutingState.DENY_NEW_CALL)
            await table.update_pod(NS, SVC, PodState(2, ready=False))
            await client.compute_linked_pod(NS, "u1", SVC)
            await server.remove_linked_pod("u2", keep_seconds=5)
            store = LinkStore(redis, table.keyring)
            route_keys = table.keyring.route(NS, SVC)
            await table.configure(NS, SVC, max_links_per_pod=50, link_ttl=120)
            await store.place_many(route_keys, ["u3", "u4"], 60, exclude=1)
            await store.place(route_keys, "u3", 60, exclude=0)
            await store.evict_batch(route_keys, 0)
            await table.put_pods(NS, SVC, [PodState(0), PodState(1)])
            await RouteTable(redis, prefix=prefix).snapshot(NS, SVC)
        await asyncio.sleep(0.3)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    assert len(declared) >= 12
    assert len(touched) > 30
    # Every call above concerns one route, so a script that reached for any key outside the
    # route's hash tag (the namespace's service set, another route) would add a slot here.
    slots = {key_slot(key) for key in touched} | {key_slot(key) for key in declared}
    assert slots == {key_slot(f"{{{NS}/{SVC}}}".encode())}, slots
