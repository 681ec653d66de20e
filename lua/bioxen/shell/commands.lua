-- The meta-command registry.  A meta-command is a REPL line starting with ':'.
-- Adding one is one call:
--
--   require("bioxen.shell.commands").register{
--     name = "vms",                      -- typed as :vms
--     usage = ":vms",                    -- shown by :help
--     help = "List the VMs of this session.",
--     run = function(shell, argstr) ... end,          -- may print, or return text
--     complete = function(shell, partial) return {...} end,  -- optional
--     aliases = {"v"},                   -- optional
--   }
--
-- `run` may return a string (printed) or nothing; a Lua error inside it is
-- shown to the user as "error: :vms: <message>" and the shell carries on.

local M = {}

local by_name = {}   -- name or alias -> spec
local ordered = {}   -- specs in registration order (for :help)

local function check(spec)
  if type(spec) ~= "table" then error("register: expected a table, got " .. type(spec), 3) end
  if type(spec.name) ~= "string" or not spec.name:find("^[%w_%-%?]+$") then
    error("register: 'name' must be a word such as \"vms\"", 3)
  end
  if type(spec.run) ~= "function" then
    error("register: command :" .. spec.name .. " needs a 'run' function", 3)
  end
  if spec.complete ~= nil and type(spec.complete) ~= "function" then
    error("register: 'complete' of :" .. spec.name .. " must be a function", 3)
  end
end

-- Register (or replace) a command.
function M.register(spec)
  check(spec)
  spec.usage = spec.usage or (":" .. spec.name)
  spec.help = spec.help or ""
  local old = by_name[spec.name]
  if old then
    for i, s in ipairs(ordered) do
      if s == old then table.remove(ordered, i) break end
    end
  end
  ordered[#ordered + 1] = spec
  by_name[spec.name] = spec
  for _, alias in ipairs(spec.aliases or {}) do by_name[alias] = spec end
  return spec
end

function M.get(name)
  return by_name[name]
end

-- All commands, in registration order.
function M.list()
  local copy = {}
  for i, s in ipairs(ordered) do copy[i] = s end
  return copy
end

-- The keys of t starting with prefix, sorted.
local function sorted_keys(t, prefix)
  prefix = prefix or ""
  local out = {}
  for name in pairs(t) do
    if name:sub(1, #prefix) == prefix then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

-- Names (and aliases) starting with prefix, sorted.
function M.names(prefix)
  return sorted_keys(by_name, prefix)
end

-- Settings a front end owns (the REPL's colour style, say), changed with
-- `:set NAME VALUE` beside the printing options.  Python registers them at the
-- start of each Lua state (bioxen_shell/repl/app.py):
--
--   commands.setting{
--     name = "style",
--     get = function() return "bioxen" end,
--     set = function(value) end,              -- returns nil, or the text of what was wrong
--     values = function() return {...} end,   -- optional: for completion
--   }
local settings = {}  -- name -> spec

function M.setting(spec)
  if type(spec) ~= "table" or type(spec.name) ~= "string" or not spec.name:find("^[%w_]+$") then
    error("setting: expected a table with a 'name' such as \"style\"", 2)
  end
  -- (functions, or Python callables, which are userdata in Lua)
  if spec.get == nil or spec.set == nil then
    error("setting: " .. spec.name .. " needs 'get' and 'set' functions", 2)
  end
  settings[spec.name] = spec
  return spec
end

function M.get_setting(name)
  return settings[name]
end

-- Names of the registered settings, sorted.
function M.setting_names()
  return sorted_keys(settings)
end

-- Split ":name rest" into name, rest.
function M.parse(line)
  local name, rest = line:match("^%s*:([^%s]*)%s*(.-)%s*$")
  return name, rest
end

return M
