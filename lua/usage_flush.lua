-- usage_flush.lua: add one worker's usage batch of a pool or client (aggregated in process by
-- gateway/state/usage_buffer.py) to the hour buckets of lib/usage.lua, once.
--
-- Usage left the per-request scripts: each request used to cost ~12 Redis commands of usage
-- inside settle.lua and client_settle.lua; a worker now adds its requests up and sends one call
-- per pool and per client about once a second.
-- KEYS[1]  <U>:u:last      the roll-up marker (U = P or C: the batch's hash tag)
-- ARGV[1]  U               key prefix (same hash tag as KEYS[1])
-- ARGV[2]  batch id        idempotency: a batch re-sent after a lost reply is applied once
-- ARGV[3]  layout          Lua pattern of the field groups this prefix writes (the roll-up's)
-- ARGV[4]  n               number of groups, then 7 fields per group:
-- ARGV[5+7i ..]            hour (since the epoch), group, requests, in, out, cost, errors
--
-- returns 1 when applied now, 0 when this batch id was applied before
local U, id, layout, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if not n or n < 0 or #ARGV ~= 4 + 7 * n or id == '' then
  return redis.error_reply('ERR usage_flush: bad arguments')
end
local rows = {}
for i = 0, n - 1 do
  local b = 5 + 7 * i
  local row = {hour = tonumber(ARGV[b]), group = ARGV[b + 1]}
  for k, name in ipairs({'req', 'tin', 'tout', 'cost', 'err'}) do
    local v = tonumber(ARGV[b + 1 + k])
    if not v or v < 0 or v ~= math.floor(v) then
      return redis.error_reply('ERR usage_flush: bad count')
    end
    row[name] = v
  end
  if not row.hour or row.hour < 0 or row.group == '' then
    return redis.error_reply('ERR usage_flush: bad group')
  end
  rows[#rows + 1] = row
end
if not redis.call('SET', U .. ':flushed:' .. id, 1, 'NX', 'PX', 2 * USAGE_DAY) then return 0 end
-- oldest hour first, so the roll-up marker only moves forward within a batch
table.sort(rows, function(a, b) return a.hour < b.hour end)
for _, r in ipairs(rows) do
  usage_add(U, r.hour, r.group, layout, r.req, r.tin, r.tout, r.cost, r.err)
end
return 1
