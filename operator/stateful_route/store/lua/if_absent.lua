-- IF_ABSENT (LinkStore.link_if_absent): link a user to a given pod unless it has a routable link.
-- KEYS[1]: the user's link  KEYS[2]: route table  KEYS[3]: pod reports  KEYS[4]: route config
-- KEYS[5]: available pods
-- ARGV[1]: per-pod link set prefix  ARGV[2]: uid  ARGV[3]: pod  ARGV[4]: TTL in ms when the
-- route's policy has none
-- returns {the pod linked after the call, its remaining TTL in ms (-1: persistent), 1 if a link
-- to an unroutable pod was moved else 0}: the existing link's if its pod is routable, else
-- ARGV[3] (stored temporary); {-1}, writing nothing, when ARGV[3] is not a routable pod of the
-- route (a link to it would be answered by nobody's rules). The TTL is read here, atomically,
-- so a caller never caches a link longer than it lives. Returns nil, writing nothing, when the
-- route has no table (deleted, or not written yet). A link to an unroutable pod, or one that
-- does not parse, counts as absent (as for a placement).

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

check_layout(KEYS[4])
if not has_table(KEYS[4]) then return nil end
local rt = route(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1])
local cur = get_link(KEYS[1])
local old = nil
if cur then
  local idx = parse_link(cur)
  if idx and pod_routable(rt, idx) then return {idx, redis.call('PTTL', KEYS[1]), 0} end
  old = idx
end
if not pod_routable(rt, tonumber(ARGV[3])) then return {-1} end
local now = now_ms()
local cap, ttl = policy(rt, ARGV[4])
if old ~= nil then
  unindex_link(rt, old, ARGV[2])
  rescore(rt, old, cap, now)
end
link_temporary(rt, KEYS[1], ARGV[2], ARGV[3], ttl, now)
rescore(rt, ARGV[3], cap, now)
return {tonumber(ARGV[3]), ttl, old ~= nil and 1 or 0}
