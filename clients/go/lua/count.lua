#!lua flags=no-writes
-- COUNT (LinkStore.count_linked): a pod's live links, exactly. Read-only.
-- KEYS[1]: the pod's shards (keys.RouteKeys.pod)  KEYS[2]: route config
-- ARGV[1]: per-pod link set prefix  ARGV[2]: pod
-- returns how many users are linked to the pod now (expired temporary links left out).

-- include "base": the clock, the encodings of links and pod states, and a route's keys.

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

-- Whether a pod is routable, from its table entry and its own report (false: none): ready, not
-- terminating, and a routing state below DenyAll (2) in both. The one rule of routability
-- (parse_pod's `routable`), matched without building the pod: PLACE's kept path runs it per call.
local function is_routable(raw, report)
  if not string.find(raw, '^1,[02-9],[01],%d+$') then return false end
  return not report or string.find(report, '^[01],%d+$') ~= nil
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
  p.routable = is_routable(raw, report)
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
-- include "layout": the version of the route's Redis layout, checked by every script first.

-- The layout this release reads and writes (core.layout.LAYOUT says the same to Python). A
-- route records the layout it was written with in its config ('layout'); a route without one
-- was written before layouts were recorded (layout 1, 2 or both: see README "Redis layout")
-- and is handled as the oldest layout still served until `stateful-route migrate` marks it.
local LAYOUT = 2

-- Refuse, before anything is read or written, a route written by a newer layout: this release
-- would count and move its users wrongly. The error names both versions (store.faults turns it
-- into LayoutTooNew). Returns the route's recorded layout (0: none recorded).
local function refuse_newer(raw)
  local found = tonumber(raw or '0') or 0
  if found > LAYOUT then
    error({err = 'LAYOUT_TOO_NEW route layout ' .. found .. ', this release knows ' .. LAYOUT})
  end
  return found
end

local function check_layout(config)
  return refuse_newer(redis.call('HGET', config, 'layout'))
end

-- check_layout for the hot path (PLACE): the same refusal, with the settings placement needs
-- read in the same command (every command a script runs costs Redis about a microsecond). The
-- config's raw {layout, cap, ttl, wait} (false where unset); route(...).settings takes it.
local function check_layout_settings(config)
  local settings = redis.call('HMGET', config, 'layout', 'cap', 'ttl', 'wait')
  refuse_newer(settings[1])
  return settings
end

-- Record this layout in the config of a route that has none yet (its first write creates it):
-- a route that exists unmarked keeps no marker until its migration has moved its older data.
local function mark_new_route(config)
  if redis.call('EXISTS', config) == 0 then redis.call('HSET', config, 'layout', LAYOUT) end
end
-- include "shards": a pod's links, kept in small sorted sets (shards).

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

-- Bounded work: after a mass expiry a pod may have tens of thousands of due shards, and Redis
-- serves nobody else while a script runs. So one call prunes at most PRUNE_BUDGET shards and a
-- read-only call counts at most COUNT_BUDGET, all pods together (each shard holds about
-- SHARD_LOAD links: a few microseconds each); later calls (PRUNE, placements' sweeps, table
-- writes) finish the pruning. `work` is this call's own: a script's top-level locals are fresh
-- in every call. `work.short`: a read-only count left due shards uncounted (an upper bound).
local PRUNE_BUDGET = 64
local COUNT_BUDGET = 256
local work = {prune = PRUNE_BUDGET, count = COUNT_BUDGET, short = false}

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

-- Drop pod idx's expired links, touching only the shards that are due, earliest first, at most
-- this call's prune budget of them; how many links were dropped. Shards left due stay indexed
-- as due, so a later call finds them.
local function prune(rt, idx, now)
  if work.prune <= 0 then return 0 end
  local index = rt.pod_links .. idx
  local dropped = 0
  local due = redis.call('ZRANGE', index, '-inf', '(' .. now, 'BYSCORE', 'LIMIT', 0, work.prune)
  work.prune = work.prune - #due
  for _, s in ipairs(due) do
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

-- Whether this call's prune budget is spent (pods may still hold due shards).
local function prune_spent()
  return work.prune <= 0
end

-- The pod's live links at `now`, without writing (for read-only scripts): its count less the
-- expired links of its due shards, earliest first, at most this call's count budget of them.
-- Exact unless due shards were left uncounted (then `work.short` is set and the count is an
-- upper bound: it still holds the expired links of those shards).
local function live_links(rt, idx, now)
  local n = held(rt, idx)
  local index = rt.pod_links .. idx
  local due = redis.call('ZRANGE', index, '-inf', '(' .. now, 'BYSCORE', 'LIMIT', 0, work.count + 1)
  for i, s in ipairs(due) do
    if i > work.count then
      work.short = true
      break
    end
    n = n - redis.call('ZCOUNT', shard_key(rt, idx, s), '-inf', '(' .. now)
  end
  work.count = math.max(0, work.count - #due)
  return n
end

check_layout(KEYS[2])
local rt = route('', '', '', '', ARGV[1])
return live_links(rt, ARGV[2], now_ms())
