-- PUT_PHASES (RouteTable.put_phases): replace the route's pod phases.
-- KEYS[1]: the route's phases (a hash: index -> core.state.PodPhase's encoding)  KEYS[2]: route config
-- ARGV: index, phase, index, phase, ...
-- Replaces the whole hash in one step: a reader (HAND_OFF, displays) sees the old phases or
-- the new ones, never a mix.
-- returns 0

--- @include "layout"

check_layout(KEYS[2])
redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 0
