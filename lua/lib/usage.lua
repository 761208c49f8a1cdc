-- lib/usage.lua: usage by hour, rolled up into days once an hour; prepended to usage_flush.lua
-- by gateway/state/scripts.py (Redis Lua has no include).
--
-- Each request adds to ONE field group (`<group><metric>`, metric req | in | out | cost | err)
-- of the hour bucket `<U>:u:h:<hour>`. Day buckets `<U>:u:d:<day>` are filled by a roll-up, once
-- an hour: `<U>:u:last` holds the last hour written; every hour bucket before it has been added
-- into its day bucket, so a day = its bucket + the marker's hour bucket when that hour falls in
-- the day (gateway/control/usage.py reads it so). Zero increments are skipped and TTLs are set
-- when a bucket or field group is born: this runs on every request.
local USAGE_HOUR, USAGE_DAY = 3600000, 86400000

-- add hour h's bucket into its day; only fields matching `layout` (a Lua pattern): buckets
-- written before this layout also hold other fields, which reached the day bucket at the time
local function usage_roll_up(U, h, layout)
  local src, d = U .. ':u:h:' .. h, math.floor(h / 24)
  local dst = U .. ':u:d:' .. d
  local fields = redis.call('HGETALL', src)
  local n = 0
  for i = 1, #fields, 2 do
    if string.find(fields[i], layout) then
      redis.call('HINCRBY', dst, fields[i], fields[i + 1])
      n = n + 1
    end
  end
  if n > 0 then redis.call('PEXPIREAT', dst, (d + 401) * USAGE_DAY) end
  -- an hour bucket waits for its roll-up however long that takes, then keeps the 8 days
  if #fields > 0 then redis.call('PEXPIREAT', src, (h + 1) * USAGE_HOUR + 8 * USAGE_DAY) end
end

-- `req` requests of hour `hour` (hours since the epoch) under prefix U, with the other metrics
-- (integers) of `group`: usage_flush.lua's batches, aggregated in each worker
local function usage_add(U, hour, group, layout, req, tin, tout, cost, err)
  local hb, mark = U .. ':u:h:' .. hour, U .. ':u:last'
  local last = tonumber(redis.call('HGET', mark, 'h'))
  local behind = false
  if not last or last < hour then
    if last then usage_roll_up(U, last, layout) end
    redis.call('HSET', mark, 'h', hour)
    redis.call('PEXPIRE', mark, 400 * USAGE_DAY)
  elseif last > hour then
    behind = true  -- an hour already rolled up (a late batch, or a clock stepped back)
  end
  local day_b = U .. ':u:d:' .. math.floor(hour / 24)
  local function add(metric, v)
    if v ~= 0 then
      redis.call('HINCRBY', hb, group .. metric, v)
      if behind then redis.call('HINCRBY', day_b, group .. metric, v) end
    end
  end
  if req ~= 0 and tonumber(redis.call('HINCRBY', hb, group .. 'req', req)) == req then
    if behind then
      redis.call('PEXPIREAT', hb, (hour + 1) * USAGE_HOUR + 8 * USAGE_DAY)
    else
      redis.call('PEXPIRE', hb, 400 * USAGE_DAY)
    end
  end
  if behind then
    if req ~= 0 then redis.call('HINCRBY', day_b, group .. 'req', req) end
    redis.call('PEXPIREAT', day_b, (math.floor(hour / 24) + 401) * USAGE_DAY)
  end
  add('in', tin)
  add('out', tout)
  add('cost', cost)
  add('err', err)
end
