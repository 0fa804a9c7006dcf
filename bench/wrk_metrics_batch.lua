-- wrk script: POST /metrics/batch with batches of 1,000 points (5 metrics of 200
-- instants of one device), cycling through the ids file given after "--", so each
-- request is the body an HTTP client batching its readings would send (~90 KB).
--   wrk -t2 -c8 -d10s -s bench/wrk_metrics_batch.lua http://127.0.0.1:PORT -- ids.txt
local bodies = {}
local next_index = 1
local thread_counter = 0

function setup(thread)
  thread:set("thread_index", thread_counter)
  thread_counter = thread_counter + 1
end

function init(args)
  local path = args[1] or error("usage: ... -- IDS_FILE")
  local ids = {}
  for line in io.lines(path) do
    if #line > 0 then ids[#ids + 1] = line end
    if #ids >= 50 then break end
  end
  if #ids == 0 then error("no ids in " .. path) end
  for _, id in ipairs(ids) do
    local points = {}
    for i = 1, 200 do
      for m = 0, 4 do
        points[#points + 1] = string.format(
          '{"device_id":"%s","metric_name":"m%d","metric_value":%d.25,"time":%d}', id, m, i, os.time() - 200 + i)
      end
    end
    bodies[#bodies + 1] = "[" .. table.concat(points, ",") .. "]"
  end
  next_index = ((tonumber(thread_index) or 0) * 7) % #bodies + 1
  wrk.method = "POST"
  wrk.path = "/metrics/batch"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local body = bodies[next_index]
  next_index = next_index % #bodies + 1
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format('{"requests":%d,"duration_us":%d,"non2xx":%d,"errors":%d,"p50_ms":%.2f,"p99_ms":%.2f}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
