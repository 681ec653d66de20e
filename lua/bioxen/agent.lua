--- The bioxen VM agent (docs/protocol.md, docs/agent.md).
--
-- One pure-Lua file that every VM runs: under lupa in a local worker process
-- (bioxen_shell/vm/worker.py), and under stock lua5.1-5.4 / luajit on remote hosts:
--
--   lua5.4 agent.lua [--in=PATH --out=PATH] [--interrupt-file=PATH]
--
-- `bioxen.wire` must be on package.path (the launcher sets it).  By default the protocol
-- runs on stdin/stdout; launchers pass --in=/dev/fd/3 --out=/dev/fd/4 so that fd 1 can go
-- to stderr and no child of os.execute can ever write into the channel.
--
-- Everything the agent needs is captured in locals before user code runs, so user code
-- reassigning globals (print, string, table, ...) cannot break it.

local AGENT_VERSION = "1.0"
local LUA_VERSION = _VERSION

local _G = _G
local type, tostring, tonumber, pairs, next, select, error, pcall, xpcall, assert =
  type, tostring, tonumber, pairs, next, select, error, pcall, xpcall, assert
local rawget, rawset, rawequal, getmetatable, setmetatable =
  rawget, rawset, rawequal, getmetatable, setmetatable
local load, loadstring, setfenv = load, rawget(_G, "loadstring"), rawget(_G, "setfenv")
local require = require
local string, table, math, os, io, coroutine = string, table, math, os, io, coroutine
local debug, package = debug, package
local s_find, s_sub, s_match, s_format, s_gsub, s_byte, s_gmatch =
  string.find, string.sub, string.match, string.format, string.gsub, string.byte, string.gmatch
local t_concat, t_sort = table.concat, table.sort
local unpack = table.unpack or rawget(_G, "unpack")
local clock = os.clock
local collectgarbage = collectgarbage
local co_create, co_running, co_resume, co_yield =
  coroutine.create, coroutine.running, coroutine.resume, coroutine.yield
local d_sethook, d_gethook, d_getinfo = debug.sethook, debug.gethook, debug.getinfo
-- The agent reads metatables raw (a __metatable field cannot hide a metamethod from it).
local d_getmetatable = debug.getmetatable
local real_stdout, real_stderr, real_stdin = io.stdout, io.stderr, io.stdin
local io_output, io_open, io_lines, io_input = io.output, io.open, io.lines, io.input
local os_exit = os.exit

local wire = require("bioxen.wire")
local encode, decode, wire_unpack, wire_count = wire.encode, wire.decode, wire.unpack, wire.count
local encode_parts, encode_list_parts_limited = wire.encode_parts, wire.encode_list_parts_limited
local read_frame, write_frame = wire.read_frame, wire.write_frame
local cstack = require("bioxen.cstack")
local traceback = require("bioxen.traceback")
local tb_collect, tb_render = traceback.collect, traceback.render
-- The runner the shell's REPL runs on too: compiling, REPL sessions, completion.
local runner = { chunk = require("bioxen.runner.chunk"), session = require("bioxen.runner.session"),
  complete = require("bioxen.runner.complete"), hook = require("bioxen.runner.hook") }

local IS_LUAJIT = type(rawget(_G, "jit")) == "table"
local jit = rawget(_G, "jit")
local HAS_FFI = IS_LUAJIT and (pcall(require, "ffi"))
-- The agent holds the ffi module for good: configure{allow_ffi=false} unregisters it, and
-- LuaJIT crashes in a later collection if the module table itself is collected (its
-- finalizer table goes with it).
local FFI = HAS_FFI and require("ffi") or nil
local LUA51 = setfenv ~= nil and not IS_LUAJIT

-- Host services under lupa: taken into locals and removed from the globals before any user
-- code runs (docs/protocol.md, "Interrupts and limits").
local host_poll = rawget(_G, "BIOXEN_HOST_POLL")
local host_set_memory = rawget(_G, "BIOXEN_HOST_SET_MEMORY")
rawset(_G, "BIOXEN_HOST_POLL", nil)
rawset(_G, "BIOXEN_HOST_SET_MEMORY", nil)
local EMBEDDED = host_poll ~= nil or host_set_memory ~= nil
if EMBEDDED then
  -- lupa keeps every Python object it hands to Lua in a registry table of its own (a weak
  -- identity cache): the agent's are left only in its locals, out of reach of user code.
  local refs = rawget(debug.getregistry(), "LUPA_PYTHON_REFERENCES_TABLE")
  if type(refs) == "table" then
    for k, v in next, refs do
      if rawequal(v, host_set_memory) or rawequal(v, host_poll) then rawset(refs, k, nil) end
    end
  end
end

local HOOK_COUNT = runner.hook.COUNT  -- VM instructions between limit/interrupt checks

---------------------------------------------------------------------------------------------
-- Channel and captured output

local chan_in, chan_out = real_stdin, real_stdout

local put_frame   -- put_frame(kind, parts, n [, blobs]): write frames and flush (defined below)
local arm_output_hook -- defined with the hook below
local check_alive

local output = require("bioxen.agent.output").new {
  send = function(parts, n) put_frame("O", parts, n) end,
  arm_hook = function() arm_output_hook() end,
  clock = clock,
}
local flush_output = output.flush

---------------------------------------------------------------------------------------------
-- Limits, interrupts and the count hook

-- Unique error values raised by the hook; the error handler recognises them.
local function sentinel(text)
  return setmetatable({}, { __tostring = function() return text end, __metatable = false })
end
local INTERRUPTED = sentinel("interrupted")
local CPU_EXCEEDED = sentinel("CPU time limit exceeded")
local MEMORY_EXCEEDED = sentinel("not enough memory")
local TIMED_OUT = sentinel("timed out")

local cpu_limit = 0          -- seconds per call, 0 = none
local memory_limit_kb = 0    -- soft limit, 0 = none
local call_started = 0
-- Wall time: the host times calls itself (call_timeout), but not configure; so while
-- configure preloads modules the agent stops them at configure.call_timeout (os.time, whole
-- seconds: never before the limit, at most one second after it).
local wall_limit, wall_started = 0, 0
local interrupt_file, interrupt_seen = nil, 0
local main_thread = nil      -- on 5.2+: to see lua.c's SIGINT hook from inside coroutines

-- Code of the agent (agent.lua and its own modules, lua/bioxen/agent/), wire.lua and
-- cstack.lua is never interrupted, and its frames are never shown to the user.
local AGENT_SOURCES = {
  [d_getinfo(1, "S").source] = true, [d_getinfo(wire.encode, "S").source] = true,
  [cstack.SOURCE] = true, [d_getinfo(output.flush, "S").source] = true,
}
local function is_agent_frame(info)
  if info == nil then return false end
  local src = info.source
  return src ~= nil and AGENT_SOURCES[src] == true
end
local function in_main_thread()
  local co, is_main = co_running()
  return co == nil or is_main == true
end

local need_hook = false     -- main thread: only when something needs checking
local output_hook_armed = false
local hook
local stop_error = nil       -- once set, the hook raises it until the call ends
local in_user = false        -- the limits are on: user code may run (else the hook does nothing)

local function raise_from_hook(err)
  -- Keep raising, on every instruction from now on, so a user pcall cannot swallow it.
  stop_error = err
  d_sethook(hook, "", 1)
  -- Never inside the agent's own functions (output buffer, error handler…): the next user
  -- instruction gets it instead.
  if is_agent_frame(d_getinfo(3, "S")) then return end
  error(err, 0)
end

-- A host that went away (SSH connection dropped, shell killed) must not leave a VM spinning
-- in a user loop: once a (wall-clock) second the hook writes an empty O frame.  On a closed
-- channel that write raises SIGPIPE (stock lua: the process ends) or fails (lupa, where
-- Python ignores SIGPIPE): then the agent exits.
local os_time = os.time
local alive_checked = 0     -- os.time() of the last check: wall seconds, whatever the CPU load
check_alive = function(now)
  alive_checked = now
  local ok = pcall(function()
    if output.empty() then write_frame(chan_out, "O", "") end
    assert(chan_out:flush())
  end)
  if not ok then
    pcall(real_stderr.write, real_stderr, "bioxen agent: the host has gone away; exiting\n")
    os_exit(3)
  end
end

-- LuaJIT fast path (stock luajit only): SIGINT polled by the hook (lua/bioxen/agent/sigint.lua).
local sigint_pending, sigint_drain = nil, nil
local sigint = require("bioxen.agent.sigint")
AGENT_SOURCES[d_getinfo(sigint.block, "S").source] = true
local function setup_sigint_polling()
  if EMBEDDED or not HAS_FFI then return end
  sigint_pending, sigint_drain = sigint.block(FFI)
end

local function interrupt_requested()
  if host_poll and host_poll() then return true end
  if sigint_pending and sigint_pending() then return true end
  if interrupt_file then
    local size = interrupt_file:seek("end")
    if size and size > interrupt_seen then interrupt_seen = size; return true end
  end
  return false
end

hook = function()
  if not in_user then return end
  if stop_error then raise_from_hook(stop_error); return end
  if interrupt_requested() then raise_from_hook(INTERRUPTED) end
  local now = clock()
  if cpu_limit > 0 and now - call_started > cpu_limit then raise_from_hook(CPU_EXCEEDED) end
  if wall_limit > 0 and os_time() - wall_started > wall_limit then raise_from_hook(TIMED_OUT) end
  if memory_limit_kb > 0 and collectgarbage("count") > memory_limit_kb then
    collectgarbage()
    if collectgarbage("count") > memory_limit_kb then raise_from_hook(MEMORY_EXCEEDED) end
  end
  local wall = os_time()
  if wall ~= alive_checked then check_alive(wall) end
  if output.due(now) then
    flush_output()
    -- (A SIGINT that came during the write set lua.c's hook: leave it to fire.)
    if output_hook_armed and in_main_thread() and d_gethook() ~= "external hook" then
      output_hook_armed = false
      if not need_hook then d_sethook() end
    end
  end
end

-- lua.c's SIGINT handler sets a hook on the main thread only; a coroutine's own hook
-- notices it there ("external hook") and stops the coroutine too.
local function coroutine_hook()
  if not in_user then return end
  if main_thread and d_gethook(main_thread) == "external hook" then error("interrupted!", 0) end
  hook()
end

local function install_hook()
  output_hook_armed = false
  if need_hook then d_sethook(hook, "", HOOK_COUNT) else d_sethook() end
end

-- Without limits or a host poll the main thread runs hook-free (a count hook costs up to 2x
-- on Lua 5.4).  Buffered output still has to go out within 0.1 s of CPU, so the first
-- buffered byte arms the hook until the buffer is flushed.
arm_output_hook = function()
  if need_hook or output_hook_armed or not in_user then return end
  if not in_main_thread() then return end -- a coroutine: its own hook flushes
  if d_gethook() == "external hook" then return end   -- lua.c's SIGINT hook is pending: keep it
  output_hook_armed = true
  d_sethook(hook, "", HOOK_COUNT)
end

local hooked_create, hooked_wrap = runner.hook.coroutines(coroutine_hook, HOOK_COUNT)
-- LuaJIT's hooks are global (not per coroutine) and coroutine.wrap keeps error positions;
-- there the plain functions are enough once the main hook is on.

---------------------------------------------------------------------------------------------
-- Compiling user code

local user_env = _G
local vm_name = nil          -- configure.name

local compile = runner.chunk.compile

local function prepare(f)
  -- Interpreted user code keeps the count hook firing under LuaJIT (traces never call it).
  if jit and jit.off then jit.off(f, true) end
  return f
end

---------------------------------------------------------------------------------------------
-- Running user code under the limits

-- The one switch between user code and the agent's own work.  On: the hook acts on limits
-- and interrupts (in_user), lupa's hard memory limit holds and the garbage collector runs.
-- Off, while the agent reads, decodes, encodes or builds a traceback: none of them.  The
-- collector is held while the limits are off so that __gc finalizers, user code that runs
-- whenever a collection step does, only ever run inside a user call: under its memory limit,
-- within the time the host gives it.  (Lua runs finalizers with hooks disabled, so no count
-- hook can stop one: only the host's call_timeout can.)
local gc_user_stopped = false  -- outside the sandbox user code may stop the collector itself
local held_kb = 0              -- the heap size when the collector was last held

local function set_limits(on)
  in_user = on
  if on then
    if not gc_user_stopped then collectgarbage("restart") end
    if host_set_memory then host_set_memory(true) end
  else
    if host_set_memory then host_set_memory(false) end
    collectgarbage("stop")
    held_kb = collectgarbage("count")
  end
end
-- No LuaJIT trace may hold the memory switch as a constant (jit.util.tracek reads them).
if jit and jit.off then jit.off(set_limits) end

local run_body               -- the protected body of the call in progress: the traceback's floor
local last_frames            -- set by the handler; nil if it never ran (memory errors)
local last_raised_by_agent   -- the handler's error was the agent's stop (see hide_frame)

-- A stop raised by the agent's hook (interrupt, CPU or memory limit) goes through `error`;
-- that C frame is the agent's doing, not the user's, so it is left out, as are the agent's
-- own frames.
-- The runner's frames (a REPL line's session.run, its values' chunk.values) are left out too:
-- as in the shell, the user's traceback ends at the line typed.
local hide_frame
do
local RUNNER_DIR = s_match(d_getinfo(runner.chunk.values, "S").source, "^(@.*/runner/)[^/]*$")
local function is_runner_frame(info)
  local src = info and info.source
  return RUNNER_DIR ~= nil and src ~= nil and s_sub(src, 1, #RUNNER_DIR) == RUNNER_DIR
end
hide_frame = function(info, is_top)
  return is_agent_frame(info) or is_runner_frame(info) or (is_top and last_raised_by_agent and info.func == error)
end
end
local RENDER_OPTIONS = { hide = hide_frame }

-- xpcall's message handler: it takes the user's frames (bioxen.traceback; their text is made
-- once the stack is unwound: a stack overflow leaves the handler little stack).  That is the
-- agent's work, done with the limits off; they go back on before it returns, because user
-- code may still run: Lua 5.4 calls the __close handlers of the frames it unwinds after this
-- handler, before xpcall returns (and calls it again if one of them raises).
local function handler(err)
  -- The agent's hook is off while the frames are taken: a hook call needs stack too.
  local hook_fn, hook_mask, hook_count = d_gethook()
  if type(hook_fn) == "function" then d_sethook() end
  set_limits(false)
  last_raised_by_agent = rawequal(err, INTERRUPTED) or rawequal(err, CPU_EXCEEDED)
    or rawequal(err, MEMORY_EXCEEDED) or rawequal(err, TIMED_OUT)
  last_frames = tb_collect(2, run_body)
  set_limits(true)
  if type(hook_fn) == "function" then d_sethook(hook_fn, hook_mask, hook_count) end
  return err
end

-- The kind and message of what a call raised.  Runs with the call's limits still on: the
-- __tostring of an error object is user code (if it fails -- raises, passes a limit, returns
-- no string -- the message is lua.c's "(error object is a table value)").
local ERROR_OBJECT_TEXT = {
  table = "(error object is a table value)", userdata = "(error object is a userdata value)",
  boolean = "(error object is a boolean value)", ["function"] = "(error object is a function value)",
  thread = "(error object is a thread value)", cdata = "(error object is a cdata value)",
}

local repl_line = false  -- the call in progress runs a REPL line (OPS.repl)

local function error_kind(err)
  if rawequal(err, INTERRUPTED) then return "interrupted", "interrupted" end
  if rawequal(err, CPU_EXCEEDED) then
    return "cpu_limit", s_format("CPU time limit exceeded (%g s)", cpu_limit)
  end
  if rawequal(err, MEMORY_EXCEEDED) then
    return "memory", s_format("not enough memory (memory limit %d KiB)", memory_limit_kb)
  end
  if rawequal(err, TIMED_OUT) then
    return "timeout", s_format("timed out after %g s (call_timeout)", wall_limit)
  end
  local msg
  local te = type(err)
  if te == "string" then msg = err
  elseif te == "number" then msg = tostring(err)
  elseif err == nil then msg = "nil"
  else
    local mt = d_getmetatable(err)
    if type(mt) == "table" and rawget(mt, "__tostring") ~= nil then
      local ok, s = pcall(tostring, err)
      if ok and type(s) == "string" then msg = s else collectgarbage() end
    end
    -- A REPL line's error object is shown as the shell shows one (user code: it may run
    -- __tostring of what it holds).  Else a constant: a VM the __tostring left at its memory
    -- limit cannot build a message.
    if msg == nil and repl_line then
      local ok, s = pcall(runner.session.error_object_text, err)
      if ok then msg = s end
    end
    msg = msg or ERROR_OBJECT_TEXT[te] or "(error object is not a string)"
  end
  if s_find(msg, "interrupted!$") then return "interrupted", "interrupted" end
  if s_find(msg, "not enough memory") then return "memory", msg end
  return "error", msg
end

local function pack(...) return { n = select("#", ...), ... } end

-- pcall, xpcall and coroutine.resume as user code sees them: they catch errors as usual,
-- except an interrupt or an exceeded limit, which always reaches the agent.
local function is_stop(err)
  if rawequal(err, INTERRUPTED) or rawequal(err, CPU_EXCEEDED) or rawequal(err, MEMORY_EXCEEDED)
      or rawequal(err, TIMED_OUT) then
    return true
  end
  return type(err) == "string" and s_find(err, "interrupted!$") ~= nil
end

local function pass_stop(ok, ...)
  if not ok and is_stop((...)) then error((...), 0) end
  return ok, ...
end

local function user_pcall(f, ...)
  return pass_stop(pcall(f, ...))
end

local function user_xpcall(f, msgh, ...)
  local stopped
  local function h(e)
    if is_stop(e) then stopped = e end
    return msgh(e)
  end
  local n = select("#", ...)
  local r
  if LUA51 and n > 0 then
    local args = { ... }
    r = pack(xpcall(function() return f(unpack(args, 1, n)) end, h))
  else
    r = pack(xpcall(f, h, ...))
  end
  if stopped ~= nil then error(stopped, 0) end
  return unpack(r, 1, r.n)
end

local function user_resume(co, ...)
  return pass_stop(co_resume(co, ...))
end

local calls = 0

-- Results of every operation: { true, values..., n = 1 + count } or
-- { false, kind, message, traceback, n = 4 }.
local function ok_values(n, ...)
  local r = { true, ... }
  r.n = n + 1
  return r
end
local function failure(kind, msg, tb)
  return { false, kind, msg, tb or "", n = 4 }
end

local call_results   -- what the protected body of run_user produced
local bytes_read = 0 -- request bytes read since the last full collection

-- Takes the user function's results with the limits off: a VM at its memory limit can still
-- hand its results over.
local function finish_user(...)
  set_limits(false)
  call_results = pack(true, ...)
end

-- Reading a big frame leaves garbage of its size or more (Lua 5.1 reads in pieces).  Under
-- lupa's hard limit that garbage would count against the user, so collect it first.
-- Likewise a VM near its hard limit collects before the call: Lua 5.1 and LuaJIT have no
-- emergency collection, so freed memory would otherwise still count when the limit bites.
-- (Called with the limits on: finalizers run as user code.)
local hard_limit_kb = 0
local function collect_read_garbage()
  if not host_set_memory then return end
  if bytes_read >= 4194304 or (hard_limit_kb > 0 and collectgarbage("count") > 0.75 * hard_limit_kb) then
    collectgarbage()
    bytes_read = 0
  end
end

-- A run of requests that run no user code (get, set, complete…) never restarts the
-- collector: once the heap has doubled (and grown 8 MiB) since it was held, collect here,
-- with the limits on, as a call would.
local function collect_agent_garbage()
  if collectgarbage("count") > 2 * held_kb + 8192 then
    pcall(function()
      set_limits(true)
      collectgarbage()
    end)
    set_limits(false)
    bytes_read = 0
  end
end

-- After the call: what the error was (an error object's __tostring is user code), and the
-- soft memory limit checked once more; with the limits on again.
local function settle(ok, err)
  set_limits(true)
  local kind, msg
  if not ok then kind, msg = error_kind(err) end
  if memory_limit_kb > 0 and collectgarbage("count") > memory_limit_kb then
    -- The soft limit is checked every HOOK_COUNT instructions; one big C allocation (a
    -- string.rep) can end a call in between, so check again when it returns.
    collectgarbage()
    if collectgarbage("count") > memory_limit_kb then
      last_frames = nil
      kind, msg = error_kind(MEMORY_EXCEEDED)
    end
  end
  if kind == "memory" then collectgarbage() end
  set_limits(false)
  return kind, msg
end

-- Runs f(...) as user code; returns { true, values..., n = } or a failure table.
-- All that user code can make happen runs with the limits on (set_limits): f itself, the
-- __close handlers of an error's unwinding, the error object's __tostring, the finalizers
-- of the collections made here.  The limits are on only inside protected calls, so that an
-- allocation the memory limit refuses never lands in the agent's own code; the agent's steps
-- in between (packing the results, the traceback) run with them off.
local function run_user(f, ...)
  calls = calls + 1
  last_frames = nil
  call_results = nil
  call_started = clock()
  stop_error = nil
  cstack.reset()
  -- Forget interrupts that arrived between calls: they were meant for an earlier one.
  if host_poll then host_poll() end
  if sigint_drain then sigint_drain() end
  if interrupt_file then interrupt_seen = interrupt_file:seek("end") or interrupt_seen end
  local args = LUA51 and pack(...) or nil   -- Lua 5.1's xpcall passes no arguments
  local function body(...)
    set_limits(true)
    collect_read_garbage()
    if args then return finish_user(f(unpack(args, 1, args.n))) end
    return finish_user(f(...))
  end
  run_body = body
  install_hook()
  local ok, err
  if args then ok, err = xpcall(body, handler) else ok, err = xpcall(body, handler, ...) end
  -- Still on after a memory error (no handler ran) and after the __close handlers of an error.
  if in_user then set_limits(false) end
  local result = ok and call_results or nil
  call_results = nil
  local kind, msg
  if not result or memory_limit_kb > 0 then
    local settled
    settled, kind, msg = pcall(settle, result ~= nil, err)
    if not settled then
      set_limits(false)
      msg = tostring(kind)
      kind = s_find(msg, "not enough memory") and "memory" or "error"
    end
    if kind then result = nil end
  end
  d_sethook()
  stop_error = nil
  run_body = nil
  if result then return result end
  local frames = last_frames
  last_frames = nil
  return failure(kind, msg, frames and tb_render(frames, RENDER_OPTIONS))
end

---------------------------------------------------------------------------------------------
-- Names: `a.b.c` lookups in the user environment

-- "bio.seq.gc" -> { "bio", "seq", "gc" }, or nil and a message.
local function parse_name(name)
  if type(name) ~= "string" or not s_find(name, "^[%a_][%w_]*[%.%w_]*$") or s_find(name, "%.%.")
      or s_find(name, "%.$") then
    return nil, s_format("bad name %q (expected a global name, dots allowed: bio.seq.gc)", tostring(name))
  end
  local parts = {}
  for part in s_gmatch(name, "[^%.]+") do parts[#parts + 1] = part end
  return parts
end

-- Walks parts[1..upto] from the user environment.  Allocates nothing unless it fails, so it
-- can run as user code under a memory limit the VM is already at.
local function walk(parts, upto, raw)
  local v = user_env
  for i = 1, upto do
    if type(v) ~= "table" then
      return nil, s_format("%s is not a table (while looking up %s)", t_concat(parts, ".", 1, i - 1),
        t_concat(parts, "."))
    end
    if raw then v = rawget(v, parts[i]) else v = v[parts[i]] end
  end
  return true, v
end

-- The same walk without running any user code, or false when a table on the way has an
-- __index metamethod that would have to run (then the walk is done as user code).
local function walk_plain(parts, upto)
  local v = user_env
  for i = 1, upto do
    if type(v) ~= "table" then return walk(parts, upto, true) end
    local nxt = rawget(v, parts[i])
    if nxt == nil then
      local mt = d_getmetatable(v)
      if mt and rawget(mt, "__index") ~= nil then return false end
    end
    v = nxt
  end
  return true, v
end

-- Walks as the agent when it can (a VM over its memory limit can still be read and
-- cleared: `set(name, nil)`), as user code when a metamethod must run.
local function run_walk(parts, upto)
  local ok, v = walk_plain(parts, upto)
  if ok then return ok_values(2, true, v) end
  if ok == nil then return ok_values(2, nil, v) end
  return run_user(walk, parts, upto)
end

-- Why fn cannot be called (nil when it can), looked at raw: no metamethod runs.
local function not_callable(fn, name)
  if type(fn) == "function" then return nil end
  local mt = d_getmetatable(fn)
  if mt and rawget(mt, "__call") ~= nil then return nil end
  if fn == nil then return s_format("attempt to call a nil value (global '%s')", name) end
  return s_format("attempt to call a %s value (global '%s')", type(fn), name)
end

-- call: the function is found as get finds a value; when a metamethod (__index) has to run
-- on the way, the lookup is user code too, run with the call under the same limits.
local function call_path(parts, name)
  return function(...)
    local ok, fn = walk(parts, #parts)
    if not ok then error(fn, 0) end
    local why = not_callable(fn, name)
    if why then error(why, 0) end
    local r = pack(fn(...))  -- not a tail call: this frame ends the user's traceback
    return unpack(r, 1, r.n)
  end
end

---------------------------------------------------------------------------------------------
-- The REPL of an attached shell, and completion

-- One REPL session per VM (bioxen.runner.session, as the shell's own): top-level locals, `_`,
-- constants, one compile per line.  Made at its first use, once configure has set user_env.
local repl
do
local repl_session, session_globals = nil, nil
repl = function()
  -- (complete may come before configure, which may then make a sandbox: a new user_env)
  if session_globals ~= user_env then
    repl_session, session_globals = runner.session.new(user_env, vm_name or "vm"), user_env
  end
  return repl_session
end
end

-- Candidates replacing the trailing identifier path of `text` (docs/extending.md, the
-- shell's completion contract): "x = string.fo" -> { "string.format" }.  The shell's
-- completion (bioxen.runner.complete) in the REPL session: the agent's work, not a user
-- call, so no user code runs (no __complete, no lazy require), and it stops after its
-- budget (runner.complete.SECONDS of CPU) with what it has: a huge table never makes the host
-- wait, nor time the request out.
local function complete(text)
  local r = runner.complete.complete(repl().env, text, { run_code = false, clock = clock, string = user_env.string })
  return runner.complete.candidates(text, r)
end

---------------------------------------------------------------------------------------------
-- Sandbox (configure sandbox=true): lua/bioxen/agent/sandbox.lua

local module_path = package.path   -- where require (and the sandbox's require) looks
local sandbox = require("bioxen.agent.sandbox").bind {
  output = output, compile = compile, prepare = prepare, pcall = user_pcall, xpcall = user_xpcall,
  resume = user_resume, create = hooked_create, wrap = hooked_wrap, has_ffi = HAS_FFI,
}
AGENT_SOURCES[d_getinfo(sandbox.new, "S").source] = true

---------------------------------------------------------------------------------------------
-- Requests

local configured = false
local reply_blob_min = nil   -- configure.blobs: reply strings this long go as B frames
local sandboxed = false
local allow_ffi = true

-- require as the user's code would call it (the lookup of `require` may meet metamethods the
-- user set on the globals): run as user code.
local function require_module(name)
  return user_env.require(name)
end

-- configure's preload: require, then bind the module to the global named after its last
-- part unless that is taken (bio.seq -> seq), and make it reachable by its dotted name
-- (bio.seq.gc_fraction(s) without a require): a root that is itself a module (bio) is used
-- as it is, missing levels become tables, names already set are left alone.  All of it user
-- code.
local function preload_module(name)
  local m = user_env.require(name)
  local short = s_match(name, "([^%.]+)$")
  if user_env[short] == nil then user_env[short] = m end
  local root = s_match(name, "^([^%.]+)%.")
  if not root then return m end
  if user_env[root] == nil then
    local found, root_module = pcall(user_env.require, root)
    user_env[root] = (found and type(root_module) == "table") and root_module or {}
  end
  local t = user_env[root]
  for part, dot in s_gmatch(s_sub(name, #root + 2), "([^%.]+)(%.?)") do
    if type(t) ~= "table" then break end
    if t[part] == nil then t[part] = dot == "" and m or {} end
    t = t[part]
  end
  return m
end

-- What one reply may take to encode (wire.lua, "Limits"): the VM's memory limit, or what the
-- VM holds if that is more (the host may store more than the limit; it can be read back).
-- A table or string a reply holds many times counts each time, so a small VM cannot make
-- a huge reply.  No memory limit: no bound.
local function reply_limit()
  local limit_kb = hard_limit_kb > 0 and hard_limit_kb or memory_limit_kb
  if limit_kb <= 0 then return nil end
  -- What the limit counts: lupa's allocator for the hard limit (Lua 5.5 leaves big strings
  -- out of collectgarbage("count")), the collector's count for the soft one.
  local held = hard_limit_kb > 0 and (tonumber(host_set_memory("used")) or 0) / 1024
    or collectgarbage("count")
  if held > limit_kb then
    return { bytes = held * 1024, text = s_format("the reply would take more than the %.0f KiB the VM "
      .. "holds (its memory_limit is %.0f KiB) to encode; a table or string it holds many times "
      .. "counts each time", held, limit_kb) }
  end
  return { bytes = limit_kb * 1024, text = s_format("the reply would take more than the VM's "
    .. "memory_limit (%.0f KiB) to encode; a table or string it holds many times counts each time",
    limit_kb) }
end

-- Outside the sandbox user code sees the real globals, `debug` included, with the agent
-- closed to it (lua/bioxen/agent/globals.lua); on LuaJIT, with the C-stack guard (bioxen.cstack).
local user_globals = require("bioxen.agent.globals")
AGENT_SOURCES[d_getinfo(user_globals.open, "S").source] = true
local function open_globals()
  user_globals.open(is_agent_frame, function(stopped) gc_user_stopped = stopped end)
  cstack.install(_G, true)
end

local function configure(req)
  if configured then return failure("protocol", "configure may be sent only once, first") end
  local path = req.path
  if path ~= nil and type(path) ~= "string" then return failure("protocol", "configure.path must be a string") end
  if path and path ~= "" then
    module_path = path .. ";" .. module_path
    package.path = module_path
  end
  local function num(field)
    local v = req[field]
    if v == nil then return 0 end
    if type(v) ~= "number" or v < 0 then error(s_format("configure.%s must be a number >= 0", field), 0) end
    return v
  end
  local preload_timeout
  local ok, err = pcall(function()
    cpu_limit = num("cpu_limit")
    memory_limit_kb = num("memory_limit")
    preload_timeout = num("call_timeout")
  end)
  if not ok then return failure("protocol", err) end
  local blobs = req.blobs
  if blobs == true then reply_blob_min = wire.BLOB_THRESHOLD
  elseif type(blobs) == "number" and blobs >= 1 then reply_blob_min = blobs
  elseif blobs ~= nil and blobs ~= false then
    return failure("protocol", "configure.blobs must be a boolean or a number >= 1")
  end
  if req.name ~= nil then vm_name = tostring(req.name) end
  allow_ffi = req.allow_ffi ~= false
  need_hook = EMBEDDED or cpu_limit > 0 or memory_limit_kb > 0 or interrupt_file ~= nil
    or sigint_pending ~= nil
  if host_set_memory and memory_limit_kb > 0 then
    -- Under lupa the limit is a hard one (LuaRuntime max_memory), lifted while the agent works.
    host_set_memory(memory_limit_kb * 1024)
    hard_limit_kb = memory_limit_kb
    memory_limit_kb = 0
  end
  if host_set_memory and hard_limit_kb == 0 and host_set_memory("limit") == 0 then
    -- No limit to switch on and off around each call: two calls into Python less per call.
    host_set_memory = nil
  end
  if req.sandbox then
    sandboxed = true
    user_env = sandbox.new(allow_ffi, module_path)
    sandbox.protect_string_metatable(user_env.string)
    cstack.install(user_env)
  else
    if not allow_ffi then
      package.loaded.ffi = nil
      package.preload.ffi = nil
      rawset(_G, "ffi", nil)
    end
    open_globals()
  end
  if req.globals ~= nil then
    if type(req.globals) ~= "table" then return failure("protocol", "configure.globals must be a table") end
    for k, v in pairs(req.globals) do user_env[k] = v end
  end
  configured = true
  local preload = req.preload
  if preload == nil then return ok_values(0) end
  if type(preload) ~= "table" then return failure("protocol", "configure.preload must be a list of module names") end
  -- Each module loads as a call would, under cpu_limit and the memory limit; and, as the host
  -- does not time configure, under call_timeout counted here (wall_limit).
  local r
  local hooked = need_hook
  wall_limit, need_hook = preload_timeout, need_hook or preload_timeout > 0
  for i = 1, wire_count(preload) do
    local name = preload[i]
    wall_started = os_time()
    r = run_user(preload_module, name)
    if not r[1] then
      r = failure(r[2], s_format("preloading module '%s' failed: %s", tostring(name), r[3]), r[4])
      break
    end
    r = nil
  end
  wall_limit, need_hook = 0, hooked
  return r or ok_values(0)
end

-- Compiled chunks of recent evals (REPL loops, map jobs and benchmarks repeat the same
-- code): running a chunk function again is the same as compiling it again.
local compiled, remember_compiled = {}, nil
do
local COMPILE_CACHE_SIZE, COMPILE_CACHE_MAX_CODE = 64, 4096
local compiled_keys, compiled_next = {}, 1

remember_compiled = function(key, f)
  if #key > COMPILE_CACHE_MAX_CODE then return end
  local old = compiled_keys[compiled_next]
  if old then compiled[old] = nil end
  compiled_keys[compiled_next] = key
  compiled[key] = f
  compiled_next = compiled_next % COMPILE_CACHE_SIZE + 1
end
end

local OPS = {}  -- request handlers by op name

function OPS.eval(req)
  local code = req.code
  if type(code) ~= "string" then return failure("protocol", "eval needs a 'code' string") end
  local chunkname = req.chunkname
  if chunkname == nil then chunkname = "=vm" end
  if type(chunkname) ~= "string" then return failure("protocol", "eval chunkname must be a string") end
  local key = chunkname .. "\0" .. code
  local f = compiled[key]
  if not f then
    -- An expression is tried first, as lua.c does.  Its values pass through an identity
    -- function so that a call in it is not a tail call: LuaJIT would otherwise lose the
    -- caller's frame and `error("x")` would come back without "vm:1:".
    f = compile("return (function(...) return ... end)(" .. code .. "\n)", chunkname, user_env)
    if not f then
      local err
      f, err = compile(code, chunkname, user_env)
      if not f then return failure("syntax", err) end
    end
    prepare(f)
    remember_compiled(key, f)
  end
  local args = req.args
  if args ~= nil and type(args) ~= "table" then return failure("protocol", "eval args must be a value list") end
  return run_user(f, wire_unpack(args))
end

function OPS.call(req)
  local parts, err = parse_name(req.fn)
  if not parts then return failure("error", err) end
  local args = req.args
  if args ~= nil and type(args) ~= "table" then return failure("protocol", "call args must be a value list") end
  local plain, fn = walk_plain(parts, #parts)
  if plain == nil then return failure("error", fn) end
  if not plain then return run_user(call_path(parts, req.fn), wire_unpack(args)) end
  local why = not_callable(fn, req.fn)
  if why then return failure("error", why) end
  return run_user(fn, wire_unpack(args))
end

-- get and set may run user metamethods (__index, __newindex): they run as user code, under
-- the hook and the limits.
function OPS.set(req)
  local parts, err = parse_name(req.name)
  if not parts then return failure("error", err) end
  -- Find the parent table (running user code only for an __index metamethod) ...
  local r = run_walk(parts, #parts - 1)
  if not r[1] then return r end
  if not r[2] then return failure("error", r[3]) end
  local t, key = r[3], parts[#parts]
  if type(t) ~= "table" then
    return failure("error", s_format("%s is not a table (while setting %s)",
      t_concat(parts, ".", 1, #parts - 1), req.name))
  end
  -- ... then store: a plain store is the agent's work (never refused by the user's memory
  -- limit: the value is already here); a __newindex metamethod runs as user code.
  local mt = d_getmetatable(t)
  if rawget(t, key) == nil and type(mt) == "table" and rawget(mt, "__newindex") ~= nil then
    r = run_user(function() t[key] = req.value end)
    if not r[1] then return r end
  else
    rawset(t, key, req.value)
  end
  return ok_values(0)
end

function OPS.get(req)
  local parts, err = parse_name(req.name)
  if not parts then return failure("error", err) end
  local r = run_walk(parts, #parts)
  if r[1] and not r[2] then return failure("error", r[3]) end
  if r[1] then return ok_values(1, r[3]) end
  return r
end

function OPS.require(req)
  if type(req.module) ~= "string" then return failure("protocol", "require needs a 'module' string") end
  local r = run_user(require_module, req.module)
  if r[1] and r.n >= 2 and not pcall(encode, r[2], "value", nil, reply_limit()) then
    -- A module table holding functions cannot travel; loading it was the point.
    r = ok_values(1, true)
  end
  return r
end

function OPS.complete(req)
  if type(req.text) ~= "string" then return failure("protocol", "complete needs a 'text' string") end
  return ok_values(1, complete(req.text))
end

-- A line typed in a shell attached to this VM, run as the shell's REPL runs one (the same
-- session code); the reply is its values as the shell prints them (options: the shell's
-- printing options, bioxen.runner.pretty).  Their printing is user code too (__tostring).
function OPS.repl(req)
  local code, options = req.code, req.options
  if type(code) ~= "string" then return failure("protocol", "repl needs a 'code' string") end
  if options ~= nil and type(options) ~= "table" then return failure("protocol", "repl options must be a table") end
  local s = repl()
  local fn, is_expr = s:compile(code)
  if not fn then return failure("syntax", is_expr) end
  prepare(fn)
  repl_line = true
  local ran, r = pcall(run_user, function()
    local text = s:show(runner.session.run(fn, is_expr), options)
    return text
  end)
  repl_line = false
  if not ran then error(r, 0) end
  return r
end

-- Whether a line typed so far is complete, judged by this VM's own Lua: "complete",
-- "incomplete" (and the next line's indent) or "invalid".  Its compile serves the repl
-- request that follows.
function OPS.is_complete(req)
  if type(req.code) ~= "string" then return failure("protocol", "is_complete needs a 'code' string") end
  local indent = req.indent
  if indent ~= nil and type(indent) ~= "number" then return failure("protocol", "is_complete indent must be a number") end
  local status, columns = repl():is_complete(req.code, indent)
  return ok_values(2, status, columns)
end

function OPS.info()
  return ok_values(1, {
    runtime = LUA_VERSION, jit = jit and jit.version or nil, memory_kb = collectgarbage("count"),
    cpu_seconds = clock(), calls = calls, name = vm_name, sandbox = sandboxed, agent = AGENT_VERSION,
  })
end


-- The reply is written field by field in a fixed order, `values` last, so that a host can
-- splice the values out as raw bytes without scanning them.  With `blobs` (configure.blobs),
-- the big strings of the values are collected there, to go out as B frames before the R.
local function reply_parts(id, r, blobs)
  local parts = { "{0;" }
  local n = 1
  if id ~= nil then
    parts[2] = "s2:id"
    n = encode_parts(parts, 2, id, "id")
  end
  if r[1] then
    n = n + 1
    parts[n] = "s2:okts6:values"
    n = encode_list_parts_limited(parts, n, blobs, reply_blob_min, reply_limit(), r.n - 1, unpack(r, 2, r.n))
  else
    parts[n + 1] = "s2:okfs4:kind"
    n = encode_parts(parts, n + 1, r[2])
    parts[n + 1] = "s5:error"
    n = encode_parts(parts, n + 1, tostring(r[3]))
    parts[n + 1] = "s9:traceback"
    n = encode_parts(parts, n + 1, r[4] or "")
  end
  parts[n + 1] = "}"
  return parts, n + 1
end

local function send_reply(id, r)
  -- r: { true, values..., n = } or { false, kind, message, traceback }
  local blobs = reply_blob_min and r[1] and {} or nil
  local ok, parts, n = pcall(reply_parts, id, r, blobs)
  if not ok then
    blobs = nil  -- what the failed encoding collected goes with it
    local why = tostring(parts)
    if r.ran then why = why .. " (the code ran: what it changed in the VM stays changed)" end
    parts, n = reply_parts(id, failure("encode", why))
  end
  if blobs and blobs[1] == nil then blobs = nil end
  flush_output()
  put_frame("R", parts, n, blobs)
end

local function handle(payload, blobs)
  local ok, req = pcall(decode, payload, 1, "request", blobs)
  if not ok then return nil, failure("protocol", req) end
  if type(req) ~= "table" then return nil, failure("protocol", "a request must be a table") end
  local id, op = req.id, req.op
  if op == "exit" then return id, ok_values(0), true end
  collect_agent_garbage()
  if op == "configure" then return id, configure(req) end
  if not configured and op ~= "info" and op ~= "complete" then
    -- An unconfigured VM behaves as a plain, unlimited one (handy when run by hand).
    configure({})
  end
  local fn = OPS[op]
  if not fn then return id, failure("protocol", s_format("unknown op %q", tostring(op))) end
  local r = fn(req)
  -- The user's code has run: if its values cannot travel, the error must say so (send_reply).
  if r[1] and (op == "eval" or op == "call") then r.ran = true end
  return id, r
end

---------------------------------------------------------------------------------------------
-- Main loop

local function parse_args(...)
  local opts = {}
  for i = 1, select("#", ...) do
    local a = select(i, ...)
    local k, v = s_match(a, "^%-%-([%w%-]+)=(.*)$")
    if not k then error("bad argument " .. a .. " (expected --in=PATH, --out=PATH, --interrupt-file=PATH)", 0) end
    opts[k] = v
  end
  return opts
end

local function open_channel(opts)
  if opts["in"] then chan_in = assert(io_open(opts["in"], "rb")) end
  if opts.out then chan_out = assert(io_open(opts.out, "wb")) end
  if opts["interrupt-file"] then
    interrupt_file = assert(io_open(opts["interrupt-file"], "rb"))
    interrupt_seen = interrupt_file:seek("end") or 0
  end
  chan_out:setvbuf("full", 65536)
end

local function install_user_io()
  rawset(_G, "print", output.print)
  output.install(io)
  -- os.exit flushes captured output so that it reaches the host first.
  os.exit = function(...)
    pcall(flush_output)
    return os_exit(...)
  end
  if jit and jit.off then
    -- Chunks user code loads itself run interpreted too, so the hook can stop their loops.
    local real_load, real_loadstring = load, loadstring
    rawset(_G, "load", function(...)
      local f, err = real_load(...)
      if f then prepare(f) end
      return f, err
    end)
    if real_loadstring then
      rawset(_G, "loadstring", function(...)
        local f, err = real_loadstring(...)
        if f then prepare(f) end
        return f, err
      end)
    end
  end
  rawset(_G, "pcall", user_pcall)
  rawset(_G, "xpcall", user_xpcall)
  coroutine.resume = user_resume
  if not IS_LUAJIT then
    coroutine.create = hooked_create
    coroutine.wrap = hooked_wrap
  end
end

-- The channel outside user calls.  Under a stock PUC interpreter lua.c's SIGINT handler
-- hooks the main thread, and its hook can fire at any call or return.  So the agent reads and
-- writes frames in a coroutine of its own, which that hook never reaches: an interrupt can
-- never strike between a frame's header and its payload, nor lose a frame that was read.
-- The coroutine records what it did in `io_state` before it yields, so a hook firing in the
-- main thread on the way back loses nothing.  (Inside user calls frames are written directly:
-- there an interrupt is meant to stop the call, and one f:write call is never split.)
local pending = nil          -- the reply of the request in hand, until it has been written
local next_frame, start_io_thread
do
local io_state = {}
local io_thread = nil

local function io_loop(op, kind, parts, n, blobs)
  while true do
    if op == "read" then
      local ok, k, p = pcall(read_frame, chan_in)
      io_state.ok, io_state.kind, io_state.payload = ok, k, p
    else
      local ok, err = pcall(write_frame, chan_out, kind, parts, n, blobs)
      if ok then chan_out:flush() end
      if ok and kind == "R" then pending = nil end
      io_state.ok, io_state.kind, io_state.payload = ok, err, nil
    end
    io_state.done = true
    op, kind, parts, n, blobs = co_yield()
  end
end

local function io_call(op, kind, parts, n, blobs)
  io_state.done = false
  for _ = 1, 3 do
    pcall(co_resume, io_thread, op, kind, parts, n, blobs)
    if io_state.done then break end   -- else the hook fired before the coroutine ran
  end
  local st = io_state
  local ok, k, p = st.ok, st.kind, st.payload
  st.ok, st.kind, st.payload = nil, nil, nil
  if not st.done then return false, "interrupted!" end
  return ok, k, p
end

next_frame = function()
  if io_thread then return io_call("read") end
  return pcall(read_frame, chan_in)
end

put_frame = function(kind, parts, n, blobs)
  if io_thread and not in_user then
    local ok, err = io_call("send", kind, parts, n, blobs)
    if not ok then error(err, 0) end
    return
  end
  write_frame(chan_out, kind, parts, n, blobs)
  chan_out:flush()
  if kind == "R" then pending = nil end
end

start_io_thread = function()
  -- lupa has no lua.c handler, and stock LuaJIT keeps SIGINT blocked (polled by the hook).
  if not EMBEDDED and not IS_LUAJIT then io_thread = co_create(io_loop) end
end
end

-- One step of the request loop; returns an exit status to stop.  Written so that an
-- "interrupted!" from lua.c's hook, wherever it fires, can simply run the step again.
local blobs = {}
local function step()
  if pending then
    local p = pending
    send_reply(p.id, p.r)
    if p.exit then return 0 end
    return nil
  end
  d_sethook()
  local ok, kind, payload = next_frame()
  if not ok then
    if s_find(tostring(kind), "interrupted!$") then return nil end
    real_stderr:write("bioxen agent: ", tostring(kind), "\n")
    return 1
  elseif kind == nil then
    return 0
  elseif kind == "B" then
    bytes_read = bytes_read + #payload
    -- A big string for the next request, read straight into its own Lua string.
    blobs[#blobs + 1] = payload
    return nil
  elseif kind ~= "Q" then
    real_stderr:write("bioxen agent: unexpected frame kind ", kind, "\n")
    return 1
  end
  bytes_read = bytes_read + #payload
  local request_blobs = blobs
  blobs = {}
  local handled, id, r, exit = pcall(handle, payload, request_blobs)
  if not handled then
    -- A bug in the agent (or an interrupt at a bad moment): answer, and keep serving.
    id, r = nil, failure(s_find(tostring(id), "interrupted!$") and "interrupted" or "protocol",
      "agent error: " .. tostring(id))
  end
  pending = { id = id, r = r, exit = exit }
  return step()
end

local function main(...)
  local opts = parse_args(...)
  open_channel(opts)
  setup_sigint_polling()
  install_user_io()
  if not IS_LUAJIT and co_running then
    local co, is_main = co_running()
    if is_main then main_thread = co end
  end
  set_limits(false)  -- the agent's own work runs with the collector held (see set_limits)
  start_io_thread()
  local hello = { protocol = 1, agent = AGENT_VERSION, runtime = LUA_VERSION,
    jit = jit and jit.version or nil, ffi = HAS_FFI and true or false, embedded = EMBEDDED }
  local hello_payload = encode(hello)
  local sent, err = false, nil
  for _ = 1, 3 do
    sent, err = pcall(put_frame, "H", { hello_payload }, 1)
    if sent or not s_find(tostring(err), "interrupted!$") then break end
  end
  if not sent then
    real_stderr:write("bioxen agent: cannot send the hello: ", tostring(err), "\n")
    return 1
  end
  while true do
    local ok, status = pcall(step)
    if ok and status ~= nil then return status end
    if not ok and not s_find(tostring(status), "interrupted!$") then
      real_stderr:write("bioxen agent: internal error: ", tostring(status), "\n")
      return 1
    end
  end
end

-- "--defer": the launcher loads the agent once and forks a worker per VM from it (worker.py,
-- PreparedAgent); each worker then calls main with its channel's arguments.
if EMBEDDED and select(1, ...) == "--defer" then return main end
local status = main(...)
if EMBEDDED then return status end
pcall(function() chan_out:flush() end)
os_exit(status)
