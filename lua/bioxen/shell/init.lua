-- The bioxen REPL engine.  Python (bioxen_shell/engine.py) creates one shell
-- per Lua runtime and talks to it only through `shell.api`, a table of plain
-- functions taking and returning strings, numbers and tables:
--
--   api.is_complete(src)         -> "complete"|"incomplete"|"invalid", indent
--   api.handle(line)             -> result   (a REPL line: meta-command or code)
--   api.execute(src, chunkname)  -> result   (a chunk run as a script: -e, stdin)
--   api.run_file(path, args)     -> result   (a script file, `arg` set as in lua)
--   api.complete(text)           -> {replace=n, items={{text=, meta=}, …}}
--   api.signature(text)          -> {name=, signature=, doc=, arg=} of the call text ends in, or nil
--   api.prompt_name()            -> the eval target's name, or nil
--   api.set_option(name, value)
--
-- A result is {ok=bool, kind=, output=, message=, traceback=, action=, arg=}:
--   kind "ok"          output: the pretty-printed values ("" when none)
--   kind "error"       message "chunk:line: text", traceback (user frames only)
--   kind "syntax"      message
--   kind "interrupted" message "interrupted!", traceback
--   kind "exit"        os.exit() was called; Python knows the code
--   action "quit" | "reset" | "runtime" (arg: the runtime name): requests for
--   the Python side, which owns the runtime.
--
-- The host table Python passes in holds the callbacks the engine needs:
--   write(bytes), flush(), poll() -> 0 | 1 (interrupt) | 2 (exit),
--   request_exit(code), cancel_exit() (optional), listdir(path) -> {{name, is_dir}, …},
--   history(n) -> {line, …}, clock() -> seconds, runtimes() -> {name, …},
--   runtime -> current runtime name.

local chunk = require("bioxen.runner.chunk")
local session = require("bioxen.runner.session")
local capture = require("bioxen.runner.capture")
local runner_hook = require("bioxen.runner.hook")
local pretty = require("bioxen.runner.pretty")
local complete = require("bioxen.shell.complete")
local commands = require("bioxen.shell.commands")
local funcsource = require("bioxen.funcsource")
local cstack = require("bioxen.cstack")
local traceback = require("bioxen.traceback")

local unpack = table.unpack or unpack
local function pack(...) return { n = select("#", ...), ... } end

local M = {}

-- Sentinel error values: they unwind the user's code and are recognised (not
-- printed) by the engine.
local INTERRUPT = setmetatable({}, { __tostring = function() return "interrupted!" end })
local EXIT = setmetatable({}, { __tostring = function() return "exit" end })
M.INTERRUPT, M.EXIT = INTERRUPT, EXIT

local HOOK_COUNT = runner_hook.COUNT -- instructions between interrupt polls

local current -- the shell of this runtime

-- Where the engine's own Lua files live: their frames are hidden in tracebacks.
-- (Everything under lua/bioxen/: the shell, vm.lua, wire.lua, funcsource.lua.)
local SHELL_SOURCE = debug.getinfo(1, "S").source:match("^@(.*)shell/init%.lua$")

---------------------------------------------------------------------------
-- Output: print, io.write and io.stdout go through host.write (bioxen.runner.capture,
-- as in the agent), so Lua output, VM output and the front end share one ordered stream.

local function install_output(host)
  local cap = capture.new { put = host.write, flush = host.flush, join = true, name = "file (stdout)" }
  _G.print = cap.print
  cap.install(io)
end

---------------------------------------------------------------------------
-- Interrupts: a count hook polls the host; once it reports a Ctrl-C (or an
-- os.exit request) the hook fires on every instruction, so a pcall in the
-- user's code cannot swallow the interrupt.  New coroutines get the hook too.
--
-- A poll calls into Python, which takes the GIL: while another thread of the
-- shell runs Python (a map's drivers, the VM layer's warm-up), each poll may
-- wait up to Python's switch interval (5 ms).  Lua itself runs without the
-- GIL, so the hook polls at most once per POLL_INTERVAL of CPU time, not at
-- every call: a Ctrl-C is seen that much later, and Lua code never runs at the
-- pace of the GIL.
local POLL_INTERVAL = 0.005 -- seconds of CPU time (os.clock) between two polls

local function install_interrupts(host)
  local poll, sethook, error, clock = host.poll, debug.sethook, error, os.clock
  local hook
  local stop = 0        -- the host's last answer (1: interrupt, 2: exit), kept until rearm
  local next_poll = 0   -- os.clock() from which the next call polls
  hook = function()
    if stop == 0 then
      local now = clock()
      if now < next_poll then return end
      next_poll = now + POLL_INTERVAL
      stop = poll()
      if stop == 0 then return end
      sethook(hook, "", 1)
    end
    error(stop == 2 and EXIT or INTERRUPT, 0)
  end
  coroutine.create, coroutine.wrap = runner_hook.coroutines(hook, HOOK_COUNT)
  local function rearm()
    stop, next_poll = 0, 0
    sethook(hook, "", HOOK_COUNT)
  end
  rearm()
  return rearm
end

-- On LuaJIT, compiled loops never call hooks: user chunks (and every function
-- they define) run in the interpreter; library code keeps the JIT.
local jit_off = (type(jit) == "table" and jit.off) or function() end

---------------------------------------------------------------------------
-- Errors: message plus a traceback of the user's frames only.

-- The name under which a global (or REPL local) holds fn, for frames Lua
-- cannot name itself.
local function global_name(fn, env)
  for _, t in ipairs({ env, _G }) do
    for k, v in next, t do
      if v == fn and type(k) == "string" then return k end
    end
  end
  return nil
end

-- The engine's own files (and, at the top, the `error` call of an interrupt or of the
-- user's error()) are left out.
local function internal_frame(info, is_top)
  if is_top and info.func == error then return true end
  return info.source ~= nil and SHELL_SOURCE ~= nil
    and info.source:sub(1, #SHELL_SOURCE + 1) == "@" .. SHELL_SOURCE
end

-- How the user's frames are shown: without the engine's, and with the names of
-- the globals (and REPL locals) that hold the functions Lua cannot name.
local function render_options(env)
  return { hide = internal_frame, name = function(fn) return global_name(fn, env) end }
end

local function error_message(err)
  if type(err) == "string" then return err end
  if type(err) == "number" then return tostring(err) end
  local mt = getmetatable(err)
  if type(mt) == "table" and mt.__tostring then
    local ok, s = pcall(tostring, err)
    if ok then return tostring(s) end
  end
  if type(err) == "userdata" then
    local ok, s = pcall(tostring, err) -- a Python exception raised into Lua
    if ok then return tostring(s) end
  end
  return session.error_object_text(err)
end

---------------------------------------------------------------------------
-- The shell object.

local Shell = {}
Shell.__index = Shell

function M.new(host, options)
  local self = setmetatable({}, Shell)
  self.host = host
  self.runtime = host.runtime
  self.options = {}
  for k, v in pairs(pretty.defaults) do self.options[k] = v end
  for k, v in pairs(options or {}) do self.options[k] = v end
  self.session = session.new(_G, "repl")
  self.env = self.session.env
  self.target = nil
  install_output(host)
  self.rearm = install_interrupts(host)
  -- LuaJIT: recursion through gsub callbacks, coroutines… fails with "C stack overflow"
  -- instead of taking the shell down with SIGSEGV (bioxen.cstack).
  cstack.install(_G, true)
  os.exit = function(code)
    if code == nil or code == true then
      code = 0
    elseif code == false then
      code = 1
    end
    self.last_exit = math.floor(tonumber(code) or 1)
    host.request_exit(self.last_exit)
    error(EXIT, 0)
  end
  _G.python = nil -- still reachable as require("python") for extensions
  -- `shell.set_target{…}` and `shell:set_target{…}` both work.
  self.set_target = function(a, b)
    if a == self then a = b end
    return self:_set_target(a)
  end
  current = self
  self.api = self:_make_api()
  return self
end

function M.current()
  return current
end

-- Every user chunk passes here before it runs.  On LuaJIT it is kept out of
-- the JIT (with every function it defines) unless `:jit on` asked otherwise:
-- compiled loops never call the interrupt hook.
function Shell:_prepare(fn)
  if not self.jit_user_code then jit_off(fn, true) end
end

function Shell:write(s)
  self.host.write(s)
end

-- Run fn(...) protected.  Returns true, packed results; or false, a failed
-- result table.  Tracebacks stop at `wrapper`, so no engine frame shows.
function Shell:_protected(fn, ...)
  local args = pack(...)
  local env = self.env
  local wrapper
  wrapper = function()
    local results = pack(fn(unpack(args, 1, args.n)))
    return results -- not a tail call: keeps this frame as the traceback's floor
  end
  -- The handler only takes the frames (from level 2: the one that raised); their
  -- text, and the message, are made once the stack is unwound: the handler of a stack
  -- overflow has little stack to spare.
  local function handler(err)
    debug.sethook() -- an interrupt keeps the hook firing: not in here (rearmed below)
    if err == EXIT then return { exit = true } end
    local frames = traceback.collect(2, wrapper)
    if err == INTERRUPT then
      return { kind = "interrupted", message = "interrupted!", frames = frames }
    end
    return { kind = "error", err = err, frames = frames }
  end
  local ok, res = xpcall(wrapper, handler)
  self.rearm()
  -- os.exit inside a pcall that returned before the hook fired again: still exit.
  if self.host.poll() == 2 then return false, { ok = false, kind = "exit" } end
  if ok then return true, res end
  local err = res
  if type(err) ~= "table" then
    err = { kind = "error", message = error_message(err), traceback = "" }
  end
  if err.exit then return false, { ok = false, kind = "exit" } end
  if err.frames then
    if err.kind == "error" then err.message = error_message(err.err) end
    err.traceback = traceback.render(err.frames, render_options(env))
    err.frames, err.err = nil, nil
  end
  err.ok = false
  return false, err
end

function Shell:_show(values)
  return { ok = true, kind = "ok", output = self.session:show(values, self.options) }
end

-- Evaluate one complete REPL input (code, not a meta-command) and show it.
function Shell:eval_input(src)
  if self.target then return self:_eval_target(src) end
  local fn, is_expr, name = self.session:compile(src)
  if not fn then return { ok = false, kind = "syntax", message = is_expr } end
  funcsource.remember(name, src)
  self:_prepare(fn)
  local ok, res = self:_protected(session.run, fn, is_expr)
  if not ok then return res end
  return self:_show(res[1])
end

-- A line for the eval target (what :attach set).  Its eval(src, options) answers
-- {ok = true, output = text} (printed there: bioxen.vm_commands) or {ok = true,
-- values = {…}} (printed here), or {ok = false, kind =, error =, traceback =}.
function Shell:_eval_target(src)
  local target = self.target
  local ok, res = self:_protected(target.eval, src, self.options)
  if not ok then return res end
  local reply = res[1]
  if type(reply) ~= "table" then
    return { ok = false, kind = "error",
             message = "target " .. target.name .. ": eval returned " .. type(reply) .. ", expected a table" }
  end
  if reply.ok and reply.output ~= nil then return { ok = true, kind = "ok", output = tostring(reply.output) } end
  if reply.ok then
    local values = reply.values or { n = 0 }
    values.n = values.n or #values
    return self:_show(values)
  end
  local kind = reply.kind or "error"
  return { ok = false, kind = kind,
           message = kind == "interrupted" and tostring(INTERRUPT) or tostring(reply.error or reply.message or "error"),
           traceback = reply.traceback and tostring(reply.traceback) or "" }
end

-- A script's first line is skipped when it starts with "#", keeping line
-- numbers; a UTF-8 BOM before it goes too.  As lua does for a file or stdin
-- (never for -e or REPL input: chunk.compile keeps LuaJIT from doing it there).
local function skip_header(text)
  text = text:gsub("^\239\187\191", "", 1)
  if text:sub(1, 1) == "#" then text = text:gsub("^[^\n]*", "", 1) end
  return text
end

-- `arg` as the lua command sets it: arg[0] the script, arg[1]... its arguments.
local function set_arg(script, args)
  local arg = { [-1] = "bioxen", [0] = script }
  for i, a in ipairs(args) do arg[i] = a end
  _G.arg = arg
end

-- Run a chunk with script semantics (-e, stdin).  An input that only makes
-- sense as an expression (`bioxen -e '1+1'`) prints its values; a function
-- call is a statement (as in `lua -e`) unless written `=f()` or `(f())`.
-- With `args` (a list) the chunk is the script "-" (stdin, as in `lua - a b`):
-- a "#" first line is skipped, `arg` is set and `...` holds the arguments.
function Shell:execute(src, chunkname, args)
  chunkname = chunkname or "=(command line)"
  if args then
    src = skip_header(src)
    set_arg("-", args)
  end
  funcsource.remember(chunkname, src)
  local fn, err = chunk.compile(src, chunkname, self.env)
  local is_expr, takes_values = false, false
  if not fn then
    local expr = chunk.equals_expression(src) or src
    if chunk.uses_chunk_varargs(expr) then -- `bioxen -e '...'`, stdin with arguments
      fn = chunk.compile("return " .. expr, chunkname, self.env)
    else
      fn, takes_values = chunk.compile_expression(expr, chunkname, self.env), true
    end
    if not fn then return { ok = false, kind = "syntax", message = err } end
    is_expr = true
  end
  self:_prepare(fn)
  local ok, res
  if takes_values then
    ok, res = self:_protected(fn, chunk.values)
  else
    ok, res = self:_protected(fn, unpack(args or {}))
  end
  if not ok then return res end
  if is_expr then return self:_show(res) end
  return { ok = true, kind = "ok", output = "" }
end

-- The host reads the file (capped: bioxen_shell.files.MAX_SCRIPT_BYTES).
local function read_script(host, path)
  local text, err = host.read_script(path)
  if not text then return nil, err end
  return skip_header(text)
end

-- Run a script file: `arg` as the lua command sets it, `...` = the arguments.
function Shell:run_file(path, args)
  args = args or {}
  local src, err = read_script(self.host, path)
  if not src then return { ok = false, kind = "input", message = err, traceback = "" } end
  local chunkname = "@" .. path
  funcsource.remember(chunkname, src)
  local fn, cerr = chunk.compile(src, chunkname, self.env)
  if not fn then return { ok = false, kind = "syntax", message = cerr } end
  self:_prepare(fn)
  set_arg(path, args)
  local ok, res = self:_protected(fn, unpack(args))
  if not ok then return res end
  return { ok = true, kind = "ok", output = "" }
end

-- A REPL line: a meta-command or code.
-- A meta-command starts with ':' (a Lua label starts with "::").
local function is_command(line)
  return line:find("^%s*:") ~= nil and line:find("^%s*::") == nil
end

function Shell:handle(line)
  if is_command(line) then return self:run_command(line) end
  if line:find("^%s*$") then return { ok = true, kind = "ok", output = "" } end
  return self:eval_input(line)
end

function Shell:run_command(line)
  local name, argstr = commands.parse(line)
  local spec = commands.get(name)
  if not spec then
    return { ok = false, kind = "error",
             message = "unknown command :" .. name .. " (type :help for the list)" }
  end
  self.pending = nil
  local ok, res = self:_protected(spec.run, self, argstr)
  if not ok then
    if res.kind == "error" then res.message = ":" .. spec.name .. ": " .. tostring(res.message) end
    return res
  end
  local out = res[1]
  local result
  if type(out) == "table" and out.kind then
    result = out
  else
    local text = out ~= nil and tostring(out) or ""
    result = { ok = true, kind = "ok", output = text }
  end
  if self.pending then
    result.action, result.arg = self.pending.action, self.pending.arg
    self.pending = nil
  end
  return result
end

-- Ask the Python side to do something it owns (quit, reset, switch runtime)
-- once the current command has returned.
function Shell:request(action, arg)
  self.pending = { action = action, arg = arg }
end

function Shell:_set_target(t)
  if t == nil then
    self.target = nil
    return
  end
  if type(t) ~= "table" or type(t.name) ~= "string" or type(t.eval) ~= "function" then
    error("set_target: expected {name=string, eval=function, complete=function|nil, is_complete=function|nil}", 3)
  end
  for _, field in ipairs({ "complete", "is_complete" }) do
    if t[field] ~= nil and type(t[field]) ~= "function" then
      error("set_target: '" .. field .. "' must be a function", 3)
    end
  end
  self.target = t
end

function Shell:_make_api()
  local shell = self
  return {
    is_complete = function(src)
      if is_command(src) or src:find("^%s*$") then return "complete", 0 end
      local target = shell.target
      if target and target.is_complete then
        local status, indent = target.is_complete(src, shell.options.indent)
        if status then return status, indent end
      end
      return shell.session:is_complete(src, shell.options.indent)
    end,
    handle = function(line) return shell:handle(line) end,
    execute = function(src, chunkname, args) return shell:execute(src, chunkname, args) end,
    run_file = function(path, args) return shell:run_file(path, args) end,
    set_arg = set_arg,
    complete = function(text)
      local ok, res = pcall(complete.complete, shell, text)
      if ok then return res end
      return { replace = 0, items = {} }
    end,
    signature = function(text)
      if shell.target then return nil end -- the code runs elsewhere
      local ok, res = pcall(complete.signature, shell, text)
      if ok then return res end
      return nil
    end,
    prompt_name = function() return shell.target and shell.target.name or nil end,
    set_option = function(name, value) shell.options[name] = value end,
    format = function(value) return pretty.format(value, shell.options) end,
    flush_c_streams = M.flush_c_streams,
  }
end

-- Flush every C stdio output stream of the process (files Lua opened and did
-- not close), as C's exit() would: lets the host end the process with _exit
-- (no interpreter teardown) without losing their buffered data.  Returns
-- true when done; only LuaJIT with its FFI can (elsewhere: false).
function M.flush_c_streams()
  local ok, ffi = pcall(require, "ffi")
  if not ok or type(ffi) ~= "table" then return false end
  pcall(ffi.cdef, "int fflush(void *stream);")
  local done = pcall(function() return ffi.C.fflush(nil) end)
  return done
end

require("bioxen.shell.builtins")
return M
