-- wrk script for bench/forged.py: forged pushes (a wrong secret token) at full speed.
-- args: the real bot's id, how many made-up bot ids to spread over besides it (0: none).
function init(args)
  counter = 0
  bot = args[1]
  spread = tonumber(args[2] or "0")
  headers = {["Content-Type"] = "application/json", ["X-Telegram-Bot-Api-Secret-Token"] = "forged"}
  body = '{"update_id":1,"message":{"message_id":1,"date":1763700000,' ..
    '"chat":{"id":1,"type":"private","first_name":"Mallory"},"text":"forged"}}'
end

function request()
  counter = counter + 1
  local target = bot
  if spread > 0 and counter % 2 == 0 then
    target = tostring(900000000 + counter % spread)
  end
  return wrk.format("POST", "/telegram/" .. target, headers, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    "RESULT requests=%d duration_us=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.errors.status,
    latency:percentile(50), latency:percentile(99)))
end
