-- Tab completion of Lua expressions, for the shell and for the agent of an
-- attached VM alike: what is completed, without running code, is
--   * globals, a REPL session's top-level locals and keywords;
--   * fields after '.' and methods after ':' of a prefix expression such as
--     `a.b`, `t[1]`, `t["k"]`, `("acgt")` or a call: following __index
--     *tables* (never calling __index functions), string methods on strings,
--     and a metatable's __complete(obj) function for objects that want to list
--     their own members (where the caller allows code to run);
--   * the submodules of a lazy module table (a raw `_modules` set and an
--     __index function, as `bio`): listed from `_modules`, loaded with
--     require("parent.name") only to go deeper (`bio.seq.`), where allowed.
-- A call is never made: its value is known only where the function's result
-- is known without calling it (CALL_RESULT below), else nothing is offered.
-- Completion runs under a budget of time and names (M.SECONDS, M.LIMIT): a
-- table of a million keys gives the names found so far, quickly.
--
--   complete.complete(env, text, opts) -> { replace = n, items = {{text=, meta=}, …}, cut = } | nil
--   complete.lookup(env, expr) -> the value of a prefix expression, found without calls
--   complete.call_at(env, text) -> fn, name, is_method, argument number of the call text ends inside
--
-- Runs on Lua 5.1-5.5 and LuaJIT.

local lex = require("bioxen.runner.lex")

local M = {}

-- The name under which package.loaded holds t, or nil.
function M.module_name(t)
  for name, mod in pairs(package.loaded) do
    if mod == t and type(name) == "string" then return name end
  end
  return nil
end

-- Names in order, those starting with _ last (as completion lists them).
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
  local parent = M.module_name(t)
  if not parent then return nil end
  local ok, mod = pcall(require, parent .. "." .. key)
  if ok then return mod end
  return nil
end

-- Index without running code: raw fields, then __index tables.
local function safe_index(obj, key, budget)
  local seen = 0
  while obj ~= nil and seen < 16 do
    seen = seen + 1
    if type(obj) == "table" then
      local v = rawget(obj, key)
      if v ~= nil then return v end
      if not budget or budget.run_code then
        v = lazy_member(obj, key)
        if v ~= nil then return v end
      end
    elseif type(obj) == "string" then
      return (budget and budget.string or string)[key]
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

-- How much completion may do: it runs in the UI thread (and, attached, in the
-- VM between calls), so it stops scanning once `deadline` (os.clock) has passed
-- or `limit` names are found, and offers what it has.  `run_code`: whether a
-- metatable's __complete and the require of a lazy submodule may run (the
-- shell: yes; the agent, where completion is not a user call: no).
local function new_budget(opts)
  opts = opts or {}
  local clock = opts.clock or os.clock
  return { deadline = clock() + (opts.seconds or M.SECONDS), clock = clock, limit = opts.limit or M.LIMIT,
           run_code = opts.run_code ~= false, found = 0, cut = false }
end
M.SECONDS, M.LIMIT = 0.2, 1000

local function spent(budget)
  if budget.found >= budget.limit or budget.clock() > budget.deadline then budget.cut = true end
  return budget.cut
end

-- The member names reachable from obj (raw keys + __index tables) that `accept(name,
-- value)` takes: name -> value (LAZY for a submodule, true for a __complete name).
local function members(obj, accept, budget)
  local out = {}
  local seen = 0
  local function add(k, v)
    if out[k] == nil and not budget.cut and type(k) == "string" and accept(k, v) and is_identifier(k) then
      out[k] = v
      budget.found = budget.found + 1
      if budget.found >= budget.limit then budget.cut = true end
    end
  end
  if type(obj) == "string" then obj = budget.string or string end
  while obj ~= nil and seen < 16 and not budget.cut do
    seen = seen + 1
    if type(obj) == "table" then
      local scanned = 0
      for k, v in next, obj do
        add(k, v)
        scanned = scanned + 1
        if scanned % 256 == 0 and spent(budget) then return out end
      end
      if budget.cut then return out end
      for k in pairs(lazy_modules(obj) or {}) do add(k, LAZY) end -- loaded or not: a module
    end
    local mt = getmetatable(obj)
    if type(mt) ~= "table" then break end
    local lister = budget.run_code and rawget(mt, "__complete")
    if type(lister) == "function" then
      local ok, names = pcall(lister, obj)
      if ok and type(names) == "table" then
        for _, name in ipairs(names) do add(name, true) end
      end
    end
    local index = rawget(mt, "__index")
    if type(index) ~= "table" then break end
    obj = index
  end
  spent(budget)
  return out
end

local function accept_prefix(partial, methods_only)
  return function(name, v)
    return name:sub(1, #partial) == partial and (not methods_only or type(v) == "function" or v == true)
  end
end

local function items_from(names_to_values)
  local names = {}
  for name in pairs(names_to_values) do names[#names + 1] = name end
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

local function evaluate(env, toks, steps, budget)
  local v
  for _, step in ipairs(steps) do
    if step.op == "name" then
      v = safe_index(env, step.name, budget)
    elseif step.op == "paren" then
      v = step.value
      if v == nil then v = evaluate(env, toks, step.steps, budget) end
    elseif step.op == "index" then
      v = safe_index(v, step.key, budget)
    elseif step.op == "call" then
      v = call_result(toks, v, step, budget)
    else -- method
      v = call_result(toks, safe_index(v, step.method, budget), step, budget)
    end
    if v == nil then return nil end
  end
  return v
end

-- The value of the prefix expression ending at toks[i], found without calls.
local function value_before(env, toks, i, budget)
  if i < 1 then return nil end
  local steps = parse_back(toks, i, 1)
  if not steps then return nil end
  return evaluate(env, toks, steps, budget)
end

-- The value of a whole prefix expression ("bio.seq", "t[1].name", "s:upper"
-- as s.upper), found as completion finds it: without calls; or nil.
function M.lookup(env, expr)
  local toks = lex.code_tokens((expr:gsub("^([%w_%.]+):([%a_][%w_]*)$", "%1.%2")))
  if #toks == 0 then return nil end
  local steps, start = parse_back(toks, #toks, 1)
  if not steps or start ~= 1 then return nil end
  return evaluate(env, toks, steps, new_budget())
end

local function complete_names(env, partial, budget)
  local items = items_from(members(env, accept_prefix(partial, false), budget))
  for kw in pairs(lex.KEYWORDS) do
    if kw:sub(1, #partial) == partial and #partial > 0 then
      items[#items + 1] = { text = kw, meta = "keyword" }
    end
  end
  return { replace = #partial, items = items }
end

local function complete_expression(env, text, budget)
  if in_string_or_comment(text) then return nil end
  local toks = lex.code_tokens(text)
  local last = toks[#toks]
  if not last or last.e < #text then return nil end
  local partial, k = "", #toks
  if last.type == "name" or last.type == "keyword" then
    partial, k = last.value, #toks - 1
  end
  local sep = toks[k]
  if not is_op(sep, ".") and not is_op(sep, ":") then
    if partial == "" then return nil end
    return complete_names(env, partial, budget)
  end
  local obj = value_before(env, toks, k - 1, budget)
  if obj == nil then return nil end
  return { replace = #partial, items = items_from(members(obj, accept_prefix(partial, sep.value == ":"), budget)) }
end

-- Completion of the Lua expression that text ends in, or nil:
--   { replace = n, items = { {text=, meta=}, … }, cut = true when the budget ran out }
-- env: where names are looked up (a REPL session's env); opts: the budget
-- ({seconds =, limit =, run_code =, clock =, string = the string table to offer
-- for string values}).
function M.complete(env, text, opts)
  local budget = new_budget(opts)
  budget.string = opts and opts.string
  local r = complete_expression(env, text, budget)
  if r then r.cut = budget.cut or nil end
  return r
end

-- The call the end of text is inside: its function, name, whether it is a
-- method and the argument number; or nil.
function M.call_at(env, text)
  local toks = lex.code_tokens(text)
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
  local fn = evaluate(env, toks, steps, new_budget())
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
  return fn, name, method, arg
end

-- What the candidates of an attached VM replace (the agent sends them whole, as
-- strings): the trailing path of text ("string.fo"), or its last word where no
-- path applies ("t[1].na").
function M.replaced(text)
  return M.trailing_path(text) or text:match("[%w_]*$")
end

-- A completion result as those strings.
function M.candidates(text, result)
  local out = {}
  if not result then return out end
  local rep = M.replaced(text)
  local head = rep:sub(1, #rep - result.replace)
  for i, item in ipairs(result.items) do out[i] = head .. item.text end
  return out
end

M.sort_names = sort_names

return M
