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
