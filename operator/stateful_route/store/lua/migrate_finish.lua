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

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

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
