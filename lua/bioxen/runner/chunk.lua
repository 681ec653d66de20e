-- Compiling REPL input, for the shell and for the agent of an attached VM alike:
-- is it complete, is it an expression, and how to keep top-level `local`s alive
-- from one line to the next (bioxen.runner.session holds that state).
--
-- Runs on Lua 5.1-5.5 and LuaJIT.

local lex = require("bioxen.runner.lex")

local M = {}

-- load(src, name, env) on every runtime, text chunks only.  (The library
-- functions are taken at load time: the agent compiles with it whatever user
-- code later does to the globals.)
local s_byte, s_find = string.byte, string.find
local loadstring, load, setfenv = rawget(_G, "loadstring"), load, rawget(_G, "setfenv")
local function compile(src, chunkname, env)
  if s_byte(src, 1) == 27 then return nil, "attempt to load a binary chunk (mode is 't')" end
  -- LuaJIT's load skips a leading "#" line (and a UTF-8 BOM) of any chunk;
  -- Lua does that for files only (the shell does it in its script reader), so
  -- `-e '#x'` and REPL input must stay errors: a space keeps LuaJIT from it.
  if s_find(src, "^#") or s_find(src, "^\239\187\191") then src = " " .. src end
  if setfenv then -- Lua 5.1 / LuaJIT
    local fn, err = loadstring(src, chunkname)
    if fn and env then setfenv(fn, env) end
    return fn, err
  end
  return load(src, chunkname, "t", env)
end
M.compile = compile

-- Whether an expression uses its chunk's own `...` (outside any function of
-- its own): compile_expression's helper, passed as the first argument, would
-- show in it, so such an expression is compiled as `return expr` instead.
function M.uses_chunk_varargs(expr)
  return expr:find("...", 1, true) ~= nil -- the common case costs no compile
    and compile("return " .. expr, "=expr") ~= nil
    and compile("return function() return " .. expr .. "\n end", "=expr") == nil
end

-- A syntax error that ends at <eof> means "give me more".  Lua 5.1 and LuaJIT
-- quote it ('<eof>'), 5.2 and later do not: accept both.  An unfinished
-- *short* string also ends at <eof> but no further line can finish it.
function M.is_eof_error(err)
  err = tostring(err)
  if not (err:find("<eof>'?$") or err:find("<eof>\"?$")) then return false end
  if err:find("unfinished string") and not err:find("unfinished long string") then
    return false
  end
  return true
end

-- `=expr` is the Lua 5.1 shorthand for `return expr`; keep it working.
-- The expression of an `=expr` input, or nil.
function M.equals_expression(src)
  local rest = src:match("^%s*=(.*)$")
  if rest and not rest:find("^=") then return rest end
  return nil
end

-- The index in toks (comments dropped, no trailing `;`) of the last top-level
-- `;` that has tokens after it, or nil: `stmts; expr` prints expr's values.
function M.last_top_level_semicolon(toks)
  local depth, semi = 0, nil
  for i, tok in ipairs(toks) do
    depth = depth + lex.nesting_delta(tok)
    if depth == 0 and tok.type == "op" and tok.value == ";" then semi = i end
  end
  if not semi or semi == #toks then return nil end
  return semi
end

-- A chunk that returns the values of an expression passes them through
-- `__values` (its first argument, M.values below): VALUES_HEAD .. statements
-- .. values_tail(expr).  Same line numbers as the input.
local VALUES_HEAD = "local __values = ... "
local function values_tail(expr) return " return __values(" .. expr .. "\n)" end

-- Rewrite top-level `local` statements into assignments, so the values land in
-- the REPL's environment table and the next line still sees them.  Returns the
-- new source (same line numbers) and the list of names it declared.
--   local a, b = f()     ->  a, b = f()
--   local a              ->  a = nil
--   local function g()   ->  function g()
--   local k <const> = 1  ->  k = 1
--   local f <close> = v  ->  local f <close> = v _ENV.f = f
-- A statement with <close> keeps its real local, which Lua closes at the end
-- of the chunk; the copy in the environment keeps the (closed) value visible.

-- Tokens that can end an operand, and those that continue an expression after one.
local OPERAND_END = { ["nil"] = true, ["true"] = true, ["false"] = true, ["end"] = true,
  [")"] = true, ["]"] = true, ["}"] = true, ["..."] = true }
local CONTINUES = {}
for op in ([[+ - * / // % ^ .. == ~= < <= > >= & | ~ << >> ( [ { . : , and or]]):gmatch("%S+") do
  CONTINUES[op] = true
end

-- Index of the last token of the expression list that starts at toks[i]:
-- Lua's parser is greedy, so the list ends at the first complete operand
-- that the next token cannot continue.  nil if it runs to the end unfinished.
local function expression_list_end(toks, i)
  local depth = 0
  for j = i, #toks do
    local tok = toks[j]
    depth = depth + lex.nesting_delta(tok)
    local ends = tok.type == "name" or tok.type == "number" or tok.type == "string"
      or OPERAND_END[tok.value]
    local nxt = toks[j + 1]
    if depth == 0 and ends and not (nxt and (nxt.type == "string" or CONTINUES[nxt.value])) then
      return j
    end
  end
  return nil
end

-- `local a <attrib>, b … [= exprlist]` at toks[i] (the `local`): adds its
-- edits, names and constant names; returns the index of its last name token.
local function hoist_local_list(toks, i, edits, names, consts)
  local tok = toks[i]
  local list, j, has_close, attribs = { toks[i + 1].value }, i + 2, false, {}
  while true do
    local t = toks[j]
    if t and t.value == "<" and toks[j + 2] then
      if toks[j + 1].value == "close" then has_close = true end
      attribs[#attribs + 1] = { s = t.s, e = toks[j + 2].e }
      consts[#consts + 1] = list[#list] -- <const> and <close> alike: no assignment later
      j = j + 3 -- '<' name '>'
    elseif t and t.value == "," and toks[j + 1] and toks[j + 1].type == "name" then
      list[#list + 1] = toks[j + 1].value
      j = j + 2
    else
      break
    end
  end
  for _, name in ipairs(list) do names[#names + 1] = name end
  local has_values = toks[j] and toks[j].value == "="
  if has_close then
    local last = toks[j - 1]
    if has_values then last = toks[expression_list_end(toks, j + 1) or #toks] end
    local fields = {}
    for k, name in ipairs(list) do fields[k] = "_ENV." .. name end
    edits[#edits + 1] = { s = last.e + 1, e = last.e,
                          text = " " .. table.concat(fields, ", ") .. " = " .. table.concat(list, ", ") }
    return j - 1
  end
  edits[#edits + 1] = { s = tok.s, e = tok.e, text = (" "):rep(#tok.value) }
  for _, a in ipairs(attribs) do -- <const> is dropped: the value lives on in env
    edits[#edits + 1] = { s = a.s, e = a.e, text = (" "):rep(a.e - a.s + 1) }
  end
  if not has_values then
    edits[#edits + 1] = { s = toks[j - 1].e + 1, e = toks[j - 1].e, text = " = nil" }
  end
  return j - 1
end

-- hoist_locals(src) -> new source, declared names, constant names (<const>, <close>)
function M.hoist_locals(src)
  local toks = lex.code_tokens(src)
  local edits, names, consts = {}, {}, {}
  local depth = 0
  local i = 1
  while i <= #toks do
    local tok = toks[i]
    if depth == 0 and tok.type == "keyword" and tok.value == "local" then
      local nxt = toks[i + 1]
      if nxt and nxt.value == "function" and toks[i + 2] and toks[i + 2].type == "name" then
        edits[#edits + 1] = { s = tok.s, e = tok.e, text = (" "):rep(#tok.value) }
        names[#names + 1] = toks[i + 2].value
      elseif nxt and nxt.type == "name" then
        i = hoist_local_list(toks, i, edits, names, consts)
      end
    else
      depth = depth + lex.block_delta(tok)
    end
    i = i + 1
  end
  if #edits == 0 then return src, names, consts end
  table.sort(edits, function(a, b) return a.s > b.s end)
  local out = src
  for _, ed in ipairs(edits) do
    out = out:sub(1, ed.s - 1) .. ed.text .. out:sub(ed.e + 1)
  end
  return out, names, consts
end

-- The values of an expression, passed through a function call so that a call
-- in the expression is not a tail call: `error("x")` then reports the user's
-- line rather than the engine's (LuaJIT and Lua 5.1 drop tail-called frames).
-- The compiled chunk expects this function as its first argument.
function M.values(...) return ... end

function M.pack(...) return { n = select("#", ...), ... } end

-- Earlier inputs' <const>/<close> names, declared again as constants ahead of
-- the input (on its first line) so that assigning to one is the compile-time
-- error it would be in one chunk.  Names the input declares anew are left out.
local function const_prelude(consts, redeclared)
  local skip, list = {}, {}
  for _, name in ipairs(redeclared) do skip[name] = true end
  for name in pairs(consts or {}) do
    if not skip[name] then list[#list + 1] = name end
  end
  if #list == 0 then return "" end
  table.sort(list)
  return "local " .. table.concat(list, " <const>, ") .. " <const> = " .. table.concat(list, ", ") .. " "
end

-- Compile statements with their top-level locals hoisted (see hoist_locals);
-- head and tail wrap the (hoisted) statements.  Returns fn, declared names,
-- constant names or nil, error_message.  One compile in the usual case: the
-- input as typed is compiled too only when it declares constants (hoisting
-- drops `<const>`, and assigning to one is a compile-time error Lua 5.4 must
-- report) or when the hoisted text fails (for the error as the user wrote it).
local function compile_statements(src, chunkname, env, consts, head, tail)
  local hoisted, names, new_consts = M.hoist_locals(src)
  head = const_prelude(consts, names) .. (head or "")
  local function wrap(body) return head .. body .. (tail or "") end
  if #names > 0 then
    if #new_consts > 0 then
      local ok, err = compile(wrap(src), chunkname, env)
      if not ok then return nil, err end
    end
    local fn = compile(wrap(hoisted), chunkname, env)
    if fn then return fn, names, new_consts end
    -- The rewrite is a convenience; if it ever produces bad code, fall back to
    -- the original (its locals then simply end with the chunk).
  end
  local fn, err = compile(wrap(src), chunkname, env)
  if not fn then return nil, err end
  return fn, {}, {}
end

local STATEMENT_START = { ["local"] = true, ["for"] = true, ["if"] = true, ["while"] = true,
  ["repeat"] = true, ["do"] = true, ["return"] = true, ["goto"] = true, ["break"] = true }

-- Could the tokens be one expression list?  Only then is the input compiled as
-- one: brackets balanced (so that the `__values(` … `)` around it cannot pair
-- with them), no assignment at the top level, no statement keyword first.
local function may_be_expression(toks, first, last)
  local t1 = toks[first]
  if not t1 then return false end
  if STATEMENT_START[t1.value] and t1.type == "keyword" then return false end
  if t1.value == "::" then return false end
  if t1.value == "function" and toks[first + 1] and toks[first + 1].type == "name" then return false end
  local depth = 0
  for i = first, last do
    local tok = toks[i]
    depth = depth + lex.nesting_delta(tok) -- brackets, and the blocks of `function … end`
    if depth < 0 then return false end
    if depth == 0 and tok.type == "op" and tok.value == "=" then return false end
  end
  return depth == 0
end

-- An expression, compiled to return its values through M.values (its first
-- argument); nil when src is not one expression.  One compile.
function M.compile_expression(src, chunkname, env, prelude)
  local body = src:gsub(";%s*$", "")
  local toks = lex.code_tokens(body)
  if not may_be_expression(toks, 1, #toks) then return nil end
  return compile((prelude or "") .. VALUES_HEAD .. values_tail(body), chunkname, env)
end

-- Why an input does not compile: more lines can finish it ("incomplete", with
-- the nesting depth of the next line) or none can ("invalid").
local function failure(src, err)
  if M.is_eof_error(err) then
    -- Inside a long string or comment a new line is data: no indent there.
    local depth = tostring(err):find("unfinished long") and 0 or lex.depth(src)
    return { status = "incomplete", depth = depth, message = err }
  end
  return { status = "invalid", message = err }
end

local function compiled(fn, is_expr, names, new_consts)
  return { status = "complete", fn = fn, is_expr = is_expr, declared = names or {}, consts = new_consts or {} }
end

-- Analyse and compile one REPL input, the one compile its completeness check and
-- its run share.  consts: the set of constant names of earlier inputs.  Returns
--   { status = "complete", fn =, is_expr =, declared = {names}, consts = {names} }
--     (call an expression's fn with M.values: its first argument)
--   { status = "incomplete", depth = levels of nesting open, message = }
--   { status = "invalid", message = }
-- An input that is one expression is compiled once as that; `stmts; expr`
-- once as statements whose last expression's values print; anything else as
-- statements, its top-level locals hoisted into env.
function M.analyse(src, chunkname, env, consts)
  local expr = M.equals_expression(src)
  if expr then
    local fn = M.compile_expression(expr, chunkname, env, const_prelude(consts, {}))
    if fn then return compiled(fn, true) end
    local _, err = compile("return " .. expr, chunkname, env)
    return failure(src, err)
  end
  local toks = lex.code_tokens(src)
  while toks[#toks] and toks[#toks].value == ";" do toks[#toks] = nil end
  if may_be_expression(toks, 1, #toks) then
    local fn = compile(const_prelude(consts, {}) .. VALUES_HEAD .. values_tail((src:gsub(";%s*$", ""))),
      chunkname, env)
    if fn then return compiled(fn, true) end
  end
  -- `x = 5; x` prints 5: before the plain statements, so that `t = {}; f(t)`
  -- shows f's results as `f(t)` alone would.
  local semi = M.last_top_level_semicolon(toks)
  if semi and may_be_expression(toks, semi + 1, #toks) then
    local stmts, last = src:sub(1, toks[semi].s - 1), src:sub(toks[semi].e + 1, toks[#toks].e)
    local fn, names, new_consts = compile_statements(stmts, chunkname, env, consts, VALUES_HEAD, values_tail(last))
    if fn then return compiled(fn, true, names, new_consts) end
  end
  local fn, names, new_consts = compile_statements(src, chunkname, env, consts)
  if not fn then return failure(src, names) end
  return compiled(fn, false, names, new_consts)
end

return M
