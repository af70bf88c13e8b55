"""The change channel: a gap (reconnect) drops cached links; late clients converge."""

from __future__ import annotations

import asyncio

from stateful_route import ClientDriver, PodState, RoutingState, ServerDriver
from tests.routes import NS, SVC, make_route, poll_until


async def test_a_pubsub_reconnect_drops_cached_links_and_rereads_the_view(make_redis, private_redis, prefix):
    # A private server: killing every pub/sub connection must not reach other suites sharing Redis.
    url = private_redis().url
    redis = make_redis(url)
    table = await make_route(redis, prefix, pods=3)
    async with ClientDriver(make_redis(url), namespace=NS, prefix=prefix) as client:
        await asyncio.wait_for(client.subscribed.wait(), 2)
        for i in range(10):
            await client.compute_linked_pod(NS, f"u{i}", SVC)
        assert len(client.cache) == 10
        killed = await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed >= 1
        # Whatever was published while the connection was down is lost: the cache cannot be trusted.
        await table.update_pod(NS, SVC, PodState(2, terminating=True))

        async def resynced() -> bool:
            return len(client.cache) == 0 and await client.routable_pods(NS, SVC) == [0, 1]

        await poll_until(resynced, within=2)
        # And it keeps following the channel afterwards.
        await table.update_pod(NS, SVC, PodState(2))
        await poll_until(lambda: client.is_pod_routable(NS, SVC, 2), within=1)


async def test_a_client_started_late_sees_the_current_state(redis, prefix):
    table = await make_route(redis, prefix, pods=3)
    async with ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix) as server:
        await server.set_linked_pod("settled")
    await table.update_pod(NS, SVC, PodState(0, ready=False))
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as late:
        assert await late.routable_pods(NS, SVC) == [1, 2]
        assert await late.compute_linked_pod(NS, "settled", SVC) == 1


async def test_the_mirror_survives_an_unexpected_exception_and_follows_the_channel_again(
    redis, make_redis, prefix, mocker
):
    table = await make_route(redis, prefix, pods=3)
    async with ClientDriver(make_redis(), namespace=NS, prefix=prefix) as client:
        await asyncio.wait_for(client.subscribed.wait(), 2)
        # Anything at all going wrong inside the mirror (here: decoding one message).
        broken = mocker.patch("stateful_route.gateway.mirror.changes.parse", side_effect=KeyError(13271))
        await table.update_pod(NS, SVC, PodState(2, terminating=True))
        await poll_until(lambda: asyncio.sleep(0, broken.called), within=1)
        mocker.stopall()
        await poll_until(lambda: asyncio.sleep(0, client.subscribed.is_set()), within=2)
        pod = await client.compute_linked_pod(NS, "user-1", SVC)
        # Only the change channel drops a cached link this fast (else it lives for cache_ttl).
        await table.update_pod(NS, SVC, PodState(pod, terminating=True))
        await poll_until(
            lambda: asyncio.sleep(0, client.get_linked_in_cache(NS, "user-1", SVC) is None), within=0.5
        )


async def test_messages_received_together_are_each_applied_in_order(redis, make_redis, prefix):
    """The listener takes every message already received in one go (not one read each): a pod
    that left the routable set and came back within a burst still costs its cached links, every
    message is applied, and the burst ends on its last one. (Four writes in a row: their messages
    usually reach the gateway in one chunk.)"""
    table = await make_route(redis, prefix, pods=3)
    lags = Lags()
    async with ClientDriver(make_redis(), namespace=NS, prefix=prefix, metrics=lags) as client:
        await asyncio.wait_for(client.subscribed.wait(), 2)
        placed = {uid: await client.compute_linked_pod(NS, uid, SVC) for uid in (f"u{i}" for i in range(9))}
        on_1 = [uid for uid, pod in placed.items() if pod == 1]
        assert on_1
        version = (await client.route_view(NS, SVC)).version
        for routing in (RoutingState.SHUTDOWN, RoutingState.READY, RoutingState.SHUTDOWN, RoutingState.READY):
            await table.update_pod(NS, SVC, PodState(1, routing=routing))

        await poll_until(lambda: asyncio.sleep(0, client._views[NS][SVC].version == version + 4), within=2)
        assert client._views[NS][SVC].routable == frozenset({0, 1, 2})
        assert len(lags.change) == 4
        for uid in on_1:
            assert client.get_linked_in_cache(NS, uid, SVC) is None


class Lags:
    """Client metrics keeping the change channel's lags."""

    def __init__(self) -> None:
        self.change: list[float] = []

    def cache_hit(self) -> None: ...

    def cache_miss(self) -> None: ...

    def redis_call(self, seconds: float) -> None: ...

    def change_lag(self, seconds: float) -> None:
        self.change.append(seconds)

    def view_lag(self, seconds: float) -> None: ...
