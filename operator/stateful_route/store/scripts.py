"""Lua scripts of the link store and route table, each headed by its contract.

Every script names one declared key (Redis Cluster routes on it) and touches only keys of the
same route, built from prefixes that carry the route's hash tag, so all of a script's keys share
one slot. Pod states are encoded ``"<ready>,<terminating>,<routing>,<load>"`` in the route table
and ``"<routing>,<load>"`` in the pods' own reports; links as described in ``keys``.
"""

from __future__ import annotations

__all__ = [
    "EVICT",
    "IF_ABSENT",
    "PLACE",
    "PLACE_MANY",
    "REMOVE",
    "SERVER_REPORT",
    "SET_PERSISTENT",
    "SNAPSHOT",
    "WRITE_TABLE",
]

# Shared helpers; the placement rule lives only here, so every caller balances the same way.
_PRELUDE = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- '12' -> 12, false ; '12p' -> 12, true
local function link_pod(raw)
  local idx, p = string.match(raw, '^(%d+)(p?)$')
  if not idx then error('corrupt link value') end
  return tonumber(idx), p == 'p'
end

-- A pod's effective state: the route table's entry combined with the pod's own report
-- (the more restrictive routing state wins; a reported load replaces the table's).
local function parse_pod(idx, raw, report)
  local r, t, s, l = string.match(raw, '^(%d),(%d),(%d),(%d+)$')
  local p = {index = tonumber(idx), ready = r == '1', terminating = t == '1',
             routing = tonumber(s), load = tonumber(l)}
  if report then
    local rs, rl = string.match(report, '^(%d),(%d+)$')
    if tonumber(rs) > p.routing then p.routing = tonumber(rs) end
    p.load = tonumber(rl)
  end
  p.routable = p.ready and not p.terminating and p.routing < 2
  return p
end

local function pod_routable(pods_key, reports_key, idx)
  local raw = redis.call('HGET', pods_key, idx)
  if not raw then return false end
  return parse_pod(idx, raw, redis.call('HGET', reports_key, idx)).routable
end

-- The pods' own reports: {index = "<routing>,<load>"}.
local function read_reports(reports_key)
  local reports = {}
  local srv = redis.call('HGETALL', reports_key)
  for i = 1, #srv, 2 do reports[srv[i]] = srv[i + 1] end
  return reports
end

-- Announce a table change: bump the route's version and publish
-- "<prefix>|<routable pods>|<ms>|<version>", e.g. "t|room|0,1,3|1764300000000|42", so clients
-- apply routability at once and in order, ignore older snapshots, and can measure the delay.
local function announce(pods_key, reports_key, version_key, channel, prefix)
  local version = redis.call('INCR', version_key)
  local reports = read_reports(reports_key)
  local raw = redis.call('HGETALL', pods_key)
  local routable = {}
  for i = 1, #raw, 2 do
    if parse_pod(raw[i], raw[i + 1], reports[raw[i]]).routable then
      routable[#routable + 1] = tonumber(raw[i])
    end
  end
  table.sort(routable)
  local stamp = now_ms() .. '|' .. version
  redis.call('PUBLISH', channel, prefix .. '|' .. table.concat(routable, ',') .. '|' .. stamp)
end

local function set_availability(p, cap)
  p.available = p.routable and p.routing == 0 and (cap == 0 or p.links < cap)
end

-- Every pod of the route with its live link count, ordered by index.
local function read_pods(pods_key, reports_key, config_key, pod_links, now)
  local cap = tonumber(redis.call('HGET', config_key, 'cap') or '0')
  local reports = read_reports(reports_key)
  local raw = redis.call('HGETALL', pods_key)
  local pods = {}
  for i = 1, #raw, 2 do
    local p = parse_pod(raw[i], raw[i + 1], reports[raw[i]])
    p.links = redis.call('ZCOUNT', pod_links .. raw[i], now, '+inf')
    p.cap = cap
    set_availability(p, cap)
    pods[#pods + 1] = p
  end
  table.sort(pods, function(a, b) return a.index < b.index end)
  return pods
end

-- The best pod: available, lowest links + load, lowest index on ties.
local function best_of(pods)
  local best, best_score = nil, nil
  for _, p in ipairs(pods) do
    if p.available then
      local score = p.links + p.load
      if best == nil or score < best_score then best, best_score = p, score end
    end
  end
  return best
end

-- Store a temporary link and index it under its pod; expired index entries are pruned here.
local function link_temporary(link_key, pod_links, uid, pod, ttl, now)
  redis.call('SET', link_key, pod, 'PX', ttl)
  local set = pod_links .. pod
  redis.call('ZADD', set, now + ttl, uid)
  redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. now)
end
"""

PLACE = (
    _PRELUDE
    + r"""
-- KEYS[1]: the user's link  KEYS[2]: route table  KEYS[3]: pod reports  KEYS[4]: route config
-- ARGV[1]: per-pod link set prefix  ARGV[2]: uid  ARGV[3]: temporary link TTL in ms
-- returns {pod, remaining TTL in ms (-1: persistent), 0 kept | 1 placed | 2 rebound},
--         or nil when the user has no routable link and no pod is available.
-- A link to a pod that is no longer routable is moved from *that* pod (compare-and-swap:
-- the read and the move happen in this one script), so racing callers agree.
local now = now_ms()
local cur = redis.call('GET', KEYS[1])
local old = nil
if cur then
  local idx, persistent = link_pod(cur)
  if pod_routable(KEYS[2], KEYS[3], idx) then
    if persistent then return {idx, -1, 0} end
    return {idx, redis.call('PTTL', KEYS[1]), 0}
  end
  old = idx
end
local best = best_of(read_pods(KEYS[2], KEYS[3], KEYS[4], ARGV[1], now))
if not best then return nil end
if old ~= nil then redis.call('ZREM', ARGV[1] .. old, ARGV[2]) end
local ttl = tonumber(ARGV[3])
link_temporary(KEYS[1], ARGV[1], ARGV[2], best.index, ttl, now)
if old ~= nil then return {best.index, ttl, 2} end
return {best.index, ttl, 1}
"""
)

PLACE_MANY = (
    _PRELUDE
    + r"""
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route config
-- ARGV[1]: per-pod link set prefix  ARGV[2]: link key prefix  ARGV[3]: temporary link TTL in ms
-- ARGV[4..]: uids
-- returns one entry per uid: its pod (kept if routable, else placed on the best pod, counts
-- updated as it goes so a batch spreads evenly), or nil when no pod is available.
local now = now_ms()
local pods = read_pods(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now)
local by_index = {}
for _, p in ipairs(pods) do by_index[p.index] = p end
local ttl = tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV do
  local uid = ARGV[i]
  local key = ARGV[2] .. uid
  local cur = redis.call('GET', key)
  local pod = false
  local old = nil
  if cur then
    local idx = link_pod(cur)
    local p = by_index[idx]
    if p and p.routable then pod = idx else old = idx end
  end
  if not pod then
    local best = best_of(pods)
    if best then
      if old ~= nil then redis.call('ZREM', ARGV[1] .. old, uid) end
      link_temporary(key, ARGV[1], uid, best.index, ttl, now)
      best.links = best.links + 1
      set_availability(best, best.cap)
      pod = best.index
    end
  end
  out[#out + 1] = pod
end
return out
"""
)

IF_ABSENT = (
    _PRELUDE
    + r"""
-- KEYS[1]: the user's link
-- ARGV[1]: per-pod link set prefix  ARGV[2]: uid  ARGV[3]: pod  ARGV[4]: TTL in ms
-- returns the pod linked after the call: the existing link's, else ARGV[3] (stored temporary).
local cur = redis.call('GET', KEYS[1])
if cur then
  local idx = link_pod(cur)
  return idx
end
link_temporary(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), now_ms())
return tonumber(ARGV[3])
"""
)

SET_PERSISTENT = (
    _PRELUDE
    + r"""
-- KEYS[1]: the user's link
-- ARGV[1]: per-pod link set prefix  ARGV[2]: uid  ARGV[3]: pod
-- ARGV[4]: '1' = only if no other pod holds a persistent link, '0' = unconditionally
-- ARGV[5]: channel  ARGV[6]: message announcing that the link moved
-- returns {1, previous pod or nil} when stored, {0, holder} when another pod holds it.
local pod = tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
local prev = false
if cur then
  local idx, persistent = link_pod(cur)
  if ARGV[4] == '1' and persistent and idx ~= pod then return {0, idx} end
  prev = idx
  if idx ~= pod then
    redis.call('ZREM', ARGV[1] .. idx, ARGV[2])
    redis.call('PUBLISH', ARGV[5], ARGV[6])
  end
end
redis.call('SET', KEYS[1], pod .. 'p')
redis.call('ZADD', ARGV[1] .. pod, '+inf', ARGV[2])
return {1, prev}
"""
)

REMOVE = (
    _PRELUDE
    + r"""
-- KEYS[1]: the user's link
-- ARGV[1]: per-pod link set prefix  ARGV[2]: uid  ARGV[3]: expected pod ('' = any)
-- ARGV[4]: keep a temporary link for this many ms (0 = none)  ARGV[5]: channel  ARGV[6]: message
-- returns the pod the link pointed to when it was removed (compare-and-delete), else nil.
local cur = redis.call('GET', KEYS[1])
if not cur then return nil end
local idx = link_pod(cur)
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= idx then return nil end
local keep = tonumber(ARGV[4])
if keep > 0 then
  link_temporary(KEYS[1], ARGV[1], ARGV[2], idx, keep, now_ms())
else
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', ARGV[1] .. idx, ARGV[2])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return idx
"""
)

EVICT = (
    _PRELUDE
    + r"""
-- KEYS[1]: the pod's link set
-- ARGV[1]: pod  ARGV[2]: link key prefix  ARGV[3]: batch size
-- Removes up to ARGV[3] users from the pod's set, deleting each link only if it still points
-- to this pod (compare-and-delete).
-- returns {users left in the set, {uids whose link was deleted}}
local pod = tonumber(ARGV[1])
local uids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
local removed = {}
for _, uid in ipairs(uids) do
  local key = ARGV[2] .. uid
  local cur = redis.call('GET', key)
  if cur and link_pod(cur) == pod then
    redis.call('DEL', key)
    removed[#removed + 1] = uid
  end
end
if #uids > 0 then redis.call('ZREM', KEYS[1], unpack(uids)) end
return {redis.call('ZCARD', KEYS[1]), removed}
"""
)

# Read-only (a Redis ≥ 7 flag): it runs while writes are paused, and on replicas.
SNAPSHOT = (
    "#!lua flags=no-writes\n"
    + _PRELUDE
    + r"""
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route config  KEYS[4]: route version
-- ARGV[1]: per-pod link set prefix
-- returns {best pod or -1, version, index, ready, terminating, routing, load, links, available, ...}
-- (7 entries per pod, ordered by index)
local pods = read_pods(KEYS[1], KEYS[2], KEYS[3], ARGV[1], now_ms())
local best = best_of(pods)
local out = {best and best.index or -1, tonumber(redis.call('GET', KEYS[4]) or '0')}
for _, p in ipairs(pods) do
  out[#out + 1] = p.index
  out[#out + 1] = p.ready and 1 or 0
  out[#out + 1] = p.terminating and 1 or 0
  out[#out + 1] = p.routing
  out[#out + 1] = p.load
  out[#out + 1] = p.links
  out[#out + 1] = p.available and 1 or 0
end
return out
"""
)

WRITE_TABLE = (
    _PRELUDE
    + r"""
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route config  KEYS[4]: route version
-- ARGV[1]: 'replace' | 'upsert' | 'remove' | 'delete'  ARGV[2]: channel  ARGV[3]: message prefix
-- ARGV[4..]: index, encoded state pairs (replace, upsert) or indices (remove)
-- Announces the change (see announce) only when the table changed; the version survives
-- 'delete' so it never goes back. Returns 1 if changed, else 0.
local mode = ARGV[1]
local changed = false
if mode == 'delete' then
  changed = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) > 0
elseif mode == 'remove' then
  for i = 4, #ARGV do
    if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then changed = true end
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
else
  local wanted = {}
  for i = 4, #ARGV, 2 do
    wanted[ARGV[i]] = true
    if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then
      changed = true
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    end
  end
  if mode == 'replace' then
    for _, idx in ipairs(redis.call('HKEYS', KEYS[1])) do
      if not wanted[idx] then
        redis.call('HDEL', KEYS[1], idx)
        redis.call('HDEL', KEYS[2], idx)
        changed = true
      end
    end
  end
end
if changed then
  announce(KEYS[1], KEYS[2], KEYS[4], ARGV[2], ARGV[3])
  return 1
end
return 0
"""
)

SERVER_REPORT = (
    _PRELUDE
    + r"""
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route version
-- ARGV[1]: pod  ARGV[2]: routing state ('' = keep)  ARGV[3]: load ('' = keep)
-- ARGV[4]: channel  ARGV[5]: message prefix
-- Announces (see announce) when the reported routing state changes; load alone is read at
-- placement time. Returns 1 if the routing state changed, else 0.
local cur = redis.call('HGET', KEYS[2], ARGV[1])
local routing, load = 0, 0
if cur then
  local r, l = string.match(cur, '^(%d),(%d+)$')
  routing, load = tonumber(r), tonumber(l)
end
local new_routing = routing
if ARGV[2] ~= '' then new_routing = tonumber(ARGV[2]) end
if ARGV[3] ~= '' then load = tonumber(ARGV[3]) end
redis.call('HSET', KEYS[2], ARGV[1], new_routing .. ',' .. load)
if new_routing ~= routing then
  announce(KEYS[1], KEYS[2], KEYS[3], ARGV[4], ARGV[5])
  return 1
end
return 0
"""
)
