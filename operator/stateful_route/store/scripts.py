"""Lua scripts of the link store and route table, each headed by its contract.

Every script names one declared key (Redis Cluster routes on it) and touches only keys of the
same route, built from prefixes that carry the route's hash tag, so all of a script's keys share
one slot. Pod states are encoded ``"<ready>,<terminating>,<routing>,<load>"`` in the route table
and ``"<routing>,<load>"`` in the pods' own reports; links as described in ``keys``.

Placement reads the best pod from the head of the route's *available set* (a sorted set of the
available pods scored by links + load) instead of scanning every pod, so its cost is O(log pods).
When no pod there can take the user, it takes the head of the *spare set*: outdated pods the
operator holds back from new users only because an updated pod takes them (the table's *held*
set), which would otherwise be available. So new users are never left with nowhere to go
between the operator's runs, when the updated pods fill up or drain themselves. Every script
that changes a pod's links, load, routing state or availability keeps both sets true
(``rescore``). Temporary links expire without telling anyone, so a pod's score may still
count links that expired since it was last re-scored. Three things bound that: the chosen pod
is pruned before it is used; every placement first re-scores the pod whose earliest link expired
longest ago (``sweep``, ordered by the route's ``expiries`` set), so in steady use each pod is
swept about every <pods> placements; and every table write (the operator's tick, every
``reconcile_interval``) re-scores every pod from exact counts.

Each pod's users are kept in small sorted sets chosen by a hash of the uid (*shards*, split one
at a time as the pod grows: see the prelude), each small enough for Redis's compact encoding,
with the pod's link count beside them; pruning touches only the shards holding expired links.
"""

from __future__ import annotations

__all__ = [
    "CONFIGURE",
    "COUNT",
    "EVICT",
    "HAND_OFF",
    "IF_ABSENT",
    "LINKED",
    "PLACE",
    "PLACE_MANY",
    "PUT_PHASES",
    "READ",
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

-- '12' -> 12, false ; '12p' -> 12, true ; anything else -> nil (corrupt)
local function parse_link(raw)
  local idx, p = string.match(raw, '^(%d+)(p?)$')
  if not idx then return nil end
  return tonumber(idx), p == 'p'
end

-- A user's link value, '' (corrupt) when the key holds another type than a string.
local function get_link(key)
  local raw = redis.pcall('GET', key)
  if type(raw) == 'table' and raw.err then return '' end
  return raw
end

local function link_pod(raw)
  local idx, persistent = parse_link(raw)
  if not idx then error('corrupt link value') end
  return idx, persistent
end

-- Whether the route has a table: its config is written with the table's first write and
-- deleted with the table. Writes that would create a link or a report in a route without
-- one refuse (nothing written after a deletion may outlive it).
local function has_table(config)
  return redis.call('EXISTS', config) == 1
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
    p.reported = tonumber(rs)
  end
  p.routable = p.ready and not p.terminating and p.routing < 2
  return p
end

-- The keys a script needs to read pods and keep the available set true.
-- `expiries` (keys.RouteKeys.expiries) holds, per pod, when its earliest temporary link expires;
-- `counts` the links each pod's shards hold; `widths` how many shards each pod has (see below);
-- `held_back` the pods written DenyNewCall only as outdated (WRITE_TABLE), `spare` those of them
-- that would be available otherwise, scored like the available set.
local function route(pods, reports, config, available, pod_links)
  return {pods = pods, reports = reports, config = config, available = available,
          pod_links = pod_links, expiries = pod_links .. 'exp', counts = pod_links .. 'n',
          widths = pod_links .. 'w', held_back = available .. ':held', spare = available .. ':spare'}
end

-- A pod's links live in *shards*: small sorted sets (uid -> expiry in ms, +inf when
-- persistent) that Redis keeps in its compact listpack encoding (up to
-- zset-max-listpack-entries members, 128 by default): about 25 bytes a link, where one large
-- sorted set costs about 110. A uid's shard follows from a hash of the uid by linear hashing:
-- with n shards and m the largest power of two <= n, shard = h mod m, or h mod 2m when that is
-- below n - m (those shards are split already). Whenever a pod holds more than SHARD_LOAD links
-- per shard, shard n - m splits into itself and shard n, so shards stay small at any size and a
-- split moves one shard's links. Beside the shards: `pod_links .. idx` (the pod's non-empty
-- shards, each scored at or below its earliest expiry, so pruning touches only shards that are
-- due), `counts` (links held in the pod's shards, expired ones not yet pruned included: exactly
-- the sum of the shards' sizes) and `widths` (the pod's shard count, absent = 1). A pod whose
-- count falls to zero starts again from one shard.
local SHARD_LOAD = 48

local function uid_hash(uid)
  return tonumber(string.sub(redis.sha1hex(uid), 1, 8), 16)
end

local function low_power(n)
  local m = 1
  while m * 2 <= n do m = m * 2 end
  return m
end

local function width(rt, idx)
  return tonumber(redis.call('HGET', rt.widths, idx) or '1')
end

local function shard_key(rt, idx, s)
  return rt.pod_links .. idx .. ':' .. s
end

-- The shard of `uid` in a pod of n shards.
local function shard_of(n, uid)
  local m = low_power(n)
  local h = uid_hash(uid)
  local s = h % m
  if s < n - m then s = h % (2 * m) end
  return s
end

-- Links held in the pod's shards (expired ones not yet pruned included).
local function held(rt, idx)
  return tonumber(redis.call('HGET', rt.counts, idx) or '0')
end

local function count_add(rt, idx, d)
  local n = redis.call('HINCRBY', rt.counts, idx, d)
  if n <= 0 then
    redis.call('HDEL', rt.counts, idx)
    redis.call('HDEL', rt.widths, idx)
  end
  return n
end

-- Write `entries` ({score, uid, ...}) into the (empty) shard s and index it, or unindex it.
local function refill(rt, idx, s, entries)
  if #entries == 0 then
    redis.call('ZREM', rt.pod_links .. idx, s)
    return
  end
  local key = shard_key(rt, idx, s)
  redis.call('ZADD', key, unpack(entries))
  redis.call('ZADD', rt.pod_links .. idx, redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2], s)
end

-- Split the pod's next shard when it holds more than SHARD_LOAD links per shard. Both halves
-- are written afresh, so a shard that outgrew the listpack encoding gets it back.
local function maybe_split(rt, idx, links, n)
  if links <= SHARD_LOAD * n then return end
  local m = low_power(n)
  local from = n - m
  redis.call('HSET', rt.widths, idx, n + 1)
  local key = shard_key(rt, idx, from)
  local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  if #entries == 0 then return end
  local stay, go = {}, {}
  for i = 1, #entries, 2 do
    local half = stay
    if uid_hash(entries[i]) % (2 * m) ~= from then half = go end
    half[#half + 1] = entries[i + 1]
    half[#half + 1] = entries[i]
  end
  redis.call('DEL', key)
  refill(rt, idx, from, stay)
  refill(rt, idx, n, go)
end

-- Index `uid` under pod idx with `score` (expiry in ms, or '+inf'): the pod's link count when
-- the uid was not there, else false (its score is updated).
local function index_link(rt, idx, uid, score)
  local n = width(rt, idx)
  local s = shard_of(n, uid)
  local added = redis.call('ZADD', shard_key(rt, idx, s), score, uid)
  redis.call('ZADD', rt.pod_links .. idx, 'LT', score, s)
  if added == 0 then return false end
  local links = count_add(rt, idx, 1)
  maybe_split(rt, idx, links, n)
  return links
end

-- Remove `uid` from pod idx's links; whether it was there.
local function unindex_link(rt, idx, uid)
  local s = shard_of(width(rt, idx), uid)
  local key = shard_key(rt, idx, s)
  if redis.call('ZREM', key, uid) == 0 then return false end
  if redis.call('EXISTS', key) == 0 then redis.call('ZREM', rt.pod_links .. idx, s) end
  count_add(rt, idx, -1)
  return true
end

-- Drop pod idx's expired links, touching only the shards that are due; how many were dropped.
local function prune(rt, idx, now)
  local index = rt.pod_links .. idx
  local dropped = 0
  for _, s in ipairs(redis.call('ZRANGE', index, '-inf', '(' .. now, 'BYSCORE')) do
    local key = shard_key(rt, idx, s)
    dropped = dropped + redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if first[1] then
      redis.call('ZADD', index, first[2], s)
    else
      redis.call('ZREM', index, s)
    end
  end
  if dropped > 0 then count_add(rt, idx, -dropped) end
  return dropped
end

-- The pod's live links at `now`, exactly, without writing (for read-only scripts): its count
-- less the expired links of its due shards.
local function live_links(rt, idx, now)
  local n = held(rt, idx)
  for _, s in ipairs(redis.call('ZRANGE', rt.pod_links .. idx, '-inf', '(' .. now, 'BYSCORE')) do
    n = n - redis.call('ZCOUNT', shard_key(rt, idx, s), '-inf', '(' .. now)
  end
  return n
end

local function pod_state(rt, idx)
  local raw = redis.call('HGET', rt.pods, idx)
  if not raw then return nil end
  local p = parse_pod(idx, raw, redis.call('HGET', rt.reports, idx))
  p.held_back = redis.call('SISMEMBER', rt.held_back, idx) == 1
  return p
end

local function pod_routable(rt, idx)
  local p = pod_state(rt, idx)
  return p ~= nil and p.routable
end

-- Whether the operator marks pod `idx` outdated (a rolling update or a scale-down will replace
-- it): its entry in the route's phases (PUT_PHASES; core.state.PodPhase: "<deadline>,<0|1>").
local function outdated(phases_key, idx)
  local phase = redis.pcall('HGET', phases_key, idx)
  return type(phase) == 'string' and string.sub(phase, -2) == ',1'
end

-- The route's policy: the link cap (0 = none) and the temporary link TTL in ms (the caller's
-- fallback when the route has none).
local function policy(rt, fallback_ttl)
  local cfg = redis.call('HMGET', rt.config, 'cap', 'ttl')
  return tonumber(cfg[1] or '0'), tonumber(cfg[2] or fallback_ttl)
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

-- Available: new users go here. Spare: held back only as outdated (not by its own report, the
-- cap, a grace or a termination), so new users go here when no pod is available.
local function set_availability(p, cap)
  local room = cap == 0 or p.links < cap
  p.available = p.routable and p.routing == 0 and room
  p.spare = not p.available and p.held_back == true and p.routable and (p.reported or 0) == 0 and room
end

-- Re-score one pod from exact counts: drop its expired temporary links, count the rest, and
-- keep it in the available set (scored links + load) exactly while it is available, in the
-- spare set exactly while it is spare. O(log links + due shards).
local function rescore(rt, idx, cap, now)
  prune(rt, idx, now)
  local p = pod_state(rt, idx)
  local pool = nil
  if p then
    p.links = held(rt, idx)
    set_availability(p, cap)
    if p.available then pool = rt.available elseif p.spare then pool = rt.spare end
  end
  for _, key in ipairs({rt.available, rt.spare}) do
    if key == pool then
      redis.call('ZADD', key, p.links + p.load, idx)
    else
      redis.call('ZREM', key, idx)
    end
  end
end

-- Re-score the pod whose earliest temporary link expired longest ago, if any is overdue: one pod
-- per placement, so a pod that is never chosen still stops counting its expired links within
-- a few placements (about one per pod) instead of keeping a score that hides its free room.
local function sweep(rt, now)
  local due = redis.call('ZRANGE', rt.expiries, 0, 0, 'WITHSCORES')
  if due[1] == nil or tonumber(due[2]) >= now then return false end
  local idx = due[1]
  rescore(rt, idx, policy(rt, '0'), now)
  local first = redis.call('ZRANGE', rt.pod_links .. idx, 0, 0, 'WITHSCORES')
  if first[1] and first[2] ~= 'inf' then
    redis.call('ZADD', rt.expiries, first[2], idx)
  else
    redis.call('ZREM', rt.expiries, idx)
  end
  return true
end

-- Sweep every overdue pod (a batch does this once: its clock does not move while it runs).
local function sweep_all(rt, now)
  for _ = 1, redis.call('ZCARD', rt.expiries) do
    if not sweep(rt, now) then return end
  end
end

-- The best pod other than `exclude` (an index as text, '' for none) and the set it heads, or
-- nil: the head of the available set (lowest links + load; ties by index as text), else of the
-- spare set, after one `sweep`. Its expired links are pruned first, which only lowers its
-- score, so it stays the head. O(log pods). `swept`: every overdue pod was swept at `now`
-- already (`sweep_all`), so neither the sweep nor the prune can find anything.
local function choose(rt, exclude, now, swept)
  if not swept then sweep(rt, now) end
  for _, pool in ipairs({rt.available, rt.spare}) do
    for _, idx in ipairs(redis.call('ZRANGE', pool, 0, 1)) do
      if idx ~= exclude then
        if not swept then
          local pruned = prune(rt, idx, now)
          if pruned > 0 then redis.call('ZINCRBY', pool, -pruned, idx) end
        end
        return idx, pool
      end
    end
  end
  return nil
end

-- Link `uid` temporarily to `idx`, which `choose` just returned from `pool`, and count it in
-- its score; a pod that reaches the cap leaves the pool.
local function link_chosen(rt, link_key, uid, idx, ttl, cap, now, pool)
  redis.call('SET', link_key, idx, 'PX', ttl)
  redis.call('ZADD', rt.expiries, 'LT', now + ttl, idx)
  local links = index_link(rt, idx, uid, now + ttl)
  if links then
    if cap > 0 and links >= cap then
      redis.call('ZREM', pool, idx)
    else
      redis.call('ZINCRBY', pool, 1, idx)
    end
  end
end

-- A user waiting for an updated pod (see PLACE) is marked "<when its wait began>,<wait ms>".
-- The mark outlives the wait by 10 minutes, so a wait spent is not begun again while the user's
-- link still points to the pod it left (nobody evicted it: the operator is down); a user
-- already waiting keeps the mark it has (an eviction after a lookup does not lengthen the wait).
local function mark_waiting(key, now, wait)
  redis.call('SET', key, now .. ',' .. wait, 'PX', wait + 600000, 'NX')
end

-- How many ms a marked user has still to wait: the mark's wait, or the route's present one if
-- shorter (an edit shortens waits under way), from when it began; <= 0 once spent.
local function still_waiting(rt, marked, now)
  local began, wait = string.match(marked, '^(%d+),(%d+)$')
  if not began then return 0 end
  local now_wait = tonumber(redis.call('HGET', rt.config, 'wait') or wait)
  return tonumber(began) + math.min(tonumber(wait), now_wait) - now
end

-- Store a temporary link to any pod and index it under that pod (the caller re-scores the pod).
local function link_temporary(rt, link_key, uid, idx, ttl, now)
  redis.call('SET', link_key, idx, 'PX', ttl)
  index_link(rt, idx, uid, now + ttl)
  redis.call('ZADD', rt.expiries, 'LT', now + ttl, idx)
end
"""

PLACE = (
    _PRELUDE
    + r"""
-- KEYS[1]: the user's link (the route's base, 'l:', the uid)
-- ARGV[1]: the route's base (keys.RouteKeys.base; the other keys' names are built from it)
-- ARGV[2]: temporary link TTL in ms when the route's policy has none
-- ARGV[3]: a pod the user must leave and never be placed on ('' = none)
-- returns {pod, remaining TTL in ms (-1: persistent), 0 kept | 1 placed | 2 rebound, 1 if a
--         corrupt link value was replaced else 0},
--         or nil when the user has no routable link and no pod is available or spare,
--         or {-1, ms} when the user waits for an updated pod (below) at most ms more.
-- A user evicted early in a rolling update is marked waiting ('w:' uid, see EVICT) for a
-- bounded time: while only outdated pods take users it is not placed (it would move again when
-- that pod is replaced), so the pod is the updated one the operator's rebind or the next
-- lookup finds. A user whose link points to an outdated pod that became unroutable before the
-- operator evicted it is marked so here, for the route's 'wait' (cfg, ms; 0 = none). A marked
-- user waits until its wait has passed since its mark (see still_waiting), then is placed
-- wherever it can be. One GET for users without a routable link; the phases only for marked
-- ones and rebinds.
-- A link value that does not parse (or a key of another type) counts as no link: it is
-- replaced by a placement.
-- A link to a pod that is no longer routable (or to ARGV[3]) is moved from *that* pod
-- (compare-and-swap: the read and the move happen in this one script), so racing callers agree.
-- The hot path of every new user: few arguments (each costs the client encoding time).
local base = ARGV[1]
local rt = route(base .. 'pods', base .. 'srv', base .. 'cfg', base .. 'avail', base .. 'ps:')
local uid, exclude = string.sub(KEYS[1], #base + 3), ARGV[3]
local cur = get_link(KEYS[1])
local old, corrupt = nil, 0
if cur then
  local idx, persistent = parse_link(cur)
  if not idx then
    corrupt = 1
  elseif tostring(idx) ~= exclude and pod_routable(rt, idx) then
    if persistent then return {idx, -1, 0, 0} end
    return {idx, redis.call('PTTL', KEYS[1]), 0, 0}
  else
    old = idx
  end
end
local now = now_ms()
local best, pool = choose(rt, exclude, now)
if not best then return nil end
local mark, phases = base .. 'w:' .. uid, base .. 'phase'
local marked = redis.call('GET', mark)
if marked then
  local left = still_waiting(rt, marked, now)
  if left > 0 and outdated(phases, best) then return {-1, left, 0, 0} end
  redis.call('DEL', mark)
elseif old ~= nil and outdated(phases, old) and outdated(phases, best) then
  local wait = tonumber(redis.call('HGET', rt.config, 'wait') or '0')
  if wait > 0 then
    mark_waiting(mark, now, wait)
    return {-1, wait, 0, 0}
  end
end
local cap, ttl = policy(rt, ARGV[2])
if old ~= nil then
  unindex_link(rt, old, uid)
  rescore(rt, old, cap, now)
end
link_chosen(rt, KEYS[1], uid, best, ttl, cap, now, pool)
if old ~= nil then return {tonumber(best), ttl, 2, 0} end
return {tonumber(best), ttl, 1, corrupt}
"""
)

PLACE_MANY = (
    _PRELUDE
    + r"""
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route config  KEYS[4]: available pods
-- ARGV[1]: per-pod link set prefix  ARGV[2]: link key prefix  ARGV[3]: temporary link TTL in ms
-- when the route's policy has none  ARGV[4]: a pod the users must leave ('' = none)
-- ARGV[5..]: uids
-- returns one entry per uid: its pod (kept if routable and not ARGV[4], else placed on the best
-- pod, scores updated as it goes so a batch spreads evenly), or nil when no pod is available or
-- spare.
-- A link value that does not parse counts as no link (replaced by a placement), as in PLACE.
local rt = route(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1])
local exclude = ARGV[4]
local now = now_ms()
local cap, ttl = policy(rt, ARGV[3])
local routable = {}  -- index -> whether routable, read once per pod
local left = {}  -- pods whose users moved away, re-scored at the end
local out = {}
sweep_all(rt, now)
for i = 5, #ARGV do
  local uid = ARGV[i]
  local key = ARGV[2] .. uid
  local cur = get_link(key)
  local pod = false
  local old = nil
  local idx = cur and parse_link(cur)
  if idx then
    if routable[idx] == nil then routable[idx] = pod_routable(rt, idx) end
    if routable[idx] and tostring(idx) ~= exclude then pod = idx else old = idx end
  end
  if not pod then
    local best, pool = choose(rt, exclude, now, true)
    if best then
      if old ~= nil then
        unindex_link(rt, old, uid)
        left[old] = true
      end
      link_chosen(rt, key, uid, best, ttl, cap, now, pool)
      pod = tonumber(best)
    end
  end
  out[#out + 1] = pod
end
for idx in pairs(left) do rescore(rt, idx, cap, now) end
return out
"""
)

HAND_OFF = (
    _PRELUDE
    + r"""
-- KEYS[1]: the user's link  KEYS[2]: route table  KEYS[3]: pod reports  KEYS[4]: route config
-- KEYS[5]: available pods  KEYS[6]: the route's phases
-- ARGV[1]: per-pod link set prefix  ARGV[2]: uid  ARGV[3]: the pod handing the user off
-- ARGV[4]: channel  ARGV[5]: message announcing that the link moved  ARGV[6]: TTL in ms for a
-- temporary link that has none, when the route's policy has none either
-- returns {new pod, remaining TTL in ms (-1: persistent)}; {-1} when no other pod is available
--         or spare, or only a spare one (an updated pod exists but stopped taking users since
--         the operator's last run: retry); {-3} when only outdated pods take users (none is
--         updated yet); {-2} when the link did not parse (or the key held another type): it
--         routed nobody, so it is deleted and leaves ARGV[3]'s set (a hand-off of every user
--         must end); nil when the link does not point to ARGV[3] (absent, expired, or moved
--         meanwhile).
-- Compare-and-swap: the link moves only if it still points to ARGV[3], to the best available
-- pod other than ARGV[3] (the placement rule, `choose`). It keeps its kind: a persistent link
-- stays persistent, a temporary one keeps its remaining TTL.
-- The best pod is outdated only while no updated pod takes new users (the operator holds
-- outdated pods back as soon as one does): a user handed off to it now would move again when
-- it is replaced, so the user stays here (and is evicted, then placed on an updated pod, by
-- the operator once this pod stops).
local rt = route(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1])
local uid, from = ARGV[2], ARGV[3]
local cur = get_link(KEYS[1])
if not cur then return nil end
local idx, persistent = parse_link(cur)
local now = now_ms()
if not idx then
  redis.call('DEL', KEYS[1])
  if unindex_link(rt, from, uid) then rescore(rt, from, policy(rt, ARGV[6]), now) end
  redis.call('PUBLISH', ARGV[4], ARGV[5])
  return {-2}
end
if tostring(idx) ~= from then return nil end
local best, pool = choose(rt, from, now)
if not best or pool == rt.spare then return {-1} end
if outdated(KEYS[6], best) then return {-3} end
local cap, ttl = policy(rt, ARGV[6])
if persistent then
  ttl = -1
else
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then ttl = left end
end
unindex_link(rt, from, uid)
rescore(rt, from, cap, now)
if persistent then
  redis.call('SET', KEYS[1], best .. 'p')
  index_link(rt, best, uid, '+inf')
  rescore(rt, best, cap, now)
else
  link_chosen(rt, KEYS[1], uid, best, ttl, cap, now, pool)
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return {tonumber(best), ttl}
"""
)

IF_ABSENT = (
    _PRELUDE
    + r"""
-- KEYS[1]: the user's link  KEYS[2]: route table  KEYS[3]: pod reports  KEYS[4]: route config
-- KEYS[5]: available pods
-- ARGV[1]: per-pod link set prefix  ARGV[2]: uid  ARGV[3]: pod  ARGV[4]: TTL in ms when the
-- route's policy has none
-- returns {the pod linked after the call, its remaining TTL in ms (-1: persistent), 1 if a link
-- to an unroutable pod was moved else 0}: the existing link's if its pod is routable, else
-- ARGV[3] (stored temporary); {-1}, writing nothing, when ARGV[3] is not a routable pod of the
-- route (a link to it would be answered by nobody's rules). The TTL is read here, atomically,
-- so a caller never caches a link longer than it lives. Returns nil, writing nothing, when the
-- route has no table (deleted, or not written yet). A link to an unroutable pod, or one that
-- does not parse, counts as absent (as for a placement).
if not has_table(KEYS[4]) then return nil end
local rt = route(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1])
local cur = get_link(KEYS[1])
local old = nil
if cur then
  local idx = parse_link(cur)
  if idx and pod_routable(rt, idx) then return {idx, redis.call('PTTL', KEYS[1]), 0} end
  old = idx
end
if not pod_routable(rt, tonumber(ARGV[3])) then return {-1} end
local now = now_ms()
local cap, ttl = policy(rt, ARGV[4])
if old ~= nil then
  unindex_link(rt, old, ARGV[2])
  rescore(rt, old, cap, now)
end
link_temporary(rt, KEYS[1], ARGV[2], ARGV[3], ttl, now)
rescore(rt, ARGV[3], cap, now)
return {tonumber(ARGV[3]), ttl, old ~= nil and 1 or 0}
"""
)

PUT_PHASES = r"""
-- KEYS[1]: the route's phases (a hash: index -> core.state.PodPhase's encoding)
-- ARGV: index, phase, index, phase, ...
-- Replaces the whole hash in one step: a reader (HAND_OFF, displays) sees the old phases or
-- the new ones, never a mix.
redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 0
"""

# Read-only: a value and its TTL in one atomic step (a link must not expire between the two).
READ = r"""#!lua flags=no-writes
-- KEYS[1]: the user's link
-- returns {value or false, remaining TTL in ms (-1: none, -2: absent)}
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
"""

# Read-only: a pod's live links, exactly.
COUNT = (
    "#!lua flags=no-writes\n"
    + _PRELUDE
    + r"""
-- KEYS[1]: the pod's shards (keys.RouteKeys.pod)  ARGV[1]: per-pod link set prefix  ARGV[2]: pod
-- returns how many users are linked to the pod now (expired temporary links left out).
local rt = route('', '', '', '', ARGV[1])
return live_links(rt, ARGV[2], now_ms())
"""
)

# Read-only: a page of a pod's users, walking its shards in order.
LINKED = (
    "#!lua flags=no-writes\n"
    + _PRELUDE
    + r"""
-- KEYS[1]: the pod's shards (keys.RouteKeys.pod)  ARGV[1]: per-pod link set prefix  ARGV[2]: pod
-- ARGV[3]: the first shard to read  ARGV[4]: users wanted
-- returns {the next shard to read (0: none left), uid, ...}: the live users of shards ARGV[3]
-- on, whole shards at a time, until at least ARGV[4] were read. A split moves users from a
-- shard to a later one, so walking shards in order meets every user linked throughout (some
-- twice).
local rt = route('', '', '', '', ARGV[1])
local now = now_ms()
local n = width(rt, ARGV[2])
local out = {0}
local s = tonumber(ARGV[3])
while s < n and #out <= tonumber(ARGV[4]) do
  for _, uid in ipairs(redis.call('ZRANGE', shard_key(rt, ARGV[2], s), now, '+inf', 'BYSCORE')) do
    out[#out + 1] = uid
  end
  s = s + 1
end
if s < n then out[1] = s end
return out
"""
)

SET_PERSISTENT = (
    _PRELUDE
    + r"""
-- KEYS[1]: the user's link  KEYS[2]: route table  KEYS[3]: pod reports  KEYS[4]: route config
-- KEYS[5]: available pods
-- ARGV[1]: per-pod link set prefix  ARGV[2]: uid  ARGV[3]: pod
-- ARGV[4]: '1' = only if no other pod holds a persistent link, '0' = unconditionally
-- ARGV[5]: channel  ARGV[6]: message announcing that the link moved
-- returns {1, previous pod or nil} when stored, {0, holder} when another pod holds it, nil
-- (nothing written) when the route has no table: a persistent link must not outlive a deletion.
if not has_table(KEYS[4]) then return nil end
local rt = route(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1])
local pod = tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
local prev = false
local now = now_ms()
local cap = policy(rt, '0')
if cur then
  local idx, persistent = link_pod(cur)
  if ARGV[4] == '1' and persistent and idx ~= pod then return {0, idx} end
  prev = idx
  if idx ~= pod then
    unindex_link(rt, idx, ARGV[2])
    rescore(rt, idx, cap, now)
    redis.call('PUBLISH', ARGV[5], ARGV[6])
  end
end
redis.call('SET', KEYS[1], pod .. 'p')
index_link(rt, pod, ARGV[2], '+inf')
rescore(rt, pod, cap, now)
return {1, prev}
"""
)

REMOVE = (
    _PRELUDE
    + r"""
-- KEYS[1]: the user's link  KEYS[2]: route table  KEYS[3]: pod reports  KEYS[4]: route config
-- KEYS[5]: available pods
-- ARGV[1]: per-pod link set prefix  ARGV[2]: uid  ARGV[3]: expected pod ('' = any)
-- ARGV[4]: keep a temporary link for this many ms (0 = none)  ARGV[5]: channel  ARGV[6]: message
-- returns the pod the link pointed to when it was removed (compare-and-delete), else nil.
local cur = redis.call('GET', KEYS[1])
if not cur then return nil end
local idx = link_pod(cur)
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= idx then return nil end
local rt = route(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1])
local now = now_ms()
local keep = tonumber(ARGV[4])
-- No table (deleted): the link goes, none is kept (its pod set would outlive the route).
if keep > 0 and has_table(KEYS[4]) then
  link_temporary(rt, KEYS[1], ARGV[2], idx, keep, now)
else
  redis.call('DEL', KEYS[1])
  unindex_link(rt, idx, ARGV[2])
end
rescore(rt, idx, policy(rt, '0'), now)
redis.call('PUBLISH', ARGV[5], ARGV[6])
return idx
"""
)

EVICT = (
    _PRELUDE
    + r"""
-- KEYS[1]: the pod's shards (keys.RouteKeys.pod)  KEYS[2]: route table  KEYS[3]: pod reports
-- KEYS[4]: route config  KEYS[5]: available pods
-- ARGV[1]: pod  ARGV[2]: link key prefix  ARGV[3]: batch size  ARGV[4]: per-pod link set prefix
-- ARGV[5]: mark the users unlinked as waiting for an updated pod for this many ms (0 = no;
-- see PLACE)  ARGV[6]: the waiting marks' prefix
-- Removes whole shards of the pod's users, at least ARGV[3] users unless fewer are left,
-- deleting each link only if it still points to this pod (compare-and-delete), and re-scores
-- the pod. A link value that does not parse is deleted too (nobody can route by it, and it
-- must not stall the eviction) and reported.
-- returns {users left to the pod, {uids whose link was deleted}, {uids whose corrupt link was deleted}}
local pod = tonumber(ARGV[1])
local rt = route(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[4])
local removed, corrupt = {}, {}
local taken = 0
local hold, now = tonumber(ARGV[5]), now_ms()
while taken < tonumber(ARGV[3]) do
  local s = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not s then break end
  local shard = shard_key(rt, ARGV[1], s)
  local uids = redis.call('ZRANGE', shard, 0, -1)
  for _, uid in ipairs(uids) do
    local key = ARGV[2] .. uid
    local cur = redis.call('GET', key)
    if cur then
      local idx = string.match(cur, '^(%d+)p?$')
      if not idx then
        redis.call('DEL', key)
        corrupt[#corrupt + 1] = uid
      elseif tonumber(idx) == pod then
        redis.call('DEL', key)
        removed[#removed + 1] = uid
        if hold > 0 then mark_waiting(ARGV[6] .. uid, now, hold) end
      end
    end
  end
  redis.call('DEL', shard)
  redis.call('ZREM', KEYS[1], s)
  taken = taken + #uids
end
if taken > 0 then count_add(rt, ARGV[1], -taken) end
rescore(rt, ARGV[1], policy(rt, '0'), now)
return {held(rt, ARGV[1]), removed, corrupt}
"""
)

# Read-only (a Redis ≥ 7 flag): it runs while writes are paused, and on replicas.
SNAPSHOT = (
    "#!lua flags=no-writes\n"
    + _PRELUDE
    + r"""
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route config  KEYS[4]: route version
-- KEYS[5]: available pods
-- ARGV[1]: per-pod link set prefix
-- returns {best pod or -1, version, born, index, ready, terminating, routing, load, links,
-- available, ...} (7 entries per pod, ordered by index; born: see WRITE_TABLE). Links are
-- exact live counts; the best pod is the head of the available set, else of the spare set: the
-- pod placement would choose now.
local now = now_ms()
local rt = route(KEYS[1], KEYS[2], KEYS[3], KEYS[5], ARGV[1])
local cap = policy(rt, '0')
local reports = read_reports(KEYS[2])
local raw = redis.call('HGETALL', KEYS[1])
local pods = {}
for i = 1, #raw, 2 do
  local p = parse_pod(raw[i], raw[i + 1], reports[raw[i]])
  p.links = live_links(rt, raw[i], now)
  set_availability(p, cap)
  pods[#pods + 1] = p
end
table.sort(pods, function(a, b) return a.index < b.index end)
local head = redis.call('ZRANGE', rt.available, 0, 0)
if head[1] == nil then head = redis.call('ZRANGE', rt.spare, 0, 0) end
local out = {tonumber(head[1] or '-1'), tonumber(redis.call('GET', KEYS[4]) or '0'),
             tonumber(redis.call('HGET', KEYS[3], 'born') or '0')}
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
-- KEYS[5]: available pods  KEYS[6]: pod instances
-- ARGV[1]: 'replace' | 'upsert' | 'remove' | 'delete'  ARGV[2]: channel  ARGV[3]: message prefix
-- ARGV[4]: per-pod link set prefix
-- ARGV[5]: owner: write only if the config names this owner ('' = unchecked)
-- ARGV[6..]: index, encoded state, instance, held quadruples (replace, upsert; instance '' =
-- leave it; held '1' = written DenyNewCall only as outdated, see `choose`, else '') or indices
-- (remove). An instance is "<pod uid>,<note>"; when the uid at an index changes, the reports of
-- the previous pod are dropped (a report belongs to the pod that made it).
-- Announces the change (see announce) only when the table changed; the version survives
-- 'delete' so it never goes back. Every pod written is re-scored from exact counts, changed or
-- not (the operator's periodic rewrite is what bounds how long expired links count).
-- The route's config keeps when this incarnation of the route was first written ('born', ms):
-- a table rewritten after Redis lost its data, or after the route was deleted, has a new one,
-- which tells clients that every link they cached may be gone, whatever the version says.
-- Returns 1 if changed, 0 if not, -1 refused as no route owns the table, -2 refused as another
-- owns it.
if ARGV[5] ~= '' then
  local owner = redis.call('HGET', KEYS[3], 'owner')
  if not owner then return -1 end
  if owner ~= ARGV[5] then return -2 end
end
local rt = route(KEYS[1], KEYS[2], KEYS[3], KEYS[5], ARGV[4])
local function uid_of(instance) return string.match(instance, '^[^,]*') end
local mode = ARGV[1]
local changed = false
-- A pod leaving the table leaves the held and spare sets too.
local function forget(idx)
  redis.call('HDEL', KEYS[2], idx)
  redis.call('HDEL', KEYS[6], idx)
  redis.call('ZREM', KEYS[5], idx)
  redis.call('SREM', rt.held_back, idx)
  redis.call('ZREM', rt.spare, idx)
end
if mode == 'delete' then
  changed = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) > 0
  redis.call('DEL', KEYS[5], KEYS[6], rt.held_back, rt.spare)
elseif mode == 'remove' then
  for i = 6, #ARGV do
    if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then changed = true end
    forget(ARGV[i])
  end
else
  local wanted = {}
  for i = 6, #ARGV, 4 do
    local idx, state, instance = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    wanted[idx] = true
    if ARGV[i + 3] == '1' then
      redis.call('SADD', rt.held_back, idx)
    else
      redis.call('SREM', rt.held_back, idx)
    end
    if instance ~= '' then
      local before = redis.call('HGET', KEYS[6], idx)
      if before and uid_of(before) ~= uid_of(instance) and redis.call('HDEL', KEYS[2], idx) == 1 then
        changed = true
      end
      if before ~= instance then redis.call('HSET', KEYS[6], idx, instance) end
    end
    if redis.call('HGET', KEYS[1], idx) ~= state then
      changed = true
      redis.call('HSET', KEYS[1], idx, state)
    end
  end
  if mode == 'replace' then
    for _, idx in ipairs(redis.call('HKEYS', KEYS[1])) do
      if not wanted[idx] then
        redis.call('HDEL', KEYS[1], idx)
        forget(idx)
        changed = true
      end
    end
  end
  local now = now_ms()
  redis.call('HSETNX', KEYS[3], 'born', now)
  local cap = policy(rt, '0')
  for i = 6, #ARGV, 4 do rescore(rt, ARGV[i], cap, now) end
end
if changed then
  announce(KEYS[1], KEYS[2], KEYS[4], ARGV[2], ARGV[3])
  return 1
end
return 0
"""
)

CONFIGURE = (
    _PRELUDE
    + r"""
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route config  KEYS[4]: available pods
-- ARGV[1]: per-pod link set prefix  ARGV[2]: link cap per pod (0 = none)
-- ARGV[3]: temporary link TTL in ms ('' = none: callers' own TTLs apply)
-- ARGV[4]: the owner, a StatefulRoute's uid, claiming the table ('' = keep the present one)
-- ARGV[5]: how long (ms) a user leaving an outdated pod early in a rolling update waits for an
-- updated one (see PLACE; '' = keep the present value, '0' = no wait)
-- ARGV[6]: whether the owner keeps users' links when the table goes ('1' keep, '0' not, '' =
-- keep the present value): an orphaned table, whose route is gone, is removed as it said
-- Writes the route's policy and re-scores every pod (a cap change changes availability).
local rt = route(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1])
redis.call('HSET', KEYS[3], 'cap', ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], 'owner', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[3], 'wait', ARGV[5]) end
if ARGV[6] ~= nil and ARGV[6] ~= '' then redis.call('HSET', KEYS[3], 'keep', ARGV[6]) end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[3], 'ttl')
else
  redis.call('HSET', KEYS[3], 'ttl', ARGV[3])
end
local now = now_ms()
local cap = tonumber(ARGV[2])
for _, idx in ipairs(redis.call('HKEYS', KEYS[1])) do rescore(rt, idx, cap, now) end
return 0
"""
)

SERVER_REPORT = (
    _PRELUDE
    + r"""
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route version  KEYS[4]: route config
-- KEYS[5]: available pods
-- ARGV[1]: pod  ARGV[2]: routing state ('' = keep)  ARGV[3]: load ('' = keep)
-- ARGV[4]: channel  ARGV[5]: message prefix  ARGV[6]: per-pod link set prefix
-- Re-scores the pod; announces (see announce) when the reported routing state changes.
-- Returns 1 if the routing state changed, else 0; -1 (nothing written) when the route has no
-- table (deleted, or not written yet).
if not has_table(KEYS[4]) then return -1 end
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
local rt = route(KEYS[1], KEYS[2], KEYS[4], KEYS[5], ARGV[6])
rescore(rt, ARGV[1], policy(rt, '0'), now_ms())
if new_routing ~= routing then
  announce(KEYS[1], KEYS[2], KEYS[3], ARGV[4], ARGV[5])
  return 1
end
return 0
"""
)
