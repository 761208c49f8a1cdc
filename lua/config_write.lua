-- config_write.lua: change runtime config records atomically, bump the version, announce it.
--
-- All config records share one hash tag, so the script stays in one Redis Cluster slot.
-- Every change carries a compare-and-set guard: if any guard fails, nothing is written.
-- Records are durable (no TTL). Subscribers of P:changed reload their snapshot.
-- KEYS[1]  <P>:version     integer counter; P = "<prefix>:{cfg}"
-- ARGV[1]  P               key prefix of the config (same hash tag as KEYS[1])
-- ARGV[2]  bump            1 = INCR the version and PUBLISH it on P:changed, 0 = silent
-- ARGV[3]  n               number of changes, then 4 fields per change:
-- ARGV[4+4i]  kind         providers | keys | models | clients   (the hash P:<kind>)
-- ARGV[5+4i]  field        the record's id within that hash
-- ARGV[6+4i]  guard        '*' any | '!' must be absent | '=' .. value: must equal value exactly
-- ARGV[7+4i]  change       '+' .. value: set the field to value | '-': delete the field
--
-- returns {1, version}                    written (version after the bump, or the current one)
--      or {0, index of the failed guard}  nothing written (1-based change index)
local P = ARGV[1]
local bump = ARGV[2]
local n = tonumber(ARGV[3])
if not n or n < 1 or #ARGV ~= 3 + 4 * n or (bump ~= '0' and bump ~= '1') then
  return redis.error_reply('ERR config_write: bad arguments')
end
local kinds = {providers = 1, keys = 1, models = 1, clients = 1}
for i = 0, n - 1 do
  local b = 4 + 4 * i
  local guard, change = ARGV[b + 2], ARGV[b + 3]
  local g, c = string.sub(guard, 1, 1), string.sub(change, 1, 1)
  if not kinds[ARGV[b]] or ARGV[b + 1] == '' then
    return redis.error_reply('ERR config_write: bad kind or field')
  end
  if not (guard == '*' or guard == '!' or g == '=') or not ((c == '+' and #change > 1) or change == '-') then
    return redis.error_reply('ERR config_write: bad guard or change')
  end
end
for i = 0, n - 1 do
  local b = 4 + 4 * i
  local cur = redis.call('HGET', P .. ':' .. ARGV[b], ARGV[b + 1])
  local guard = ARGV[b + 2]
  if guard == '!' and cur then return {0, i + 1} end
  if string.sub(guard, 1, 1) == '=' and cur ~= string.sub(guard, 2) then return {0, i + 1} end
end
for i = 0, n - 1 do
  local b = 4 + 4 * i
  local h, field, change = P .. ':' .. ARGV[b], ARGV[b + 1], ARGV[b + 3]
  if change == '-' then
    redis.call('HDEL', h, field)
  else
    redis.call('HSET', h, field, string.sub(change, 2))
  end
end
if bump == '1' then
  local v = redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', P .. ':changed', v)
  return {1, v}
end
return {1, tonumber(redis.call('GET', KEYS[1])) or 0}
