-- wrk script: POST /devices/heartbeat for registered devices, cycling through
-- the ids file given after "--" (one UUID per line). Each wrk thread starts at
-- a different offset so the connections do not all hit the same device.
--   wrk -t2 -c64 -d10s --latency -s bench/wrk_heartbeat.lua http://127.0.0.1:PORT -- ids.txt
local ids = {}
local next_index = 1
local thread_counter = 0

function setup(thread)
  thread:set("thread_index", thread_counter)
  thread_counter = thread_counter + 1
end

function init(args)
  local path = args[1] or error("usage: ... -- IDS_FILE")
  for line in io.lines(path) do
    if #line > 0 then ids[#ids + 1] = line end
  end
  if #ids == 0 then error("no ids in " .. path) end
  next_index = ((tonumber(thread_index) or 0) * 7919) % #ids + 1
  wrk.method = "POST"
  wrk.path = "/devices/heartbeat"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local id = ids[next_index]
  next_index = next_index % #ids + 1
  return wrk.format(nil, nil, nil, '{"device_id":"' .. id .. '"}')
end

local bad = 0
function response(status, headers, body)
  if status ~= 200 and bad < 3 then
    bad = bad + 1
    io.stderr:write("wrk_heartbeat: status " .. status .. ": " .. body .. "\n")
  end
end
