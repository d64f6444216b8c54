-- report.lua: appended by load-runner to every wrk script. Numbers each thread, and when
-- the run ends prints one line the runner parses: "LOADJSON {...}" with the request
-- count, duration, errors, latency percentiles (microseconds), and any per-thread
-- counters the script above it keeps (see counter_names).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_index", #threads)
end

-- Per-thread counters to add up at the end; a script above may list some.
counter_names = counter_names or {}

local function counters_json()
  local parts = {}
  for _, name in ipairs(counter_names) do
    local total = 0
    for _, thread in ipairs(threads) do
      total = total + (thread:get(name) or 0)
    end
    table.insert(parts, string.format('"%s":%d', name, total))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'LOADJSON {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},"counters":%s}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    counters_json()))
end
