"""Reading and checking a pod's sharded link sets from tests, independently of the store's scripts.

The store keeps a pod's users in small sorted sets chosen by a hash of the uid (linear hashing,
see ``stateful_route/store/lua/include/shards.lua``). Tests read them here: every entry of a pod, the shard a
uid belongs in (the same rule, computed in Python), and a check of every invariant the scripts
rely on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from stateful_route.store.connection import AnyRedis
from stateful_route.store.keys import RouteKeys
from stateful_route.store.replies import text

__all__ = [
    "HOLDERS",
    "ShardReport",
    "check_pod",
    "expire_entry",
    "holders",
    "pod_entries",
    "shard_of",
    "write_links",
]

# Redis's default zset-max-listpack-entries: a shard above it loses the compact encoding.
LISTPACK_ENTRIES = 128


def shard_of(uid: str, shards: int) -> int:
    """The shard of ``uid`` in a pod of ``shards`` shards (the rule of the Lua ``shard_of``)."""
    h = int(hashlib.sha1(uid.encode()).hexdigest()[:8], 16)
    m = 1
    while m * 2 <= shards:
        m *= 2
    s = h % m
    return h % (2 * m) if s < shards - m else s


def _pairs(reply: Any) -> list[tuple[str, float]]:
    """A ZRANGE ... WITHSCORES reply as (member, score) pairs."""
    return [(text(member), float(score)) for member, score in reply]


async def _width(redis: AnyRedis, route_keys: RouteKeys, pod: int) -> int:
    return int(await redis.hget(route_keys.shard_counts, str(pod)) or 1)


async def pod_entries(redis: AnyRedis, route_keys: RouteKeys, pod: int) -> dict[str, float]:
    """Every entry of ``pod``'s shards, expired ones included: {uid: expiry in ms or inf}."""
    entries: dict[str, float] = {}
    for s in range(await _width(redis, route_keys, pod)):
        for member, score in _pairs(await redis.zrange(route_keys.shard(pod, s), 0, -1, withscores=True)):
            entries[member] = score
    return entries


async def expire_entry(redis: AnyRedis, route_keys: RouteKeys, pod: int, uid: str) -> None:
    """What time does to ``uid``'s entry under ``pod`` when its link expires: it stays, now due
    (scored 1 ms), and its shard and the pod are due too."""
    s = shard_of(uid, await _width(redis, route_keys, pod))
    await redis.zadd(route_keys.shard(pod, s), {uid: 1}, xx=True)
    await redis.zadd(route_keys.pod(pod), {str(s): 1}, lt=True)
    await redis.zadd(route_keys.expiries, {str(pod): 1}, lt=True)


@dataclass(frozen=True)
class ShardReport:
    """What ``check_pod`` read: the pod's entries, its shard count, the largest shard's size and
    how many shards lost the compact encoding."""

    entries: dict[str, float]
    shards: int
    largest: int
    not_compact: int


async def check_pod(redis: AnyRedis, route_keys: RouteKeys, pod: int) -> ShardReport:
    """Assert every invariant of ``pod``'s shards (call it while nobody writes the route): no shard
    exists at or beyond the shard count (checked up to twice it), each holds only uids that hash
    to it; the pod's index names exactly its non-empty shards, each scored at or below its
    earliest entry; the pod's count is the sum of its shards' sizes; a pod without links has no
    count and no shard count left behind."""
    shards = await _width(redis, route_keys, pod)
    index = dict(_pairs(await redis.zrange(route_keys.pod(pod), 0, -1, withscores=True)))
    pipe = redis.pipeline(transaction=False)
    for s in range(2 * shards + 1):
        pipe.zrange(route_keys.shard(pod, s), 0, -1, withscores=True)
        pipe.object("encoding", route_keys.shard(pod, s))
    replies = await pipe.execute()
    entries: dict[str, float] = {}
    largest = not_compact = 0
    non_empty = set()
    for s in range(2 * shards + 1):
        members, encoding = _pairs(replies[2 * s]), replies[2 * s + 1]
        if not members:
            continue
        assert s < shards, f"pod {pod}: shard {s} beyond its {shards} shards"
        non_empty.add(str(s))
        for uid, score in members:
            assert shard_of(uid, shards) == s, (
                f"pod {pod}: {uid} in shard {s}, belongs in {shard_of(uid, shards)}"
            )
            entries[uid] = score
        assert str(s) in index, f"pod {pod}: shard {s} missing from its index"
        assert index[str(s)] <= members[0][1], f"pod {pod}: shard {s} indexed after its earliest entry"
        largest = max(largest, len(members))
        not_compact += encoding != b"listpack"
    assert set(index) == non_empty, (pod, sorted(index), sorted(non_empty))
    count = await redis.hget(route_keys.link_counts, str(pod))
    assert int(count or 0) == len(entries), f"pod {pod}: count {count!r}, {len(entries)} entries"
    if not entries:
        assert count is None, pod
        assert await redis.hget(route_keys.shard_counts, str(pod)) is None, pod
    return ShardReport(entries, shards, largest, not_compact)


# SHARD_LOAD of store/lua/include/shards.lua: a pod splits a shard when it holds more links than
# this per shard.
SHARD_LOAD = 48


async def write_links(redis: AnyRedis, route_keys: RouteKeys, pod: int, entries: dict[str, float]) -> None:
    """Index ``entries`` ({uid: expiry in ms or inf}) under ``pod``, which holds none yet, in one
    pipeline, as the scripts would have one by one (fast set-up of many links; the link keys are
    the caller's)."""
    shards = max(1, -(-len(entries) // SHARD_LOAD))
    by_shard: dict[int, dict[str, float]] = {}
    for uid, score in entries.items():
        by_shard.setdefault(shard_of(uid, shards), {})[uid] = score
    pipe = redis.pipeline(transaction=False)
    for s, members in by_shard.items():
        pipe.zadd(route_keys.shard(pod, s), members)
        pipe.zadd(route_keys.pod(pod), {str(s): min(members.values())})
    if entries:
        pipe.hset(route_keys.link_counts, str(pod), len(entries))
        if shards > 1:
            pipe.hset(route_keys.shard_counts, str(pod), shards)
    await pipe.execute()


# The pods among 0..ARGV[3] whose shards hold ARGV[2] (the shard rule again, in Lua), atomically.
HOLDERS = """
local out = {}
local h = tonumber(string.sub(redis.sha1hex(ARGV[2]), 1, 8), 16)
for pod = 0, tonumber(ARGV[3]) do
  local n = tonumber(redis.call('HGET', ARGV[1] .. 'w', pod) or '1')
  local m = 1
  while m * 2 <= n do m = m * 2 end
  local s = h % m
  if s < n - m then s = h % (2 * m) end
  if redis.call('ZSCORE', ARGV[1] .. pod .. ':' .. s, ARGV[2]) then out[#out + 1] = pod end
end
return out
"""


async def holders(redis: AnyRedis, route_keys: RouteKeys, uid: str, pods: int) -> list[int]:
    """The pods among the first ``pods`` whose shards hold ``uid``, read at one moment."""
    return [
        int(p) for p in await redis.eval(HOLDERS, 1, route_keys.pod(0), route_keys.pod_links, uid, pods - 1)
    ]
