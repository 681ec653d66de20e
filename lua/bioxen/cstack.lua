--- bioxen.cstack: a C-stack depth limit for LuaJIT.
--
-- PUC Lua counts the C calls that call back into Lua and fails with "C stack overflow" at
-- 200 (LUAI_MAXCCALLS).  LuaJIT does not: recursion through C functions that call Lua -- a
-- `string.gsub` replacement function, a coroutine resuming a coroutine... -- grows the C
-- stack until the process dies with SIGSEGV, long before LuaJIT's own "stack overflow" (the
-- Lua stack) can fire:
--
--   local function f(s) return (s:gsub('.', function(c) return f(c) end)) end f('ab')
--
-- This module wraps the library functions that do so, counts how deep such calls nest and
-- raises "C stack overflow", a plain Lua error, at the same depth PUC Lua does.  Measured on
-- LuaJIT 2.1 (8 MiB stack): a gsub callback level takes ~8.8 KiB of C stack (a crash at ~930
-- levels), a coroutine level ~80 bytes, `string.format` / `table.sort` / a `load` reader less
-- than gsub; `tostring`, metamethods called by the VM and `table.foreach` use no C stack.
--
--   cstack.ENABLED              true on LuaJIT (elsewhere the runtime counts for itself)
--   cstack.LIMIT                levels (200, as PUC Lua)
--   cstack.install(env, full)   put the guarded functions into env (and env.string, env.table,
--                               env.coroutine); `full` also guards what only exists outside the
--                               sandbox (load with a reader function)
--   cstack.reset()              forget the count (a new top-level call)
--   cstack.SOURCE               this file's chunk source (its frames belong to the host)
--
-- The guarded functions behave as the originals do.  A gsub with a replacement function is
-- tail-called with the function wrapped (each call of it is a level), so gsub's own errors
-- keep their position.  Elsewhere the whole call counts as one level: a sort with a comparator
-- (wrapping it would double the cost of a sort) or with `__lt` elements, a format meeting a
-- `__tostring`, a gsub whose replacement table has an `__index`, a resume, a load with a
-- reader; there an error the C function itself raises (a bad argument, "invalid order
-- function for sorting") names this file's line instead of the caller's.  Calls that cannot
-- reach Lua code are tail calls to the original, untouched.

-- The count is exact: a counted call puts it back when it returns, and the functions that
-- catch errors (pcall, xpcall; coroutine.resume returns them) put back the depth they started
-- at, so an error that unwinds through counted levels leaves nothing behind.

local M = {}

local type, error, select, rawget, ipairs = type, error, select, rawget, ipairs
local d_getinfo = debug and debug.getinfo
local d_getmetatable = debug and debug.getmetatable or getmetatable

M.ENABLED = type(rawget(_G, "jit")) == "table"
M.LIMIT = 200
M.SOURCE = d_getinfo and d_getinfo(1, "S").source

local depth = 0   -- C levels active now

function M.reset()
  depth = 0
end

local function leave(d, ...)
  depth = d
  return ...
end

-- One C level: callback(...) is a C function that may call Lua, or Lua called back from C.
local function level(callback, ...)
  local d = depth
  depth = d + 1
  return leave(d, callback(...))
end

-- Raises "C stack overflow" at the caller of the guarded function (error level 3 from
-- here) when one more level would pass the limit.
local function check()
  if depth >= M.LIMIT then error("C stack overflow", 3) end
end

local function has_metamethod(v, event)
  local tv = type(v)
  if tv ~= "table" and tv ~= "userdata" then return false end
  local mt = d_getmetatable(v)
  return type(mt) == "table" and rawget(mt, event) ~= nil
end

local function guard_gsub(gsub)
  return function(s, pattern, repl, n)
    local tr = type(repl)
    if tr == "function" then
      check()
      return gsub(s, pattern, function(...) return level(repl, ...) end, n)
    elseif tr == "table" and has_metamethod(repl, "__index") then
      check()
      return level(gsub, s, pattern, repl, n)
    end
    return gsub(s, pattern, repl, n)
  end
end

local function guard_format(format)
  return function(fmt, ...)
    for i = 1, select("#", ...) do
      local tv = type((select(i, ...)))
      if (tv == "table" or tv == "userdata") and has_metamethod((select(i, ...)), "__tostring") then
        check()
        return level(format, fmt, ...)
      end
    end
    return format(fmt, ...)
  end
end

-- A comparator is called for every comparison: the whole sort counts as one level (wrapping
-- the comparator would double the cost of a sort).
local function guard_sort(sort)
  return function(t, comp)
    if type(t) == "table" then
      if type(comp) == "function" then
        check()
        return level(sort, t, comp)
      elseif comp == nil then
        for i = 1, #t do
          local tv = type(rawget(t, i))
          if (tv == "table" or tv == "userdata") and has_metamethod(rawget(t, i), "__lt") then
            check()
            return level(sort, t)
          end
        end
      end
    end
    return sort(t, comp)
  end
end

local function guard_resume(resume)
  return function(co, ...)
    if type(co) ~= "thread" then return resume(co, ...) end
    check()
    return level(resume, co, ...)
  end
end

local function guard_wrap(wrap)
  return function(f)
    local g = wrap(f)
    return function(...)
      check()
      return level(g, ...)
    end
  end
end

-- pcall and xpcall: an error caught here unwound the levels above; their count goes with them.
local function guard_catching(catch)
  return function(...)
    return leave(depth, catch(...))
  end
end

local function guard_load(load)
  return function(chunk, ...)
    if type(chunk) ~= "function" then return load(chunk, ...) end
    check()
    return level(load, chunk, ...)
  end
end

--- Put the guarded functions into `env` (a global environment): string.gsub, string.format,
-- table.sort, coroutine.resume, coroutine.wrap, and pcall/xpcall (which put the count back);
-- with `full`, also load with a reader function (the sandbox's load is Lua).  Returns env.
-- Does nothing off LuaJIT, or when env already has them.
local installed = setmetatable({}, { __mode = "k" })

function M.install(env, full)
  if not M.ENABLED or installed[env] then return env end
  installed[env] = true
  local s, t, co = rawget(env, "string"), rawget(env, "table"), rawget(env, "coroutine")
  if type(s) == "table" then
    if s.gsub then s.gsub = guard_gsub(s.gsub) end
    if s.format then s.format = guard_format(s.format) end
  end
  if type(t) == "table" and t.sort then t.sort = guard_sort(t.sort) end
  if type(co) == "table" and co.resume then
    co.resume = guard_resume(co.resume)
    if co.wrap then co.wrap = guard_wrap(co.wrap) end
  end
  for _, name in ipairs({ "pcall", "xpcall" }) do
    if type(rawget(env, name)) == "function" then env[name] = guard_catching(env[name]) end
  end
  if full and type(rawget(env, "load")) == "function" then env.load = guard_load(env.load) end
  return env
end

return M
