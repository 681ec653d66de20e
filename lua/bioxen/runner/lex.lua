-- A small Lua tokenizer for the shell: enough to find block nesting (the indent
-- hint), top-level `local` statements (so they survive between REPL lines) and
-- the extent of a function definition (bioxen.funcsource).
--
-- It is not a parser: it never rejects input.  Unterminated strings and long
-- brackets simply run to the end of the text.  Runs on Lua 5.1-5.5 and LuaJIT.

local M = {}

local KEYWORDS = {}
for word in ([[and break do else elseif end false for function goto if in
  local nil not or repeat return then true until while]]):gmatch("%a+") do
  KEYWORDS[word] = true
end
M.KEYWORDS = KEYWORDS

local THREE = { ["..."] = true }
local TWO = {
  ["=="] = true, ["~="] = true, ["<="] = true, [">="] = true, ["//"] = true,
  ["::"] = true, ["<<"] = true, [">>"] = true, [".."] = true,
}

local function count_newlines(s)
  local _, n = s:gsub("\n", "")
  return n
end

-- Scan a short string starting at i (the opening quote); returns the index of
-- the closing quote, or #src when the string is unterminated.
local function short_string_end(src, i)
  local quote = src:sub(i, i)
  local j = i + 1
  while true do
    local k = src:find("[\\\n" .. quote .. "]", j)
    if not k then return #src end
    local c = src:sub(k, k)
    if c == "\\" then
      j = k + 2
    elseif c == "\n" then
      return k - 1 -- unfinished: stop before the line break
    else
      return k
    end
  end
end

-- tokenize(src) -> list of tokens {type=, value=, s=, e=, line=}
-- type: "name" | "keyword" | "number" | "string" | "op" | "comment"
function M.tokenize(src)
  local toks = {}
  local i, n, line = 1, #src, 1
  local function push(ty, s, e)
    toks[#toks + 1] = { type = ty, value = src:sub(s, e), s = s, e = e, line = line }
    line = line + count_newlines(src:sub(s, e))
  end
  while i <= n do
    local c = src:sub(i, i)
    if c == "\n" then
      line = line + 1
      i = i + 1
    elseif c:find("%s") then
      i = i + 1
    elseif c == "-" and src:sub(i + 1, i + 1) == "-" then
      local level = src:match("^%[(=*)%[", i + 2)
      local e
      if level then
        local _, close = src:find("]" .. level .. "]", i + 4 + #level, true)
        e = close or n
      else
        e = (src:find("\n", i, true) or n + 1) - 1
      end
      push("comment", i, e)
      i = e + 1
    elseif c == "[" and src:find("^%[=*%[", i) then
      local level = src:match("^%[(=*)%[", i)
      local _, close = src:find("]" .. level .. "]", i + 2 + #level, true)
      local e = close or n
      push("string", i, e)
      i = e + 1
    elseif c == '"' or c == "'" then
      local e = short_string_end(src, i)
      push("string", i, e)
      i = e + 1
    elseif c:find("[%a_]") then
      local _, e = src:find("^[%w_]*", i + 1)
      local word = src:sub(i, e)
      push(KEYWORDS[word] and "keyword" or "name", i, e)
      i = e + 1
    elseif c:find("%d") or (c == "." and src:find("^%.%d", i)) then
      local e = i
      while true do
        local _, e2 = src:find("^[%w_%.]*", e + 1)
        e = e2
        local last = src:sub(e, e):lower()
        local next_char = src:sub(e + 1, e + 1)
        local hex = src:find("^0[xX]", i)
        if (next_char == "+" or next_char == "-")
          and ((last == "e" and not hex) or last == "p") then
          e = e + 1
        else
          break
        end
      end
      push("number", i, e)
      i = e + 1
    else
      local three, two = src:sub(i, i + 2), src:sub(i, i + 1)
      local e = THREE[three] and i + 2 or TWO[two] and i + 1 or i
      push("op", i, e)
      i = e + 1
    end
  end
  return toks
end

-- Block openers and closers.  `while` and `for` open their block with `do`;
-- `if` opens with `if` itself (its `then` does not open another).
local OPEN = { ["function"] = true, ["do"] = true, ["if"] = true, ["repeat"] = true }
local CLOSE = { ["end"] = true, ["until"] = true }
local BRACKET_OPEN = { ["("] = true, ["{"] = true, ["["] = true }
local BRACKET_CLOSE = { [")"] = true, ["}"] = true, ["]"] = true }

-- code_tokens(src) -> the tokens of src without its comments (what parsers look at)
function M.code_tokens(src)
  local toks = {}
  for _, tok in ipairs(M.tokenize(src)) do
    if tok.type ~= "comment" then toks[#toks + 1] = tok end
  end
  return toks
end

-- Signed change of block depth for one token (keywords only).
function M.block_delta(tok)
  if tok.type ~= "keyword" then return 0 end
  if OPEN[tok.value] then return 1 end
  if CLOSE[tok.value] then return -1 end
  return 0
end

-- Signed change of nesting (blocks and brackets) for one token.
function M.nesting_delta(tok)
  if tok.type == "keyword" then return M.block_delta(tok) end
  if tok.type == "op" then
    if BRACKET_OPEN[tok.value] then return 1 end
    if BRACKET_CLOSE[tok.value] then return -1 end
  end
  return 0
end

-- Nesting depth at the end of src: open blocks plus open brackets.
function M.depth(src)
  local depth = 0
  for _, tok in ipairs(M.tokenize(src)) do
    depth = depth + M.nesting_delta(tok)
  end
  return depth < 0 and 0 or depth
end

-- Index of the token that closes the block opened by toks[i] (a `function`,
-- `if`, `do` or `repeat` keyword), or nil if the block is not closed.
function M.matching_close(toks, i)
  local depth = 0
  for j = i, #toks do
    local d = M.block_delta(toks[j])
    -- `while ... do` / `for ... do`: the `do` is the opener we count
    depth = depth + d
    if depth == 0 then return j end
  end
  return nil
end

return M
