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
