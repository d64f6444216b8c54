-- cycle.lua: every request carries the next line of a file as its Authorization header
-- (after a prefix such as "Bearer "), so no two requests share a credential until the
-- file runs out. Arguments (after wrk's "--"): FILE PREFIX THREADS.
-- With several threads, thread k of n takes lines k, k+n, k+2n, ...
-- Counter "wrapped": how often a thread went past the end of the file (0 = no repeats).

local lines = {}
local count = 0
local position = 1
local step = 1
local prefix = ""
wrapped = 0

function init(args)
  for line in io.lines(args[1]) do
    count = count + 1
    lines[count] = line
  end
  assert(count > 0, "cycle.lua: empty credential file " .. args[1])
  prefix = args[2] or ""
  step = tonumber(args[3] or "1")
  position = (thread_index or 1)
end

function request()
  local value = lines[position]
  position = position + step
  if position > count then
    position = position - count
    wrapped = wrapped + 1
  end
  return wrk.format(nil, nil, { ["Authorization"] = prefix .. value })
end

counter_names = { "wrapped" }
