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
--   * globals, the REPL's top-level locals and keywords;
--   * fields after '.' and methods after ':' of a prefix expression such as
--     `a.b`, `t[1]`, `t["k"]`, `("acgt")` or a call: following __index
--     *tables* (never calling __index functions: completion must not run user
--     code), string methods on strings, and a metatable's __complete(obj)
--     function for objects that want to list their own members;
--   * the submodules of a lazy module table (a raw `_modules` set and an
--     __index function, as `bio`): listed from `_modules`, loaded with
--     require("parent.name") only to go deeper (`bio.seq.`).
-- A call is never made: its value is known only where the function's result
-- is known without calling it (CALL_RESULT below), else nothing is offered.
--
-- signature() finds the call the cursor is in and describes its function
-- through bioxen.shell.doc, as :help does.

local lex = require("bioxen.shell.lex")
local commands = require("bioxen.shell.commands")
local doc = require("bioxen.shell.doc")

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

-- A lazy module table lists its submodules in a raw `_modules` set; one is
-- loaded through require (the module system's cache), never through the
-- table's __index function.
local LAZY = {} -- member value of a submodule not loaded yet

local function lazy_modules(t)
  local mods = rawget(t, "_modules")
  if type(mods) ~= "table" then return nil end
  local mt = getmetatable(t)
  if type(mt) ~= "table" or type(rawget(mt, "__index")) ~= "function" then return nil end
  return mods
end

local function lazy_member(t, key)
  local mods = lazy_modules(t)
  if not mods or not rawget(mods, key) or type(key) ~= "string" then return nil end
  local parent = doc.module_name(t)
  if not parent then return nil end
  local ok, mod = pcall(require, parent .. "." .. key)
  if ok then return mod end
  return nil
end

-- Index without running code: raw fields, then __index tables.
local function safe_index(obj, key)
  local seen = 0
  while obj ~= nil and seen < 16 do
    seen = seen + 1
    if type(obj) == "table" then
      local v = rawget(obj, key)
      if v ~= nil then return v end
      v = lazy_member(obj, key)
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
      for k in pairs(lazy_modules(obj) or {}) do
        if is_identifier(k) then out[k] = LAZY end -- loaded or not: a module
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
    items[i] = { text = name, meta = v == true and "" or v == LAZY and "module" or type(v) }
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

-- Prefix expressions, read backwards from a token: `a.b`, `t[1]`, `f(x):m()`,
-- `("acgt")`.  The result is a list of steps in evaluation order, and the
-- index of the expression's first token.
local CLOSE = { [")"] = "(", ["]"] = "[", ["}"] = "{" }
local OPEN = { ["("] = true, ["["] = true, ["{"] = true }

local function is_op(tok, value)
  return tok ~= nil and tok.type == "op" and tok.value == value
end

-- The index of the opener matching the closer toks[i], scanning back to lo.
local function opener_of(toks, i, lo)
  local stack = {}
  for k = i, lo, -1 do
    local t = toks[k]
    if t.type == "op" then
      if CLOSE[t.value] then
        stack[#stack + 1] = CLOSE[t.value]
      elseif OPEN[t.value] then
        if stack[#stack] ~= t.value then return nil end
        stack[#stack] = nil
        if #stack == 0 then return k end
      end
    end
  end
  return nil
end

-- Could toks[k] end a prefix expression (so that `(`, a string or `{` after it is a call)?
local function ends_prefix(tok)
  if not tok then return false end
  if tok.type == "name" or tok.type == "string" then return true end
  return tok.type == "op" and (tok.value == ")" or tok.value == "]" or tok.value == "}")
end

-- A literal token's value (strings through load: a literal runs no code).
local function literal(tok)
  if tok.type == "number" then return tonumber(tok.value) end
  if tok.type == "keyword" and (tok.value == "true" or tok.value == "false") then
    return tok.value == "true"
  end
  if tok.type ~= "string" then return nil end
  local f = (loadstring or load)("return " .. tok.value)
  local ok, v = pcall(f or error)
  if ok and type(v) == "string" then return v end
  return nil
end

local function reverse(list)
  local out = {}
  for i = #list, 1, -1 do out[#out + 1] = list[i] end
  return out
end

local parse_back

-- The call arguments ending at toks[i] (a `)`, a string or a `}`): their first
-- index, or nil when toks[i] is not an argument list.
local function args_start(toks, i, lo)
  local t = toks[i]
  local j = i
  if t.type == "op" then j = opener_of(toks, i, lo) end
  if not j or j <= lo or not ends_prefix(toks[j - 1]) then return nil end
  return j
end

function parse_back(toks, i, lo)
  local rev = {}
  while i >= lo do
    local t, prev = toks[i], i > lo and toks[i - 1] or nil
    if t.type == "name" then
      if is_op(prev, ".") then
        rev[#rev + 1] = { op = "index", key = t.value }
        i = i - 2
      elseif is_op(prev, ":") then
        return nil -- a:b without arguments is not an expression
      else
        rev[#rev + 1] = { op = "name", name = t.value }
        return reverse(rev), i
      end
    elseif is_op(t, "]") then
      local j = opener_of(toks, i, lo)
      if not j or j == lo then return nil end
      local key = j + 2 == i and literal(toks[j + 1]) or nil
      if key == nil then return nil end -- only a constant index is looked up
      rev[#rev + 1] = { op = "index", key = key }
      i = j - 1
    elseif t.type == "string" or is_op(t, ")") or is_op(t, "}") then
      local j = args_start(toks, i, lo)
      if j then
        local step = { op = "call", first = j, last = i }
        if toks[j - 1].type == "name" and j - 2 >= lo and is_op(toks[j - 2], ":") then
          step.op, step.method = "method", toks[j - 1].value
          i = j - 3
        else
          i = j - 1
        end
        rev[#rev + 1] = step
      elseif is_op(t, ")") then -- a parenthesised expression: (x)
        local k = opener_of(toks, i, lo)
        if not k then return nil end
        local value = k + 2 == i and literal(toks[k + 1])
        local inner, start
        if value == nil then
          inner, start = parse_back(toks, i - 1, k + 1)
          if not inner or start ~= k + 1 then return nil end
        end
        rev[#rev + 1] = { op = "paren", value = value, steps = inner }
        return reverse(rev), k
      else
        return nil
      end
    else
      return nil
    end
  end
  return nil
end

-- Functions whose result is known without calling them.
local RETURNS_STRING = {}
for _, f in ipairs({ string.upper, string.lower, string.rep, string.sub, string.reverse,
                     string.format, string.gsub, string.char, tostring, table.concat }) do
  RETURNS_STRING[f] = true
end

local function call_result(toks, f, step)
  if RETURNS_STRING[f] then return "" end -- any string has the string methods
  if f ~= require or step.op ~= "call" then return nil end
  -- require"name" / require("name") gives a module only when it is loaded already
  local arg = step.first == step.last and toks[step.first]
    or step.first + 2 == step.last and toks[step.first + 1]
  local name = arg and literal(arg)
  return type(name) == "string" and package.loaded[name] or nil
end

local function evaluate(shell, toks, steps)
  local v
  for _, step in ipairs(steps) do
    if step.op == "name" then
      v = safe_index(shell.env, step.name)
    elseif step.op == "paren" then
      v = step.value
      if v == nil then v = evaluate(shell, toks, step.steps) end
    elseif step.op == "index" then
      v = safe_index(v, step.key)
    elseif step.op == "call" then
      v = call_result(toks, v, step)
    else -- method
      v = call_result(toks, safe_index(v, step.method), step)
    end
    if v == nil then return nil end
  end
  return v
end

-- The value of the prefix expression ending at toks[i], found without calls.
local function value_before(shell, toks, i)
  if i < 1 then return nil end
  local steps = parse_back(toks, i, 1)
  if not steps then return nil end
  return evaluate(shell, toks, steps)
end

local function code_tokens(text)
  local toks = {}
  for _, tok in ipairs(lex.tokenize(text)) do
    if tok.type ~= "comment" then toks[#toks + 1] = tok end
  end
  return toks
end

-- The value of a whole prefix expression ("bio.seq", "t[1].name", "s:upper"
-- as s.upper), found as completion finds it: without calls; or nil.
function M.lookup(shell, expr)
  local toks = code_tokens((expr:gsub("^([%w_%.]+):([%a_][%w_]*)$", "%1.%2")))
  if #toks == 0 then return nil end
  local steps, start = parse_back(toks, #toks, 1)
  if not steps or start ~= 1 then return nil end
  return evaluate(shell, toks, steps)
end

local function complete_names(shell, partial)
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

local function complete_expression(shell, text)
  if in_string_or_comment(text) then return nil end
  local toks = code_tokens(text)
  local last = toks[#toks]
  if not last or last.e < #text then return nil end
  local partial, k = "", #toks
  if last.type == "name" or last.type == "keyword" then
    partial, k = last.value, #toks - 1
  end
  local sep = toks[k]
  if not is_op(sep, ".") and not is_op(sep, ":") then
    if partial == "" then return nil end
    return complete_names(shell, partial)
  end
  local obj = value_before(shell, toks, k - 1)
  if obj == nil then return nil end
  return { replace = #partial, items = items_from(members(obj), partial, sep.value == ":") }
end

-- The call the end of text is inside: its function, name and argument number.
function M.signature(shell, text)
  local toks = code_tokens(text)
  local stack = {}
  for i, t in ipairs(toks) do
    if t.type == "op" and OPEN[t.value] then
      stack[#stack + 1] = i
    elseif t.type == "op" and CLOSE[t.value] then
      stack[#stack] = nil
    end
  end
  local open
  for d = #stack, 1, -1 do
    if toks[stack[d]].value == "(" then open = stack[d] break end
  end
  if not open or not ends_prefix(toks[open - 1]) then return nil end
  local steps, start = parse_back(toks, open - 1, 1)
  local method = false
  if not steps then
    -- obj:name( -- the function is a method of obj
    if not (toks[open - 1].type == "name" and is_op(toks[open - 2], ":")) then return nil end
    steps, start = parse_back(toks, open - 3, 1)
    if not steps then return nil end
    steps[#steps + 1] = { op = "index", key = toks[open - 1].value }
    method = true
  end
  local before = toks[start - 1]
  if before and before.type == "keyword" and before.value == "function" then return nil end
  local fn = evaluate(shell, toks, steps)
  if type(fn) ~= "function" then return nil end
  local arg, depth = 1, 0
  for i = open + 1, #toks do -- the commas of this call, not of a nested one
    local t = toks[i]
    if t.type == "op" then
      if OPEN[t.value] then depth = depth + 1
      elseif CLOSE[t.value] then depth = depth - 1
      elseif t.value == "," and depth == 0 then arg = arg + 1 end
    end
  end
  local name = text:sub(toks[start].s, toks[open - 1].e):gsub("%s+", "")
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
