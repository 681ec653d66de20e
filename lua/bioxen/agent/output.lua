--- The agent's capture of user output (docs/agent.md, "Output"): print, io.write, io.stdout
--- and io.stdin as user code sees them.  What user code prints is buffered and goes to the
--- host as O frames: at FLUSH_BYTES, after FLUSH_SECONDS of CPU (the agent's count hook asks
--- `due`), and before every reply.  stdin is the protocol channel (or nothing): user code
--- reads an empty input.
---
---   local out = output.new{ send = function(parts, n) … end, arm_hook = function() … end,
---                            real_stdout =, real_stdin =, clock = }
---   out.print, out.emit_values(n, …), out.stdout, out.stdin, out.install(io_table),
---   out.flush(), out.empty(), out.due(now)
---
--- Part of the agent (its frames are the agent's: bioxen.agent), loaded before user code runs,
--- so everything it uses is captured in locals here.  Runs on Lua 5.1-5.4 and LuaJIT.

local type, tostring, select, error, setmetatable = type, tostring, select, error, setmetatable
local s_format = string.format
local io_output, io_lines, io_input = io.output, io.lines, io.input

local M = {}

M.FLUSH_BYTES = 64 * 1024       -- output is flushed at this size ...
M.FLUSH_SECONDS = 0.1           -- ... or after this much CPU time

function M.new(opts)
  local send, arm_hook, clock = opts.send, opts.arm_hook, opts.clock
  local real_stdout, real_stdin = opts.real_stdout, opts.real_stdin
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

  local function emit_values(n, ...)
    for i = 1, n do
      local v = select(i, ...)
      local tv = type(v)
      if tv ~= "string" and tv ~= "number" then
        error(s_format("bad argument #%d to 'write' (string expected, got %s)", i, tv), 3)
      end
      emit(tostring(v))
    end
  end

  local function captured_print(...)
    local n = select("#", ...)
    for i = 1, n do
      if i > 1 then emit("\t") end
      emit(tostring((select(i, ...))))
    end
    emit("\n")
  end

  -- io.stdout as user code sees it: a file-like object whose writes become O frames.
  local stdout_proxy, stdin_proxy, install_io_capture
  do
  local stdout_methods = {}
  function stdout_methods.write(self, ...)
    emit_values(select("#", ...), ...)
    return self
  end
  function stdout_methods.flush(self) return self end
  function stdout_methods.setvbuf() return true end
  function stdout_methods.close() return nil, "cannot close standard file" end
  function stdout_methods.seek() return nil, "Illegal seek", 29 end
  function stdout_methods.lines() error("file not readable", 2) end
  function stdout_methods.read() return nil, "Bad file descriptor", 9 end
  stdout_proxy = setmetatable({}, {
    __index = stdout_methods,
    __tostring = function() return "file (bioxen output)" end,
    __name = "FILE*",
    __metatable = false,
  })

  -- stdin is the protocol channel (or nothing): user code reads an empty input.
  local stdin_methods = {}
  function stdin_methods.read() return nil end
  function stdin_methods.lines() return function() return nil end end
  function stdin_methods.close() return nil, "cannot close standard file" end
  function stdin_methods.write() return nil, "Bad file descriptor", 9 end
  function stdin_methods.flush(self) return self end
  function stdin_methods.setvbuf() return true end
  function stdin_methods.seek() return nil, "Illegal seek", 29 end
  stdin_proxy = setmetatable({}, {
    __index = stdin_methods,
    __tostring = function() return "file (bioxen empty input)" end,
    __metatable = false,
  })

  local current_output = stdout_proxy -- what io.write writes to
  local function captured_io_write(...)
    if current_output == stdout_proxy then
      emit_values(select("#", ...), ...)
      return stdout_proxy
    end
    return current_output:write(...)
  end
  local function captured_io_output(f)
    if f == nil then return current_output end
    if f == stdout_proxy or f == real_stdout then
      current_output = stdout_proxy
    else
      current_output = io_output(f)
    end
    return current_output
  end
  local current_input = stdin_proxy
  local function captured_io_read(...)
    return current_input:read(...)
  end
  local function captured_io_input(f)
    if f == nil then return current_input end
    if f == stdin_proxy or f == real_stdin then current_input = stdin_proxy
    else current_input = io_input(f) end
    return current_input
  end
  local function captured_io_lines(name, ...)
    if name == nil then return current_input:lines(...) end
    return io_lines(name, ...)
  end

  install_io_capture = function(io_table)
    io_table.write = captured_io_write
    io_table.output = captured_io_output
    io_table.stdout = stdout_proxy
    io_table.read = captured_io_read
    io_table.input = captured_io_input
    io_table.lines = captured_io_lines
    io_table.stdin = stdin_proxy
  end
  end

  return {
    flush = flush_output, emit_values = emit_values, print = captured_print,
    stdout = stdout_proxy, stdin = stdin_proxy, install = install_io_capture,
    empty = function() return out_n == 0 end,
    -- Buffered output waiting longer than FLUSH_SECONDS of CPU (the hook flushes it).
    due = function(now) return out_n > 0 and now - out_last >= FLUSH_SECONDS end,
  }
end

return M
