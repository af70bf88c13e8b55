"""Faults of a Redis Cluster surface as the typed errors, and a gateway started during an outage
recovers by itself when the cluster returns."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from stateful_route import ClientDriver, PodState, RouteTable, StoreUnavailable
from stateful_route.store.connection import AnyRedis, connect
from stateful_route.store.keys import Keyring
from stateful_route.store.links import LinkStore
from stateful_route.testing.local_redis import PrivateCluster, free_port
from tests.cli.test_admin_commands import cli
from tests.routes import NS, SVC, poll_until

pytestmark = pytest.mark.cluster


@pytest.fixture(params=["nothing listens", "not a cluster", "cluster down"])
def broken_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """A cluster URL that cannot work, one per way of being broken."""
    if request.param == "nothing listens":
        return f"redis://127.0.0.1:{free_port()}/0?cluster=true"
    if request.param == "not a cluster":  # only reads CLUSTER SLOTS, which a plain server refuses
        return f"{redis_url}?cluster=true"
    down: PrivateCluster = request.getfixturevalue("private_cluster")
    down.stop()
    return down.url


async def test_every_call_on_a_broken_cluster_raises_store_unavailable_within_the_timeout(
    broken_url: str, prefix: str
):
    redis = connect(broken_url, socket_connect_timeout=0.3, socket_timeout=0.3)
    table = RouteTable(redis, prefix=prefix, timeout=0.5)
    store = LinkStore(redis, Keyring(prefix), timeout=0.5)
    k = store.keyring.route(NS, SVC)
    calls = {
        "snapshot": lambda: table.snapshot(NS, SVC),
        "put_pods": lambda: table.put_pods(NS, SVC, [PodState(0)]),
        "services": lambda: table.services(NS),
        "place": lambda: store.place(k, "u1", 300),
        "read": lambda: store.read(k, "u1"),
        "read_many": lambda: store.read_many(k, ["u1", "u2"]),
        "links_of_user": lambda: store.links_of_user(NS, "u1"),
    }
    try:
        for name, call in calls.items():
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call()
            assert time.monotonic() - started < 2.5, name
        async with ClientDriver(redis, namespace=NS, prefix=prefix, timeout=0.5) as client:
            with pytest.raises(StoreUnavailable):
                await client.compute_linked_pod(NS, "u1", SVC)
            assert not client.subscribed.is_set()
    finally:
        await redis.aclose()


@pytest.mark.parametrize("as_json", [False, True])
async def test_the_cli_exits_3_on_a_broken_cluster(broken_url: str, prefix: str, as_json: bool):
    flags = ["--json"] if as_json else []
    code, text = await cli("pods", NS, SVC, "--redis-url", broken_url, "--prefix", prefix, "--timeout",
                           "0.5", *flags)  # fmt: skip
    assert code == 3
    if as_json:
        assert "unavailable" in json.loads(text)["error"]


async def placed_user(client: ClientDriver) -> int:
    return await client.compute_linked_pod(NS, "user-1", SVC)


async def test_a_gateway_started_while_the_cluster_is_down_follows_it_once_it_returns(
    private_cluster: PrivateCluster, prefix: str
):
    private_cluster.stop()
    redis: AnyRedis = connect(private_cluster.url, socket_connect_timeout=0.2, socket_timeout=0.5)
    writer: AnyRedis | None = None
    try:
        async with ClientDriver(redis, namespace=NS, prefix=prefix, timeout=0.5) as client:
            await asyncio.sleep(1.0)  # the mirror meets the outage several times
            await asyncio.to_thread(private_cluster.start)
            writer = connect(private_cluster.url)
            table = RouteTable(writer, prefix=prefix)
            await table.put_pods(NS, SVC, [PodState(i) for i in range(3)])
            await poll_until(lambda: _subscribed(client), within=5, every=0.05)

            pod = await placed_user(client)
            assert client.get_linked_in_cache(NS, "user-1", SVC) == pod
            # Another gateway's world changes: the pod stops being routable. The change channel
            # must reach this client and drop the cached link at once (not after cache_ttl).
            await table.update_pod(NS, SVC, PodState(pod, ready=False))

            async def forgot() -> bool:
                return client.get_linked_in_cache(NS, "user-1", SVC) is None

            await poll_until(forgot, within=0.5, every=0.01)
            assert await placed_user(client) != pod
    finally:
        await redis.aclose()
        if writer is not None:
            await writer.aclose()


async def _subscribed(client: ClientDriver) -> bool:
    return client.subscribed.is_set()
