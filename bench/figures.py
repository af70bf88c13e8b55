"""The six figures of BENCHMARKS.md, each measured against the same Redis in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from redis.asyncio import BlockingConnectionPool, Redis

from bench.measure import Result, concurrently, rate_async, rate_sync
from bench.original import OriginalClient, report_loads
from stateful_route import ClientDriver, PodState, RouteTable, RoutingState
from stateful_route.store.eviction import evict
from stateful_route.store.keys import Keyring
from stateful_route.store.links import LinkStore
from stateful_route.testing.cleanup import delete_prefix

NS, SVC, PODS = "bench", "room", 8
WORKERS = 16


@dataclass
class Row:
    """One line of the results table; ``ratio`` is ours ÷ the reference its target names."""

    figure: str
    ours: str
    original: str = "—"
    limit: str = "—"
    ratio: str = "—"
    target: str = "—"
    met: bool | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Bench:
    """Where and how big: the Redis URL and the sizes (``--quick`` shrinks them)."""

    url: str
    quick: bool
    rows: list[Row] = field(default_factory=list)
    only: frozenset[str] = frozenset()  # the figures to measure ("1" ... "8"); empty = every one
    at_small: dict[str, Result] = field(default_factory=dict)  # figures 1-3 at the small size

    def wants(self, figure: str) -> bool:
        """Whether ``figure`` (its number, e.g. "6") is measured in this run."""
        return not self.only or figure in self.only

    @property
    def hits(self) -> int:
        return 100_000 if self.quick else 1_000_000

    @property
    def new_users(self) -> int:
        return 5_000 if self.quick else 20_000

    @property
    def balance_users(self) -> int:
        return 30_000 if self.quick else 100_000

    @property
    def evicted(self) -> int:
        return 100_000

    @property
    def scales(self) -> tuple[int, int]:
        return (10_000, 50_000) if self.quick else (10_000, 1_000_000)

    def redis(self, connections: int = 4) -> Redis:
        return Redis.from_pool(BlockingConnectionPool.from_url(self.url, max_connections=connections))

    @contextlib.asynccontextmanager
    async def route(self, pods: int = PODS) -> AsyncIterator[tuple[Redis, str]]:
        """A fresh key prefix holding a route of ``pods`` ready pods; every key removed after."""
        redis = self.redis(WORKERS + 4)
        # As short as a real deployment's "sr", so memory per link is not inflated by the prefix.
        prefix = f"b{secrets.token_hex(2)}"
        async for _ in redis.scan_iter(match=f"{prefix}:*", count=1000):
            raise RuntimeError(f"keys under {prefix}: exist in this Redis; run again")
        try:
            await RouteTable(redis, prefix=prefix).put_pods(NS, SVC, [PodState(i) for i in range(pods)])
            yield redis, prefix
        finally:
            await delete_prefix(redis, prefix)
            await redis.aclose()


def ratio(ours: float, other: float) -> str:
    return f"{ours / other:.2f}×"


def _uids(n: int, tag: str = "u") -> list[str]:
    return [f"{tag}-{i}" for i in range(n)]


async def _fill(client: ClientDriver, redis: Redis, prefix: str, uids: list[str]) -> None:
    """Link ``uids`` in Redis and load them into the client's cache without I/O."""
    for i, (uid, pod) in enumerate(zip(uids, await _link(redis, prefix, uids), strict=True)):
        client.set_cache(NS, uid, SVC, pod)
        if i % 10_000 == 0:
            # Let the route mirror run: a loop blocked past its deadline makes it resync, which
            # (rightly) empties the cache.
            await asyncio.sleep(0)


async def cache_hits(bench: Bench, users: int) -> Result:
    """Figure 1, ours: ``compute_linked_pod`` for users whose links are cached."""
    uids = _uids(users)
    async with (
        bench.route() as (redis, prefix),
        ClientDriver(redis, namespace=NS, prefix=prefix, cache_size=users) as client,
    ):
        await _fill(client, redis, prefix, uids)
        await client.route_view(NS, SVC)
        return await rate_async(lambda i: client.compute_linked_pod(NS, uids[i % users], SVC), bench.hits)


async def original_cache_hits(bench: Bench, users: int) -> Result:
    """Figure 1, the original's cache hits (its cache warmed by its own lookups)."""
    uids = _uids(users)
    async with bench.route() as (redis, prefix):
        original = OriginalClient(redis, prefix=prefix, cache_size=users)
        await report_loads(redis, prefix, NS, SVC, dict.fromkeys(range(PODS), 0))
        for uid in uids:
            await original.compute_linked_pod(NS, uid, SVC)
        return await rate_async(lambda i: original.compute_linked_pod(NS, uids[i % users], SVC), bench.hits)


async def dict_hits(bench: Bench, users: int) -> tuple[Result, Result]:
    """Figure 1's limit: a bare dict lookup, and the same lookup behind an ``await``."""
    uids = _uids(users)
    table = {(NS, SVC, uid): i % PODS for i, uid in enumerate(uids)}
    bare = rate_sync(lambda i: table[(NS, SVC, uids[i % users])], bench.hits)

    async def lookup(i: int) -> int:
        return table[(NS, SVC, uids[i % users])]

    return bare, await rate_async(lookup, bench.hits)


async def evalsha_limit(bench: Bench, workers: int, n: int) -> Result:
    """The EVALSHA round trip of a script that does nothing: ``workers`` connections."""
    redis = bench.redis(workers)
    try:
        script = redis.register_script("return 1")
        await script()
        return await concurrently(lambda i: script(), n, workers)
    finally:
        await redis.aclose()


async def get_limit(bench: Bench, n: int) -> Result:
    """A single-connection GET round trip."""
    redis = bench.redis(1)
    try:
        return await concurrently(lambda i: redis.get("bench-absent"), n, 1)
    finally:
        await redis.aclose()


async def first_placements(bench: Bench, workers: int, *, holding: int = 0) -> Result:
    """Figure 2, ours: new users placed by ``workers`` independent clients, on a route that
    already holds ``holding`` users."""
    n = bench.new_users
    uids = _uids(n, "new")
    async with bench.route() as (redis, prefix):
        await _link(redis, prefix, _uids(holding, "old"))
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    ClientDriver(bench.redis(4), namespace=NS, prefix=prefix, cache_size=n)
                )
                for _ in range(workers)
            ]
            for c in clients:
                await c.route_view(NS, SVC)
            return await concurrently(
                lambda i: clients[i % workers].compute_linked_pod(NS, uids[i], SVC), n, workers
            )


async def original_first_placements(bench: Bench, workers: int) -> Result:
    """Figure 2, the original: GET, then SET on the pod its own view calls best."""
    n = bench.new_users
    uids = _uids(n, "new")
    async with bench.route() as (redis, prefix):
        originals = [OriginalClient(bench.redis(2), prefix=prefix, cache_size=n) for _ in range(workers)]
        await report_loads(redis, prefix, NS, SVC, dict.fromkeys(range(PODS), 0))
        return await concurrently(
            lambda i: originals[i % workers].compute_linked_pod(NS, uids[i], SVC), n, workers
        )


async def _link(redis: Redis, prefix: str, uids: list[str]) -> list[int]:
    """Link ``uids`` to the route's pods with the balanced placement, pipelined; their pods."""
    store = LinkStore(redis, Keyring(prefix), timeout=60)
    route_keys = Keyring(prefix).route(NS, SVC)
    pods: list[int] = []
    for start in range(0, len(uids), 50_000):
        for pod in await store.place_many(route_keys, uids[start : start + 50_000], 300):
            assert pod is not None  # every pod of a bench route is available
            pods.append(pod)
    return pods


async def batches(bench: Bench, users: int) -> tuple[Result, Result, Result]:
    """Figure 3: 10,000 users' links in one call — ours, the original, pipelined MGET; users/s."""
    batch = 10_000
    uids = _uids(users)
    async with bench.route() as (redis, prefix):
        async with ClientDriver(redis, namespace=NS, prefix=prefix, cache_size=1) as client:
            await _fill(client, redis, prefix, uids)
            wanted = uids[:batch]
            ours = await _per_batch(lambda: client.batch_get_linked_pod(NS, wanted, SVC), batch)
            assert sum(map(len, (await client.batch_get_linked_pod(NS, wanted, SVC)).values())) == batch
        route_keys = Keyring(prefix).route(NS, SVC)
        link_keys = [route_keys.link(uid) for uid in wanted]

        async def mget() -> None:
            pipe = redis.pipeline(transaction=False)
            for start in range(0, batch, 1000):
                pipe.mget(link_keys[start : start + 1000])
            await pipe.execute()

        limit = await _per_batch(mget, batch)
        original = OriginalClient(redis, prefix=prefix)
        few = wanted[:2_000]  # one round trip each: a slice is enough to know the rate
        pipe = redis.pipeline(transaction=False)
        for uid in few:
            pipe.set(f"{prefix}:link:{NS}:{SVC}:{uid}", 1, ex=300)
        await pipe.execute()
        theirs = await _per_batch(lambda: original.batch_get_linked_pod(NS, few, SVC), len(few), repeat=1)
    return ours, theirs, limit


async def _per_batch(call: Callable[[], object], users: int, repeat: int = 5) -> Result:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        await call()  # type: ignore[misc]
        best = min(best, time.perf_counter() - start)
    return Result(users / best, best * 1e6, None)


async def balance(bench: Bench) -> tuple[float, float]:
    """Figure 4: max/min links per pod after 100,000 new users from 16 concurrent clients."""
    n = bench.balance_users
    uids = _uids(n, "bal")
    async with bench.route() as (redis, prefix):
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    ClientDriver(bench.redis(4), namespace=NS, prefix=prefix, cache_size=n)
                )
                for _ in range(WORKERS)
            ]
            await concurrently(
                lambda i: clients[i % WORKERS].compute_linked_pod(NS, uids[i], SVC), n, WORKERS
            )
        links = (await RouteTable(redis, prefix=prefix).snapshot(NS, SVC)).links
        ours = max(links.values()) / max(1, min(links.values()))

        # The original: pods report their user counts every second, clients re-read them as often.
        counts: Counter[int] = Counter(dict.fromkeys(range(PODS), 0))
        await report_loads(redis, prefix, NS, SVC, counts)
        originals = [OriginalClient(bench.redis(2), prefix=prefix, cache_size=n) for _ in range(WORKERS)]
        done = asyncio.Event()

        async def pods_report() -> None:
            while not done.is_set():
                await asyncio.sleep(1)
                await report_loads(redis, prefix, NS, SVC, counts)

        async def place(i: int) -> None:
            pod = await originals[i % WORKERS].compute_linked_pod(NS, uids[i], SVC)
            assert pod is not None
            counts[pod] += 1

        reporter = asyncio.create_task(pods_report())
        await concurrently(place, n, WORKERS)
        done.set()
        await reporter
        theirs = max(counts.values()) / max(1, min(counts.values()))
    return ours, theirs


async def eviction(bench: Bench) -> tuple[float, float]:
    """Figure 5: seconds to evict a pod holding 100,000 links, without and with eager rebind."""
    n = bench.evicted
    took = []
    for rebind in (None, 300.0):
        async with bench.route() as (redis, prefix):
            table = RouteTable(redis, prefix=prefix)
            # Only pod 0 takes new users while it is filled, then it goes away.
            await table.put_pods(
                NS, SVC, [PodState(i, routing=RoutingState(int(i > 0))) for i in range(PODS)]
            )
            await _link(redis, prefix, _uids(n, "ev"))
            store = LinkStore(redis, Keyring(prefix), timeout=60)
            route_keys = Keyring(prefix).route(NS, SVC)
            await table.put_pods(NS, SVC, [PodState(0, terminating=True), *map(PodState, range(1, PODS))])
            start = time.perf_counter()
            done = await evict(store, route_keys, 0, reason="bench", rebind_ttl=rebind)
            took.append(time.perf_counter() - start)
            assert done.removed == n
            assert done.rebound == (0 if rebind is None else n)
    return took[0], took[1]


async def memory_per_link(bench: Bench, users: int) -> tuple[float, float]:
    """Figure 6: Redis bytes per link, ours (link key + per-pod set entry) and the original's."""
    uids = _uids(users, "mem")
    async with bench.route() as (redis, prefix):
        before = await _used_memory(redis)
        await _link(redis, prefix, uids)
        ours = (await _used_memory(redis) - before) / users
        before = await _used_memory(redis)
        for start in range(0, users, 10_000):
            pipe = redis.pipeline(transaction=False)
            for uid in uids[start : start + 10_000]:
                pipe.set(f"{prefix}:link:{NS}:{SVC}:{uid}", 3, ex=300)
            await pipe.execute()
        theirs = (await _used_memory(redis) - before) / users
    return ours, theirs


async def _used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])
