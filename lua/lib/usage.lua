-- lib/usage.lua: usage by hour, rolled up into days once an hour; shared by settle.lua (pool
-- usage) and client_settle.lua (client usage). Redis Lua has no include: gateway/state/scripts.py
-- prepends this file to both scripts' sources.
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

-- one request at `now` (ms) under prefix U: req +1 and the other metrics (integers) of `group`
local function usage_write(U, now, group, layout, tin, tout, cost, err)
  local hour = math.floor(now / USAGE_HOUR)
  local hb, mark = U .. ':u:h:' .. hour, U .. ':u:last'
  local last = tonumber(redis.call('HGET', mark, 'h'))
  local behind = false
  if not last or last < hour then
    if last then usage_roll_up(U, last, layout) end
    redis.call('HSET', mark, 'h', hour)
    redis.call('PEXPIRE', mark, 400 * USAGE_DAY)
  elseif last > hour then
    behind = true  -- Redis's clock stepped back past the marker: this hour is rolled up already
  end
  local day_b = U .. ':u:d:' .. math.floor(hour / 24)
  local function add(metric, v)
    if v ~= 0 then
      redis.call('HINCRBY', hb, group .. metric, v)
      if behind then redis.call('HINCRBY', day_b, group .. metric, v) end
    end
  end
  if redis.call('HINCRBY', hb, group .. 'req', 1) == 1 then
    if behind then
      redis.call('PEXPIREAT', hb, (hour + 1) * USAGE_HOUR + 8 * USAGE_DAY)
    else
      redis.call('PEXPIRE', hb, 400 * USAGE_DAY)
    end
  end
  if behind then
    redis.call('HINCRBY', day_b, group .. 'req', 1)
    redis.call('PEXPIREAT', day_b, (math.floor(hour / 24) + 401) * USAGE_DAY)
  end
  add('in', tin)
  add('out', tout)
  add('cost', cost)
  add('err', err)
end
