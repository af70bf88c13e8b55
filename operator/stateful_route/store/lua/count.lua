#!lua flags=no-writes
-- COUNT (LinkStore.count_linked): a pod's live links, exactly. Read-only.
-- KEYS[1]: the pod's shards (keys.RouteKeys.pod)  KEYS[2]: route config
-- ARGV[1]: per-pod link set prefix  ARGV[2]: pod
-- returns how many users are linked to the pod now (expired temporary links left out).

--- @include "base"
--- @include "layout"
--- @include "shards"

check_layout(KEYS[2])
local rt = route('', '', '', '', ARGV[1])
return live_links(rt, ARGV[2], now_ms())
