-- wrk script of bench/serve.py: POST one fixed JSON body and print one JSON line with
-- the figures when done. wrk itself counts answers outside 2xx-3xx (errors.status);
-- with BENCH_EVERY_RESPONSE=1 every answer other than 200 is counted here as well,
-- at the price of a Lua call per answer (about 6% fewer requests/s at 15,000/s).
--   wrk -t2 -c16 -d15s --latency -s bench/_wrk_post.lua URL -- body.json

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local file = assert(io.open(args[1], "rb"))
   wrk.method = "POST"
   wrk.body = file:read("*a")
   file:close()
   wrk.headers["Content-Type"] = "application/json"
   not200 = 0
   first_bad = ""
end

if os.getenv("BENCH_EVERY_RESPONSE") == "1" then
   function response(status, headers, body)
      if status ~= 200 then
         not200 = not200 + 1
         if first_bad == "" then
            first_bad = status .. " " .. string.sub(body or "", 1, 200)
         end
      end
   end
end

function done(summary, latency, requests)
   local bad, sample = 0, ""
   for _, thread in ipairs(threads) do
      bad = bad + thread:get("not200")
      if sample == "" then sample = thread:get("first_bad") end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
      '"p99_us": %d, "max_us": %d, "not200": %d, "connect": %d, "read": %d, ' ..
      '"write": %d, "timeout": %d, "status": %d, "first_bad": "%s"}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, bad, e.connect, e.read, e.write, e.timeout,
      e.status, (sample:gsub('[%c"\\]', "'"))))
end
