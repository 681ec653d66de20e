-- The count hook user code runs under, for the shell and the agent alike (each has its own
-- hook function: the shell polls its host, the agent checks its limits too).
--
--   hook.COUNT                          instructions between two calls of the hook
--   local create, wrap = hook.coroutines(fn, count)
--
-- A count hook is per coroutine on PUC Lua: coroutine.create and coroutine.wrap as user code
-- sees them give each new coroutine the hook too, so a loop inside a coroutine can be
-- interrupted.  (LuaJIT's hooks are global: there the plain functions are enough.)
--
-- Everything it uses is taken into locals at load time.  Runs on Lua 5.1-5.5 and LuaJIT.

local co_create, co_resume, sethook, error = coroutine.create, coroutine.resume, debug.sethook, error

local M = {}

M.COUNT = 10000 -- ~0.1 ms of work

-- A coroutine's results as coroutine.wrap gives them: its error raised again, as is.
local function results(ok, ...)
  if ok then return ... end
  error((...), 0)
end

function M.coroutines(fn, count)
  local function create(f)
    local co = co_create(f)
    sethook(co, fn, "", count)
    return co
  end
  local function wrap(f)
    local co = create(f)
    return function(...) return results(co_resume(co, ...)) end
  end
  return create, wrap
end

return M
