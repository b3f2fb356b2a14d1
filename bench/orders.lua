-- wrk script: POST unique orders (the engine de-duplicates on order_id).
--
--   wrk -t1 -c64 -d15s -s bench/orders.lua URL/orders -- PREFIX LIMIT RATE HIGH_EVERY
--
-- PREFIX      order ids are PREFIX-<thread>-<n>, unique within one run of wrk
-- LIMIT       stop each thread after LIMIT orders were answered (0: run for -d)
-- RATE        requests per second per thread, open-loop schedule (0: as fast as answered)
-- HIGH_EVERY  every HIGH_EVERY-th order is over $300 (20: 5 %)
--
-- With RATE, request n of a thread is due at start + n / RATE; delay() waits until then, and a
-- request that could only be sent late (no free connection) is counted with its lateness, so
-- coordinated omission is visible rather than hidden. Once LIMIT orders were issued the thread
-- sends GET /healthz every 20 ms per connection until the last order is answered, then stops.
--
-- done() prints one line "BENCH-JSON {...}" with the counts and latency percentiles (µs).

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

-- main state: keep the threads to read their counters in done()
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

-- thread state
prefix, limit, interval, high_every = "W", 0, 0, 20
issued, high, extra = 0, 0, 0
accepted, other2xx, bad, health = 0, 0, 0, 0
late, late_max, late_sum = 0, 0, 0
first_status = 0
local start_ms, scheduled = nil, 0
local verify_call = false
local last_post_ms = 0
first_post_ms, last_answer_ms = 0, 0

local function finish()
  -- tell the harness this thread is done: wrk itself sleeps for -d unless it gets SIGINT
  io.write("BENCH-THREAD-DONE\n")
  io.flush()
  wrk.thread:stop()
end

function init(args)
  prefix = (args[1] or "W") .. "-" .. tostring(tid)
  limit = tonumber(args[2] or "0")
  local rate = tonumber(args[3] or "0")
  if rate > 0 then interval = 1000 / rate end
  high_every = tonumber(args[4] or "20")
  wrk.headers["Content-Type"] = "application/json"
  -- wrk calls request() once in the first thread's state to verify it: not a real request
  verify_call = (tid == 1)
end

function delay()
  if limit > 0 and issued >= limit then return 20 end -- fillers: few and slow
  if interval == 0 then return 0 end
  local now = now_ms()
  if start_ms == nil then start_ms = now end
  scheduled = scheduled + 1
  local due = start_ms + scheduled * interval
  local wait = due - now
  if wait < 0 then
    local lag = -wait
    if lag > 1 then
      late = late + 1
      late_sum = late_sum + lag
      if lag > late_max then late_max = lag end
    end
    return 0
  end
  return wait
end

function request()
  if verify_call then
    verify_call = false
    return wrk.format("POST", nil, nil, '{"order_id":"verify","amount":"1.00"}')
  end
  if limit > 0 and issued >= limit then
    extra = extra + 1
    return wrk.format("GET", "/healthz")
  end
  issued = issued + 1
  if issued == 1 then first_post_ms = now_ms() end
  local amount
  if high_every > 0 and issued % high_every == 0 then
    amount = "450.00"
    high = high + 1
  else
    amount = string.format("%d.%02d", 10 + issued % 280, issued % 100)
  end
  local body = '{"order_id":"' .. prefix .. '-' .. issued .. '","amount":"' .. amount ..
      '","currency":"USD","customer_name":"Bench Customer ' .. (issued % 997) ..
      '","customer_phone":"+15558675310","created_at":"2024-05-01T12:30:00Z",' ..
      '"items":[{"sku":"SKU-' .. (issued % 50) .. '","qty":2,"price":"12.50"}]}'
  return wrk.format("POST", nil, nil, body)
end

function response(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
    last_post_ms = now_ms()
    last_answer_ms = last_post_ms
  elseif status == 200 and limit > 0 and issued >= limit then
    health = health + 1 -- the GET /healthz fillers after the last order
    if now_ms() - last_post_ms > 5000 then
      finish() -- an order was issued but never sent (wrk re-asks on EAGAIN): give up
    end
  else
    if status >= 200 and status < 300 then other2xx = other2xx + 1 else bad = bad + 1 end
    if first_status == 0 then first_status = status end
    last_answer_ms = now_ms()
  end
  if limit > 0 and accepted + bad + other2xx >= limit then
    finish()
  end
end

function done(summary, latency, requests)
  local t = { accepted = 0, other2xx = 0, bad = 0, health = 0, issued = 0, high = 0,
    late = 0, late_max_ms = 0, late_sum_ms = 0, first_bad_status = 0,
    first_post_ms = 0, last_answer_ms = 0 }
  for _, thread in ipairs(threads) do
    t.accepted = t.accepted + thread:get("accepted")
    t.other2xx = t.other2xx + thread:get("other2xx")
    t.bad = t.bad + thread:get("bad")
    t.health = t.health + thread:get("health")
    t.issued = t.issued + thread:get("issued")
    t.high = t.high + thread:get("high")
    t.late = t.late + thread:get("late")
    t.late_sum_ms = t.late_sum_ms + thread:get("late_sum")
    local lm = thread:get("late_max")
    if lm > t.late_max_ms then t.late_max_ms = lm end
    local fp, la = thread:get("first_post_ms"), thread:get("last_answer_ms")
    if fp > 0 and (t.first_post_ms == 0 or fp < t.first_post_ms) then t.first_post_ms = fp end
    if la > t.last_answer_ms then t.last_answer_ms = la end
    local fs = thread:get("first_status")
    if fs ~= 0 and t.first_bad_status == 0 then t.first_bad_status = fs end
  end
  local e = summary.errors
  local parts = {
    string.format('"duration_us":%d', summary.duration),
    string.format('"requests":%d', summary.requests),
    string.format('"bytes":%d', summary.bytes),
    string.format('"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d',
      e.connect, e.read, e.write, e.status, e.timeout),
    string.format('"lat_mean_us":%.1f,"lat_stdev_us":%.1f,"lat_min_us":%d,"lat_max_us":%d',
      latency.mean, latency.stdev, latency.min, latency.max),
    string.format('"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d',
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9)),
  }
  for k, v in pairs(t) do
    table.insert(parts, string.format('"%s":%.3f', k, v))
  end
  io.write("BENCH-JSON {" .. table.concat(parts, ",") .. "}\n")
end
