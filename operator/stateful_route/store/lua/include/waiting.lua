-- include "waiting": users waiting for an updated pod during a rolling update. Uses "pods".

-- A user waiting for an updated pod (see PLACE) is marked "<when its wait began>,<wait ms>".
-- The mark outlives the wait by 10 minutes, so a wait spent is not begun again while the user's
-- link still points to the pod it left (nobody evicted it: the operator is down); a user
-- already waiting keeps the mark it has (an eviction after a lookup does not lengthen the wait).
local function mark_waiting(key, now, wait)
  redis.call('SET', key, now .. ',' .. wait, 'PX', wait + 600000, 'NX')
end

-- How many ms a marked user has still to wait: the mark's wait, or the route's present one if
-- shorter (an edit shortens waits under way), from when it began; <= 0 once spent.
local function still_waiting(rt, marked, now)
  local began, wait = string.match(marked, '^(%d+),(%d+)$')
  if not began then return 0 end
  local now_wait = route_wait(rt, wait)
  return tonumber(began) + math.min(tonumber(wait), now_wait) - now
end
