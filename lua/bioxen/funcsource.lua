-- The Lua source text of a function, so it can be shipped to a VM.
--
--   local funcsource = require("bioxen.funcsource")
--   funcsource.remember(chunkname, src)   -- the shell calls this for every chunk it runs
--   funcsource.source_of(fn)  -> "function(x) return x * 2 end"   or nil, reason
--   funcsource.upvalues(fn)   -> {"a", "b"}  names the function captures (not _ENV)
--   funcsource.session_locals(fn, text) -> {"x"}  names it reads from its REPL's locals
--
-- The text returned is always an anonymous function *expression*: the name of
-- `function M.f(x)` / `local function f(x)` is dropped and `function obj:m(x)`
-- becomes `function(self, x)`, so `load("return " .. text)` rebuilds it.
-- Sources are found by chunk name: chunks the shell remembered (REPL lines,
-- `-e` code, scripts) first, then files for "@path" chunk names.
-- Runs on Lua 5.1-5.5 and LuaJIT.

local lex = require("bioxen.runner.lex")

local M = {}

local sources = {}         -- chunkname -> source text
local MAX_REMEMBERED = 2000
local remembered_order = {}

function M.remember(chunkname, src)
  if sources[chunkname] == nil then
    remembered_order[#remembered_order + 1] = chunkname
    if #remembered_order > MAX_REMEMBERED then
      sources[table.remove(remembered_order, 1)] = nil
    end
  end
  sources[chunkname] = src
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return text
end

local function chunk_text(source)
  if sources[source] then return sources[source] end
  if source:sub(1, 1) == "@" then return read_file(source:sub(2)) end
  if source:sub(1, 1) ~= "=" then return source end -- loaded from a string without a name
  return nil
end

-- Byte offset where line `n` starts.
local function line_offset(text, n)
  local pos = 1
  for _ = 2, n do
    pos = text:find("\n", pos, true)
    if not pos then return nil end
    pos = pos + 1
  end
  return pos
end

-- From toks[i] (a `function` keyword) build the anonymous expression text.
local function as_expression(text, toks, i, close)
  local j = i + 1
  local method = false
  while toks[j] and toks[j].value ~= "(" do
    if toks[j].value == ":" then method = true end
    j = j + 1
  end
  if not toks[j] then return nil end
  local nparams, vararg, k = 0, false, j + 1
  while toks[k] and toks[k].value ~= ")" do
    if toks[k].type == "name" then nparams = nparams + 1 end
    if toks[k].value == "..." then vararg = true end
    k = k + 1
  end
  if method then nparams = nparams + 1 end
  local params = text:sub(toks[j].e + 1, toks[close].e)
  if method then
    params = params:find("^%s*%)") and ("self" .. params) or ("self, " .. params)
  end
  return { text = "function(" .. params, nparams = nparams, vararg = vararg }
end

function M.source_of(fn)
  if type(fn) ~= "function" then
    return nil, "expected a function, got " .. type(fn)
  end
  local info = debug.getinfo(fn, "Su")
  if info.what == "C" then return nil, "it is a built-in (C) function" end
  if info.what == "main" then return nil, "it is a whole chunk, not a function definition" end
  local text = chunk_text(info.source)
  if not text then
    return nil, "the source of " .. info.short_src .. " is not available"
  end
  local first, last = info.linedefined, info.lastlinedefined
  local start = line_offset(text, first)
  if not start then return nil, "line " .. first .. " is missing from " .. info.short_src end
  -- Tokenize from the first line on: line numbers stay relative to `first`.
  local sub = text:sub(start)
  local toks = lex.code_tokens(sub)
  local found = {}
  for i, tok in ipairs(toks) do
    if tok.line > 1 then break end
    if tok.type == "keyword" and tok.value == "function" then
      local close = lex.matching_close(toks, i)
      if close and toks[close].line + first - 1 == last then
        found[#found + 1] = as_expression(sub, toks, i, close)
      end
    end
  end
  if #found == 0 then
    return nil, "could not find the definition at " .. info.short_src .. ":" .. first
  end
  if #found > 1 and info.nparams then
    -- Several definitions on one line: keep those with the right parameters.
    local keep = {}
    for _, f in ipairs(found) do
      if f.nparams == info.nparams and f.vararg == info.isvararg then keep[#keep + 1] = f end
    end
    if #keep > 0 then found = keep end
  end
  if #found > 1 then
    return nil, "more than one function is defined on " .. info.short_src .. ":" .. first
      .. " and ends on line " .. last .. "; define it on lines of its own"
  end
  return found[1].text
end

-- The comment lines (`-- …`) right above a function's definition: its doc,
-- by the usual Lua convention.  Returns a string or nil.
function M.doc_comment(fn)
  if type(fn) ~= "function" then return nil end
  local info = debug.getinfo(fn, "S")
  if info.what ~= "Lua" then return nil end
  local text = chunk_text(info.source)
  if not text then return nil end
  local lines, n = {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if n >= info.linedefined then break end
    lines[n] = line
  end
  local doc = {}
  for i = info.linedefined - 1, math.max(1, info.linedefined - 40), -1 do
    local line = lines[i]
    if not line or not line:find("^%s*%-%-") then break end
    table.insert(doc, 1, (line:gsub("^%s*", "")))
  end
  if #doc == 0 then return nil end
  return table.concat(doc, "\n")
end

-- The table a function reads its globals from: getfenv (5.1, LuaJIT) or its _ENV upvalue.
local function environment_of(fn)
  local getfenv = rawget(_G, "getfenv")
  if getfenv then return getfenv(fn) end
  local i = 1
  while true do
    local name, value = debug.getupvalue(fn, i)
    if not name then return nil end
    if name == "_ENV" then return value end
    i = i + 1
  end
end

-- Names a function's text declares itself: parameters, locals, loop variables.
local function declared_names(toks)
  local declared = {}
  local i = 1
  while i <= #toks do
    local t = toks[i]
    if t.type == "keyword" and (t.value == "local" or t.value == "for") then
      local j = i + 1
      if toks[j] and toks[j].value == "function" then j = j + 1 end
      while toks[j] and toks[j].type == "name" do
        declared[toks[j].value] = true
        j = j + 1
        if toks[j] and toks[j].value == "<" then j = j + 3 end -- <const> / <close>
        if not (toks[j] and toks[j].value == ",") then break end
        j = j + 1
      end
    elseif t.type == "keyword" and t.value == "function" then
      local j = i + 1
      while toks[j] and toks[j].value ~= "(" do j = j + 1 end
      j = j + 1
      while toks[j] and toks[j].value ~= ")" do
        if toks[j].type == "name" then declared[toks[j].value] = true end
        j = j + 1
      end
    end
    i = i + 1
  end
  return declared
end

--- The names a function's `text` reads as globals that its environment holds as
-- its own fields: a REPL keeps its top-level locals so (bioxen.runner.session),
-- and, like upvalues, they do not travel with the text.  None for a function whose
-- globals are the real ones.  A name the function declares anywhere (a local,
-- a parameter, a loop variable) is not counted, nor a field (`t.x`, `{x = 1}`).
function M.session_locals(fn, text)
  local env = environment_of(fn)
  if type(env) ~= "table" or env == _G or next(env) == nil then return {} end
  local toks = lex.code_tokens(text)
  local declared = declared_names(toks)
  local names, seen = {}, {}
  for i, t in ipairs(toks) do
    local name = t.value
    if t.type == "name" and not declared[name] and not seen[name] and rawget(env, name) ~= nil then
      local before, after = toks[i - 1], toks[i + 1]
      local field = before and (before.value == "." or before.value == ":")
      local key = after and after.value == "=" and before and (before.value == "{" or before.value == "," or before.value == ";")
      if not field and not key then
        seen[name] = true
        names[#names + 1] = name
      end
    end
  end
  return names
end

function M.upvalues(fn)
  local names = {}
  local i = 1
  while true do
    local name = debug.getupvalue(fn, i)
    if not name then break end
    if name ~= "_ENV" then names[#names + 1] = name end
    i = i + 1
  end
  return names
end

return M
