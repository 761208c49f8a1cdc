-- acquire.lua: choose one upstream key of a provider pool and reserve it as a lease.
--
-- Every key touched shares the hash tag of KEYS[1], so the script stays in one Redis Cluster slot.
-- KEYS[1]  <P>:leases      zset  request id -> lease expiry (ms); P = "<prefix>:{pool:<provider>}"
-- ARGV[1]  P               key prefix of the pool (must carry the same hash tag as KEYS[1])
-- ARGV[2]  request id      also the lease id; acquiring twice with one id returns the first lease
-- ARGV[3]  token estimate  tokens reserved in the TPM window until settle (integer >= 0)
-- ARGV[4]  lease ttl       (ms) a lease not settled by then is swept and its quota released
-- ARGV[5]  strategy        how to choose among the candidates, examined in the order given (the
--                          caller samples a large pool: gateway/routing/sampling.py):
--                          priority, weighted  the first that has room (the caller's order is the
--                                              priority, or a draw by weight)
--                          least-utilised      the least utilised of the first two that have room
--                          lowest-latency      the fastest (latency EWMA) of all that have room
-- ARGV[6]  random          integer in [0, 1e6) (unused; kept for the call's shape)
-- ARGV[7]  model           the upstream model: the provider+model breaker <P>:m:<model> gates it
-- ARGV[8]  n               number of candidates, then 5 fields per candidate:
-- ARGV[9+5i ..]            key id, rpm (0 = none), tpm (0 = none), max concurrency (0 = none), weight
--
-- Cost: O(candidates examined), never O(pool): least-utilised stops at the second key with room.
--
-- returns {1, key id, probe (0|1)}                       the lease is held
--      or {0, wait (ms, -1 = never by itself), skipped}  no key fits; skipped = "id=reason,..."
--                                                        ("model=breaker_open" when the model is)
local P = ARGV[1]
local req = ARGV[2]
local est = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local strategy = ARGV[5]
local rnd = tonumber(ARGV[6])
local model = ARGV[7]
local n = tonumber(ARGV[8])
if not est or est < 0 or not ttl or ttl <= 0 or not rnd or not n or n < 0 or #ARGV ~= 8 + 5 * n
    or model == '' then
  return redis.error_reply('ERR acquire: bad arguments')
end
if strategy ~= 'least-utilised' and strategy ~= 'weighted' and strategy ~= 'priority'
    and strategy ~= 'lowest-latency' then
  return redis.error_reply('ERR acquire: unknown strategy')
end
local cands = {}
for i = 0, n - 1 do
  local b = 9 + 5 * i
  local c = {id = ARGV[b], rpm = tonumber(ARGV[b + 1]), tpm = tonumber(ARGV[b + 2]),
             conc = tonumber(ARGV[b + 3]), weight = tonumber(ARGV[b + 4])}
  if not c.rpm or not c.tpm or not c.conc or not c.weight then
    return redis.error_reply('ERR acquire: bad candidate limits')
  end
  cands[#cands + 1] = c
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local WINDOW = WINDOW_MS  -- lib/window.lua
local leases = KEYS[1]
local lease_h = P .. ':lease'

-- a lease record: key id|probe|estimate|model probe|b<window bucket>|model (records written
-- before the bucket lack it; settle.lua reads the same layout)
local function lease_fields(rec)
  local kid, probe, _, mprobe, _, lmodel = string.match(rec, '^([^|]*)|(%d)|(%d+)|(%d)|b(%d+)|(.*)$')
  if kid then return kid, probe, mprobe, lmodel end
  kid, probe, _, mprobe, lmodel = string.match(rec, '^([^|]*)|(%d)|(%d+)|(%d)|(.*)$')
  return kid, probe, mprobe, lmodel
end

-- a retried call (reply lost) must not reserve twice
local held = redis.call('HGET', lease_h, req)
if held then
  local kid, probe = string.match(held, '^([^|]*)|(%d)')
  return {1, kid, tonumber(probe)}
end

-- release a bounded number of expired leases: a dead replica or a lost stream leaks nothing.
-- Run when no key had room (an expired lease may hold the slot that is missing) and otherwise
-- once a second per key (when the chosen key's window moves to a new bucket), not per request
local function sweep()
  local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 32)
  local released = 0
  for _, rid in ipairs(expired) do
    local rec = redis.call('HGET', lease_h, rid)
    if rec then
      local kid, probe, mprobe, lmodel = lease_fields(rec)
      local kh = P .. ':k:' .. kid
      if tonumber(redis.call('HINCRBY', kh, 'infl', -1)) < 0 then
        -- the key's hash had expired and HINCRBY made it anew: it gets a TTL like every other
        redis.call('HSET', kh, 'infl', 0)
        redis.call('PEXPIRE', kh, 86400000)
      end
      if probe == '1' and redis.call('HGET', kh, 'br_probe') == rid then
        redis.call('HDEL', kh, 'br_probe')
      end
      local mh = P .. ':m:' .. lmodel
      if mprobe == '1' and redis.call('HGET', mh, 'br_probe') == rid then
        redis.call('HDEL', mh, 'br_probe', 'br_probe_exp')
      end
      redis.call('HDEL', lease_h, rid)
      released = released + 1
    end
    redis.call('ZREM', leases, rid)
  end
  return released
end

-- the provider+model breaker: while open, no key of this pool serves this model
local mh = P .. ':m:' .. model
local mf = redis.call('HMGET', mh, 'br', 'br_until', 'br_probe_exp')
local mbr, m_until, m_probe_exp = mf[1], tonumber(mf[2]) or 0, tonumber(mf[3]) or 0
if mbr == 'open' and m_until > now then return {0, m_until - now, 'model=breaker_open'} end
if mbr == 'half' and m_probe_exp > now then return {0, m_probe_exp - now, 'model=breaker_probing'} end
local model_probe = (mbr == 'open' or mbr == 'half') and 1 or 0

local eligible, skipped = {}, {}
local wait = -1
local function skip(c, reason, until_ms)
  skipped[#skipped + 1] = c.id .. '=' .. reason
  if until_ms and until_ms > now and (wait < 0 or until_ms - now < wait) then wait = until_ms - now end
end

-- which candidates an operator (or a 401/403) disabled: one read for all of them
local disabled = {}
if n > 0 then
  local ids = {}
  for i, c in ipairs(cands) do ids[i] = c.id end
  disabled = redis.call('HMGET', P .. ':disabled', (table.unpack or unpack)(ids))
end

-- examine the candidates in order, stopping as soon as the strategy has what it needs
local enough = (strategy == 'priority' or strategy == 'weighted') and 1
               or (strategy == 'least-utilised' and 2) or n
local function examine()
  eligible, skipped, wait = {}, {}, -1
  for i, c in ipairs(cands) do
    if #eligible >= enough then break end
    local kh = P .. ':k:' .. c.id
    local f = redis.call('HMGET', kh, 'infl', 'cool_until', 'br', 'br_until', 'br_probe_exp',
                         'rem_req', 'rem_tok', 'rem_reset', 'lat')
    local infl = tonumber(f[1]) or 0
    local cool = tonumber(f[2]) or 0
    local br, br_until, probe_exp = f[3], tonumber(f[4]) or 0, tonumber(f[5]) or 0
    local rem_req, rem_tok, rem_reset = tonumber(f[6]), tonumber(f[7]), tonumber(f[8]) or 0
    if disabled[i] then
      skip(c, 'disabled', nil)
    elseif cool > now then
      skip(c, 'cooldown', cool)
    elseif br == 'open' and br_until > now then
      skip(c, 'breaker_open', br_until)
    elseif br == 'half' and probe_exp > now then
      skip(c, 'breaker_probing', probe_exp)
    elseif c.conc > 0 and infl >= c.conc then
      skip(c, 'concurrency', now + 250)
    else
      -- the key's one-minute window (lib/window.lua), trimmed; written only if it is chosen (or
      -- if trimming changed it)
      local win = window_open(P .. ':win:' .. c.id, now)
      c.win = win
      if c.rpm > 0 and win.n >= c.rpm then
        window_close(win)
        skip(c, 'rpm', window_free_at(win, 'r', 1, c.rpm, now))
      elseif c.tpm > 0 and win.s + est > c.tpm then
        window_close(win)
        skip(c, 'tpm', window_free_at(win, 't', est, c.tpm, now))
      elseif rem_reset > now and ((rem_req and rem_req <= 0) or (rem_tok and rem_tok < est)) then
        window_close(win)
        skip(c, 'upstream_quota', rem_reset)
      else
        local u = 0
        if c.rpm > 0 then u = math.max(u, (win.n + 1) / c.rpm) end
        if c.tpm > 0 then u = math.max(u, (win.s + est) / c.tpm) end
        if c.conc > 0 then u = math.max(u, (infl + 1) / c.conc) end
        c.util = u
        c.infl = infl
        c.lat = tonumber(f[9]) or 0
        c.probe = (br == 'open' or br == 'half') and 1 or 0
        c.rem_live = rem_reset > now and rem_req ~= nil
        eligible[#eligible + 1] = c
      end
    end
  end
end

examine()
-- no key had room: an expired lease of a dead replica may hold the missing slot
if #eligible == 0 and sweep() > 0 then examine() end
if #eligible == 0 then
  return {0, math.floor(wait), table.concat(skipped, ',')}
end

-- choose (ties: fewer requests in flight, then the caller's order)
local chosen = eligible[1]
if strategy == 'least-utilised' or strategy == 'lowest-latency' then
  for _, c in ipairs(eligible) do
    local score = strategy == 'lowest-latency' and c.lat or c.util
    local best = strategy == 'lowest-latency' and chosen.lat or chosen.util
    if score < best or (score == best and c.infl < chosen.infl) then chosen = c end
  end
end
for _, c in ipairs(eligible) do
  if c ~= chosen then window_close(c.win) end
end

-- reserve
local kh = P .. ':k:' .. chosen.id
redis.call('HINCRBY', kh, 'infl', 1)
if chosen.probe == 1 then
  redis.call('HSET', kh, 'br', 'half', 'br_probe', req, 'br_probe_exp', now + ttl)
end
if model_probe == 1 then
  redis.call('HSET', mh, 'br', 'half', 'br_probe', req, 'br_probe_exp', now + ttl)
end
if chosen.rem_live then redis.call('HINCRBY', kh, 'rem_req', -1) end
window_add(chosen.win, est)
window_close(chosen.win)
redis.call('HSET', lease_h, req, chosen.id .. '|' .. chosen.probe .. '|' .. est .. '|'
           .. model_probe .. '|b' .. chosen.win.cur .. '|' .. model)
redis.call('ZADD', leases, now + ttl, req)
-- once a second per key, not per request: TTLs (each far longer than a second) and the sweep
if chosen.win.fresh then
  redis.call('PEXPIRE', kh, 86400000)
  redis.call('PEXPIRE', lease_h, ttl * 2 + WINDOW)
  redis.call('PEXPIRE', leases, ttl * 2 + WINDOW)
  sweep()
end
return {1, chosen.id, chosen.probe}
