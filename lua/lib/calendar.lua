-- lib/calendar.lua: a client's spend: the UTC day and calendar month of its spend keys, and the
-- cost its open admissions hold; shared by client_admit.lua (budgets) and client_settle.lua
-- (charges). Redis Lua has no include: gateway/state/scripts.py prepends this file to both.

-- UTC calendar date from days since the epoch (H. Hinnant's civil_from_days)
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

-- (days since the epoch, year, month, day of month) of `now` (ms)
local function spend_calendar(now)
  local day = math.floor(now / 86400000)
  local y, m, d = civil(day)
  return day, y, m, d
end

-- the spend keys of client prefix C at `now`: its UTC day's and its calendar month's
local function spend_keys(C, now)
  local day, y, m = spend_calendar(now)
  return C .. ':spend:d:' .. day, C .. ':spend:m:' .. (y * 100 + m)
end

-- give back `cost` micro-dollars an admission held (`_cost` of the admissions hash `adm`); the
-- field goes at zero, so an admissions hash with no records left vanishes (no TTL needed)
local function release_held_cost(adm, cost)
  -- (0 - x): Lua 5.1 renders -0 as "-0", which HINCRBY refuses
  if tonumber(redis.call('HINCRBY', adm, '_cost', 0 - cost)) == 0 then redis.call('HDEL', adm, '_cost') end
end
