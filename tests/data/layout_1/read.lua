#!lua flags=no-writes
-- KEYS[1]: the user's link
-- returns {value or false, remaining TTL in ms (-1: none, -2: absent)}
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
