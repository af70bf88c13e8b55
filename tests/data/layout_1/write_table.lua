
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
  end
  p.routable = p.ready and not p.terminating and p.routing < 2
  return p
end

-- The keys a script needs to read pods and keep the available set true.
-- `expiries` (keys.RouteKeys.expiries) holds, per pod, when its earliest temporary link expires.
local function route(pods, reports, config, available, pod_links)
  return {pods = pods, reports = reports, config = config, available = available,
          pod_links = pod_links, expiries = pod_links .. 'exp'}
end

local function pod_state(rt, idx)
  local raw = redis.call('HGET', rt.pods, idx)
  if not raw then return nil end
  return parse_pod(idx, raw, redis.call('HGET', rt.reports, idx))
end

local function pod_routable(rt, idx)
  local p = pod_state(rt, idx)
  return p ~= nil and p.routable
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

local function set_availability(p, cap)
  p.available = p.routable and p.routing == 0 and (cap == 0 or p.links < cap)
end

-- Re-score one pod from exact counts: drop its expired temporary links, count the rest, and
-- keep it in the available set (scored links + load) exactly while it is available.
-- O(log links + expired links pruned).
local function rescore(rt, idx, cap, now)
  local set = rt.pod_links .. idx
  redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. now)
  local p = pod_state(rt, idx)
  if p then
    p.links = redis.call('ZCARD', set)
    set_availability(p, cap)
    if p.available then
      redis.call('ZADD', rt.available, p.links + p.load, idx)
      return
    end
  end
  redis.call('ZREM', rt.available, idx)
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

-- The best available pod other than `exclude` (an index as text, '' for none), or nil: the head
-- of the available set (lowest links + load; ties by index as text), after one `sweep`. Its
-- expired links are pruned first, which only lowers its score, so it stays the head.
-- O(log pods). `swept`: every overdue pod was swept at `now` already (`sweep_all`), so neither
-- the sweep nor the prune can find anything.
local function choose(rt, exclude, now, swept)
  if not swept then sweep(rt, now) end
  for _, idx in ipairs(redis.call('ZRANGE', rt.available, 0, 1)) do
    if idx ~= exclude then
      if not swept then
        local pruned = redis.call('ZREMRANGEBYSCORE', rt.pod_links .. idx, '-inf', '(' .. now)
        if pruned > 0 then redis.call('ZINCRBY', rt.available, -pruned, idx) end
      end
      return idx
    end
  end
  return nil
end

-- Link `uid` temporarily to `idx`, which `choose` just returned, and count it in its score;
-- a pod that reaches the cap leaves the available set.
local function link_chosen(rt, link_key, uid, idx, ttl, cap, now)
  redis.call('SET', link_key, idx, 'PX', ttl)
  local set = rt.pod_links .. idx
  redis.call('ZADD', rt.expiries, 'LT', now + ttl, idx)
  if redis.call('ZADD', set, now + ttl, uid) == 1 then
    if cap > 0 and redis.call('ZCARD', set) >= cap then
      redis.call('ZREM', rt.available, idx)
    else
      redis.call('ZINCRBY', rt.available, 1, idx)
    end
  end
end

-- Store a temporary link to any pod and index it under that pod (the caller re-scores the pod).
local function link_temporary(rt, link_key, uid, idx, ttl, now)
  redis.call('SET', link_key, idx, 'PX', ttl)
  redis.call('ZADD', rt.pod_links .. idx, now + ttl, uid)
  redis.call('ZADD', rt.expiries, 'LT', now + ttl, idx)
end

-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route config  KEYS[4]: route version
-- KEYS[5]: available pods  KEYS[6]: pod instances
-- ARGV[1]: 'replace' | 'upsert' | 'remove' | 'delete'  ARGV[2]: channel  ARGV[3]: message prefix
-- ARGV[4]: per-pod link set prefix
-- ARGV[5]: owner: write only if the config names this owner ('' = unchecked)
-- ARGV[6..]: index, encoded state, instance triples (replace, upsert; instance '' = leave it) or
-- indices (remove). An instance is "<pod uid>,<note>"; when the uid at an index changes, the
-- reports of the previous pod are dropped (a report belongs to the pod that made it).
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
if mode == 'delete' then
  changed = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) > 0
  redis.call('DEL', KEYS[5], KEYS[6])
elseif mode == 'remove' then
  for i = 6, #ARGV do
    if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then changed = true end
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[6], ARGV[i])
    redis.call('ZREM', KEYS[5], ARGV[i])
  end
else
  local wanted = {}
  for i = 6, #ARGV, 3 do
    local idx, state, instance = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    wanted[idx] = true
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
        redis.call('HDEL', KEYS[2], idx)
        redis.call('HDEL', KEYS[6], idx)
        redis.call('ZREM', KEYS[5], idx)
        changed = true
      end
    end
  end
  local now = now_ms()
  redis.call('HSETNX', KEYS[3], 'born', now)
  local cap = policy(rt, '0')
  for i = 6, #ARGV, 3 do rescore(rt, ARGV[i], cap, now) end
end
if changed then
  announce(KEYS[1], KEYS[2], KEYS[4], ARGV[2], ARGV[3])
  return 1
end
return 0
