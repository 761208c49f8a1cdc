-- client_admit.lua: admit one request of a client key against its sliding-window limits and budgets.
--
-- Exact across replicas (lib/window.lua says what exact means for its one-second buckets).
-- A rejected request reserves nothing. An admitted one holds its token estimate in the window and
-- its estimated cost against the budgets until client_settle.lua replaces them by the real figures.
-- KEYS[1]  <C>:win        hash: the client's one-minute window (lib/window.lua); C = "<prefix>:{client:<id>}"
-- ARGV[1]  C              key prefix of the client (same hash tag as KEYS[1])
-- ARGV[2]  request id     admitting twice with one id admits once
-- ARGV[3]  rpm            requests per 60 s window, 0 = no limit
-- ARGV[4]  tpm            tokens per 60 s window, 0 = no limit
-- ARGV[5]  tokens         estimate held in the window (integer >= 0)
-- ARGV[6]  cost           estimate held against the budgets (micro-dollars)
-- ARGV[7]  daily budget   (micro-dollars, UTC day) 0 = none
-- ARGV[8]  monthly budget (micro-dollars, UTC calendar month) 0 = none
-- ARGV[9]  hold ttl       (ms) an admission never settled is charged its estimate after this
--
-- returns {1, ''} admitted, or {0, wait (ms), reason}; reason is one of
--   rpm | tpm | tpm_exceeds_limit | budget_day | budget_month
local C, req = ARGV[1], ARGV[2]
local rpm, tpm, est, cost = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local bday, bmonth, hold_ttl = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
if #ARGV ~= 9 or not rpm or not tpm or not est or not cost or not bday or not bmonth
    or not hold_ttl or est < 0 or cost < 0 or hold_ttl <= 0 then
  return redis.error_reply('ERR client_admit: bad arguments')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local WINDOW = WINDOW_MS  -- lib/window.lua
local adm, admz = C .. ':adm', C .. ':admz'

if redis.call('HEXISTS', adm, req) == 1 then return {1, ''} end

local day, y, mo, d = spend_calendar(now)  -- lib/calendar.lua
local spend_d, spend_m = spend_keys(C, now)

-- admissions never settled (their replica died) are charged their estimate and released; run
-- once a second (when the window moves to a new bucket), not per request
local function sweep_stale()
  local stale = redis.call('ZRANGEBYSCORE', admz, '-inf', now, 'LIMIT', 0, 32)
  for _, rid in ipairs(stale) do
    local rec = redis.call('HGET', adm, rid)
    if rec then
      local hc = tonumber(string.match(rec, '^%d+|(%d+)')) or 0
      if hc ~= 0 then
        release_held_cost(adm, hc)
        -- a spend key gets its TTL when it is born (client_settle.lua does the same)
        if tonumber(redis.call('INCRBY', spend_d, hc)) == hc then redis.call('PEXPIRE', spend_d, 2 * 86400000) end
        if tonumber(redis.call('INCRBY', spend_m, hc)) == hc then redis.call('PEXPIRE', spend_m, 32 * 86400000) end
      end
      redis.call('HDEL', adm, rid)
    end
    redis.call('ZREM', admz, rid)
  end
end

-- the one-minute window (lib/window.lua): O(1), refusals included
local win = window_open(KEYS[1], now)
if win.fresh then sweep_stale() end
if rpm > 0 and win.n >= rpm then
  window_close(win)
  return {0, window_free_at(win, 'r', 1, rpm, now) - now, 'rpm'}
end
if tpm > 0 then
  if est > tpm then window_close(win) return {0, -1, 'tpm_exceeds_limit'} end
  if win.s + est > tpm then
    window_close(win)
    return {0, window_free_at(win, 't', est, tpm, now) - now, 'tpm'}
  end
end
if bday > 0 or bmonth > 0 then
  local held = tonumber(redis.call('HGET', adm, '_cost')) or 0
  local spent = redis.call('MGET', spend_d, spend_m)  -- one slot: the client's hash tag
  if bday > 0 and (tonumber(spent[1]) or 0) + held + cost > bday then
    window_close(win)
    return {0, (day + 1) * 86400000 - now, 'budget_day'}
  end
  if bmonth > 0 and (tonumber(spent[2]) or 0) + held + cost > bmonth then
    local dim = ({31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31})[mo]
    if mo == 2 and (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) then dim = 29 end
    window_close(win)
    return {0, (day + dim - d + 1) * 86400000 - now, 'budget_month'}
  end
end

window_add(win, est)
window_close(win)
redis.call('HSET', adm, req, est .. '|' .. cost .. '|' .. spend_d .. '|' .. spend_m .. '|b' .. win.cur)
if cost ~= 0 then redis.call('HINCRBY', adm, '_cost', cost) end
redis.call('ZADD', admz, now + hold_ttl, req)
-- TTLs once a second, not per request (an emptied hash or zset vanishes by itself, and
-- release_held_cost deletes `_cost` at zero, so nothing outlives its records without a TTL)
if win.fresh then
  redis.call('PEXPIRE', adm, hold_ttl * 2)
  redis.call('PEXPIRE', admz, hold_ttl * 2)
end
return {1, ''}
