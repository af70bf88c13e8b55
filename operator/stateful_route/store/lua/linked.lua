#!lua flags=no-writes
-- LINKED (LinkStore.linked_users): a page of a pod's users, walking its shards in order.
-- Read-only.
-- KEYS[1]: the pod's shards (keys.RouteKeys.pod)  KEYS[2]: route config
-- ARGV[1]: per-pod link set prefix  ARGV[2]: pod
-- ARGV[3]: the first shard to read  ARGV[4]: users wanted
-- returns {the next shard to read (0: none left), uid, ...}: the live users of shards ARGV[3]
-- on, whole shards at a time, until at least ARGV[4] users or ARGV[4] / 8 shards were read
-- (a bounded call even when most shards hold only expired links; a page may be empty). A split
-- moves users from a shard to a later one, so walking shards in order meets every user linked
-- throughout (some twice).

--- @include "base"
--- @include "layout"
--- @include "shards"

check_layout(KEYS[2])
local rt = route('', '', '', '', ARGV[1])
local now = now_ms()
local n = width(rt, ARGV[2])
local out = {0}
local s = tonumber(ARGV[3])
local last = s + math.max(1, math.ceil(tonumber(ARGV[4]) / 8))
while s < n and s < last and #out <= tonumber(ARGV[4]) do
  for _, uid in ipairs(redis.call('ZRANGE', shard_key(rt, ARGV[2], s), now, '+inf', 'BYSCORE')) do
    out[#out + 1] = uid
  end
  s = s + 1
end
if s < n then out[1] = s end
return out
