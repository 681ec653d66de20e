-- A REPL session: what makes lines typed one at a time behave as one program.
-- The shell (bioxen.shell) runs one in its own Lua; the agent (bioxen.agent)
-- runs one per VM for a shell attached to it, so both behave the same:
--   * top-level `local`s are kept from one input to the next (in `env`, whose
--     other reads and writes go to the globals given);
--   * `<const>` names stay constant;
--   * `_` holds the first value of the last input that had values;
--   * an input is compiled once: the completeness check (is_complete, as the
--     front end asks on every Enter) and the run (compile) share it.
--
--   local s = session.new(globals, "repl")
--   s:is_complete(src, indent) -> "complete"|"incomplete"|"invalid", indent
--   s:compile(src) -> fn, is_expression, chunkname | nil, message
--   session.run(fn, is_expression) -> its values, packed with n
--   s:show(values, options) -> text   (sets `_`)
--
-- Runs on Lua 5.1-5.5 and LuaJIT.

local chunk = require("bioxen.runner.chunk")
local pretty = require("bioxen.runner.pretty")

local setmetatable, rawset, tostring, ipairs, type = setmetatable, rawset, tostring, ipairs, type

local M = {}

local Session = {}
Session.__index = Session

-- The REPL's environment: top-level locals live in it as raw fields; every
-- other read falls through to globals (a plain table __index: globals stay
-- fast) and every other write goes to globals.
local function new_env(globals)
  local declared = {}
  local env = setmetatable({}, {
    __index = globals,
    __newindex = function(t, k, v)
      if declared[k] then rawset(t, k, v) else globals[k] = v end
    end,
  })
  return env, declared
end

-- name: the chunk names' stem ("repl" -> "=repl[1]", "=repl[2]", …).
function M.new(globals, name)
  local self = setmetatable({}, Session)
  self.env, self.declared = new_env(globals)
  self.consts = {} -- top-level <const>/<close> names: chunk.analyse keeps them constant
  self.name = name or "repl"
  self.counter = 0
  self.analysed = nil -- the last input analysed and not yet run: { src =, counter =, result = }
  return self
end

function Session:_chunkname()
  return "=" .. self.name .. "[" .. (self.counter + 1) .. "]"
end

-- The analysis of src (bioxen.runner.chunk.analyse), made once for it: the
-- completeness check and the run that follows it share one compile.
function Session:analyse(src)
  local last = self.analysed
  if last and last.src == src and last.counter == self.counter then return last.result end
  local result = chunk.analyse(src, self:_chunkname(), self.env, self.consts)
  self.analysed = { src = src, counter = self.counter, result = result }
  return result
end

function Session:is_complete(src, indent_width)
  local r = self:analyse(src)
  return r.status, (r.depth or 0) * (indent_width or 2)
end

-- The input compiled and its names declared; the next input gets the next chunk
-- name.  Returns fn, is_expression (call fn with chunk.values), chunkname;
-- or nil, the syntax error.
function Session:compile(src)
  local r = self:analyse(src)
  self.analysed = nil
  local chunkname = self:_chunkname()
  self.counter = self.counter + 1
  if r.status ~= "complete" then return nil, tostring(r.message) end
  for _, n in ipairs(r.declared) do
    self.declared[n] = true
    self.consts[n] = nil -- declared again: constant only if this input says so
  end
  for _, n in ipairs(r.consts) do self.consts[n] = true end
  return r.fn, r.is_expr, chunkname
end

-- Runs a compiled input: its results, packed.
function M.run(fn, is_expr)
  if is_expr then return chunk.pack(fn(chunk.values)) end
  return chunk.pack(fn())
end

-- An error object that is not a string, nor has a __tostring, as the REPL shows it:
-- what Lua says of it, and what it holds.
function M.error_object_text(err)
  return "(error object is a " .. type(err) .. " value) " .. pretty.format(err, { depth = 2 })
end

-- The values of an input as the REPL shows them; `_` becomes the first.
function Session:show(values, options)
  if values.n > 0 then rawset(self.env, "_", values[1]) end
  return pretty.format_values(values, options)
end

return M
