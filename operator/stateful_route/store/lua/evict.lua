-- EVICT (LinkStore.evict_batch): unlink a batch of a pod's users.
-- KEYS[1]: the pod's shards (keys.RouteKeys.pod)  KEYS[2]: route table  KEYS[3]: pod reports
-- KEYS[4]: route config  KEYS[5]: available pods
-- ARGV[1]: pod  ARGV[2]: link key prefix  ARGV[3]: batch size  ARGV[4]: per-pod link set prefix
-- ARGV[5]: mark the users unlinked as waiting for an updated pod for this many ms (0 = no;
-- see PLACE)  ARGV[6]: the waiting marks' prefix
-- Removes whole shards of the pod's users, at least ARGV[3] users unless fewer are left,
-- deleting each link only if it still points to this pod (compare-and-delete), and re-scores
-- the pod. A link value that does not parse is deleted too (nobody can route by it, and it
-- must not stall the eviction) and reported.
-- returns {users left to the pod, {uids whose link was deleted}, {uids whose corrupt link was deleted}}

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"
--- @include "waiting"

check_layout(KEYS[4])
local pod = tonumber(ARGV[1])
local rt = route(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[4])
local removed, corrupt = {}, {}
local taken = 0
local hold, now = tonumber(ARGV[5]), now_ms()
while taken < tonumber(ARGV[3]) do
  local s = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not s then break end
  local shard = shard_key(rt, ARGV[1], s)
  local uids = redis.call('ZRANGE', shard, 0, -1)
  for _, uid in ipairs(uids) do
    local key = ARGV[2] .. uid
    local cur = redis.call('GET', key)
    if cur then
      local idx = string.match(cur, '^(%d+)p?$')
      if not idx then
        redis.call('DEL', key)
        corrupt[#corrupt + 1] = uid
      elseif tonumber(idx) == pod then
        redis.call('DEL', key)
        removed[#removed + 1] = uid
        if hold > 0 then mark_waiting(ARGV[6] .. uid, now, hold) end
      end
    end
  end
  redis.call('DEL', shard)
  redis.call('ZREM', KEYS[1], s)
  taken = taken + #uids
end
if taken > 0 then count_add(rt, ARGV[1], -taken) end
rescore(rt, ARGV[1], policy(rt, '0'), now)
return {held(rt, ARGV[1]), removed, corrupt}
