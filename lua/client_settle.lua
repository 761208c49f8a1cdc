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
local C, req, mode, model = ARGV[1], ARGV[2], ARGV[3], ARGV[7]
local tin, tout, cost = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if #ARGV ~= 7 or not tin or not tout or not cost
    or (mode ~= 'charge' and mode ~= 'refund' and mode ~= 'late') then
  return redis.error_reply('ERR client_settle: bad arguments')
end
local w, wt, adm = KEYS[1], C .. ':wt', C .. ':adm'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
  redis.call('HINCRBY', adm, '_cost', 0 - hcost)  -- (0 - x): Lua 5.1 renders -0 as "-0", which HINCRBY refuses
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
  redis.call('INCRBY', spend_d, cost)
  redis.call('PEXPIRE', spend_d, 2 * 86400000)
  if spend_m then
    redis.call('INCRBY', spend_m, cost)
    redis.call('PEXPIRE', spend_m, 32 * 86400000)
  end
end

local buckets = {{C .. ':u:h:' .. math.floor(now / 3600000), 8 * 86400000},
                 {C .. ':u:d:' .. math.floor(now / 86400000), 400 * 86400000}}
local function add(h, field, v)
  if v ~= 0 then redis.call('HINCRBY', h, field, v) end
end
for _, b in ipairs(buckets) do
  local fresh = false
  for _, who in ipairs({'all', 'm:' .. model}) do
    -- zero increments are skipped and the TTL is set once, when the bucket is born:
    -- this loop runs on every request, so every command counts
    if redis.call('HINCRBY', b[1], who .. ':req', 1) == 1 then fresh = true end
    add(b[1], who .. ':in', tin)
    add(b[1], who .. ':out', tout)
    add(b[1], who .. ':cost', cost)
    add(b[1], who .. ':err', err)
  end
  if fresh then redis.call('PEXPIRE', b[1], b[2]) end
end
return 1
