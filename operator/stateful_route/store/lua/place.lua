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
-- The hot paths come first: a linked user's (a gateway's cache missed) is answered with five
-- commands before the placement machinery below is even defined (defining it costs time on
-- every call); the route's settings are read with the layout check, in one command.

--- @include "base"
--- @include "layout"

local base = ARGV[1]
local settings = check_layout_settings(base .. 'cfg')
local excluded = ARGV[3]
local cur = get_link(KEYS[1])
local linked, persistent
if cur then linked, persistent = parse_link(cur) end
if linked and tostring(linked) ~= excluded then
  local raw = redis.call('HGET', base .. 'pods', linked)
  if raw and is_routable(raw, redis.call('HGET', base .. 'srv', linked)) then
    if persistent then return {linked, -1, 0, 0} end
    return {linked, redis.call('PTTL', KEYS[1]), 0, 0}
  end
end

--- @include "shards"
--- @include "pods"
--- @include "placement"
--- @include "waiting"

local uid = string.sub(KEYS[1], #base + 3)
local rt = route(base .. 'pods', base .. 'srv', base .. 'cfg', base .. 'avail', base .. 'ps:')
rt.settings = settings
local old, corrupt = linked, 0
if cur and not linked then corrupt = 1 end
local now = now_ms()
local best, pool = choose(rt, excluded, now)
if not best then return nil end
local mark, phases = base .. 'w:' .. uid, base .. 'phase'
local marked = redis.call('GET', mark)
if marked then
  local left = still_waiting(rt, marked, now)
  if left > 0 and outdated(phases, best) then return {-1, left, 0, 0} end
  redis.call('DEL', mark)
elseif old ~= nil and outdated(phases, old) and outdated(phases, best) then
  local wait = route_wait(rt, '0')
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
