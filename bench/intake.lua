-- wrk script for bench/intake.py: POST unique Telegram updates to /telegram/{bot_id}.
-- Each wrk thread numbers its own update_ids so no two requests collide (no duplicates).
local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  path = args[1]
  secret = args[2]
  base = tonumber(args[3] or "0")
  headers = {["Content-Type"] = "application/json", ["X-Telegram-Bot-Api-Secret-Token"] = secret}
end

function request()
  counter = counter + 1
  local update_id = base + tid * 100000000 + counter
  local chat = 1000 + (counter % 64)
  local body = string.format(
    '{"update_id":%d,"message":{"message_id":%d,"date":1763700000,' ..
    '"chat":{"id":%d,"type":"private","first_name":"Load"},' ..
    '"from":{"id":%d,"is_bot":false,"first_name":"Load"},"text":"load test message"}}',
    update_id, counter, chat, chat)
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    "RESULT requests=%d duration_us=%d errors=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, errors, summary.errors.status,
    latency:percentile(50), latency:percentile(99)))
end
