#!lua flags=no-writes

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
-- KEYS[5]: available pods
-- ARGV[1]: per-pod link set prefix
-- returns {best pod or -1, version, born, index, ready, terminating, routing, load, links,
-- available, ...} (7 entries per pod, ordered by index; born: see WRITE_TABLE). Links are
-- exact live counts; the best pod is the head of the available set, the pod placement would
-- choose now.
local now = now_ms()
local cap = policy(route(KEYS[1], KEYS[2], KEYS[3], KEYS[5], ARGV[1]), '0')
local reports = read_reports(KEYS[2])
local raw = redis.call('HGETALL', KEYS[1])
local pods = {}
for i = 1, #raw, 2 do
  local p = parse_pod(raw[i], raw[i + 1], reports[raw[i]])
  p.links = redis.call('ZCOUNT', ARGV[1] .. raw[i], now, '+inf')
  set_availability(p, cap)
  pods[#pods + 1] = p
end
table.sort(pods, function(a, b) return a.index < b.index end)
local head = redis.call('ZRANGE', KEYS[5], 0, 0)
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
