-- client_admit.lua: admit one request of a client key against its sliding-window limits and budgets.
--
-- Exact at millisecond granularity across replicas: the window is a log of admitted requests.
-- A rejected request writes nothing. An admitted one holds its token estimate in the window and
-- its estimated cost against the budgets until client_settle.lua replaces them by the real figures.
-- KEYS[1]  <C>:w          zset request id -> admission time (ms); C = "<prefix>:{client:<id>}"
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
local w, wt, adm, admz = KEYS[1], C .. ':wt', C .. ':adm', C .. ':admz'

if redis.call('HEXISTS', adm, req) == 1 then return {1, ''} end

-- UTC calendar date from days since the epoch (H. Hinnant's civil_from_days), for the month bucket
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end
local day = math.floor(now / 86400000)
local y, mo, d = civil(day)
local spend_d = C .. ':spend:d:' .. day
local spend_m = C .. ':spend:m:' .. (y * 100 + mo)

-- admissions never settled (their replica died) are charged their estimate and released
local stale = redis.call('ZRANGEBYSCORE', admz, '-inf', now, 'LIMIT', 0, 16)
for _, rid in ipairs(stale) do
  local rec = redis.call('HGET', adm, rid)
  if rec then
    local hc = tonumber(string.match(rec, '^%d+|(%d+)')) or 0
    if hc ~= 0 then
      redis.call('HINCRBY', adm, '_cost', 0 - hc)  -- (0 - x): Lua 5.1 renders -0 as "-0", which HINCRBY refuses
      -- a spend key gets its TTL when it is born (client_settle.lua does the same)
      if tonumber(redis.call('INCRBY', spend_d, hc)) == hc then redis.call('PEXPIRE', spend_d, 2 * 86400000) end
      if tonumber(redis.call('INCRBY', spend_m, hc)) == hc then redis.call('PEXPIRE', spend_m, 32 * 86400000) end
    end
    redis.call('HDEL', adm, rid)
  end
  redis.call('ZREM', admz, rid)
end

-- exact sliding window (lib/window.lua): forget what left it
window_trim(w, wt, now)

if rpm > 0 and redis.call('ZCARD', w) >= rpm then
  local oldest = redis.call('ZRANGE', w, 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + WINDOW - now, 'rpm'}
end
if tpm > 0 then
  if est > tpm then return {0, -1, 'tpm_exceeds_limit'} end
  local sum = tonumber(redis.call('HGET', wt, '_sum')) or 0
  if sum + est > tpm then
    return {0, window_tokens_free_at(w, wt, sum, est, tpm, now) - now, 'tpm'}
  end
end
if bday > 0 or bmonth > 0 then
  local held = tonumber(redis.call('HGET', adm, '_cost')) or 0
  if bday > 0 and (tonumber(redis.call('GET', spend_d)) or 0) + held + cost > bday then
    return {0, (day + 1) * 86400000 - now, 'budget_day'}
  end
  if bmonth > 0 and (tonumber(redis.call('GET', spend_m)) or 0) + held + cost > bmonth then
    local dim = ({31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31})[mo]
    if mo == 2 and (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) then dim = 29 end
    return {0, (day + dim - d + 1) * 86400000 - now, 'budget_month'}
  end
end

redis.call('ZADD', w, now, req)
redis.call('HSET', wt, req, est)
redis.call('HINCRBY', wt, '_sum', est)
redis.call('PEXPIRE', w, WINDOW + 1000)
redis.call('PEXPIRE', wt, WINDOW + 1000)
redis.call('HSET', adm, req, est .. '|' .. cost .. '|' .. spend_d .. '|' .. spend_m)
if cost ~= 0 then redis.call('HINCRBY', adm, '_cost', cost) end
redis.call('ZADD', admz, now + hold_ttl, req)
redis.call('PEXPIRE', adm, hold_ttl * 2)
redis.call('PEXPIRE', admz, hold_ttl * 2)
return {1, ''}
