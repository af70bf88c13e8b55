"""After a mass expiry, no script does unbounded work (issue 21, finding 1).

A pod holding tens of thousands of temporary links that all expired before anything pruned them
made one snapshot, table write or placement walk every due shard in one Lua call: 0.2-0.7 s
during which Redis served nobody else. Now a call prunes at most PRUNE_BUDGET shards and a
read-only call counts at most COUNT_BUDGET (``lua/include/shards.lua``); ``RouteTable.prune``
finishes in further short calls.

Deterministic, not timed: the work a call did is read from the state it left (how many shards
are still due) and, on a private Redis, from ``INFO commandstats`` (how many commands one script
call ran).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from importlib.resources import files

import pytest
import redis.asyncio as aioredis

from stateful_route import PodState
from stateful_route.store.keys import RouteKeys
from stateful_route.store.links import LinkStore
from stateful_route.testing.shards import write_links
from tests.routes import NS, SVC, make_route

_SHARDS_LUA = (files("stateful_route.store") / "lua" / "include" / "shards.lua").read_text()


def _constant(name: str) -> int:
    found = re.search(rf"^local {name} = (\d+)$", _SHARDS_LUA, re.MULTILINE)
    assert found is not None, name
    return int(found[1])


PRUNE_BUDGET = _constant("PRUNE_BUDGET")
COUNT_BUDGET = _constant("COUNT_BUDGET")
EXPIRED = 30_000  # about 625 shards: ten prune budgets, more than two count budgets
PODS = 8


async def mass_expiry(redis: aioredis.Redis, route_keys: RouteKeys, links: int = EXPIRED) -> int:
    """``links`` temporary links on pod 0, all expired and none pruned (their keys are gone, their
    entries scored 1 ms); how many shards they fill."""
    await write_links(redis, route_keys, 0, {f"x{i}": 1.0 for i in range(links)})
    await redis.zadd(route_keys.expiries, {"0": 1})
    return int(await redis.zcard(route_keys.pod(0)))


async def due_shards(redis: aioredis.Redis, route_keys: RouteKeys) -> int:
    return int(await redis.zcount(route_keys.pod(0), "-inf", "(2"))


async def test_a_table_write_prunes_one_budget_and_prune_finishes_in_short_calls(redis, prefix):
    table = await make_route(redis, prefix, pods=PODS)
    route_keys = table.keyring.route(NS, SVC)
    shards = await mass_expiry(redis, route_keys)
    assert shards > 8 * PRUNE_BUDGET

    await table.put_pods(NS, SVC, [PodState(i, load=1) for i in range(PODS)])  # the operator's tick
    assert await due_shards(redis, route_keys) == shards - PRUNE_BUDGET
    left = int(await redis.hget(route_keys.link_counts, "0"))
    # The score still counts what is left: never too low.
    assert await redis.zscore(route_keys.available, "0") == left + 1

    done = await table.prune(NS, SVC, within=60)
    assert done.done
    assert done.calls == math.ceil((shards - PRUNE_BUDGET) / PRUNE_BUDGET)
    assert done.dropped == left
    assert await due_shards(redis, route_keys) == 0
    snapshot = await table.snapshot(NS, SVC)
    assert snapshot.exact
    assert snapshot.links == dict.fromkeys(range(PODS), 0)
    assert await redis.zscore(route_keys.available, "0") == 1  # links 0 + load 1
    assert await redis.hget(route_keys.link_counts, "0") is None


async def test_a_snapshot_counts_one_budget_and_says_when_it_is_not_exact(redis, prefix):
    table = await make_route(redis, prefix, pods=PODS)
    route_keys = table.keyring.route(NS, SVC)
    shards = await mass_expiry(redis, route_keys)
    counted = await redis.zrange(route_keys.pod(0), 0, COUNT_BUDGET - 1)
    expired_in_counted = sum([await redis.zcard(route_keys.shard(0, int(s))) for s in counted])

    snapshot = await table.snapshot(NS, SVC)
    # Read-only, so nothing changed; the first COUNT_BUDGET due shards (earliest first) were
    # counted, the others not: an upper bound, and the snapshot says so.
    assert await due_shards(redis, route_keys) == shards
    assert not snapshot.exact
    assert snapshot.links[0] == EXPIRED - expired_in_counted
    assert all(snapshot.links[i] == 0 for i in range(1, PODS))

    await table.prune(NS, SVC, within=60)
    again = await table.snapshot(NS, SVC)
    assert again.exact
    assert again.links[0] == 0


async def test_placements_and_a_hand_off_page_stay_bounded(redis, prefix):
    table = await make_route(redis, prefix, pods=2)
    route_keys = table.keyring.route(NS, SVC)
    shards = await mass_expiry(redis, route_keys)
    store = LinkStore(redis, table.keyring)

    for n in range(3):
        await store.place(route_keys, f"new{n}", 60)
        # Each placement sweeps pod 0 (its earliest link expired longest ago) one budget further.
        assert await due_shards(redis, route_keys) == shards - (n + 1) * PRUNE_BUDGET

    cursor, *page = await store._linked(
        keys=[route_keys.pod(0), route_keys.config], args=[route_keys.pod_links, 0, 0, 1000]
    )  # one page of a pod whose shards hold only expired links: bounded, and it goes on
    assert page == []
    assert 0 < int(cursor) <= 1000 // 8
    assert [uid async for uid in store.linked_users(route_keys, 0)] == []


# -- the work of one call, counted by Redis itself ----------------------------------------------

# Commands one script call may run, at any size: its budget's shards (3 commands each to prune, 1
# to count) and a few per pod of an 8-pod route (its table, reports, scores).
PER_POD = 12
PRUNE_CALL = 3 * PRUNE_BUDGET + PER_POD * PODS
COUNT_CALL = COUNT_BUDGET + PER_POD * PODS


async def commands_run(redis: aioredis.Redis, call: Callable[[], Awaitable[object]]) -> int:
    """How many commands Redis ran for ``call`` (one script call), the call itself left out."""
    await redis.config_resetstat()
    await call()
    stats = await redis.info("commandstats")
    ours = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_config|resetstat", "cmdstat_info")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ours)


@pytest.fixture
async def alone(private_redis, make_redis) -> aioredis.Redis:
    """A client of a Redis nobody else uses, so its command counts are ours alone."""
    return make_redis(private_redis().url)


async def test_no_script_call_runs_more_than_its_budget_after_a_mass_expiry(alone, prefix):
    redis = alone
    table = await make_route(redis, prefix, pods=PODS)
    route_keys = table.keyring.route(NS, SVC)
    store = LinkStore(redis, table.keyring)
    await table.snapshot(NS, SVC)  # every script loaded: their first EVALSHA is not a retry
    await table.prune(NS, SVC)
    await store.count_linked(route_keys, 0)
    shards = await mass_expiry(redis, route_keys)
    assert shards * 3 > 4 * PRUNE_CALL  # an unbounded walk would run far more

    snapshot = await commands_run(redis, lambda: table.snapshot(NS, SVC))
    count = await commands_run(redis, lambda: store.count_linked(route_keys, 0))
    write = await commands_run(redis, lambda: table.put_pods(NS, SVC, [PodState(i) for i in range(PODS)]))
    place = await commands_run(redis, lambda: store.place(route_keys, "new", 60))
    batch = await commands_run(redis, lambda: store.place_many(route_keys, ["a", "b", "c"], 60))
    prune = await commands_run(redis, lambda: table.prune(NS, SVC, within=0))
    evict = await commands_run(redis, lambda: store.evict_batch(route_keys, 0, 1000))
    assert snapshot <= COUNT_CALL, snapshot
    assert count <= COUNT_CALL, count
    assert write <= PRUNE_CALL + 4 * PODS, write
    assert place <= PRUNE_CALL, place
    assert batch <= PRUNE_CALL + 10 * 3, batch
    assert prune <= PRUNE_CALL, prune
    # A batch evicts whole shards until 1,000 users: a GET and a DEL per user, plus one budget.
    assert evict <= 2 * 1000 + 4 * 128 + PRUNE_CALL, evict
