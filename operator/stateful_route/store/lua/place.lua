-- PLACE (LinkStore.place): a user's pod: its routable link, else the best pod, linked now.
-- KEYS[1]: the user's link (the route's base, 'l:', the uid)
-- ARGV[1]: the route's base (keys.RouteKeys.base; the other keys' names are built from it)
-- ARGV[2]: temporary link TTL in ms when the route's policy has none
-- ARGV[3]: a pod the user must leave and never be placed on ('' = none)
-- returns {pod, remaining TTL in ms (-1: persistent), 0 kept | 1 placed | 2 rebound, 1 if a
--         corrupt link value was replaced else 0},
--         or nil when the user has no routable link and no pod is available or spare,
--         or {-1, ms} when the user waits for an updated pod (below) at most ms more.
-- A user evicted early in a rolling update is marked waiting ('w:' uid, see EVICT) for a
-- bounded time: while only outdated pods take users it is not placed (it would move again when
-- that pod is replaced), so the pod is the updated one the operator's rebind or the next
-- lookup finds. A user whose link points to an outdated pod that became unroutable before the
-- operator evicted it is marked so here, for the route's 'wait' (cfg, ms; 0 = none). A marked
-- user waits until its wait has passed since its mark (see still_waiting), then is placed
-- wherever it can be. One GET for users without a routable link; the phases only for marked
-- ones and rebinds.
-- A link value that does not parse (or a key of another type) counts as no link: it is
-- replaced by a placement.
-- A link to a pod that is no longer routable (or to ARGV[3]) is moved from *that* pod
-- (compare-and-swap: the read and the move happen in this one script), so racing callers agree.
-- The hot path of every new user: few arguments (each costs the client encoding time).

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"
--- @include "waiting"

local base = ARGV[1]
check_layout(base .. 'cfg')
local rt = route(base .. 'pods', base .. 'srv', base .. 'cfg', base .. 'avail', base .. 'ps:')
local uid, exclude = string.sub(KEYS[1], #base + 3), ARGV[3]
local cur = get_link(KEYS[1])
local old, corrupt = nil, 0
if cur then
  local idx, persistent = parse_link(cur)
  if not idx then
    corrupt = 1
  elseif tostring(idx) ~= exclude and pod_routable(rt, idx) then
    if persistent then return {idx, -1, 0, 0} end
    return {idx, redis.call('PTTL', KEYS[1]), 0, 0}
  else
    old = idx
  end
end
local now = now_ms()
local best, pool = choose(rt, exclude, now)
if not best then return nil end
local mark, phases = base .. 'w:' .. uid, base .. 'phase'
local marked = redis.call('GET', mark)
if marked then
  local left = still_waiting(rt, marked, now)
  if left > 0 and outdated(phases, best) then return {-1, left, 0, 0} end
  redis.call('DEL', mark)
elseif old ~= nil and outdated(phases, old) and outdated(phases, best) then
  local wait = tonumber(redis.call('HGET', rt.config, 'wait') or '0')
  if wait > 0 then
    mark_waiting(mark, now, wait)
    return {-1, wait, 0, 0}
  end
end
local cap, ttl = policy(rt, ARGV[2])
if old ~= nil then
  unindex_link(rt, old, uid)
  rescore(rt, old, cap, now)
end
link_chosen(rt, KEYS[1], uid, best, ttl, cap, now, pool)
if old ~= nil then return {tonumber(best), ttl, 2, 0} end
return {tonumber(best), ttl, 1, corrupt}
