"""Bad input raises InvalidInput naming the field and writes nothing; faults raise StoreUnavailable."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from stateful_route import (
    ClientDriver,
    InvalidInput,
    PodState,
    RouteTable,
    RoutingState,
    ServerDriver,
    StoreUnavailable,
)
from tests.routes import NS, SVC, keys_under, make_route

LONG_UID = "x" * 257
BAD_CALLS = [
    ("uid", "compute_linked_pod", (NS, "", SVC)),
    ("uid", "compute_linked_pod", (NS, LONG_UID, SVC)),
    ("uid", "compute_linked_pod", (NS, 42, SVC)),
    ("uid", "compute_linked_pod", (NS, ["unhashable"], SVC)),
    ("uid", "compute_linked_pod", (NS, "\ud800", SVC)),
    ("service", "compute_linked_pod", (NS, "u", "Room")),
    ("service", "compute_linked_pod", (NS, "u", "a:b")),
    ("service", "compute_linked_pod", (NS, "u", "{x}")),
    ("namespace", "compute_linked_pod", ("other", "u", SVC)),
    ("namespace", "compute_linked_pod", ("-bad", "u", SVC)),
    ("pod", "set_linked_pod_if_absent", (NS, "u", SVC, -1)),
    ("pod", "set_linked_pod_if_absent", (NS, "u", SVC, True)),
    ("pod", "set_linked_pod_if_absent", (NS, "u", SVC, "3")),
    ("uid", "set_linked_pod_if_absent", (NS, "", SVC, 1)),
    ("uid", "batch_get_linked_pod", (NS, ["ok", ""], SVC)),
    ("uids", "batch_get_linked_pod", (NS, "not-a-list", SVC)),
    ("uids", "batch_get_linked_pod", (NS, None, SVC)),
    ("uid", "get_link_service", (NS, None)),
    ("uid", "get_linked_pod", (NS, b"bytes", SVC)),
    ("service", "get_linked_pod_not_cache", (NS, "u", "")),
    ("uid", "get_linked_pod_in_cache_or_if_persist", (NS, LONG_UID, SVC)),
    ("index", "is_pod_routable", (NS, SVC, -3)),
]


@pytest.mark.parametrize(("field", "method", "args"), BAD_CALLS)
async def test_client_rejects_bad_input_and_writes_nothing(redis, prefix, field, method, args):
    await make_route(redis, prefix, pods=2)
    before = await keys_under(redis, prefix)
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        with pytest.raises(InvalidInput) as caught:
            await getattr(client, method)(*args)
        assert caught.value.field == field
    assert await keys_under(redis, prefix) == before


@pytest.mark.parametrize(
    ("field", "method", "args"),
    [
        ("uid", "set_linked_pod", ("",)),
        ("uid", "try_set_linked_pod", (7,)),
        ("keep_seconds", "remove_linked_pod", ("u", -1)),
        ("keep_seconds", "remove_linked_pod", ("u", float("nan"))),
        ("pod", "remove_linked_pod_with_id", ("u", -2)),
        ("load", "set_load_state", (-1,)),
        ("load", "set_load_state", (1.5,)),
        ("state", "set_routing_state", ("Shutdown",)),
    ],
)
async def test_server_driver_rejects_bad_input_and_writes_nothing(redis, prefix, field, method, args):
    await make_route(redis, prefix, pods=2)
    server = ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix)
    before = await keys_under(redis, prefix)
    with pytest.raises(InvalidInput) as caught:
        await getattr(server, method)(*args)
    assert caught.value.field == field
    assert await keys_under(redis, prefix) == before


async def test_table_and_constructors_reject_bad_input(redis, prefix):
    table = RouteTable(redis, prefix=prefix)
    with pytest.raises(InvalidInput, match="appears twice"):
        await table.put_pods(NS, SVC, [PodState(1), PodState(1)])
    with pytest.raises(InvalidInput) as caught:
        await table.put_pods(NS, SVC, [PodState(0), "pod-1"])  # type: ignore[list-item]
    assert caught.value.field == "pods"
    assert await keys_under(redis, prefix) == {}
    for field, build in [
        ("index", lambda: PodState(-1)),
        ("ready", lambda: PodState(0, ready=1)),
        ("routing", lambda: PodState(0, routing="Ready")),
        ("prefix", lambda: RouteTable(redis, prefix="a{b}")),
        ("pod_index", lambda: ServerDriver(redis, namespace=NS, service=SVC, pod_index=-1)),
        ("namespace", lambda: ClientDriver(redis, namespace=[])),
        ("link_ttl", lambda: ClientDriver(redis, namespace=NS, link_ttl=0)),
        ("refresh_interval", lambda: ClientDriver(redis, namespace=NS, refresh_interval=2)),
    ]:
        with pytest.raises(InvalidInput) as caught:
            build()
        assert caught.value.field == field
    assert RoutingState.parse("denynewcall") is RoutingState.DENY_NEW_CALL
    with pytest.raises(InvalidInput):
        RoutingState.parse("Drain")


async def test_redis_down_raises_store_unavailable_within_the_timeout(make_redis, private_redis, prefix):
    server = private_redis()
    redis = make_redis(server.url)
    await make_route(redis, prefix, pods=2)
    async with ClientDriver(redis, namespace=NS, prefix=prefix, timeout=0.5) as client:
        await client.compute_linked_pod(NS, "known", SVC)
        server.stop()
        loop = asyncio.get_running_loop()
        for call in (
            client.compute_linked_pod(NS, "newcomer", SVC),
            client.get_linked_pod(NS, "newcomer", SVC),
            client.batch_get_linked_pod(NS, ["a", "b"], SVC),
            client.get_link_service(NS, "known"),
        ):
            started = loop.time()
            with pytest.raises(StoreUnavailable):
                await call
            assert loop.time() - started < 1.0
        # A cached user is served only while the route view is younger than a second; then it fails loudly.
        await asyncio.sleep(1.1)
        with pytest.raises(StoreUnavailable):
            await client.compute_linked_pod(NS, "known", SVC)


async def test_a_paused_redis_hits_the_timeout_instead_of_hanging(make_redis, private_redis, prefix):
    server = private_redis()
    redis = make_redis(server.url)
    await make_route(redis, prefix, pods=2)
    assert server.process is not None
    async with ClientDriver(redis, namespace=NS, prefix=prefix, timeout=0.3) as client:
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(StoreUnavailable):
                await client.compute_linked_pod(NS, "u", SVC)
            assert loop.time() - started < 0.8
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
