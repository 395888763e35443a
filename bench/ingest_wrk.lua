-- wrk script for bench/ingest.py: each thread precomputes its share of the signed deliveries
-- (INGEST_WRK_REQUESTS: one "id<TAB>event<TAB>signature<TAB>json body" per line; thread k of T
-- takes lines k, k+T, ...) and rotates through them, so signing costs nothing during the run.
-- Counts statuses and the server's Server-Timing per thread; done() prints one RESULT JSON line.
-- In flight, sampled: each time a request goes out, how many of the thread's earlier requests are
-- still unanswered (bench/ingest.py takes off the request wrk asks thread 1 for and never sends) (wrk's latency figures are corrected for coordinated omission, so
-- throughput x their mean only bounds the real number from above).

local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("INGEST_WRK_REQUESTS")
  local nthreads = tonumber(os.getenv("INGEST_WRK_THREADS"))
  reqs = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id - 1 then
      local did, event, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      reqs[#reqs + 1] = wrk.format("POST", "/webhook", {
        ["Content-Type"] = "application/json",
        ["X-GitHub-Event"] = event,
        ["X-GitHub-Delivery"] = did,
        ["X-Hub-Signature-256"] = sig,
        ["User-Agent"] = "GitHub-Hookshot/bench",
      }, body)
    end
    i = i + 1
  end
  n = 0
  sent = 0
  answered = 0
  busy = 0
  statuses = {}
  srv = {}
end

function request()
  n = n % #reqs + 1
  busy = busy + (sent - answered)
  sent = sent + 1
  return reqs[n]
end

function response(status, headers, body)
  answered = answered + 1
  statuses[status] = (statuses[status] or 0) + 1
  local timing = headers["Server-Timing"] or headers["server-timing"]
  if timing then
    local dur = timing:match("dur=([%d%.]+)")
    if dur then
      srv[#srv + 1] = tonumber(dur)
    end
  end
end

local function pct(sorted, q)
  if #sorted == 0 then
    return -1
  end
  local k = math.max(1, math.min(#sorted, math.ceil(q * #sorted)))
  return sorted[k]
end

function done(summary, latency, requests)
  local all_srv = {}
  local parts = {}
  for _, thread in ipairs(threads) do
    local st = thread:get("statuses")
    local codes = {}
    for code, count in pairs(st) do
      codes[#codes + 1] = string.format('"%d": %d', code, count)
    end
    parts[#parts + 1] = string.format('{"id": %d, "sent": %d, "answered": %d, "busy": %d, "statuses": {%s}}',
      thread:get("id"), thread:get("sent"), thread:get("answered"), thread:get("busy"), table.concat(codes, ", "))
    for _, v in ipairs(thread:get("srv")) do
      all_srv[#all_srv + 1] = v
    end
  end
  table.sort(all_srv)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "mean_us": %.1f, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ' ..
    '"server_p50_ms": %.3f, "server_p99_ms": %.3f, "threads": [%s]}\n',
    summary.requests, summary.duration, latency.mean, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, pct(all_srv, 0.5), pct(all_srv, 0.99),
    table.concat(parts, ", ")))
end
