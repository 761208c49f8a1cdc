-- client_settle.lua: close a client admission: charge the real usage, or refund it entirely.
--
-- Idempotent by request id: the admission record gates every write.
-- KEYS[1]  <C>:win        hash: the client's one-minute window (lib/window.lua)
-- ARGV[1]  C              key prefix of the client (same hash tag as KEYS[1])
-- ARGV[2]  request id
-- ARGV[3]  mode           charge | refund (refund: no upstream answered; nothing is consumed)
--                         | rejected (the upstream refused the request as invalid: the request
--                           stays in the window, its tokens and cost do not; counted an error)
--                         | late (admitted while Redis was away: charge spend (day and month)
--                           once, idempotent by a marker; the admission never reached Redis, so
--                           no window holds it)
-- ARGV[4]  input tokens   -1 = unknown (the estimate stays charged, never zero)
-- ARGV[5]  output tokens  -1 = unknown
-- ARGV[6]  cost           (micro-dollars) -1 = unknown (the estimated cost is charged)
--
-- returns 1 when settled now, 0 when it was already settled (or never admitted)
--
-- Usage per alias is not written here: the worker counts it and flushes it about once a second
-- (gateway/state/usage_buffer.py, usage_flush.lua).
--
-- This script runs on every request: each Redis command in it costs the whole fleet (Redis is
-- single-threaded), so zero increments are skipped and TTLs are set when a key is born.
local C, req, mode = ARGV[1], ARGV[2], ARGV[3]
local tin, tout, cost = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if #ARGV ~= 6 or not tin or not tout or not cost
    or (mode ~= 'charge' and mode ~= 'refund' and mode ~= 'late' and mode ~= 'rejected') then
  return redis.error_reply('ERR client_settle: bad arguments')
end
local adm = C .. ':adm'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local DAY = 86400000
local est, hcost, spend_d, spend_m, bucket
if mode == 'late' then
  if tin < 0 or tout < 0 or cost < 0 then return redis.error_reply('ERR client_settle: late needs figures') end
  if redis.call('SET', C .. ':late:' .. req, 1, 'NX', 'PX', 2 * 86400000) == false then return 0 end
  spend_d, spend_m = spend_keys(C, now)  -- lib/calendar.lua
  est, hcost = tin + tout, cost
  mode = 'charge'
else
  local rec = redis.call('HGET', adm, req)
  if not rec then return 0 end
  -- est|cost|day key|month key|b<window bucket> (records written before the bucket lack it)
  est, hcost, spend_d, spend_m, bucket = string.match(rec, '^(%d+)|(%d+)|([^|]+)|([^|]+)|b(%d+)$')
  if not est then est, hcost, spend_d, spend_m = string.match(rec, '^(%d+)|(%d+)|([^|]+)|([^|]+)$') end
  est, hcost, bucket = tonumber(est), tonumber(hcost), tonumber(bucket)
  redis.call('HDEL', adm, req)
  redis.call('ZREM', C .. ':admz', req)
  if hcost ~= 0 then release_held_cost(adm, hcost) end
end
-- the window (lib/window.lua) holds the admission's estimate in its bucket, while that bucket
-- is in the window: it becomes the real count (refund: the request leaves the window too)
if mode == 'refund' then
  if bucket then window_adjust(KEYS[1], bucket, -1, 0 - est) end
elseif mode == 'rejected' then
  if bucket then window_adjust(KEYS[1], bucket, 0, 0 - est) end
else
  if tin < 0 then tin, tout = est, 0 end
  if tout < 0 then tout = 0 end
  if cost < 0 then cost = hcost end
  tin, tout, cost = math.floor(tin), math.floor(tout), math.floor(cost)
  if bucket then window_adjust(KEYS[1], bucket, 0, tin + tout - est) end
  -- a spend key is read only within its own day / month: the TTL set at its birth outlasts that
  if cost ~= 0 then
    if tonumber(redis.call('INCRBY', spend_d, cost)) == cost then
      redis.call('PEXPIRE', spend_d, 2 * DAY)
    end
    if tonumber(redis.call('INCRBY', spend_m, cost)) == cost then
      redis.call('PEXPIRE', spend_m, 32 * DAY)
    end
  end
end
return 1
