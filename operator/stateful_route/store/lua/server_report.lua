-- SERVER_REPORT (ServerDriver): a pod's own report of its routing state and load.
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route version  KEYS[4]: route config
-- KEYS[5]: available pods  KEYS[6]: pod instances (only read when ARGV[7] names the pod)
-- ARGV[1]: pod  ARGV[2]: routing state ('' = keep)  ARGV[3]: load ('' = keep)
-- ARGV[4]: channel  ARGV[5]: message prefix  ARGV[6]: per-pod link set prefix
-- ARGV[7]: the reporting pod's uid ('' or absent: not known, the report is the table's pod's)
-- A report belongs to the pod instance that made it. With a uid that is not the one the table
-- names at that index (KEYS[6]), or at an index the table does not hold, the pod is not (yet) the
-- one the table routes to: its report is kept aside ("<uid>,<routing>,<load>" in the early
-- reports, KEYS[2] .. ':new', one per index) and WRITE_TABLE applies it when it writes that uid
-- there; it never applies to another instance. A table written without instances takes any
-- report at an index it holds. Without a uid the report is the pod's the table names now, and
-- WRITE_TABLE drops it when it writes another instance there.
-- Re-scores the pod; announces (see announce) when the reported routing state changes.
-- Returns 1 if the routing state changed, else 0; 2 if the report was kept aside for a pod the
-- table does not name yet; -1 (nothing written) when the route has no table (deleted, or not
-- written yet).

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

check_layout(KEYS[4])
if not has_table(KEYS[4]) then return -1 end
local rt = route(KEYS[1], KEYS[2], KEYS[4], KEYS[5], ARGV[6])
local early_key = KEYS[2] .. ':new'  -- keys.RouteKeys.early_reports; WRITE_TABLE names it alike
local uid = ARGV[7] or ''

-- A report "<routing>,<load>" with the fields given replacing those reported before.
local function merged(before)
  local routing, load = 0, 0
  if before then
    local r, l = string.match(before, '^(%d),(%d+)$')
    routing, load = tonumber(r), tonumber(l)
  end
  local new_routing = routing
  if ARGV[2] ~= '' then new_routing = tonumber(ARGV[2]) end
  if ARGV[3] ~= '' then load = tonumber(ARGV[3]) end
  return routing, new_routing, load
end

if uid ~= '' then
  local named = redis.call('HGET', KEYS[6], ARGV[1])
  local ours
  if named then
    ours = string.match(named, '^[^,]*') == uid
  else
    ours = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
  end
  if not ours then
    local kept = redis.call('HGET', early_key, ARGV[1])
    local previous = nil
    if kept and string.sub(kept, 1, #uid + 1) == uid .. ',' then previous = string.sub(kept, #uid + 2) end
    local _, routing, load = merged(previous)
    redis.call('HSET', early_key, ARGV[1], uid .. ',' .. routing .. ',' .. load)
    return 2
  end
end

local routing, new_routing, load = merged(redis.call('HGET', KEYS[2], ARGV[1]))
redis.call('HSET', KEYS[2], ARGV[1], new_routing .. ',' .. load)
rescore(rt, ARGV[1], policy(rt, '0'), now_ms())
if new_routing ~= routing then
  announce(KEYS[1], KEYS[2], KEYS[3], ARGV[4], ARGV[5])
  return 1
end
return 0
