--- bioxen.traceback: the stack traceback of the shell and of the VM agent.
--
-- Cut as Lua 5.4's luaL_traceback cuts it: a deep stack shows its first HEAD and its
-- last TAIL levels and, between them, "\t...\t(skipping N levels)" (N: every level not
-- shown).  It makes O(levels shown + log depth) debug.getinfo calls, never one per frame:
-- the depth comes from an exponential then a binary search on debug.getinfo(level, "")
-- (as luaL_traceback's lastlevel).  Each call walks the stack from the top, so a stack
-- overflow of 500,000 frames takes what the runtime's own debug.traceback takes.
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

-- The frames, taken in one function that calls debug.getinfo itself (levels need no
-- adjusting) with as few registers as it can: the message handler of a stack overflow
-- runs in what is left, and on LuaJIT that is some 40 slots, of which a C call (getinfo)
-- takes 20 above the caller's registers.  So: five locals, no numeric for (4 slots each),
-- everything else kept in the table; the text is made once the stack is unwound.
function M.collect(level, stop)
  local frames = { first = (level or 1) + 1, skipped = 0 }
  local lo = frames.first
  if not getinfo(lo, "") then
    frames.floor = lo
    return frames
  end
  -- The deepest level, in O(log depth) calls (luaL_traceback's lastlevel): lo exists, hi
  -- does not.
  local hi = lo + 1
  while getinfo(hi, "") do
    lo = hi
    hi = hi * 2
  end
  while lo < hi do
    frames.m = floor((lo + hi) / 2)
    if getinfo(frames.m, "") then lo = frames.m + 1 else hi = frames.m end
  end
  frames.m = nil
  -- The stop frame, looked for from the bottom up; without one, the whole stack.
  frames.floor = hi -- one past the deepest level
  if stop then
    lo = hi - 1
    while lo >= frames.first and lo >= hi - 1 - M.STOP_WINDOW do
      if getinfo(lo, "f").func == stop then
        frames.floor = lo
        break
      end
      lo = lo - 1
    end
  end
  -- [first, head_end) and [tail_start, floor) are shown; in between, `skipped` levels.
  lo, hi = frames.first, frames.floor
  frames.head_end, frames.tail_start = hi, hi
  -- (Cut only when that hides two levels or more: as lua5.4, whose count, though, leaves
  -- out the level where the cut begins; this one counts every level not shown.)
  if hi - lo > M.HEAD + M.TAIL + 1 then
    frames.skipped = hi - lo - M.HEAD - M.TAIL
    frames.head_end, frames.tail_start = lo + M.HEAD, hi - M.TAIL
  end
  while lo < hi do
    frames[lo] = getinfo(lo, OPTIONS)
    lo = lo + 1
    if lo == frames.head_end and lo < hi then
      frames[lo] = getinfo(lo, OPTIONS) -- the caller of the last head frame
      lo = frames.tail_start
    end
  end
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
    if l == frames.head_end and l < floor_level then
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
