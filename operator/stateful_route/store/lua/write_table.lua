-- WRITE_TABLE (RouteTable.put_pods, update_pod, remove_pod, delete): write the route table.
-- KEYS[1]: route table  KEYS[2]: pod reports  KEYS[3]: route config  KEYS[4]: route version
-- KEYS[5]: available pods  KEYS[6]: pod instances
-- ARGV[1]: 'replace' | 'upsert' | 'remove' | 'delete'  ARGV[2]: channel  ARGV[3]: message prefix
-- ARGV[4]: per-pod link set prefix
-- ARGV[5]: owner: write only if the config names this owner ('' = unchecked)
-- ARGV[6..]: index, encoded state, instance, held quadruples (replace, upsert; instance '' =
-- leave it; held '1' = written DenyNewCall only as outdated, see `choose`, else '') or indices
-- (remove). An instance is "<pod uid>,<note>". A report belongs to the pod instance that made
-- it: writing an instance whose uid differs from the one the index had, or at an index the table
-- did not hold, drops the report there (the previous pod's, or one made where no pod was, which
-- would otherwise stick to this pod) and applies the report this pod made before it was written,
-- if SERVER_REPORT kept one aside (KEYS[2] .. ':new').
-- Announces the change (see announce) only when the table changed; the version survives
-- 'delete' so it never goes back. Every pod written is re-scored from exact counts, changed or
-- not (the operator's periodic rewrite is what bounds how long expired links count).
-- The route's config keeps when this incarnation of the route was first written ('born', ms):
-- a table rewritten after Redis lost its data, or after the route was deleted, has a new one,
-- which tells clients that every link they cached may be gone, whatever the version says.
-- Returns 1 if changed, 0 if not, -1 refused as no route owns the table, -2 refused as another
-- owns it.

--- @include "base"
--- @include "layout"
--- @include "shards"
--- @include "pods"
--- @include "placement"

check_layout(KEYS[3])
if ARGV[5] ~= '' then
  local owner = redis.call('HGET', KEYS[3], 'owner')
  if not owner then return -1 end
  if owner ~= ARGV[5] then return -2 end
end
local rt = route(KEYS[1], KEYS[2], KEYS[3], KEYS[5], ARGV[4])
local early_key = KEYS[2] .. ':new'  -- keys.RouteKeys.early_reports, kept by SERVER_REPORT
local function uid_of(instance) return string.match(instance, '^[^,]*') end
local mode = ARGV[1]
local changed = false
-- A pod leaving the table leaves the held and spare sets too. A report kept aside for the index
-- stays: it was made by a pod the table does not name yet, which a later write may add.
local function forget(idx)
  redis.call('HDEL', KEYS[2], idx)
  redis.call('HDEL', KEYS[6], idx)
  redis.call('ZREM', KEYS[5], idx)
  redis.call('SREM', rt.held_back, idx)
  redis.call('ZREM', rt.spare, idx)
end
if mode == 'delete' then
  changed = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) > 0
  redis.call('DEL', KEYS[5], KEYS[6], rt.held_back, rt.spare, early_key)
elseif mode == 'remove' then
  for i = 6, #ARGV do
    if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then changed = true end
    forget(ARGV[i])
  end
else
  local wanted = {}
  for i = 6, #ARGV, 4 do
    local idx, state, instance = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    wanted[idx] = true
    if ARGV[i + 3] == '1' then
      redis.call('SADD', rt.held_back, idx)
    else
      redis.call('SREM', rt.held_back, idx)
    end
    if instance ~= '' then
      local before = redis.call('HGET', KEYS[6], idx)
      local uid = uid_of(instance)
      local another
      if before then
        another = uid_of(before) ~= uid
      else
        -- No instance known: a table written without instances trusts what it was told.
        another = redis.call('HEXISTS', KEYS[1], idx) == 0
      end
      if another then
        if redis.call('HDEL', KEYS[2], idx) == 1 then changed = true end
        local early = redis.call('HGET', early_key, idx)
        if early and string.sub(early, 1, #uid + 1) == uid .. ',' then
          redis.call('HSET', KEYS[2], idx, string.sub(early, #uid + 2))
          redis.call('HDEL', early_key, idx)
          changed = true
        end
      end
      if before ~= instance then redis.call('HSET', KEYS[6], idx, instance) end
    end
    if redis.call('HGET', KEYS[1], idx) ~= state then
      changed = true
      redis.call('HSET', KEYS[1], idx, state)
    end
  end
  if mode == 'replace' then
    for _, idx in ipairs(redis.call('HKEYS', KEYS[1])) do
      if not wanted[idx] then
        redis.call('HDEL', KEYS[1], idx)
        forget(idx)
        changed = true
      end
    end
  end
  local now = now_ms()
  mark_new_route(KEYS[3])
  redis.call('HSETNX', KEYS[3], 'born', now)
  local cap = policy(rt, '0')
  for i = 6, #ARGV, 4 do rescore(rt, ARGV[i], cap, now) end
end
if changed then
  announce(KEYS[1], KEYS[2], KEYS[4], ARGV[2], ARGV[3])
  return 1
end
return 0
