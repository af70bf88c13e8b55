-- HAND_OFF (LinkStore.hand_off): move one user off a pod, to the best other pod.
-- KEYS[1]: the user's link  KEYS[2]: route table  KEYS[3]: pod reports  KEYS[4]: route config
-- KEYS[5]: available pods  KEYS[6]: the route's phases
-- ARGV[1]: per-pod link set prefix  ARGV[2]: uid  ARGV[3]: the pod handing the user off
-- ARGV[4]: channel  ARGV[5]: message announcing that the link moved  ARGV[6]: TTL in ms for a
-- temporary link that has none, when the route's policy has none either
-- returns {new pod, remaining TTL in ms (-1: persistent)}; {-1} when no other pod is available
--         or spare, or only a spare one (an updated pod exists but stopped taking users since
--         the operator's last run: retry); {-3} when only outdated pods take users (none is
--         updated yet); {-2} when the link did not parse (or the key held another type): it
--         routed nobody, so it is deleted and leaves ARGV[3]'s set (a hand-off of every user
--         must end); nil when the link does not point to ARGV[3] (absent, expired, or moved
--         meanwhile).
-- Compare-and-swap: the link moves only if it still points to ARGV[3], to the best available
-- pod other than ARGV[3] (the placement rule, `choose`). It keeps its kind: a persistent link
-- stays persistent, a temporary one keeps its remaining TTL.
-- The best pod is outdated only while no updated pod takes new users (the operator holds
-- outdated pods back as soon as one does): a user handed off to it now would move again when
-- it is replaced, so the user stays here (and is evicted, then placed on an updated pod, by
-- the operator once this pod stops).

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

check_layout(KEYS[4])
local rt = route(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1])
local uid, from = ARGV[2], ARGV[3]
local cur = get_link(KEYS[1])
if not cur then return nil end
local idx, persistent = parse_link(cur)
local now = now_ms()
if not idx then
  redis.call('DEL', KEYS[1])
  if unindex_link(rt, from, uid) then rescore(rt, from, policy(rt, ARGV[6]), now) end
  redis.call('PUBLISH', ARGV[4], ARGV[5])
  return {-2}
end
if tostring(idx) ~= from then return nil end
local best, pool = choose(rt, from, now)
if not best or pool == rt.spare then return {-1} end
if outdated(KEYS[6], best) then return {-3} end
local cap, ttl = policy(rt, ARGV[6])
if persistent then
  ttl = -1
else
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then ttl = left end
end
unindex_link(rt, from, uid)
rescore(rt, from, cap, now)
if persistent then
  redis.call('SET', KEYS[1], best .. 'p')
  index_link(rt, best, uid, '+inf')
  rescore(rt, best, cap, now)
else
  link_chosen(rt, KEYS[1], uid, best, ttl, cap, now, pool)
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return {tonumber(best), ttl}
