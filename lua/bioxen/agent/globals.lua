--- The real globals as user code sees them outside the sandbox (configure{sandbox = false}),
--- `debug` included, with the agent closed to it:
---   * the agent's functions and stack frames are closed to debug: their locals and upvalues
---     hold the state of the limits and, under lupa, the memory switch.  getlocal/setlocal on
---     an agent frame and getupvalue/setupvalue on an agent function find nothing,
---     upvaluejoin with one raises, getinfo gives no `func` for an agent frame;
---   * collectgarbage("stop"/"restart") is reported to the agent (which holds the collector
---     between calls and restarts it for a call only if user code has not stopped it).
---
---   require("bioxen.agent.globals").open(is_agent_frame, on_collector_stopped)
---
--- Part of the agent (its frames are the agent's).

local type, error, rawget, rawset, collectgarbage = type, error, rawget, rawset, collectgarbage
local _G = _G

local M = {}

local function close_debug(is_agent_frame)
  local dbg = rawget(_G, "debug")
  if type(dbg) == "table" then
    local getinfo, getlocal, setlocal = dbg.getinfo, dbg.getlocal, dbg.setlocal
    local getupvalue, setupvalue, upvaluejoin = dbg.getupvalue, dbg.setupvalue, dbg.upvaluejoin
    local function agent_function(f)
      return type(f) == "function" and is_agent_frame(getinfo(f, "S"))
    end
    -- Is the frame named by ([thread,] level) the agent's?  Levels count from the caller of
    -- the debug function: two frames up from here (this function, the wrapper).
    local function agent_level(a, b)
      if type(a) == "thread" then return type(b) == "number" and is_agent_frame(getinfo(a, b, "S")) end
      return type(a) == "number" and a > 0 and is_agent_frame(getinfo(a + 2, "S"))
    end
    local function shift(a) if type(a) == "number" and a > 0 then return a + 1 end return a end
    dbg.getlocal = function(a, b, c)
      if agent_level(a, b) then return nil end
      if type(a) == "thread" then return getlocal(a, b, c) end
      local name, value = getlocal(shift(a), b)
      return name, value
    end
    dbg.setlocal = function(a, b, c, d)
      if agent_level(a, b) then return nil end
      if type(a) == "thread" then return setlocal(a, b, c, d) end
      local name = setlocal(shift(a), b, c)
      return name
    end
    dbg.getinfo = function(a, b, c)
      local info
      if type(a) == "thread" then info = getinfo(a, b, c)
      elseif type(a) == "function" then return getinfo(a, b)
      else info = getinfo(shift(a), b) end
      if info and info.func ~= nil and agent_function(info.func) then info.func = nil end
      return info
    end
    dbg.getupvalue = function(f, n)
      if agent_function(f) then return nil end
      local name, value = getupvalue(f, n)
      return name, value
    end
    dbg.setupvalue = function(f, n, v)
      if agent_function(f) then return nil end
      local name = setupvalue(f, n, v)
      return name
    end
    if upvaluejoin then
      dbg.upvaluejoin = function(f1, n1, f2, n2)
        if agent_function(f1) or agent_function(f2) then
          error("bad argument to 'upvaluejoin' (a function of the bioxen agent)", 2)
        end
        return upvaluejoin(f1, n1, f2, n2)
      end
    end
  end
end

function M.open(is_agent_frame, on_collector_stopped)
  close_debug(is_agent_frame)
  local gc = collectgarbage
  rawset(_G, "collectgarbage", function(opt, ...)
    if opt == "stop" then on_collector_stopped(true) elseif opt == "restart" then on_collector_stopped(false) end
    return gc(opt, ...)
  end)
end

return M
