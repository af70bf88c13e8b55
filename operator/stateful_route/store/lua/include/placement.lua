-- include "placement": availability, scores and the placement rule, and storing a link. The
-- placement rule lives only here, so every caller balances the same way. Uses "base", "shards"
-- and "pods".

-- Available: new users go here. Spare: held back only as outdated (not by its own report, the
-- cap, a grace or a termination), so new users go here when no pod is available.
local function set_availability(p, cap)
  local room = cap == 0 or p.links < cap
  p.available = p.routable and p.routing == 0 and room
  p.spare = not p.available and p.held_back == true and p.routable and (p.reported or 0) == 0 and room
end

-- Re-score one pod: drop its expired temporary links (as many as this call's budget allows),
-- count the rest, and keep it in the available set (scored links + load) exactly while it is
-- available, in the spare set exactly while it is spare; how many links were dropped. Links
-- the budget left unpruned still count: a score is never too low, only too high by them.
-- O(log links + pruned shards).
local function rescore(rt, idx, cap, now)
  local dropped = prune(rt, idx, now)
  local p = pod_state(rt, idx)
  local pool = nil
  if p then
    p.links = held(rt, idx)
    set_availability(p, cap)
    if p.available then pool = rt.available elseif p.spare then pool = rt.spare end
  end
  for _, key in ipairs({rt.available, rt.spare}) do
    if key == pool then
      redis.call('ZADD', key, p.links + p.load, idx)
    else
      redis.call('ZREM', key, idx)
    end
  end
  return dropped
end

-- Re-score the pod whose earliest temporary link expired longest ago, if any is overdue: one pod
-- per placement, so a pod that is never chosen still stops counting its expired links within
-- a few placements (about one per pod) instead of keeping a score that hides its free room.
-- How many links were dropped, or false when no pod is overdue. A pod the budget left with due
-- shards stays overdue, so the next sweep resumes it.
local function sweep(rt, now)
  local due = redis.call('ZRANGE', rt.expiries, 0, 0, 'WITHSCORES')
  if due[1] == nil or tonumber(due[2]) >= now then return false end
  local idx = due[1]
  local dropped = rescore(rt, idx, policy(rt, '0'), now)
  local first = redis.call('ZRANGE', rt.pod_links .. idx, 0, 0, 'WITHSCORES')
  if first[1] and first[2] ~= 'inf' then
    redis.call('ZADD', rt.expiries, first[2], idx)
  else
    redis.call('ZREM', rt.expiries, idx)
  end
  return dropped
end

-- Sweep overdue pods until none is left or this call's prune budget is spent (a batch does this
-- once: its clock does not move while it runs); how many links were dropped.
local function sweep_all(rt, now)
  local dropped = 0
  for _ = 1, redis.call('ZCARD', rt.expiries) do
    if prune_spent() then break end
    local swept = sweep(rt, now)
    if not swept then break end
    dropped = dropped + swept
  end
  return dropped
end

-- Whether some pod still holds due shards (for PRUNE: call again).
local function overdue(rt, now)
  local due = redis.call('ZRANGE', rt.expiries, 0, 0, 'WITHSCORES')
  return due[1] ~= nil and tonumber(due[2]) < now
end

-- The best pod other than `exclude` (an index as text, '' for none) and the set it heads, or
-- nil: the head of the available set (lowest links + load; ties by index as text), else of the
-- spare set, after one `sweep`. Its expired links are pruned first (within this call's budget),
-- which only lowers its score, so it stays the head. O(log pods). `swept`: `sweep_all` ran at
-- `now` already (every overdue pod swept, or the budget spent), so neither the sweep nor the
-- prune could do more. No prune either when the sweep found no pod overdue: `expiries` scores
-- every pod at or below its earliest temporary link, so then no pod holds an expired link (the
-- common case, and one command less).
local function choose(rt, exclude, now, swept)
  local due = not swept and sweep(rt, now)
  for _, pool in ipairs({rt.available, rt.spare}) do
    for _, idx in ipairs(redis.call('ZRANGE', pool, 0, 1)) do
      if idx ~= exclude then
        if due then
          local pruned = prune(rt, idx, now)
          if pruned > 0 then redis.call('ZINCRBY', pool, -pruned, idx) end
        end
        return idx, pool
      end
    end
  end
  return nil
end

-- Link `uid` temporarily to `idx`, which `choose` just returned from `pool`, and count it in
-- its score; a pod that reaches the cap leaves the pool.
local function link_chosen(rt, link_key, uid, idx, ttl, cap, now, pool)
  redis.call('SET', link_key, idx, 'PX', ttl)
  redis.call('ZADD', rt.expiries, 'LT', now + ttl, idx)
  local links = index_link(rt, idx, uid, now + ttl)
  if links then
    if cap > 0 and links >= cap then
      redis.call('ZREM', pool, idx)
    else
      redis.call('ZINCRBY', pool, 1, idx)
    end
  end
end

-- Store a temporary link to any pod and index it under that pod (the caller re-scores the pod).
local function link_temporary(rt, link_key, uid, idx, ttl, now)
  redis.call('SET', link_key, idx, 'PX', ttl)
  index_link(rt, idx, uid, now + ttl)
  redis.call('ZADD', rt.expiries, 'LT', now + ttl, idx)
end
