-- config_key_state.lua: an operator disables or re-enables one upstream key of a pool.
--
-- The `disabled` hash is the one settle.lua writes when the upstream answers 401/403, and the one
-- acquire.lua skips keys by: enabling clears either cause. Durable (no TTL): a disabled key stays
-- disabled until an operator enables it.
-- KEYS[1]  <P>:disabled    hash key id -> reason; P = "<prefix>:{pool:<provider>}"
-- ARGV[1]  key id
-- ARGV[2]  action          disable | enable
-- ARGV[3]  reason          text stored with disable (may be empty)
--
-- returns 1 when the key's state changed, 0 when it already was so
local kid, action, reason = ARGV[1], ARGV[2], ARGV[3]
if #ARGV ~= 3 or kid == '' or (action ~= 'disable' and action ~= 'enable') then
  return redis.error_reply('ERR config_key_state: bad arguments')
end
if action == 'enable' then
  return redis.call('HDEL', KEYS[1], kid)
end
if reason == '' then reason = 'disabled by an operator' end
return redis.call('HSET', KEYS[1], kid, reason)
