#!lua flags=no-writes
-- SNAPSHOT (RouteTable.snapshot): the route table, exactly, in one atomic read. Read-only
-- (a Redis >= 7 flag): it runs while writes are paused, and on replicas.
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route config  KEYS[4]: route version
-- KEYS[5]: available pods
-- ARGV[1]: per-pod link set prefix
-- returns {best pod or -1, version, born, exact, index, ready, terminating, routing, load, links,
-- available, ...} (7 entries per pod, ordered by index; born: see WRITE_TABLE). Links are live
-- counts, exact when `exact` is 1; 0 when more shards were due than one call counts (see
-- live_links): then a count may also hold links that expired since its pod was last pruned.
-- The best pod is the head of the available set, else of the spare set: the pod placement
-- would choose now.

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

check_layout(KEYS[3])
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
             tonumber(redis.call('HGET', KEYS[3], 'born') or '0'), work.short and 0 or 1}
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
