-- CONFIGURE (RouteTable.configure): write a route's policy.
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route config  KEYS[4]: available pods
-- ARGV[1]: per-pod link set prefix  ARGV[2]: link cap per pod (0 = none)
-- ARGV[3]: temporary link TTL in ms ('' = none: callers' own TTLs apply)
-- ARGV[4]: the owner, a StatefulRoute's uid, claiming the table ('' = keep the present one)
-- ARGV[5]: how long (ms) a user leaving an outdated pod early in a rolling update waits for an
-- updated one (see PLACE; '' = keep the present value, '0' = no wait)
-- ARGV[6]: whether the owner keeps users' links when the table goes ('1' keep, '0' not, '' =
-- keep the present value): an orphaned table, whose route is gone, is removed as it said
-- Writes the route's policy and re-scores every pod (a cap change changes availability).
-- returns 0

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

check_layout(KEYS[3])
local rt = route(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1])
mark_new_route(KEYS[3])
redis.call('HSET', KEYS[3], 'cap', ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], 'owner', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[3], 'wait', ARGV[5]) end
if ARGV[6] ~= nil and ARGV[6] ~= '' then redis.call('HSET', KEYS[3], 'keep', ARGV[6]) end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[3], 'ttl')
else
  redis.call('HSET', KEYS[3], 'ttl', ARGV[3])
end
local now = now_ms()
local cap = tonumber(ARGV[2])
for _, idx in ipairs(redis.call('HKEYS', KEYS[1])) do rescore(rt, idx, cap, now) end
return 0
