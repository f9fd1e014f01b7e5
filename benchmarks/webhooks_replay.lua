-- Replays pre-signed Stripe events for benchmarks/webhooks.py.
-- Run as: wrk -t C -c C -s webhooks_replay.lua URL -- DIR CYCLE RESULT
-- One connection per thread, so a response answers the request that thread built last (wrk may
-- build a request it never sends, e.g. the first one of a thread: such lines are "skipped").
-- Thread t replays DIR/t<t>.txt, one "<Stripe-Signature>\t<body>" per line.
-- CYCLE=1 starts over at the end of the file (the ceiling); otherwise the thread stops there.
-- done() writes a JSON summary (counts, latency percentiles, the per-thread lines answered
-- and those answered with anything but 200) to RESULT.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local dir, path = args[1], wrk.path
   cycle = args[2] == "1"
   requests_ = {}
   for line in io.lines(dir .. "/t" .. wrk.thread:get("id") .. ".txt") do
      local tab = line:find("\t", 1, true)
      local headers = {["Stripe-Signature"] = line:sub(1, tab - 1), ["Content-Type"] = "application/json"}
      requests_[#requests_ + 1] = wrk.format("POST", path, headers, line:sub(tab + 1))
   end
   sent, answered, exhausted, last = 0, 0, 0, -1
   failed, skipped = "", ""
end

function request()
   local n = sent % #requests_
   if sent > 0 and n == 0 then exhausted = 1 end
   sent = sent + 1
   return requests_[n + 1]
end

function response(status, headers, body)
   local index = sent - 1
   for i = last + 1, index - 1 do skipped = skipped .. i .. "," end
   last = index
   if status ~= 200 then failed = failed .. index .. ":" .. status .. "," end
   answered = answered + 1
   if not cycle and last >= #requests_ - 1 then
      exhausted = 1
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local out = assert(io.open(os.getenv("WRK_RESULT") or "wrk-result.json", "w"))
   out:write(string.format('{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max))
   out:write(string.format('"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ',
      summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
      summary.errors.timeout))
   out:write('"threads": [')
   for index, thread in ipairs(threads) do
      if index > 1 then out:write(", ") end
      out:write(string.format('{"id": %d, "sent": %d, "answered": %d, "exhausted": %d, "last": %d, '
         .. '"failed": "%s", "skipped": "%s"}', thread:get("id"), thread:get("sent"), thread:get("answered"),
         thread:get("exhausted"), thread:get("last"), thread:get("failed"), thread:get("skipped")))
   end
   out:write("]}\n")
   out:close()
end
