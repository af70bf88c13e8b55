-- PLACE_MANY (LinkStore.place_many): PLACE for a batch of users of one route.
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route config  KEYS[4]: available pods
-- ARGV[1]: per-pod link set prefix  ARGV[2]: link key prefix  ARGV[3]: temporary link TTL in ms
-- when the route's policy has none  ARGV[4]: a pod the users must leave ('' = none)
-- ARGV[5..]: uids
-- returns one entry per uid: its pod (kept if routable and not ARGV[4], else placed on the best
-- pod, scores updated as it goes so a batch spreads evenly), or nil when no pod is available or
-- spare.
-- A link value that does not parse counts as no link (replaced by a placement), as in PLACE.

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

check_layout(KEYS[3])
local rt = route(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1])
local exclude = ARGV[4]
local now = now_ms()
local cap, ttl = policy(rt, ARGV[3])
local routable = {}  -- index -> whether routable, read once per pod
local left = {}  -- pods whose users moved away, re-scored at the end
local out = {}
sweep_all(rt, now)
for i = 5, #ARGV do
  local uid = ARGV[i]
  local key = ARGV[2] .. uid
  local cur = get_link(key)
  local pod = false
  local old = nil
  local idx = cur and parse_link(cur)
  if idx then
    if routable[idx] == nil then routable[idx] = pod_routable(rt, idx) end
    if routable[idx] and tostring(idx) ~= exclude then pod = idx else old = idx end
  end
  if not pod then
    local best, pool = choose(rt, exclude, now, true)
    if best then
      if old ~= nil then
        unindex_link(rt, old, uid)
        left[old] = true
      end
      link_chosen(rt, key, uid, best, ttl, cap, now, pool)
      pod = tonumber(best)
    end
  end
  out[#out + 1] = pod
end
for idx in pairs(left) do rescore(rt, idx, cap, now) end
return out
