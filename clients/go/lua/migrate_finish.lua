-- MIGRATE_FINISH (store.migration): mark a route as of this layout once its older data is moved.
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route config  KEYS[4]: available pods
-- KEYS[5]: the route's phases  KEYS[6]: layout 1's expiries (p:exp)
-- ARGV[1]: per-pod link set prefix  ARGV[2..]: every layout-1 pod set the route may hold (those
-- the migration found, and those of every index up to the highest the route knows)
-- returns {1, 1 if the phases were converted else 0} when done; {0, {the sets holding users}}
-- with nothing written when any of ARGV[2..] holds users (a layout-1 writer still runs, or
-- wrote meanwhile: move them and call again); {1, 0} with nothing written when the route has
-- no table (deleted meanwhile).
-- Converts layout 1's phases (a JSON string) into today's hash, drops layout 1's expiries,
-- re-scores every pod from exact counts and records this layout. One call, O(pods).

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
-- include "pods": a pod's effective state, the route's policy and phases, announcing a change.
-- Uses "base".

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
-- fallback when the route has none). From `rt.settings` when the script read them already
-- (check_layout_settings).
local function policy(rt, fallback_ttl)
  local cfg = rt.settings or redis.call('HMGET', rt.config, 'layout', 'cap', 'ttl')
  return tonumber(cfg[2] or '0'), tonumber(cfg[3] or fallback_ttl)
end

-- The route's present rollout wait in ms (0 = none), or `default` when it sets none.
local function route_wait(rt, default)
  local wait
  if rt.settings then wait = rt.settings[4] else wait = redis.call('HGET', rt.config, 'wait') end
  return tonumber(wait or default)
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
-- include "placement": availability, scores and the placement rule, and storing a link. The
-- placement rule lives only here, so every caller balances the same way. Uses "base", "shards"
-- and "pods".

-- Available: new users go here. Spare: held back only as outdated (not by its own report, the
-- cap, a grace or a termination), so new users go here when no pod is available.
local function set_availability(p, cap)
  local room = cap == 0 or p.links < cap
  p.available = p.routable and p.routing == 0 and room
  p.spare = not p.available and p.held_back == true and p.routable and (p.reported or 0) == 0 and room
end

-- Re-score one pod: drop its expired temporary links (as many as this call's budget allows),
-- count the rest, and keep it in the available set (scored links + load) exactly while it is
-- available, in the spare set exactly while it is spare; how many links were dropped. Links
-- the budget left unpruned still count: a score is never too low, only too high by them.
-- O(log links + pruned shards).
local function rescore(rt, idx, cap, now)
  local dropped = prune(rt, idx, now)
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
  return dropped
end

-- Re-score the pod whose earliest temporary link expired longest ago, if any is overdue: one pod
-- per placement, so a pod that is never chosen still stops counting its expired links within
-- a few placements (about one per pod) instead of keeping a score that hides its free room.
-- How many links were dropped, or false when no pod is overdue. A pod the budget left with due
-- shards stays overdue, so the next sweep resumes it.
local function sweep(rt, now)
  local due = redis.call('ZRANGE', rt.expiries, 0, 0, 'WITHSCORES')
  if due[1] == nil or tonumber(due[2]) >= now then return false end
  local idx = due[1]
  local dropped = rescore(rt, idx, policy(rt, '0'), now)
  local first = redis.call('ZRANGE', rt.pod_links .. idx, 0, 0, 'WITHSCORES')
  if first[1] and first[2] ~= 'inf' then
    redis.call('ZADD', rt.expiries, first[2], idx)
  else
    redis.call('ZREM', rt.expiries, idx)
  end
  return dropped
end

-- Sweep overdue pods until none is left or this call's prune budget is spent (a batch does this
-- once: its clock does not move while it runs); how many links were dropped.
local function sweep_all(rt, now)
  local dropped = 0
  for _ = 1, redis.call('ZCARD', rt.expiries) do
    if prune_spent() then break end
    local swept = sweep(rt, now)
    if not swept then break end
    dropped = dropped + swept
  end
  return dropped
end

-- Whether some pod still holds due shards (for PRUNE: call again).
local function overdue(rt, now)
  local due = redis.call('ZRANGE', rt.expiries, 0, 0, 'WITHSCORES')
  return due[1] ~= nil and tonumber(due[2]) < now
end

-- The best pod other than `exclude` (an index as text, '' for none) and the set it heads, or
-- nil: the head of the available set (lowest links + load; ties by index as text), else of the
-- spare set, after one `sweep`. Its expired links are pruned first (within this call's budget),
-- which only lowers its score, so it stays the head. O(log pods). `swept`: `sweep_all` ran at
-- `now` already (every overdue pod swept, or the budget spent), so neither the sweep nor the
-- prune could do more. No prune either when the sweep found no pod overdue: `expiries` scores
-- every pod at or below its earliest temporary link, so then no pod holds an expired link (the
-- common case, and one command less).
local function choose(rt, exclude, now, swept)
  local due = not swept and sweep(rt, now)
  for _, pool in ipairs({rt.available, rt.spare}) do
    for _, idx in ipairs(redis.call('ZRANGE', pool, 0, 1)) do
      if idx ~= exclude then
        if due then
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

-- Store a temporary link to any pod and index it under that pod (the caller re-scores the pod).
local function link_temporary(rt, link_key, uid, idx, ttl, now)
  redis.call('SET', link_key, idx, 'PX', ttl)
  index_link(rt, idx, uid, now + ttl)
  redis.call('ZADD', rt.expiries, 'LT', now + ttl, idx)
end

check_layout(KEYS[3])
if not has_table(KEYS[3]) then return {1, 0} end
local left = {}
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[i]) == 1 then left[#left + 1] = ARGV[i] end
end
if #left > 0 then return {0, left} end
local converted = 0
if redis.call('TYPE', KEYS[5])['ok'] == 'string' then
  local ok, decoded = pcall(cjson.decode, redis.call('GET', KEYS[5]))
  redis.call('DEL', KEYS[5])
  if ok and type(decoded) == 'table' then
    for idx, phase in pairs(decoded) do
      if type(idx) == 'string' and type(phase) == 'string' then redis.call('HSET', KEYS[5], idx, phase) end
    end
  end
  converted = 1
end
redis.call('DEL', KEYS[6])
local rt = route(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1])
local now = now_ms()
local cap = policy(rt, '0')
for _, idx in ipairs(redis.call('HKEYS', KEYS[1])) do rescore(rt, idx, cap, now) end
redis.call('HSET', KEYS[3], 'layout', LAYOUT)
return {1, converted}
