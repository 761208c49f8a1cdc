-- client_settle.lua: close a client admission: charge the real usage, or refund it entirely.
--
-- Idempotent by request id: the admission record gates every write.
-- KEYS[1]  <C>:w          zset request id -> admission time (ms)
-- ARGV[1]  C              key prefix of the client (same hash tag as KEYS[1])
-- ARGV[2]  request id
-- ARGV[3]  mode           charge | refund (refund: no upstream answered; nothing is consumed)
--                         | late (admitted while Redis was away: charge spend and usage once,
--                           idempotent by a marker; the admission never reached Redis)
-- ARGV[4]  input tokens   -1 = unknown (the estimate stays charged, never zero)
-- ARGV[5]  output tokens  -1 = unknown
-- ARGV[6]  cost           (micro-dollars) -1 = unknown (the estimated cost is charged)
-- ARGV[7]  model          the alias the client asked for, for usage per model
--
-- returns 1 when settled now, 0 when it was already settled (or never admitted)
--
-- This script runs on every request: each Redis command in it costs the whole fleet (Redis is
-- single-threaded), so zero increments are skipped and TTLs are set when a key is born.
local C, req, mode, model = ARGV[1], ARGV[2], ARGV[3], ARGV[7]
local tin, tout, cost = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if #ARGV ~= 7 or not tin or not tout or not cost
    or (mode ~= 'charge' and mode ~= 'refund' and mode ~= 'late') then
  return redis.error_reply('ERR client_settle: bad arguments')
end
local w, wt, adm = KEYS[1], C .. ':wt', C .. ':adm'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local HOUR, DAY = 3600000, 86400000
local est, hcost, spend_d, spend_m
if mode == 'late' then
  if tin < 0 or tout < 0 or cost < 0 then return redis.error_reply('ERR client_settle: late needs figures') end
  if redis.call('SET', C .. ':late:' .. req, 1, 'NX', 'PX', 2 * 86400000) == false then return 0 end
  local day = math.floor(now / 86400000)
  spend_d = C .. ':spend:d:' .. day
  spend_m = nil
  est, hcost = tin + tout, cost
  mode = 'charge'
else
  local rec = redis.call('HGET', adm, req)
  if not rec then return 0 end
  est, hcost, spend_d, spend_m = string.match(rec, '^(%d+)|(%d+)|([^|]+)|([^|]+)$')
  est, hcost = tonumber(est), tonumber(hcost)
  redis.call('HDEL', adm, req)
  redis.call('ZREM', C .. ':admz', req)
  if hcost ~= 0 then
    redis.call('HINCRBY', adm, '_cost', 0 - hcost)  -- (0 - x): Lua 5.1 renders -0 as "-0", which HINCRBY refuses
  end
end
local cur = tonumber(redis.call('HGET', wt, req))
local err = 0
if mode == 'refund' then
  if cur then
    redis.call('ZREM', w, req)
    redis.call('HDEL', wt, req)
    redis.call('HINCRBY', wt, '_sum', 0 - cur)  -- (0 - x): Lua 5.1 renders -0 as "-0", which HINCRBY refuses
  end
  tin, tout, cost, err = 0, 0, 0, 1
else
  if tin < 0 then tin, tout = est, 0 end
  if tout < 0 then tout = 0 end
  if cost < 0 then cost = hcost end
  tin, tout, cost = math.floor(tin), math.floor(tout), math.floor(cost)
  if cur then
    redis.call('HSET', wt, req, tin + tout)
    redis.call('HINCRBY', wt, '_sum', tin + tout - cur)
  end
  -- a spend key is read only within its own day / month: the TTL set at its birth outlasts that
  if cost ~= 0 then
    if tonumber(redis.call('INCRBY', spend_d, cost)) == cost then
      redis.call('PEXPIRE', spend_d, 2 * DAY)
    end
    if spend_m and tonumber(redis.call('INCRBY', spend_m, cost)) == cost then
      redis.call('PEXPIRE', spend_m, 32 * DAY)
    end
  end
end

-- usage: one field group per alias, `a:<alias>:<metric>`, in the hour bucket only (the client's
-- total is their sum, made at read time). Day buckets are filled by a roll-up, once an hour:
-- `<C>:u:last` holds the last hour written; every hour bucket before it has been added into its
-- day bucket, so a day = its bucket + the marker's hour bucket when that hour falls in the day
-- (gateway/control/usage.py reads it so). Same scheme as settle.lua.
local hour = math.floor(now / HOUR)
local hb, mark = C .. ':u:h:' .. hour, C .. ':u:last'

-- add hour h's bucket into its day; only `a:` fields: older buckets also hold `all:`/`m:`
-- fields, which were written to the day bucket at the time
local function roll_up(h)
  local src, d = C .. ':u:h:' .. h, math.floor(h / 24)
  local dst = C .. ':u:d:' .. d
  local fields = redis.call('HGETALL', src)
  local n = 0
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 2) == 'a:' then
      redis.call('HINCRBY', dst, fields[i], fields[i + 1])
      n = n + 1
    end
  end
  if n > 0 then redis.call('PEXPIREAT', dst, (d + 401) * DAY) end
  -- an hour bucket waits for its roll-up however long that takes, then keeps the 8 days
  if #fields > 0 then redis.call('PEXPIREAT', src, (h + 1) * HOUR + 8 * DAY) end
end

local last = tonumber(redis.call('HGET', mark, 'h'))
local behind = false
if not last or last < hour then
  if last then roll_up(last) end
  redis.call('HSET', mark, 'h', hour)
  redis.call('PEXPIRE', mark, 400 * DAY)
elseif last > hour then
  behind = true  -- Redis's clock stepped back past the marker: this hour is rolled up already
end
local day_b = C .. ':u:d:' .. math.floor(hour / 24)
local g = 'a:' .. model .. ':'
local function add(metric, v)
  if v ~= 0 then
    redis.call('HINCRBY', hb, g .. metric, v)
    if behind then redis.call('HINCRBY', day_b, g .. metric, v) end
  end
end
-- zero increments are skipped, and the TTL is set when a field group is born
if redis.call('HINCRBY', hb, g .. 'req', 1) == 1 then
  if behind then
    redis.call('PEXPIREAT', hb, (hour + 1) * HOUR + 8 * DAY)
  else
    redis.call('PEXPIRE', hb, 400 * DAY)
  end
end
if behind then
  redis.call('HINCRBY', day_b, g .. 'req', 1)
  redis.call('PEXPIREAT', day_b, (math.floor(hour / 24) + 401) * DAY)
end
add('in', tin)
add('out', tout)
add('cost', cost)
add('err', err)
return 1
