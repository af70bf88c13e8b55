-- MIGRATE_VERIFY (store.migration): check a page of one pod's shards against the links.
-- KEYS[1]: the pod's shards (keys.RouteKeys.pod)  KEYS[2]: route table  KEYS[3]: pod reports
-- KEYS[4]: route config  KEYS[5]: available pods
-- ARGV[1]: per-pod link set prefix  ARGV[2]: link key prefix  ARGV[3]: pod
-- ARGV[4]: the first shard to read  ARGV[5]: entries wanted
-- returns {the next shard to read (0: none left), entries checked, entries removed}: whole
-- shards from ARGV[4] on until at least ARGV[5] entries were read; an entry whose link does not
-- name this pod (a layout-1 script moved or removed the link without unindexing it, so it
-- would be counted, and never pruned if persistent) is removed. Walking shards in order meets
-- every entry present throughout, as LINKED does. Re-scores the pod.

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

check_layout(KEYS[4])
local rt = route(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1])
local pod = tonumber(ARGV[3])
local n = width(rt, ARGV[3])
local s = tonumber(ARGV[4])
local checked, removed = 0, 0
while s < n and checked < tonumber(ARGV[5]) do
  for _, uid in ipairs(redis.call('ZRANGE', shard_key(rt, ARGV[3], s), 0, -1)) do
    checked = checked + 1
    local cur = get_link(ARGV[2] .. uid)
    local idx = cur and parse_link(cur)
    if idx ~= pod and unindex_link(rt, ARGV[3], uid) then removed = removed + 1 end
  end
  s = s + 1
end
-- A removal may shrink the pod back to one shard: stop then (the rest was read or is gone).
if removed > 0 then rescore(rt, ARGV[3], policy(rt, '0'), now_ms()) end
if s >= width(rt, ARGV[3]) then s = 0 end
return {s, checked, removed}
