"""The local cache never outlives the stored link, never holds a link to an unroutable pod, and
never answers once the route view is older than ``max_age`` (issue 11, points 1, 9, 10, and the
frozen-Redis question)."""

from __future__ import annotations

import asyncio
import os
import signal

from stateful_route import ClientDriver, PodState, ServerDriver, StoreUnavailable
from stateful_route.store import keys
from tests.routes import NS, SVC, clients, make_route, poll_until, until_routable


async def test_if_absent_caches_an_existing_link_no_longer_than_it_lives(redis, make_redis, prefix):
    await make_route(redis, prefix, pods=2)
    async with (
        clients(make_redis, prefix, 2) as (a, b),
        ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix) as pod1,
    ):
        await a.route_view(NS, SVC)
        await pod1.set_linked_pod("u")
        await pod1.set_load_state(100)  # so that a new placement prefers pod 0
        await pod1.remove_linked_pod("u", keep_seconds=1)
        await asyncio.sleep(0.05)  # the removal's announcement reaches the clients first
        assert await a.set_linked_pod_if_absent(NS, "u", SVC, 0) == 1  # the kept link

        async def expired() -> bool:
            return not await redis.exists(keys.Keyring(prefix).route(NS, SVC).link("u"))

        await poll_until(expired, within=2)
        assert await b.compute_linked_pod(NS, "u", SVC) == 0
        assert await a.get_linked_pod(NS, "u", SVC) == 0
        assert await a.compute_linked_pod(NS, "u", SVC) == 0


async def test_get_linked_pod_does_not_cache_a_link_to_an_unroutable_pod(redis, make_redis, prefix):
    table = await make_route(redis, prefix, pods=2)
    async with clients(make_redis, prefix, 2) as (a, b):
        assert await a.set_linked_pod_if_absent(NS, "u", SVC, 1) == 1
        a.cache_expired(NS, "u", SVC)
        await table.update_pod(NS, SVC, PodState(1, ready=False))  # no operator evicts it
        await until_routable([a], 1, routable=False)
        assert await a.get_linked_pod(NS, "u", SVC) == 1  # the stored link, as it is
        assert a.get_linked_in_cache(NS, "u", SVC) is None
        assert await b.compute_linked_pod(NS, "u", SVC) == 0  # a lazy rebind
        assert await a.get_linked_pod(NS, "u", SVC) == 0


async def test_a_lazy_rebind_invalidates_other_gateways_caches(redis, make_redis, prefix):
    await make_route(redis, prefix, pods=2)
    # A polls its views rarely, so only the rebind's own message can tell it.
    async with (
        clients(make_redis, prefix, 1, refresh_interval=20, max_age=30) as (a,),
        clients(make_redis, prefix, 1) as (b,),
    ):
        assert await a.set_linked_pod_if_absent(NS, "u", SVC, 1) == 1
        assert a.get_linked_in_cache(NS, "u", SVC) == 1
        # Pod 1 stops being routable by a write nobody announces: only Redis knows.
        await redis.hset(keys.Keyring(prefix).route(NS, SVC).pods, "1", "0,0,0,0")
        assert await b.compute_linked_pod(NS, "u", SVC) == 0

        async def dropped() -> bool:
            return a.get_linked_in_cache(NS, "u", SVC) is None

        await poll_until(dropped, within=1)
        assert await a.get_linked_pod(NS, "u", SVC) == 0


async def test_a_link_expiring_while_it_is_read_is_not_cached(make_redis, prefix):
    redis = make_redis(blocking_pool=50)
    await make_route(redis, prefix, pods=2)
    k = keys.Keyring(prefix).route(NS, SVC)
    users = [f"u{i}" for i in range(3_000)]
    # 50 reads at a time, as many as connections: queued for one, or each re-reading a view that
    # aged meanwhile, the last would wait past the 1 s per call on a loaded machine, which is not
    # what this test judges.
    limit = asyncio.Semaphore(50)

    async def read(uid: str) -> int | None:
        async with limit:
            return await client.get_linked_pod_not_cache(NS, uid, SVC)

    async with ClientDriver(redis, namespace=NS, prefix=prefix, timeout=10) as client:
        await client.route_view(NS, SVC)
        pipe = redis.pipeline(transaction=False)
        for i, uid in enumerate(users):
            pipe.set(k.link(uid), "1", px=20 + i % 40)  # expiring all through the reads below
        await pipe.execute()
        await asyncio.gather(*(read(uid) for uid in users))
        await asyncio.sleep(0.1)  # every link has expired
        cached = [uid for uid in users if client.get_linked_in_cache(NS, uid, SVC) is not None]
        assert cached == []


async def test_no_cached_answer_once_a_frozen_redis_makes_the_view_too_old(make_redis, private_redis, prefix):
    server = private_redis()
    redis = make_redis(server.url, socket_connect_timeout=0.3)
    await make_route(redis, prefix, pods=2)
    users = [f"u{i}" for i in range(20)]
    # With the default timeout (1 s) a stalled refresh takes up to 1.5 s to notice.
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        for uid in users:
            await client.compute_linked_pod(NS, uid, SVC)
        loop = asyncio.get_running_loop()
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        frozen = loop.time()
        late: list[float] = []
        failed = 0
        try:
            while loop.time() - frozen < 2.0:
                for uid in users:
                    started = loop.time()
                    try:
                        await client.get_linked_pod(NS, uid, SVC)
                        await client.get_linked_pod_in_cache_or_if_persist(NS, uid, SVC)
                    except StoreUnavailable:
                        failed += 1
                        continue
                    if started - frozen > 1.0:  # max_age
                        late.append(started - frozen)
                await asyncio.sleep(0.01)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert late == []
        assert failed > 0


class SlowReplies:
    """A clock that the test moves forward while a script's reply is in flight: what a slow
    network or a busy event loop does to a gateway, without waiting for it."""

    def __init__(self, redis: object, delay: float) -> None:
        self.now = 1000.0
        self.delay = 0.0
        self._delay = delay
        self._send = redis.execute_command  # type: ignore[attr-defined]
        redis.execute_command = self._slow  # type: ignore[attr-defined]

    def __call__(self) -> float:
        return self.now

    def start(self) -> None:
        self.delay = self._delay

    async def _slow(self, *args: object, **options: object) -> object:
        reply = await self._send(*args, **options)
        if str(args[0]).upper() == "EVALSHA":
            self.now += self.delay
        return reply


async def test_a_slow_reply_does_not_make_the_cache_outlive_the_link(make_redis, redis, prefix):
    """The cache's deadline counts the link's remaining TTL from before the request was sent:
    the TTL was read at some moment after it, so the entry cannot outlive the stored link, however
    long the reply took to be handled."""
    table = await make_route(redis, prefix, pods=2)
    await table.configure(NS, SVC, link_ttl=2)
    gateway_redis = make_redis()
    clock = SlowReplies(gateway_redis, delay=0.5)
    async with ClientDriver(gateway_redis, namespace=NS, prefix=prefix, clock=clock) as client:
        await client.route_view(NS, SVC)  # a fresh view, read without delay
        for call in ("compute", "not_cache", "if_absent", "if_persist"):
            uid = f"u-{call}"
            if call == "if_persist":
                await ServerDriver(
                    redis, namespace=NS, service=SVC, pod_index=0, prefix=prefix
                ).set_linked_pod(uid)
            elif call != "compute":
                await client.set_linked_pod_if_absent(NS, uid, SVC, 0)
                client.cache_expired(NS, uid, SVC)
            await client.route_view(NS, SVC)
            clock.start()
            sent = clock()
            if call == "compute":
                await client.compute_linked_pod(NS, uid, SVC)
            elif call == "not_cache":
                await client.get_linked_pod_not_cache(NS, uid, SVC)
            elif call == "if_absent":
                await client.set_linked_pod_if_absent(NS, uid, SVC, 1)
            else:
                await client.get_linked_pod_in_cache_or_if_persist(NS, uid, SVC)
            clock.delay = 0
            entry = client.cache.entries.get((NS, SVC, uid))
            assert entry is not None, call
            assert clock() == sent + 0.5, call  # the reply did take the (emulated) time
            limit = client.cache_ttl if call == "if_persist" else 2.0
            assert entry[1] <= sent + limit, (call, entry[1] - sent)
            clock.now += 2  # every view goes stale: the next call reads a fresh one
