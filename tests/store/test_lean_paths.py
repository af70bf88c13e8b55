"""The hot paths run few commands (issue 21, per-operation Redis CPU).

Every command a script runs costs Redis about a microsecond besides its own work, and one route
is served by one Redis core, so the commands of the common operations are the route's capacity:
a linked user whose gateway's cache missed (PLACE keeps its link), a new user (PLACE places it
when no link is due anywhere) and a read. Counted, not timed (``bench`` times them, figure 13):
``INFO commandstats`` of a Redis nobody else uses, per command name, at 8 and at 512 pods.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from stateful_route.store.links import LinkStore
from tests.routes import NS, SVC, make_route

# What each path runs: the layout check with the route's settings (HMGET), the link, ...
KEPT = Counter({"hmget": 1, "get": 1, "hget": 2, "pttl": 1})  # ... its pod's entry and report, its TTL
KEPT_PERSISTENT = KEPT - Counter({"pttl": 1})
# ... the clock, the head of the expiries and of the available set, the user's waiting mark, then
# storing: the link, the pod's earliest expiry, its shard count, the shard, the shard index,
# the pod's count, its score. No prune: nothing is due.
FIRST = Counter(
    {"hmget": 1, "get": 2, "time": 1, "zrange": 2, "set": 1, "zadd": 3, "hget": 1, "hincrby": 1, "zincrby": 1}
)
READ = Counter({"hget": 1, "get": 1, "pttl": 1})


async def commands(redis: aioredis.Redis, call: Callable[[], Awaitable[object]]) -> Counter[str]:
    """The commands Redis ran for ``call`` (one script call), by name, the call itself left out."""
    await redis.config_resetstat()
    await call()
    stats = await redis.info("commandstats")
    ours = {"evalsha", "eval", "config|resetstat", "info"}
    ran = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})
    return Counter({name: n for name, n in ran.items() if name not in ours})


@pytest.fixture
async def alone(private_redis, make_redis) -> aioredis.Redis:
    """A client of a Redis nobody else uses, so its command counts are ours alone."""
    return make_redis(private_redis().url)


@pytest.mark.parametrize("pods", [8, 512])
async def test_the_hot_paths_run_a_fixed_handful_of_commands_at_any_size(alone, prefix, pods):
    redis = alone
    table = await make_route(redis, prefix, pods=pods)
    store = LinkStore(redis, table.keyring)
    route_keys = table.keyring.route(NS, SVC)
    for i in range(3 * pods):  # a route in use; every script loaded (no retry after NOSCRIPT)
        await store.place(route_keys, f"u{i}", 300)
    await store.read(route_keys, "u0")

    first = await commands(redis, lambda: store.place(route_keys, "new", 300))
    kept = await commands(redis, lambda: store.place(route_keys, "u1", 300))
    read = await commands(redis, lambda: store.read(route_keys, "u1"))
    assert (first, kept, read) == (FIRST, KEPT, READ)
    assert (await store.place(route_keys, "new", 300)).outcome == "kept"  # type: ignore[union-attr]

    pod = (await store.place(route_keys, "u2", 300)).pod  # type: ignore[union-attr]
    await store.link_persistent(route_keys, "u2", pod, only_if_free=False)
    assert await commands(redis, lambda: store.place(route_keys, "u2", 300)) == KEPT_PERSISTENT


async def test_a_placement_prunes_the_chosen_pod_when_a_link_is_due(alone, prefix):
    """The prune skipped above is not skipped when the expiries set says a link is due: the
    chosen pod's expired links are dropped before it takes the user (its count is exact)."""
    redis = alone
    table = await make_route(redis, prefix, pods=1)
    store = LinkStore(redis, table.keyring)
    route_keys = table.keyring.route(NS, SVC)
    for i in range(5):
        await store.place(route_keys, f"short{i}", 0.05)
    await store.place(route_keys, "long", 300)
    await asyncio.sleep(0.1)  # the short links expire

    ran = await commands(redis, lambda: store.place(route_keys, "new", 300))
    assert ran["zremrangebyscore"] >= 1, ran
    assert await store.count_linked(route_keys, 0) == 2
