-- lib/window.lua: the one-minute windows of acquire.lua (per upstream key) and client_admit.lua
-- (per client), prepended to the scripts that use them by gateway/state/scripts.py (Redis Lua
-- has no include). O(1) in memory and in time, whatever the request rate.
--
-- A window is ONE hash of one-second buckets:
--   h          the newest bucket (seconds since the epoch) the window has been trimmed to
--   n, s       requests and tokens in the window: the sum of the buckets below
--   r<j>, t<j> requests and tokens of the bucket whose index mod SLOTS is j
-- A window counts the current bucket and the 60 before it, so a charge stays counted for 60 to
-- 61 s. "Exact" means: at no time do the requests (or tokens) admitted in ANY 60 s interval
-- exceed the limit, across every replica (every charge inside an interval is still counted
-- when the interval's last one is admitted); in exchange a slot frees up to 1 s later than a
-- per-request log would free it. A hash of at most 2 * SLOTS + 3 fields: no log, no scans.
local WINDOW_MS = 60000
local BUCKET_MS = 1000
local SLOTS = 61

-- the window `w` at `now` (ms), trimmed: buckets that left it are subtracted and deleted.
-- Changes are kept in the returned table until window_close writes them (one HSET).
local function window_open(w, now)
  local cur = math.floor(now / BUCKET_MS)
  local j = cur % SLOTS
  local f = redis.call('HMGET', w, 'h', 'n', 's', 'r' .. j, 't' .. j)
  local h = tonumber(f[1])
  local win = {key = w, cur = cur, j = j, n = tonumber(f[2]) or 0, s = tonumber(f[3]) or 0,
               r = tonumber(f[4]) or 0, t = tonumber(f[5]) or 0, dirty = false, fresh = false}
  if not h then
    -- a new (or expired) window
    win.n, win.s, win.r, win.t, win.dirty, win.fresh = 0, 0, 0, 0, true, true
  elseif h >= cur then
    -- same bucket; or Redis's clock stepped back (a failover): keep counting into the head
    win.cur, win.j = h, h % SLOTS
    if h > cur then
      local g = redis.call('HMGET', w, 'r' .. win.j, 't' .. win.j)
      win.r, win.t = tonumber(g[1]) or 0, tonumber(g[2]) or 0
    end
  elseif cur - h >= SLOTS then
    -- everything it held has left it
    redis.call('DEL', w)
    win.n, win.s, win.r, win.t, win.dirty, win.fresh = 0, 0, 0, 0, true, true
  else
    local fields = {}
    for b = h + 1, cur do
      local k = b % SLOTS
      fields[#fields + 1] = 'r' .. k
      fields[#fields + 1] = 't' .. k
    end
    local v = redis.call('HMGET', w, (table.unpack or unpack)(fields))
    for i = 1, #v, 2 do
      win.n = win.n - (tonumber(v[i]) or 0)
      win.s = win.s - (tonumber(v[i + 1]) or 0)
    end
    redis.call('HDEL', w, (table.unpack or unpack)(fields))
    win.r, win.t, win.dirty, win.fresh = 0, 0, true, true
  end
  return win
end

-- charge one request of `tokens` to the current bucket
local function window_add(win, tokens)
  win.n, win.s = win.n + 1, win.s + tokens
  win.r, win.t = win.r + 1, win.t + tokens
  win.dirty, win.added = true, true
end

-- write what window_open trimmed and window_add charged; a window moved to a new bucket gets
-- its TTL anew (the newest bucket's charges must outlive their 61 s)
local function window_close(win)
  if not win.dirty then return end
  if win.added then
    redis.call('HSET', win.key, 'h', win.cur, 'n', win.n, 's', win.s,
               'r' .. win.j, win.r, 't' .. win.j, win.t)
  else
    redis.call('HSET', win.key, 'h', win.cur, 'n', win.n, 's', win.s)
  end
  if win.fresh then redis.call('PEXPIRE', win.key, WINDOW_MS + 2 * BUCKET_MS) end
end

-- when (ms since the epoch) `need` more of `kind` ('r' requests, 't' tokens) fit under `limit`:
-- the end of the oldest bucket whose departure makes room; now + WINDOW_MS when none would
-- (one HMGET of the window's buckets: bounded by SLOTS, and only on a refusal)
local function window_free_at(win, kind, need, limit, now)
  local sum = kind == 'r' and win.n or win.s
  local fields = {}
  for b = win.cur - SLOTS + 1, win.cur do fields[#fields + 1] = kind .. (b % SLOTS) end
  local v = redis.call('HMGET', win.key, (table.unpack or unpack)(fields))
  v[SLOTS] = kind == 'r' and win.r or win.t  -- the current bucket as this call sees it
  for i = 1, SLOTS do
    local x = tonumber(v[i]) or 0
    if x > 0 then
      sum = sum - x
      if sum + need <= limit then return (win.cur + i) * BUCKET_MS end  -- bucket cur-SLOTS+i leaves
    end
  end
  return now + WINDOW_MS
end

-- correct a charge made in bucket `b`: `dreq` requests and `dtok` tokens (negative to give
-- back), when that bucket is still in the window; nothing otherwise (it has left, or the whole
-- window expired). Counts never go below zero.
local function window_adjust(w, b, dreq, dtok)
  if dreq == 0 and dtok == 0 then return end
  local j = b % SLOTS
  local f = redis.call('HMGET', w, 'h', 'n', 's', 'r' .. j, 't' .. j)
  local h = tonumber(f[1])
  if not h or b > h or b <= h - SLOTS then return end
  local r, t = tonumber(f[4]) or 0, tonumber(f[5]) or 0
  local nr, nt = math.max(0, r + dreq), math.max(0, t + dtok)
  redis.call('HSET', w, 'n', math.max(0, (tonumber(f[2]) or 0) + nr - r),
             's', math.max(0, (tonumber(f[3]) or 0) + nt - t), 'r' .. j, nr, 't' .. j, nt)
end
