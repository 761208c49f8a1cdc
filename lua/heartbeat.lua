-- heartbeat.lua: a replica (one worker process) says it is alive; returns how many are.
--
-- The count lets each replica take its share of every limit if Redis goes away later.
-- KEYS[1]  <prefix>:{meta}:replicas   zset replica id -> expiry (ms)
-- ARGV[1]  replica id
-- ARGV[2]  ttl (ms) a replica that stops beating drops out after this
--
-- returns the number of live replicas, this one included
local id, ttl = ARGV[1], tonumber(ARGV[2])
if #ARGV ~= 2 or id == '' or not ttl or ttl <= 0 then
  return redis.error_reply('ERR heartbeat: bad arguments')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, id)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
