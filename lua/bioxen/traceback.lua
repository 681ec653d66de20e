--- bioxen.traceback: the stack traceback of the shell and of the VM agent.
--
-- Cut as Lua 5.4's luaL_traceback cuts it: a deep stack shows its first HEAD and its
-- last TAIL levels and, between them, "\t...\t(skipping N levels)".  Its cost is
-- O(levels shown): the depth is found by an exponential then a binary search on
-- debug.getinfo(level, "") (each call walks the stack once), never by visiting every
-- frame, so a stack overflow of 200,000 frames is described in milliseconds.
--
--   frames = traceback.collect(level, stop)   in the message handler: the frames only
--   traceback.render(frames, options)         later: "stack traceback:\n\t…", or ""
--
-- level counts as debug.traceback's does: 1 is the function calling collect.  stop is
-- the function whose frame ends the traceback (it and the frames below it are left
-- out): the host's wrapper around user code.  It is looked for among the last
-- STOP_WINDOW levels only; without it the traceback goes to the bottom of the stack.
-- The two steps are apart because a message handler may have little stack to spare.
-- Pure Lua for 5.1-5.4 and LuaJIT: the agent runs it on stock interpreters too.

local getinfo = debug.getinfo
local concat, floor = table.concat, math.floor

local M = {}

M.HEAD = 10        -- levels shown from the top (where the error was raised)
M.TAIL = 11        -- levels shown from the bottom (the user's first call)
M.STOP_WINDOW = 40 -- levels looked at, from the bottom, for the stop frame

-- getinfo's options: Lua 5.1 and LuaJIT have no 't' (they mark tail calls with a frame
-- of their own, what == "tail"); 5.2+ flag the frame (istailcall).
local OPTIONS = (_VERSION == "Lua 5.1") and "Slnf" or "Slnft"

local TAIL_CALLS = "\t(...tail calls...)"

local function frame_text(info, name)
  if info.what == "tail" then return TAIL_CALLS end
  local where = info.what == "C" and "[C]" or info.short_src
  if info.currentline and info.currentline > 0 then where = where .. ":" .. info.currentline end
  local desc
  if info.what == "main" then
    desc = "in main chunk"
  elseif info.name and info.namewhat ~= "" then
    desc = "in function '" .. info.name .. "'"
  else
    local n = name and info.func and name(info.func)
    if n then
      desc = "in function '" .. n .. "'"
    elseif info.what == "C" then
      desc = "in ?"
    else
      desc = "in function <" .. info.short_src .. ":" .. (info.linedefined or 0) .. ">"
    end
  end
  return "\t" .. where .. ": " .. desc
end

-- The frames, taken in one function that calls debug.getinfo itself: levels need no
-- adjusting, and it needs little stack.  That matters: the message handler of a stack
-- overflow runs in what is left (LuaJIT leaves it a few dozen slots, and every C call
-- takes 20), so nothing else runs here; the text is made once the stack is unwound.
function M.collect(level, stop)
  local first = (level or 1) + 1 -- counted from here: collect itself is level 1
  local frames = { first = first, skipped = 0 }
  if not getinfo(first, "") then
    frames.floor = first
    return frames
  end
  -- The deepest level, in O(log depth) calls (luaL_traceback's lastlevel).
  local li, le = first, first + 1
  while getinfo(le, "") do
    li = le
    le = le * 2
  end
  while li < le do
    local m = floor((li + le) / 2)
    if getinfo(m, "") then li = m + 1 else le = m end
  end
  -- The stop frame, looked for from the bottom up; without one, the whole stack.
  local floor_level = le -- one past the deepest level
  if stop then
    local lowest = le - 1 - M.STOP_WINDOW
    if lowest < first then lowest = first end
    for l = le - 1, lowest, -1 do
      local info = getinfo(l, "f")
      if info and info.func == stop then
        floor_level = l
        break
      end
    end
  end
  frames.floor = floor_level
  local count = floor_level - first
  local head_end, tail_start = floor_level, floor_level -- [first, head_end) and [tail_start, floor)
  if count > M.HEAD + M.TAIL then
    head_end, tail_start = first + M.HEAD, floor_level - M.TAIL
    frames.skipped = count - M.HEAD - M.TAIL
    frames[head_end] = getinfo(head_end, OPTIONS) -- the last head frame's caller
  end
  for l = first, head_end - 1 do frames[l] = getinfo(l, OPTIONS) end
  for l = tail_start, floor_level - 1 do frames[l] = getinfo(l, OPTIONS) end
  frames.tail_start = tail_start
  return frames
end

-- The text of collected frames: "stack traceback:\n\t…", or "" when none is left.
--   hide(info, is_top)  true for a frame to leave out (the host's own code); is_top for
--                       the first level (the `error` call of a raised stop)
--   name(fn)            a name for a function Lua cannot name itself (optional)
function M.render(frames, options)
  options = options or {}
  local hide, name = options.hide, options.name
  local first, floor_level = frames.first, frames.floor
  local lines = {}
  local l = first
  while l < floor_level do
    local info = frames[l]
    if info and not (hide and hide(info, l == first)) then
      -- Called by a hidden frame or by the stop frame, a function is named after the
      -- host's variable: that name says nothing.
      local caller = frames[l + 1]
      if l + 1 == floor_level or (caller and hide and hide(caller, false)) then info.name = nil end
      lines[#lines + 1] = frame_text(info, name)
      if info.istailcall then lines[#lines + 1] = TAIL_CALLS end
    end
    l = l + 1
    if frames.skipped > 0 and l == first + M.HEAD then
      lines[#lines + 1] = "\t...\t(skipping " .. frames.skipped .. " levels)"
      l = frames.tail_start
    end
  end
  -- A tail call into the user's code from the stop frame says nothing about it.
  while lines[#lines] == TAIL_CALLS do lines[#lines] = nil end
  if #lines == 0 then return "" end
  return "stack traceback:\n" .. concat(lines, "\n")
end

return M
