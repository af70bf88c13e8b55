-- MIGRATE_LINKS (store.migration): move a batch of one pod's layout-1 links into its shards.
-- KEYS[1]: the pod's layout-1 set (keys.RouteKeys.legacy_pod: uids scored by expiry)
-- KEYS[2]: route table  KEYS[3]: pod reports  KEYS[4]: route config  KEYS[5]: available pods
-- ARGV[1]: per-pod link set prefix  ARGV[2]: link key prefix  ARGV[3]: pod  ARGV[4]: batch size
-- returns {moved, dropped, stale, left}: of up to ARGV[4] users taken from the set, `moved`
-- were indexed in the pod's shards (their link names the pod; already there: not counted),
-- `dropped` were only taken out (their link is gone, expired, corrupt or names another pod:
-- the set was stale); `stale` entries for the moved users were found in other pods' shards (a
-- layout-1 script moved the link without unindexing it) and removed; `left` users are still
-- in the set. Each user is checked against its link in this call, so it runs online beside
-- gateways and pods of either layout; every step is idempotent (a crash between calls loses
-- nothing: the next call takes what is left). Re-scores the pods it touched.

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

check_layout(KEYS[4])
local rt = route(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1])
local pod = tonumber(ARGV[3])
local now = now_ms()
local uids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[4]) - 1)
local holders = redis.call('HKEYS', rt.counts)  -- pods whose shards hold links
local touched = {[ARGV[3]] = true}
local moved, dropped, stale = 0, 0, 0
for _, uid in ipairs(uids) do
  local key = ARGV[2] .. uid
  local cur = get_link(key)
  local idx, persistent = nil, false
  if cur then idx, persistent = parse_link(cur) end
  if idx == pod then
    for _, other in ipairs(holders) do
      if other ~= ARGV[3] and unindex_link(rt, other, uid) then
        stale = stale + 1
        touched[other] = true
      end
    end
    local score = '+inf'
    if not persistent then
      local left = redis.call('PTTL', key)
      if left > 0 then
        score = now + left
        redis.call('ZADD', rt.expiries, 'LT', score, ARGV[3])
      end
    end
    if index_link(rt, ARGV[3], uid, score) then moved = moved + 1 end
  else
    dropped = dropped + 1
  end
end
if #uids > 0 then redis.call('ZREM', KEYS[1], unpack(uids)) end
local cap = policy(rt, '0')
for idx in pairs(touched) do rescore(rt, idx, cap, now) end
return {moved, dropped, stale, redis.call('ZCARD', KEYS[1])}
