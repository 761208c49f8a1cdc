-- wrk scenario: POST one chat completion per request, print the run as one JSON line.
--
-- Environment (set by loadtests/run.py):
--   KW_AUTH    bearer token: a Keyway client key, or an upstream key for the direct runs
--   KW_MODEL   the model (a Keyway alias, or the upstream model for the direct runs)
--   KW_STREAM  "1" to ask for an SSE stream (wrk then times the whole stream)
--   KW_HEADERS extra request headers, one "Name: value" a line (the --peers runs: Portkey
--              routes by headers)
-- Output: a line `WRK_RESULT {...}` with the request count, the error counts and the latency
-- percentiles in microseconds, read by loadtests/wrk.py.

local auth = os.getenv("KW_AUTH") or ""
local model = os.getenv("KW_MODEL") or "gpt-4o-mini"
local stream = os.getenv("KW_STREAM") == "1"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. auth
for line in string.gmatch(os.getenv("KW_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^%s*([^:]-)%s*:%s*(.-)%s*$")
  if name and name ~= "" then
    wrk.headers[name] = value
  end
end
wrk.body = string.format(
  '{"model":"%s","messages":[{"role":"user","content":"Say hi"}],"stream":%s}',
  model, stream and "true" or "false")

-- extra JSON members for the result line, "" unless a scenario adds some (overload.lua does)
function extra_fields()
  return ""
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"mean":%.1f,"max":%d}%s}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max, extra_fields()))
end
