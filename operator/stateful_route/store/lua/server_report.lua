-- SERVER_REPORT (ServerDriver): a pod's own report of its routing state and load.
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route version  KEYS[4]: route config
-- KEYS[5]: available pods
-- ARGV[1]: pod  ARGV[2]: routing state ('' = keep)  ARGV[3]: load ('' = keep)
-- ARGV[4]: channel  ARGV[5]: message prefix  ARGV[6]: per-pod link set prefix
-- Re-scores the pod; announces (see announce) when the reported routing state changes.
-- Returns 1 if the routing state changed, else 0; -1 (nothing written) when the route has no
-- table (deleted, or not written yet).

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

check_layout(KEYS[4])
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
