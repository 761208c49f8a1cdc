-- wrk scenario: chat.lua, plus a count of responses by status and of 429s without Retry-After.
--
-- Same environment as chat.lua. Adds to the WRK_RESULT line:
--   "statuses": {"200": n, "429": n, ...}   every response, by status
--   "retry_after_missing": n                 429 responses that carried no Retry-After header

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "chat.lua")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

-- per-thread state (each wrk thread runs its own Lua state); read back in done()
statuses = {}
retry_after_missing = 0

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status == 429 then
    local found = false
    for name, _ in pairs(headers) do
      if string.lower(name) == "retry-after" then
        found = true
        break
      end
    end
    if not found then
      retry_after_missing = retry_after_missing + 1
    end
  end
end

function extra_fields()
  local totals = {}
  local missing = 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + n
    end
    missing = missing + thread:get("retry_after_missing")
  end
  local parts = {}
  for status, n in pairs(totals) do
    table.insert(parts, string.format('"%s":%d', status, n))
  end
  return string.format(',"statuses":{%s},"retry_after_missing":%d',
    table.concat(parts, ","), missing)
end
