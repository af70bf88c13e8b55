-- SET_PERSISTENT (LinkStore.link_persistent): make a user's link persistent, on a pod.
-- KEYS[1]: the user's link  KEYS[2]: route table  KEYS[3]: pod reports  KEYS[4]: route config
-- KEYS[5]: available pods
-- ARGV[1]: per-pod link set prefix  ARGV[2]: uid  ARGV[3]: pod
-- ARGV[4]: '1' = only if no other pod holds a persistent link, '0' = unconditionally
-- ARGV[5]: channel  ARGV[6]: message announcing that the link moved
-- returns {1, previous pod or nil} when stored, {0, holder} when another pod holds it, nil
-- (nothing written) when the route has no table: a persistent link must not outlive a deletion.

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

check_layout(KEYS[4])
if not has_table(KEYS[4]) then return nil end
local rt = route(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1])
local pod = tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
local prev = false
local now = now_ms()
local cap = policy(rt, '0')
if cur then
  local idx, persistent = link_pod(cur)
  if ARGV[4] == '1' and persistent and idx ~= pod then return {0, idx} end
  prev = idx
  if idx ~= pod then
    unindex_link(rt, idx, ARGV[2])
    rescore(rt, idx, cap, now)
    redis.call('PUBLISH', ARGV[5], ARGV[6])
  end
end
redis.call('SET', KEYS[1], pod .. 'p')
index_link(rt, pod, ARGV[2], '+inf')
rescore(rt, pod, cap, now)
return {1, prev}
