-- Shared by the request script: arguments, data files, random choices, pacing and the JSON summary.
local ffi = require("ffi")

ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock, bench_timespec *ts);
]]

local M = {}
local CLOCK_MONOTONIC = 1
local now_buffer = ffi.new("bench_timespec")

-- `key=value` arguments after wrk's `--`.
function M.parse_args(args)
  local parsed = {}
  for _, arg in ipairs(args or {}) do
    local key, value = arg:match("^([%w_]+)=(.*)$")
    if key then parsed[key] = value end
  end
  return parsed
end

-- The non-empty lines of a file.
function M.lines(path)
  local found = {}
  for line in io.lines(path) do
    if #line > 0 then found[#found + 1] = line end
  end
  if #found == 0 then error("no lines in " .. path) end
  return found
end

function M.pick(list)
  return list[math.random(#list)]
end

-- A random version-4 UUID: an id no user has.
function M.uuid4()
  local h = function() return string.format("%04x", math.random(0, 0xffff)) end
  local variant = string.format("%04x", 0x8000 + math.random(0, 0x3fff))
  local version = string.format("4%03x", math.random(0, 0xfff))
  return h() .. h() .. "-" .. h() .. "-" .. version .. "-" .. variant .. "-" .. h() .. h() .. h()
end

function M.now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now_buffer)
  return tonumber(now_buffer.tv_sec) * 1000 + tonumber(now_buffer.tv_nsec) / 1e6
end

-- A delay() that sends `rate` requests a second from this thread: each call takes the next slot of a
-- fixed schedule, whichever connection asks. A late slot is sent at once (the schedule keeps its pace).
function M.pacer(rate)
  local interval, next_at = 1000 / rate, nil
  return function()
    local now = M.now_ms()
    next_at = next_at or now
    local wait = next_at - now
    next_at = next_at + interval
    if wait < 0 then return 0 end
    return math.floor(wait)
  end
end

-- One line the harness reads: counts, duration, errors and latency percentiles (microseconds).
function M.report(summary, latency, threads)
  local not_found, shed = 0, 0
  for _, thread in ipairs(threads) do
    not_found = not_found + (thread:get("not_found") or 0)
    shed = shed + (thread:get("shed") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"not_found":%d,"shed":%d,' ..
    '"latency_us":{"p50":%.1f,"p99":%.1f,"p999":%.1f,"max":%.1f,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, not_found, shed,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end

return M
