-- include "layout": the version of the route's Redis layout, checked by every script first.

-- The layout this release reads and writes (core.layout.LAYOUT says the same to Python). A
-- route records the layout it was written with in its config ('layout'); a route without one
-- was written before layouts were recorded (layout 1, 2 or both: see README "Redis layout")
-- and is handled as the oldest layout still served until `stateful-route migrate` marks it.
local LAYOUT = 2

-- Refuse, before anything is read or written, a route written by a newer layout: this release
-- would count and move its users wrongly. The error names both versions (store.faults turns it
-- into LayoutTooNew). Returns the route's recorded layout (0: none recorded).
local function refuse_newer(raw)
  local found = tonumber(raw or '0') or 0
  if found > LAYOUT then
    error({err = 'LAYOUT_TOO_NEW route layout ' .. found .. ', this release knows ' .. LAYOUT})
  end
  return found
end

local function check_layout(config)
  return refuse_newer(redis.call('HGET', config, 'layout'))
end

-- check_layout for the hot path (PLACE): the same refusal, with the settings placement needs
-- read in the same command (every command a script runs costs Redis about a microsecond). The
-- config's raw {layout, cap, ttl, wait} (false where unset); route(...).settings takes it.
local function check_layout_settings(config)
  local settings = redis.call('HMGET', config, 'layout', 'cap', 'ttl', 'wait')
  refuse_newer(settings[1])
  return settings
end

-- Record this layout in the config of a route that has none yet (its first write creates it):
-- a route that exists unmarked keeps no marker until its migration has moved its older data.
local function mark_new_route(config)
  if redis.call('EXISTS', config) == 0 then redis.call('HSET', config, 'layout', LAYOUT) end
end
