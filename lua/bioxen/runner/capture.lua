-- User output as the shell and the agent capture it: print, io.write, io.stdout,
-- io.output, io.flush and io.type all write to one sink, so that what user code
-- prints stays in order with everything else the host shows.  With `stdin`,
-- io.read, io.lines(), io.input and io.stdin read an empty input (the agent: its
-- stdin is the protocol channel, or nothing).
--
--   local cap = capture.new{
--     put = function(s) … end,   -- one piece of output
--     flush = function() … end,  -- io.flush(), io.stdout:flush()
--     join = true,               -- a print's pieces joined first: one put per print (the shell,
--                                -- where put crosses into Python); else one put per piece (the
--                                -- agent: a big string under a memory limit is never copied)
--     name = "file (stdout)",    -- what tostring(io.stdout) says
--     stdin = true,              -- also capture stdin (an empty input)
--     protect = true,            -- getmetatable(io.stdout) is false
--   }
--   cap.print, cap.write_values(n, …), cap.stdout, cap.stdin, cap.install(io_table)
--
-- Everything it uses is taken into locals at load time: user code that changes
-- the globals later cannot break it.  Runs on Lua 5.1-5.5 and LuaJIT.

local type, tostring, select, error, setmetatable, pairs = type, tostring, select, error, setmetatable, pairs
local s_format, t_concat = string.format, table.concat
local real_stdout, real_stdin = io.stdout, io.stdin
local io_output, io_input, io_lines, io_flush, io_type = io.output, io.input, io.lines, io.flush, io.type

local M = {}

-- A stand-in file's metatable; `protect`: getmetatable gives false.
local function file_metatable(methods, name, protect)
  local mt = { __index = methods, __name = "FILE*", __tostring = function() return name end }
  if protect then mt.__metatable = false end
  return mt
end

-- stdin as user code sees it when captured: an empty input.
local function empty_input(protect)
  local methods = {}
  function methods.read() return nil end
  function methods.lines() return function() return nil end end
  function methods.close() return nil, "cannot close standard file" end
  function methods.write() return nil, "Bad file descriptor", 9 end
  function methods.flush(self) return self end
  function methods.setvbuf() return true end
  function methods.seek() return nil, "Illegal seek", 29 end
  return setmetatable({}, file_metatable(methods, "file (bioxen empty input)", protect))
end

function M.new(opts)
  local put, flush, join = opts.put, opts.flush, opts.join
  local protect = opts.protect

  -- io.write's arguments: strings and numbers (as in Lua); an error names the caller's line.
  local function write_values(n, ...)
    if n == 1 and type((...)) == "string" then put((...)) return end
    local parts = {}
    for i = 1, n do
      local v = select(i, ...)
      local tv = type(v)
      if tv ~= "string" and tv ~= "number" then
        error(s_format("bad argument #%d to 'write' (string expected, got %s)", i, tv), 3)
      end
      parts[i] = tostring(v)
    end
    if join then put(t_concat(parts)) return end
    for i = 1, n do put(parts[i]) end
  end

  local function print(...)
    local n = select("#", ...)
    if n == 1 and type((...)) == "string" then
      if join then put((...) .. "\n") else put((...)) put("\n") end
      return
    end
    local parts = {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    if join then put(t_concat(parts, "\t") .. "\n") return end
    for i = 1, n do
      if i > 1 then put("\t") end
      put(parts[i])
    end
    put("\n")
  end

  local methods = {}
  function methods.write(self, ...)
    write_values(select("#", ...), ...)
    return self
  end
  function methods.flush(self) flush() return self end
  function methods.setvbuf() return true end
  function methods.close() return nil, "cannot close standard file" end
  function methods.seek() return nil, "Illegal seek", 29 end
  function methods.lines() error("stdout is not readable", 2) end
  function methods.read() return nil, "Bad file descriptor", 9 end
  local name = opts.name or "file (stdout)"
  local stdout = setmetatable({}, file_metatable(methods, name, protect))
  local stdin = opts.stdin and empty_input(protect) or nil

  local current_output, current_input = stdout, stdin or real_stdin
  local io_functions = {
    write = function(...)
      if current_output == stdout then
        write_values(select("#", ...), ...)
        return stdout
      end
      return current_output:write(...)
    end,
    output = function(f)
      if f == nil then return current_output end
      if f == stdout or f == real_stdout then current_output = stdout else current_output = io_output(f) end
      return current_output
    end,
    flush = function()
      if current_output == stdout then flush() return true end
      return io_flush()
    end,
    type = function(x)
      if x == stdout or (stdin and x == stdin) then return "file" end
      return io_type(x)
    end,
    stdout = stdout,
  }
  if stdin then
    io_functions.read = function(...) return current_input:read(...) end
    io_functions.input = function(f)
      if f == nil then return current_input end
      if f == stdin or f == real_stdin then current_input = stdin else current_input = io_input(f) end
      return current_input
    end
    io_functions.lines = function(fname, ...)
      if fname == nil then return current_input:lines(...) end
      return io_lines(fname, ...)
    end
    io_functions.stdin = stdin
  end

  return {
    print = print, write_values = write_values, stdout = stdout, stdin = stdin,
    -- Puts the captured functions into an io table (the real one, or a sandbox's).
    install = function(io_table)
      for k, v in pairs(io_functions) do io_table[k] = v end
    end,
  }
end

return M
