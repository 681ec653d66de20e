-- Tab completion, computed on the Lua side.
--
--   complete.complete(shell, text) -> { replace = n, items = { {text=, meta=}, ... } }
--
-- `text` is the input up to the cursor; each item replaces the last `replace`
-- bytes of it.  What is completed:
--   * meta-command names after ':' and each command's own arguments
--     (its `complete` function; :run completes file paths);
--   * module names inside require"…" / require('…');
--   * globals, the REPL's top-level locals and keywords;
--   * fields after '.' and methods after ':' — following __index *tables*
--     (never calling __index functions: completion must not run user code),
--     string methods on strings, and a metatable's __complete(obj) function
--     for objects that want to list their own members.

local lex = require("bioxen.shell.lex")
local commands = require("bioxen.shell.commands")

local M = {}

local function sort_names(list)
  table.sort(list, function(a, b)
    local ua, ub = a:sub(1, 1) == "_", b:sub(1, 1) == "_"
    if ua ~= ub then return ub end
    return a < b
  end)
  return list
end

local function is_identifier(k)
  return type(k) == "string" and k:find("^[%a_][%w_]*$") ~= nil and not lex.KEYWORDS[k]
end

-- Index without running code: raw fields, then __index tables.
local function safe_index(obj, key)
  local seen = 0
  while obj ~= nil and seen < 16 do
    seen = seen + 1
    if type(obj) == "table" then
      local v = rawget(obj, key)
      if v ~= nil then return v end
    elseif type(obj) == "string" then
      return string[key]
    end
    local mt = getmetatable(obj)
    if type(mt) ~= "table" then return nil end
    local index = rawget(mt, "__index")
    if type(index) ~= "table" then return nil end
    obj = index
  end
  return nil
end
M.safe_index = safe_index

-- Every member name reachable from obj (raw keys + __index tables), name -> value.
local function members(obj)
  local out = {}
  local seen = 0
  if type(obj) == "string" then obj = string end
  while obj ~= nil and seen < 16 do
    seen = seen + 1
    if type(obj) == "table" then
      for k, v in next, obj do
        if is_identifier(k) and out[k] == nil then out[k] = v end
      end
    end
    local mt = getmetatable(obj)
    if type(mt) ~= "table" then break end
    local lister = rawget(mt, "__complete")
    if type(lister) == "function" then
      local ok, names = pcall(lister, obj)
      if ok and type(names) == "table" then
        for _, name in ipairs(names) do
          if out[name] == nil then out[name] = true end
        end
      end
    end
    local index = rawget(mt, "__index")
    if type(index) ~= "table" then break end
    obj = index
  end
  return out
end

local function items_from(names_to_values, partial, methods_only)
  local names = {}
  for name, v in pairs(names_to_values) do
    if name:sub(1, #partial) == partial and (not methods_only or type(v) == "function" or v == true) then
      names[#names + 1] = name
    end
  end
  sort_names(names)
  local items = {}
  for i, name in ipairs(names) do
    local v = names_to_values[name]
    items[i] = { text = name, meta = v == true and "" or type(v) }
  end
  return items
end

-- The trailing identifier path of text ("string.fo", "s:up", "x"), or nil.
function M.trailing_path(text)
  local path = text:match("[%a_][%w_]*[%w_%.:]*$") or text:match("[%.:]$") and "" or nil
  if not path then return nil end
  local before = text:sub(1, #text - #path)
  -- a..b is concatenation: complete only what follows the operator
  local after = path:match("^.*%.%.(.*)$")
  if after then path = after; before = "" end
  if before:find("[%.:]$") and not before:find("%.%.$") then return nil end
  if before:find("[%w_]$") then return nil end
  return path
end

-- Inside an unfinished string or comment?
local function in_string_or_comment(text)
  local toks = lex.tokenize(text)
  local last = toks[#toks]
  if not last or last.e < #text then return false end
  if last.type == "comment" then
    local level = last.value:match("^%-%-%[(=*)%[")
    return not level or not last.value:find("]" .. level .. "]$", 1, true)
  end
  if last.type == "string" then
    local q = last.value:sub(1, 1)
    if q == "[" then
      local level = last.value:match("^%[(=*)%[")
      return not last.value:find("]" .. level .. "]$", 1, true) or #last.value < 2 * #level + 4
    end
    return #last.value < 2 or last.value:sub(-1) ~= q or last.value:sub(-2, -2) == "\\"
  end
  return false
end

local function complete_expression(shell, text)
  if in_string_or_comment(text) then return nil end
  local path = M.trailing_path(text)
  if not path then return nil end
  local segments, seps = {}, {}
  for sep, seg in ("." .. path):gmatch("([%.:])([%w_]*)") do
    seps[#seps + 1] = sep
    segments[#segments + 1] = seg
  end
  local partial = segments[#segments]
  if #segments == 1 then
    local names = members(shell.env)
    for k, v in pairs(members(_G)) do if names[k] == nil then names[k] = v end end
    local items = items_from(names, partial, false)
    for kw in pairs(lex.KEYWORDS) do
      if kw:sub(1, #partial) == partial and #partial > 0 then
        items[#items + 1] = { text = kw, meta = "keyword" }
      end
    end
    return { replace = #partial, items = items }
  end
  local obj = safe_index(shell.env, segments[1])
  for i = 2, #segments - 1 do
    if seps[i] == ":" then return nil end -- a:b.c is not an expression
    obj = safe_index(obj, segments[i])
    if obj == nil then return nil end
  end
  if obj == nil then return nil end
  return { replace = #partial, items = items_from(members(obj), partial, seps[#seps] == ":") }
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
    local path = M.trailing_path(text) or ""
    local ok, list = pcall(target.complete, text)
    local items = {}
    if ok and type(list) == "table" then
      for i, word in ipairs(list) do items[i] = { text = tostring(word), meta = target.name } end
    end
    return { replace = #path, items = items }
  end
  return complete_expression(shell, text) or { replace = 0, items = {} }
end

return M
