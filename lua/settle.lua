-- settle.lua: release a lease, reconcile its tokens and apply the upstream's outcome to the key.
--
-- Idempotent by request id: the lease record gates every write, so a retried call (redis-py
-- resends a script whose reply was lost) changes nothing the second time.
-- KEYS[1]  <P>:leases        zset request id -> lease expiry (ms)
-- ARGV[1]  P                 key prefix of the pool (same hash tag as KEYS[1])
-- ARGV[2]  request id
-- ARGV[3]  outcome           ok | rate_limited | server_error | auth_error | client_error | cancelled
--                            | refund (never sent upstream: the window forgets the request)
-- ARGV[4]  tokens            real total tokens, or -1 when unknown (the estimate stays charged)
-- ARGV[5]  cooldown          (ms) for rate_limited: Retry-After as sent, capped and jittered by the caller
-- ARGV[6]  remaining req     learned from upstream headers, -1 = not sent
-- ARGV[7]  remaining tokens  learned from upstream headers, -1 = not sent
-- ARGV[8]  reset             (ms from now) when the upstream's window resets, -1 = not sent
-- ARGV[9]  latency           (ms) of the attempt, -1 = not measured (feeds an EWMA)
-- ARGV[10] breaker: consecutive failures that open it
-- ARGV[11] breaker: failure rate that opens it, in percent
-- ARGV[12] breaker: minimum attempts in the rate window before the rate counts
-- ARGV[13] breaker: rate window (ms)
-- ARGV[14] breaker: open period (ms) for the first opening; doubles per reopening
-- ARGV[15] breaker: longest open period (ms)
-- ARGV[16] jitter            integer in [0, 1000): open periods are stretched by up to +20%
-- ARGV[17] reason            text stored when auth_error disables the key
-- ARGV[18] model             the upstream model: its provider+model breaker
--
-- returns {settled (0 = already settled or swept), key id or '', breaker state ('closed'|'open'|'half')}
--
-- Usage (requests, tokens, cost per key and model) is not written here: the worker counts it
-- and flushes it about once a second (gateway/state/usage_buffer.py, usage_flush.lua).
--
-- This script runs on every request: each Redis command in it costs the whole fleet (Redis is
-- single-threaded), so reads of one hash are one HMGET and writes of one hash one HSET.
local P, req, outcome = ARGV[1], ARGV[2], ARGV[3]
local DAY = 86400000

local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local nums = {}
for i = 4, 16 do
  nums[i] = tonumber(ARGV[i])
  if nums[i] == nil then return redis.error_reply('ERR settle: argument ' .. i .. ' is not a number') end
end
local valid = {ok = 1, rate_limited = 1, server_error = 1, auth_error = 1, client_error = 1, cancelled = 1,
               refund = 1}
if not valid[outcome] or #ARGV ~= 18 then return redis.error_reply('ERR settle: bad arguments') end
local tokens, cool_ms, rem_req, rem_tok, reset_ms, lat = nums[4], nums[5], nums[6], nums[7], nums[8], nums[9]
local consec_max, rate_pct, min_vol, rate_win = nums[10], nums[11], nums[12], nums[13]
local open_base, open_max, jitter = nums[14], nums[15], nums[16]

local lease_h = P .. ':lease'
local rec = redis.call('HGET', lease_h, req)
if not rec then return {0, '', ''} end
-- key id|probe|estimate|model probe|b<window bucket>|model (acquire.lua; older records lack
-- the bucket)
local kid, probe, est, mprobe, bucket = string.match(rec, '^([^|]*)|(%d)|(%d+)|(%d)|b(%d+)|')
if not kid then kid, probe, est, mprobe = string.match(rec, '^([^|]*)|(%d)|(%d+)|(%d)|') end
est, bucket = tonumber(est), tonumber(bucket)

local now = server_ms()
local kh = P .. ':k:' .. kid

redis.call('HDEL', lease_h, req)
redis.call('ZREM', KEYS[1], req)
-- acquire refreshes the key hash's TTL; a negative count means the hash expired meanwhile and
-- HINCRBY made it anew, without a TTL: give it one
if tonumber(redis.call('HINCRBY', kh, 'infl', -1)) < 0 then
  redis.call('HSET', kh, 'infl', 0)
  redis.call('PEXPIRE', kh, DAY)
end

-- the window (lib/window.lua) keeps the request; its tokens become the real count (refund:
-- the request leaves the window too), while its bucket is in the window
local win = P .. ':win:' .. kid
if outcome == 'refund' then
  if bucket then window_adjust(win, bucket, -1, 0 - est) end
  if probe == '1' and redis.call('HGET', kh, 'br_probe') == req then
    redis.call('HDEL', kh, 'br_probe', 'br_probe_exp')
  end
  local mh = P .. ':m:' .. ARGV[18]
  if mprobe == '1' and redis.call('HGET', mh, 'br_probe') == req then
    redis.call('HDEL', mh, 'br_probe', 'br_probe_exp')
  end
  return {1, kid, redis.call('HGET', kh, 'br') or 'closed'}
end
if tokens >= 0 and bucket then window_adjust(win, bucket, 0, math.floor(tokens) - est) end

-- one read of the key's hash; its writes gather in `set`, sent as one HSET at the end
local f = redis.call('HMGET', kh, 'br', 'br_probe', 'lat', 'br_wstart', 'br_wtotal', 'br_wfail',
                     'br_fails')
local br = f[1] or 'closed'
local set = {}
local function put(field, v)
  set[#set + 1] = field
  set[#set + 1] = v
end
if reset_ms >= 0 and (rem_req >= 0 or rem_tok >= 0) then
  if rem_req >= 0 then put('rem_req', math.floor(rem_req)) end
  if rem_tok >= 0 then put('rem_tok', math.floor(rem_tok)) end
  put('rem_reset', now + math.floor(reset_ms))
end
if lat >= 0 then
  local old = tonumber(f[3])
  local new = old and (old * 0.8 + lat * 0.2) or lat
  put('lat', math.floor(new))
end

-- a breaker lives in a hash (the key's, or the provider+model's): open it for a period that
-- doubles with each reopening, stretched by up to 20% of jitter
local function open_breaker(h)
  local opens = tonumber(redis.call('HINCRBY', h, 'br_opens', 1))
  local period = open_base * (2 ^ math.min(opens - 1, 20))
  if period > open_max then period = open_max end
  period = math.floor(period * (1 + 0.2 * jitter / 1000))
  redis.call('HSET', h, 'br', 'open', 'br_until', now + period, 'br_fails', 0,
             'br_wstart', now, 'br_wtotal', 0, 'br_wfail', 0, 'br_keys', 0, 'br_lastkey', '')
  redis.call('HDEL', h, 'br_probe', 'br_probe_exp')
end

local function close_breaker(h)
  redis.call('HSET', h, 'br', 'closed', 'br_fails', 0, 'br_opens', 0,
             'br_wstart', now, 'br_wtotal', 0, 'br_wfail', 0)
  redis.call('HDEL', h, 'br_probe', 'br_probe_exp', 'br_until')
end

local is_probe = probe == '1' and f[2] == req
local function release_model_probe()
  local mh = P .. ':m:' .. ARGV[18]
  if mprobe == '1' and redis.call('HGET', mh, 'br_probe') == req then
    redis.call('HDEL', mh, 'br_probe', 'br_probe_exp')
  end
end

if outcome == 'auth_error' then
  redis.call('HSET', P .. ':disabled', kid, ARGV[17])
elseif outcome == 'rate_limited' then
  if cool_ms > 0 then put('cool_until', now + math.floor(cool_ms)) end
  if is_probe then redis.call('HDEL', kh, 'br_probe', 'br_probe_exp') end
  release_model_probe()
elseif outcome == 'ok' or outcome == 'server_error' then
  local failed = outcome == 'server_error'
  if is_probe then
    if failed then open_breaker(kh) br = 'open' else close_breaker(kh) br = 'closed' end
  elseif br == 'closed' then
    local wstart, wtotal, wfail = tonumber(f[4]) or now, tonumber(f[5]) or 0, tonumber(f[6]) or 0
    if now - wstart >= rate_win then wstart, wtotal, wfail = now, 0, 0 end
    wtotal = wtotal + 1
    local fails = 0
    if failed then
      wfail = wfail + 1
      fails = (tonumber(f[7]) or 0) + 1
    end
    if failed and ((consec_max > 0 and fails >= consec_max)
        or (wtotal >= min_vol and wfail * 100 >= rate_pct * wtotal)) then
      open_breaker(kh)
      br = 'open'
    else
      put('br_fails', fails)
      put('br_wstart', wstart)
      put('br_wtotal', wtotal)
      put('br_wfail', wfail)
    end
  end
  -- the provider+model breaker: consecutive failures across all keys of the pool for it. Its
  -- hash is written (and its TTL refreshed) only when its state changes: a success on a closed,
  -- clean breaker, the common case, costs one read
  local mh = P .. ':m:' .. ARGV[18]
  local mf = redis.call('HMGET', mh, 'br', 'br_probe', 'br_fails', 'br_keys', 'br_lastkey')
  local mbr = mf[1] or 'closed'
  local mfails, mkeys, mlast = tonumber(mf[3]) or 0, tonumber(mf[4]) or 0, mf[5] or ''
  if mprobe == '1' and mf[2] == req then
    if failed then open_breaker(mh) else close_breaker(mh) end
    redis.call('PEXPIRE', mh, DAY)
  elseif mbr == 'closed' then
    -- the model is down, not one key, only when the failing run spans two keys or more:
    -- one bad key among good ones is its own breaker's business
    if failed then
      mfails = mfails + 1
      if mlast ~= kid then mkeys = mkeys + 1 end
      if consec_max > 0 and mfails >= consec_max and mkeys >= 2 then
        open_breaker(mh)
      else
        redis.call('HSET', mh, 'br_fails', mfails, 'br_keys', mkeys, 'br_lastkey', kid)
      end
      redis.call('PEXPIRE', mh, DAY)
    elseif mfails ~= 0 or mkeys ~= 0 or mlast ~= '' then
      redis.call('HSET', mh, 'br_fails', 0, 'br_keys', 0, 'br_lastkey', '')
      redis.call('PEXPIRE', mh, DAY)
    end
  end
else
  -- client_error / cancelled say nothing about the key; a probe that ends so frees the slot
  if is_probe then redis.call('HDEL', kh, 'br_probe', 'br_probe_exp') end
  release_model_probe()
end
if #set > 0 then redis.call('HSET', kh, (table.unpack or unpack)(set)) end

return {1, kid, br}
