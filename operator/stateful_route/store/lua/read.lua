#!lua flags=no-writes
-- READ (LinkStore.read): a link and its TTL in one atomic step (a link must not expire
-- between the two). Read-only.
-- KEYS[1]: the user's link  KEYS[2]: route config (its layout is checked: include/layout.lua)
-- returns {value or false, remaining TTL in ms (-1: none, -2: absent)}

--- @include "layout"

check_layout(KEYS[2])
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
