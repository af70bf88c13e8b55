-- REMOVE (LinkStore.unlink): remove a user's link, or turn it temporary.
-- KEYS[1]: the user's link  KEYS[2]: route table  KEYS[3]: pod reports  KEYS[4]: route config
-- KEYS[5]: available pods
-- ARGV[1]: per-pod link set prefix  ARGV[2]: uid  ARGV[3]: expected pod ('' = any)
-- ARGV[4]: keep a temporary link for this many ms (0 = none)  ARGV[5]: channel  ARGV[6]: message
-- returns the pod the link pointed to when it was removed (compare-and-delete), else nil.

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

check_layout(KEYS[4])
local cur = redis.call('GET', KEYS[1])
if not cur then return nil end
local idx = link_pod(cur)
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= idx then return nil end
local rt = route(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1])
local now = now_ms()
local keep = tonumber(ARGV[4])
-- No table (deleted): the link goes, none is kept (its pod set would outlive the route).
if keep > 0 and has_table(KEYS[4]) then
  link_temporary(rt, KEYS[1], ARGV[2], idx, keep, now)
else
  redis.call('DEL', KEYS[1])
  unindex_link(rt, idx, ARGV[2])
end
rescore(rt, idx, policy(rt, '0'), now)
redis.call('PUBLISH', ARGV[5], ARGV[6])
return idx
