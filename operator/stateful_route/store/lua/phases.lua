#!lua flags=no-writes
-- PHASES (RouteTable.phases): the route's pod phases, in one atomic read, whatever the layout
-- that wrote them. Read-only.
-- KEYS[1]: the route's phases  KEYS[2]: route config
-- returns {index, phase, index, phase, ...} (core.state.PodPhase's encoding): the hash of
-- layout 2, or the JSON string ({"<index>": "<phase>"}) layout 1 wrote, read alike, so a CLI
-- or operator of this release shows a route not yet migrated; {} when there are none; an error
-- naming the type when the key is of any other type (no layout writes one).

--- @include "layout"

check_layout(KEYS[2])
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return {} end
if kind == 'hash' then return redis.call('HGETALL', KEYS[1]) end
if kind ~= 'string' then error({err = 'PHASES_TYPE the route\'s phases are a ' .. kind}) end
local ok, decoded = pcall(cjson.decode, redis.call('GET', KEYS[1]))
local out = {}
if ok and type(decoded) == 'table' then
  for idx, phase in pairs(decoded) do
    if type(idx) == 'string' and type(phase) == 'string' then
      out[#out + 1] = idx
      out[#out + 1] = phase
    end
  end
end
return out
