-- config_read.lua: read every runtime config record and the version they belong to, atomically.
--
-- Read-only. One slot: every key shares the hash tag of KEYS[1].
-- KEYS[1]  <P>:version     P = "<prefix>:{cfg}"
-- ARGV[1]  P               key prefix of the config (same hash tag as KEYS[1])
--
-- returns {version, providers, keys, models, clients}, each a flat HGETALL list (field, value, ...)
local P = ARGV[1]
if #ARGV ~= 1 then return redis.error_reply('ERR config_read: bad arguments') end
return {
  tonumber(redis.call('GET', KEYS[1])) or 0,
  redis.call('HGETALL', P .. ':providers'),
  redis.call('HGETALL', P .. ':keys'),
  redis.call('HGETALL', P .. ':models'),
  redis.call('HGETALL', P .. ':clients'),
}
