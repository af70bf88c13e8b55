"""The available set (placement's O(log pods) index) always equals what exact counts say.

After every kind of change — placement (one or many, with an excluded pod), if-absent, persist,
removal with or without keep, expiry then prune, eviction with and without rebind, pod reports,
table writes (pods held back as outdated or not), pods dropped, the cap set and reached — each
available pod's score is its link count plus its load, exactly the available pods are in the set,
exactly the held pods that would be available otherwise are in the spare set (scored alike), a
placement takes a spare pod only when no pod is available, and the per-pod sets hold exactly the
users linked there (so status and metrics counts stay exact).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stateful_route import ClientDriver, NoAvailablePod, PodState, RouteTable, RoutingState, ServerDriver
from stateful_route.store.eviction import evict
from stateful_route.store.keys import RouteKeys
from stateful_route.store.links import LinkStore
from stateful_route.testing.cleanup import delete_prefix
from stateful_route.testing.shards import check_pod, expire_entry
from tests.routes import NS, SVC, make_route

PODS = 4
USERS = [f"u{i}" for i in range(6)]


async def check(
    redis: aioredis.Redis, route_keys: RouteKeys, uids: list[str], *, pruned: bool, pods: int = PODS
) -> None:
    """Compare the available set and the per-pod sets with the links themselves.

    ``pruned``: no expired link is left in the set of a pod of the table (true after a table
    write, which re-scores every pod); otherwise a score may still count expired links, never fewer.
    """
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(route_keys.pods)
    pipe.hgetall(route_keys.reports)
    pipe.hget(route_keys.config, "cap")
    pipe.zrange(route_keys.available, 0, -1, withscores=True)
    pipe.zrange(route_keys.spare, 0, -1, withscores=True)
    pipe.smembers(route_keys.held)
    pipe.mget([route_keys.link(uid) for uid in uids])
    pipe.time()
    replies = await pipe.execute()
    raw_pods, reports, cap_raw, available_raw, spare_raw, held_raw, links, (secs, micros) = replies
    now = secs * 1000 + micros // 1000
    cap = int(cap_raw or 0)
    linked: dict[int, set[str]] = {}
    for uid, raw in zip(uids, links, strict=True):
        if raw is not None:
            linked.setdefault(int(raw.decode().rstrip("p")), set()).add(uid)
    available = {int(member): score for member, score in available_raw}
    spare = {int(member): score for member, score in spare_raw}
    held = {int(member) for member in held_raw}
    assert held <= {int(i) for i in raw_pods}, (held, raw_pods)  # pods leave it with the table
    expected: dict[int, float] = {}
    expected_spare: dict[int, float] = {}
    snapshot = await RouteTable(redis, prefix=route_keys.base.partition(":")[0]).snapshot(NS, SVC)
    for pod in range(pods + 1):  # one index past the table: if-absent may link there
        entries = (await check_pod(redis, route_keys, pod)).entries
        live = {uid for uid, score in entries.items() if score >= now}
        # The per-pod set holds exactly the users linked there (plus expired ones not yet pruned).
        assert live == linked.get(pod, set()), (pod, live, linked)
        if str(pod).encode() not in raw_pods:
            continue  # out of the table: never available, its links wait for eviction
        if pruned:
            assert len(entries) == len(live), (pod, entries)
        assert snapshot.links[pod] == len(live)  # status, metrics and the CLI read this
        ready, terminating, routing, load = (int(v) for v in raw_pods[str(pod).encode()].split(b","))
        report = reports.get(str(pod).encode())
        reported_routing = 0
        if report is not None:
            reported_routing, load = (int(v) for v in report.split(b","))
        room = cap == 0 or len(entries) < cap
        if ready and not terminating and max(routing, reported_routing) == 0 and room:
            expected[pod] = len(entries) + load
        elif pod in held and ready and not terminating and routing < 2 and reported_routing == 0 and room:
            expected_spare[pod] = len(entries) + load
    assert available == expected, (available, expected)
    assert spare == expected_spare, (spare, expected_spare)
    if available:
        assert snapshot.best is not None
        assert available[snapshot.best] == min(available.values())
    elif spare:  # placement takes a spare pod when none is available: the snapshot says which
        assert snapshot.best is not None
        assert spare[snapshot.best] == min(spare.values())


# -- a hypothesis-generated sequence of every kind of change -------------------------------------

uids = st.sampled_from(USERS)
pods = st.integers(0, PODS - 1)
maybe_pod = st.none() | pods
routing = st.sampled_from(list(RoutingState))
loads = st.integers(0, 3)
operation = st.one_of(
    st.tuples(st.just("place"), uids, maybe_pod),
    st.tuples(st.just("place_many"), st.lists(uids, min_size=1, max_size=4, unique=True), maybe_pod),
    st.tuples(st.just("if_absent"), uids, st.integers(0, PODS)),
    st.tuples(st.just("persist"), uids, pods, st.booleans()),
    st.tuples(st.just("remove"), uids, maybe_pod, st.sampled_from([0, 30])),
    st.tuples(st.just("expire"), uids),
    st.tuples(st.just("report"), pods, st.none() | routing, st.none() | loads),
    st.tuples(st.just("table"), pods, st.booleans(), st.booleans(), routing, loads, st.booleans()),
    st.tuples(st.just("rollout"), pods),
    st.tuples(st.just("drop_pod"), pods),
    st.tuples(st.just("cap"), st.integers(0, 3)),
    st.tuples(st.just("evict"), pods, st.booleans()),
    st.tuples(st.just("tick")),
)  # fmt: skip


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as made:
        yield made


class Scenario:
    """One route in its own prefix, driven by the operations hypothesis draws."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        # Generous timeouts: this checks scores, not speed, on a machine that may be busy.
        self.table = RouteTable(redis, prefix=prefix, timeout=10)
        self.store = LinkStore(redis, self.table.keyring, timeout=10)
        self.route_keys = self.table.keyring.route(NS, SVC)
        self.states = {i: PodState(i) for i in range(PODS)}
        self.held: set[int] = set()
        self.servers = [
            ServerDriver(redis, namespace=NS, service=SVC, pod_index=i, prefix=prefix, timeout=10)
            for i in range(PODS)
        ]
        self.pruned = True

    async def run(self, op: tuple[Any, ...]) -> None:
        kind, args = op[0], op[1:]
        route_keys, store = self.route_keys, self.store
        if kind == "place":
            uid, exclude = args
            placed = await store.place(route_keys, uid, 60, exclude=exclude)
            assert placed is None or placed.pod != exclude
            if placed is None:  # nowhere: no pod available, none spare either (but the excluded)
                for pool in (route_keys.available, route_keys.spare):
                    assert {int(m) for m in await self.redis.zrange(pool, 0, -1)} <= {exclude}, pool
            held_only = placed is not None and placed.pod in self.held and placed.outcome != "kept"
            if held_only and self.states[placed.pod].routing is RoutingState.DENY_NEW_CALL:
                # A spare pod only when no pod is available (a placement leaves others' scores).
                others = await self.redis.zrange(route_keys.available, 0, -1)
                assert {int(m) for m in others} <= {exclude}, (placed, others)
            if placed is not None and placed.outcome == "placed":
                # The best pod: no other available pod scores less than it did (the sweep before
                # the choice may have lowered some; nothing else moved but the chosen one, +1).
                scores = {
                    int(m): v
                    for m, v in await self.redis.zrange(route_keys.available, 0, -1, withscores=True)
                }
                if placed.pod in scores:
                    chosen = scores.pop(placed.pod) - 1
                    assert all(v >= chosen for p, v in scores.items() if p != exclude), (placed, scores)
        elif kind == "place_many":
            batch, exclude = args
            assert exclude is None or exclude not in await store.place_many(
                route_keys, batch, 60, exclude=exclude
            )
        elif kind == "if_absent":
            refused: NoAvailablePod | None = None
            try:
                await store.link_if_absent(route_keys, args[0], args[1], 60)
            except NoAvailablePod as exc:
                refused = exc
            if refused is not None:  # only a pod that is not routable, writing nothing
                assert refused.pod == args[1]
                assert args[1] not in (await self.table.snapshot(NS, SVC)).routable
        elif kind == "persist":
            uid, pod, only_if_free = args
            await store.link_persistent(route_keys, uid, pod, only_if_free=only_if_free)
        elif kind == "remove":
            uid, expected, keep = args
            await store.unlink(route_keys, uid, expected=expected, keep=keep)
        elif kind == "expire":
            # What time does to a temporary link: the key vanishes, its index entry stays behind.
            raw = await self.redis.get(route_keys.link(args[0]))
            if raw is not None and not raw.endswith(b"p"):
                await self.redis.delete(route_keys.link(args[0]))
                await expire_entry(self.redis, route_keys, int(raw), args[0])
                self.pruned = False
        elif kind == "report":
            pod, routing, load = args
            if routing is not None:
                await self.servers[pod].set_routing_state(routing)
            if load is not None:
                await self.servers[pod].set_load_state(load)
        elif kind == "table":
            pod, ready, terminating, routing, load, held = args
            self.states[pod] = PodState(pod, ready, terminating, routing, load)
            (self.held.add if held else self.held.discard)(pod)
            await self.table.update_pod(NS, SVC, self.states[pod], held=held)
        elif kind == "rollout":
            # The operator's table while pod args[0] alone is updated: the others held back.
            self.states = {i: PodState(i, routing=RoutingState.DENY_NEW_CALL) for i in range(PODS)}
            self.states[args[0]] = PodState(args[0])
            self.held = set(range(PODS)) - {args[0]}
            await self.table.put_pods(NS, SVC, self.states.values(), held=self.held)
            self.pruned = True
        elif kind == "drop_pod":
            self.states.pop(args[0], None)
            self.held.discard(args[0])
            await self.table.remove_pod(NS, SVC, args[0])
        elif kind == "cap":
            await self.table.configure(NS, SVC, max_links_per_pod=args[0])
        elif kind == "evict":
            pod, rebind = args
            await evict(store, route_keys, pod, reason="test", rebind_ttl=60 if rebind else None, batch=2)
            assert pod not in await store.read_many(route_keys, USERS)
        elif kind == "tick":
            await self.table.put_pods(NS, SVC, self.states.values(), held=self.held)
            self.pruned = True
        await check(self.redis, route_keys, USERS, pruned=self.pruned)


EXAMPLES = int(os.environ.get("SR_EXAMPLES", "40"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_generated_sequences_keep_scores_equal_to_exact_counts(runner, redis_url, ops):
    async def scenario() -> None:
        redis = aioredis.Redis.from_url(redis_url)
        prefix = f"t{secrets.token_hex(4)}"
        try:
            s = Scenario(redis, prefix)
            await s.table.put_pods(NS, SVC, s.states.values())
            for op in ops:
                await s.run(op)
        finally:
            await delete_prefix(redis, prefix)
            await redis.aclose()

    runner.run(scenario())


# -- concurrent clients ------------------------------------------------------------------------


async def test_concurrent_clients_and_pods_keep_scores_exact(redis, make_redis, prefix):
    seed = int(os.environ.get("SR_SEED", random.randrange(1 << 32)))
    print(f"seed {seed} (SR_SEED={seed} reproduces it)")
    table = await make_route(redis, prefix, pods=8)
    await table.configure(NS, SVC, max_links_per_pod=400)
    route_keys = table.keyring.route(NS, SVC)
    users = [f"c{i}" for i in range(3_000)]

    async def worker(n: int) -> None:
        rng = random.Random(seed + n)
        own = make_redis()
        store = LinkStore(own, table.keyring)
        async with ClientDriver(own, namespace=NS, prefix=prefix) as client:
            servers = [
                ServerDriver(own, namespace=NS, service=SVC, pod_index=i, prefix=prefix) for i in range(8)
            ]
            for _ in range(150):
                uid = rng.choice(users)
                roll = rng.random()
                if roll < 0.5:
                    with contextlib.suppress(NoAvailablePod):
                        await client.compute_linked_pod(NS, uid, SVC)
                elif roll < 0.6:
                    await store.place_many(route_keys, rng.sample(users, 20), 60, exclude=rng.randrange(8))
                elif roll < 0.7:
                    await servers[rng.randrange(8)].set_linked_pod(uid)
                elif roll < 0.8:
                    await servers[rng.randrange(8)].remove_linked_pod(uid, keep_seconds=rng.choice([0, 30]))
                elif roll < 0.9:
                    await servers[rng.randrange(8)].set_load_state(rng.randrange(50))
                elif roll < 0.95:
                    state = rng.choice([RoutingState.READY, RoutingState.DENY_NEW_CALL])
                    await servers[rng.randrange(8)].set_routing_state(state)
                else:
                    with contextlib.suppress(NoAvailablePod):  # a pod not routable is refused
                        await client.set_linked_pod_if_absent(NS, uid, SVC, rng.randrange(9))

    await asyncio.gather(*(worker(n) for n in range(16)))
    await check(redis, route_keys, users, pruned=True, pods=8)
    # An eviction with rebind racing placements leaves them exact too.
    store = LinkStore(redis, table.keyring)
    async with ClientDriver(make_redis(), namespace=NS, prefix=prefix) as client:

        async def place_more() -> None:
            for uid in users[:500]:
                with contextlib.suppress(NoAvailablePod):
                    await client.compute_linked_pod(NS, uid, SVC)

        await asyncio.gather(
            place_more(), evict(store, route_keys, 3, reason="test", rebind_ttl=60, batch=50)
        )
    await check(redis, route_keys, users, pruned=True, pods=8)


async def test_a_pod_whose_links_expired_is_swept_before_the_next_placement(redis, prefix):
    # Pod 0 is never the head while its expired links still count (10 against 5): the sweep of
    # the most overdue pod, before each placement, is what brings its score down.
    table = await make_route(redis, prefix, pods=3)
    await table.configure(NS, SVC, link_ttl=1)
    store = LinkStore(redis, table.keyring)
    route_keys = table.keyring.route(NS, SVC)
    for i in range(10):
        await store.link_if_absent(route_keys, f"short-{i}", 0, 300)
    for i in range(10):
        await store.link_persistent(route_keys, f"kept-{i}", 1 + i % 2, only_if_free=False)
    assert await redis.zrange(route_keys.available, 0, -1, withscores=True) == [
        (b"1", 5.0),
        (b"2", 5.0),
        (b"0", 10.0),
    ]
    await asyncio.sleep(1.1)
    placed = await store.place(route_keys, "newcomer", 300)
    assert placed is not None
    assert placed.pod == 0
    assert await redis.zscore(route_keys.available, "0") == 1.0
    await check(redis, route_keys, ["newcomer"] + [f"kept-{i}" for i in range(10)], pruned=True, pods=3)
