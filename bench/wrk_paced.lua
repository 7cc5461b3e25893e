-- bench/wrk.lua at a fixed rate: wrk ... -s wrk_paced.lua URL -- FILE RATE
-- Requests are handed fixed send times, RATE per second in all, spaced evenly from the first;
-- delay() holds each connection until the next free time. wrk times a request from when it is
-- written, so a request sent late would hide the wait from its latency: sends more than two
-- milliseconds behind their time (wrk's timers tick in milliseconds) are counted ("late"), and a
-- run with many is not at its rate.
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*/)") or "./"
dofile(here .. "wrk.lua")

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } relay_timespec;
  int clock_gettime(int clock, relay_timespec *now);
]]
local clock = ffi.new("relay_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local replay_init = init
local interval_ms, next_ms = nil, nil
late, sent = 0, 0

function init(args)
  replay_init(args)
  interval_ms = 1000 / tonumber(args[2])
end

function delay()
  local now = now_ms()
  next_ms = next_ms or now
  local wait = next_ms - now
  next_ms = next_ms + interval_ms
  sent = sent + 1
  if wait < -2 then
    late = late + 1
  end
  return math.max(0, math.floor(wait + 0.5))
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

local replay_done = done
function done(summary, latency, requests)
  local late_total, sent_total = 0, 0
  for _, thread in ipairs(threads) do
    late_total = late_total + thread:get("late")
    sent_total = sent_total + thread:get("sent")
  end
  io.write(string.format('{"paced_sent": %d, "paced_late": %d}\n', sent_total, late_total))
  replay_done(summary, latency, requests)
end
