-- Tab completion, computed on the Lua side.
--
--   complete.complete(shell, text) -> { replace = n, items = { {text=, meta=}, ... } }
--   complete.signature(shell, text) -> { name=, signature=, doc=, arg= } or nil
--
-- `text` is the input up to the cursor; each item replaces the last `replace`
-- bytes of it.  What is completed:
--   * meta-command names after ':' and each command's own arguments
--     (its `complete` function; :run completes file paths);
--   * module names inside require"…" / require('…');
--   * Lua expressions: bioxen.runner.complete, in the shell's REPL session, or
--     in the attached VM's (the target's `complete`).
--
-- signature() finds the call the cursor is in and describes its function
-- through bioxen.shell.doc, as :help does.

local expression = require("bioxen.runner.complete")
local commands = require("bioxen.shell.commands")
local doc = require("bioxen.shell.doc")

local M = {}

local sort_names = expression.sort_names

-- The value of a whole prefix expression ("bio.seq", "t[1].name", "s:upper"
-- as s.upper), found as completion finds it: without calls; or nil.
function M.lookup(shell, expr)
  return expression.lookup(shell.env, expr)
end

-- The call the end of text is inside, described through bioxen.shell.doc as :help does.
function M.signature(shell, text)
  local fn, name, method, arg = expression.call_at(shell.env, text)
  if not fn then return nil end
  local signature = doc.signature(fn, name, method)
  local summary = doc.first_sentence(doc.function_doc(fn))
  if not signature and not summary then return nil end
  return { name = name, signature = signature or (name .. "(...)"), doc = summary, arg = arg }
end

-- Module names for require"…": scan package.path templates through the host.
local function complete_module(shell, partial)
  local found = {}
  for name in pairs(package.loaded) do found[name] = "loaded" end
  for name in pairs(package.preload) do found[name] = "preload" end
  local dir_part = partial:match("^(.*)%.[^%.]*$")
  local sub = dir_part and dir_part:gsub("%.", "/") or ""
  local prefix = dir_part and (dir_part .. ".") or ""
  for template in package.path:gmatch("[^;]+") do
    local base = template:match("^(.*)/%?%.lua$") or template:match("^(.*)/%?/init%.lua$")
    if base and shell.host.listdir then
      local dir = sub ~= "" and (base .. "/" .. sub) or base
      for _, entry in ipairs(shell.host.listdir(dir) or {}) do
        local name, is_dir = entry[1], entry[2]
        local mod = name:match("^([%w_%-]+)%.lua$")
        if mod and mod ~= "init" then
          found[prefix .. mod] = found[prefix .. mod] or "module"
        elseif is_dir and name:find("^[%w_%-]+$") then
          found[prefix .. name] = found[prefix .. name] or "package"
        end
      end
    end
  end
  local names = {}
  for name in pairs(found) do
    if name:sub(1, #partial) == partial and type(name) == "string" then names[#names + 1] = name end
  end
  sort_names(names)
  local items = {}
  for i, name in ipairs(names) do items[i] = { text = name, meta = found[name] } end
  return { replace = #partial, items = items }
end

-- File paths (for :run and friends): the last word, through the host.
function M.complete_path(shell, partial)
  local dir, base = partial:match("^(.*/)([^/]*)$")
  if not dir then dir, base = "", partial end
  local listing = shell.host.listdir and shell.host.listdir(dir == "" and "." or dir) or {}
  local out = {}
  for _, entry in ipairs(listing) do
    local name, is_dir = entry[1], entry[2]
    if name:sub(1, #base) == base and (base:sub(1, 1) == "." or name:sub(1, 1) ~= ".") then
      out[#out + 1] = dir .. name .. (is_dir and "/" or "")
    end
  end
  table.sort(out)
  return out
end

local function complete_command(shell, text)
  local name_part = text:match("^%s*:([^%s]*)$")
  if name_part then
    local items = {}
    for i, name in ipairs(commands.names(name_part)) do
      items[i] = { text = name, meta = commands.get(name).usage }
    end
    return { replace = #name_part, items = items }
  end
  local name, args = text:match("^%s*:([^%s]+)%s+(.*)$")
  local spec = name and commands.get(name)
  if not spec or not spec.complete then return nil end
  local partial = args:match("([^%s]*)$")
  local ok, list = pcall(spec.complete, shell, partial, args)  -- args: all the words so far
  if not ok or type(list) ~= "table" then return nil end
  local items = {}
  for i, word in ipairs(list) do items[i] = { text = word, meta = "" } end
  return { replace = #partial, items = items }
end

function M.complete(shell, text)
  if text:find("^%s*:") and not text:find("^%s*::") then -- "::" starts a Lua label
    return complete_command(shell, text) or { replace = 0, items = {} }
  end
  local partial = text:match("require%s*%(?%s*[\"']([%w_%.%-]*)$")
  if partial then return complete_module(shell, partial) end
  local target = shell.target
  if target and target.complete then
    local path = expression.replaced(text)
    local ok, list = pcall(target.complete, text)
    local items = {}
    if ok and type(list) == "table" then
      for i, word in ipairs(list) do items[i] = { text = tostring(word), meta = target.name } end
    end
    return { replace = #path, items = items }
  end
  return expression.complete(shell.env, text) or { replace = 0, items = {} }
end

return M
