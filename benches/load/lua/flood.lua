-- flood.lua: appended after cycle.lua for the wrong-password flood. Each connection waits
-- DELAY_MS (the 4th script argument) between its attempts, so 32 connections at 80 ms
-- send at most 400 attempts a second: the flood loads password hashing, which is what
-- the throttle guards, rather than turning into a plain request flood once it gets
-- instant 429s (no authentication layer can absorb that on the same core).
-- Counters: answers by status.

local pause = 0
local flood_init = init

function init(args)
  flood_init(args)
  pause = tonumber(args[4] or "0")
end

function delay()
  return pause
end

status_401 = 0
status_429 = 0
status_other = 0

function response(status, headers, body)
  if status == 401 then
    status_401 = status_401 + 1
  elseif status == 429 then
    status_429 = status_429 + 1
  else
    status_other = status_other + 1
  end
end

counter_names = { "wrapped", "status_401", "status_429", "status_other" }
