-- lib/window.lua: the exact one-minute sliding window of acquire.lua (per upstream key) and
-- client_admit.lua (per client); prepended to both by gateway/state/scripts.py (Redis Lua has
-- no include). A window is a zset `w` (request id -> time, ms) and a hash `wt` (request id ->
-- tokens, their running total in `_sum`).
local WINDOW_MS = 60000

-- forget the entries that left the window ending at `now`, keeping `_sum` exact
local function window_trim(w, wt, now)
  local old = redis.call('ZRANGEBYSCORE', w, '-inf', now - WINDOW_MS)
  if #old > 0 then
    local freed = 0
    for _, rid in ipairs(old) do
      freed = freed + (tonumber(redis.call('HGET', wt, rid)) or 0)
      redis.call('HDEL', wt, rid)
    end
    redis.call('ZREMRANGEBYSCORE', w, '-inf', now - WINDOW_MS)
    redis.call('HINCRBY', wt, '_sum', 0 - freed)  -- (0 - x): Lua 5.1 renders -0 as "-0", which HINCRBY refuses
  end
end

-- when (ms since the epoch) `need` more tokens fit under `limit`, the window holding `sum`
local function window_tokens_free_at(w, wt, sum, need, limit, now)
  local entries = redis.call('ZRANGE', w, 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    sum = sum - (tonumber(redis.call('HGET', wt, entries[i])) or 0)
    if sum + need <= limit then return tonumber(entries[i + 1]) + WINDOW_MS end
  end
  return now + WINDOW_MS
end
