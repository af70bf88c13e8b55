-- PRUNE (RouteTable.prune): drop expired temporary links of the route's overdue pods, a bounded
-- amount per call (the shards' prune budget), and re-score those pods.
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route config  KEYS[4]: available pods
-- ARGV[1]: per-pod link set prefix
-- returns {links dropped, 1 if some pod still holds expired links (call again) else 0}
-- Pods are taken in the order their earliest link expired (`sweep`), so repeated calls finish
-- every pod whatever the size of a mass expiry, and each call stays short.

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

check_layout(KEYS[3])
local rt = route(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1])
local now = now_ms()
local dropped = sweep_all(rt, now)
return {dropped, overdue(rt, now) and 1 or 0}
