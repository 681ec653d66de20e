--- The agent's user output (docs/agent.md, "Output"): print, io.write, io.stdout and io.stdin
--- as user code sees them are the runner's (bioxen.runner.capture, as in the shell); what user
--- code prints is buffered here and goes to the host as O frames: at FLUSH_BYTES, after
--- FLUSH_SECONDS of CPU (the agent's count hook asks `due`), and before every reply.  stdin is
--- the protocol channel (or nothing): user code reads an empty input.
---
---   local out = output.new{ send = function(parts, n) … end, arm_hook = function() … end, clock = }
---   out.print, out.write_values(n, …), out.stdout, out.stdin, out.install(io_table),
---   out.flush(), out.empty(), out.due(now)
---
--- Part of the agent (its frames are the agent's: bioxen.agent), loaded before user code runs,
--- so everything it uses is captured in locals here.  Runs on Lua 5.1-5.4 and LuaJIT.

local capture = require("bioxen.runner.capture")

local M = {}

M.FLUSH_BYTES = 64 * 1024       -- output is flushed at this size ...
M.FLUSH_SECONDS = 0.1           -- ... or after this much CPU time

function M.new(opts)
  local send, arm_hook, clock = opts.send, opts.arm_hook, opts.clock
  local FLUSH_BYTES, FLUSH_SECONDS = M.FLUSH_BYTES, M.FLUSH_SECONDS
  local out_parts, out_n, out_size, out_last = {}, 0, 0, clock()

  local function flush_output()
    if out_n == 0 then return end
    local n = out_n
    out_n, out_size = 0, 0
    send(out_parts, n)
    for i = 1, n do out_parts[i] = nil end
    out_last = clock()
  end

  local function emit(s)
    local was_empty = out_n == 0
    out_n = out_n + 1
    out_parts[out_n] = s
    out_size = out_size + #s
    if out_size >= FLUSH_BYTES or clock() - out_last >= FLUSH_SECONDS then
      flush_output()
    elseif was_empty then
      arm_hook()
    end
  end

  local cap = capture.new { put = emit, flush = function() end, name = "file (bioxen output)",
                            stdin = true, protect = true }

  return {
    flush = flush_output, write_values = cap.write_values, print = cap.print,
    stdout = cap.stdout, stdin = cap.stdin, install = cap.install,
    empty = function() return out_n == 0 end,
    -- Buffered output waiting longer than FLUSH_SECONDS of CPU (the hook flushes it).
    due = function(now) return out_n > 0 and now - out_last >= FLUSH_SECONDS end,
  }
end

return M
