-- renew.lua: extend a lease (or a client's admission hold) that is still held, so a long stream
-- is not swept as if its replica had died.
--
-- The same contract serves both records, each on its own slot: an upstream key's lease
-- (KEYS = <P>:leases, <P>:lease) and a client's admission hold (KEYS = <C>:admz, <C>:adm).
-- KEYS[1]  expiry zset      id -> expiry (ms); the sweeps release what is past its expiry
-- KEYS[2]  record hash      id -> the lease / hold record (settle deletes it)
-- ARGV[1]  id               lease id or request id
-- ARGV[2]  ttl              (ms) the new expiry is now + ttl
--
-- returns 1 when extended, 0 when the record is gone (settled, or swept before this renewal)
local id, ttl = ARGV[1], tonumber(ARGV[2])
if #ARGV ~= 2 or id == '' or not ttl or ttl <= 0 then
  return redis.error_reply('ERR renew: bad arguments')
end
if redis.call('HEXISTS', KEYS[2], id) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + ttl, id)
-- both keys must outlive the renewed expiry (acquire and admit set ttl * 2 at birth)
for _, k in ipairs(KEYS) do
  if redis.call('PTTL', k) < ttl * 2 then redis.call('PEXPIRE', k, ttl * 2) end
end
return 1
