-- The pretty printer for REPL results.
--
--   pretty.format(value, opts) -> string
--
-- Tables show their array part in order, then the other keys sorted (numbers,
-- then strings, then the rest); a table reached again on its own path prints
-- as <cycle>; nesting deeper than opts.depth prints as {…}; more than
-- opts.items entries end in "… (+N more)"; strings longer than opts.string_max
-- are cut with a note of their full length.  A table whose metatable has
-- __tostring prints through it (so sequence objects show as themselves); inside a
-- table, through the metatable's __repr function when it has one (a one-line form).
-- Output fits opts.width columns where it can: short tables on one line,
-- longer ones one entry per line.

local M = {}

M.defaults = { depth = 4, items = 100, string_max = 200, width = 80, indent = 2 }

local lex = require("bioxen.runner.lex")

local ESCAPES = {
  ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
  ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\v"] = "\\v",
}

local function quote(s)
  return '"' .. s:gsub('[%c\\"]', function(c)
    return ESCAPES[c] or string.format("\\%03d", c:byte())
  end) .. '"'
end

function M.quote_string(s, max)
  max = max or M.defaults.string_max
  if #s <= max then return quote(s) end
  return quote(s:sub(1, max)) .. "… (" .. #s .. " bytes)"
end

local function is_identifier(k)
  return type(k) == "string" and k:find("^[%a_][%w_]*$") and not lex.KEYWORDS[k]
end

-- The `k` smallest values of a list of numbers or of strings, sorted.  Only
-- the first `items` keys of a table are shown, so a table with a million keys
-- needs one comparison per key, not a full sort (which took >1 s on Lua 5.4).
local function smallest(list, k)
  if #list <= 4 * k then
    table.sort(list)
    return list
  end
  local best = {}
  for i = 1, k do best[i] = list[i] end
  table.sort(best)
  local max = best[k]
  for i = k + 1, #list do
    local v = list[i]
    if v < max then
      local j = k - 1
      while j >= 1 and v < best[j] do
        best[j + 1] = best[j]
        j = j - 1
      end
      best[j + 1] = v
      max = best[k]
    end
  end
  return best
end

-- Up to `limit` keys in display order: numbers, then strings, then booleans
-- and the rest (by type name, then tostring).
local function sorted_keys(keys, limit)
  local numbers, strings, others = {}, {}, {}
  for _, k in ipairs(keys) do
    local tk = type(k)
    if tk == "number" then
      if k == k then numbers[#numbers + 1] = k else others[#others + 1] = k end -- NaN cannot sort
    elseif tk == "string" then
      strings[#strings + 1] = k
    else
      others[#others + 1] = k
    end
  end
  numbers = smallest(numbers, limit)
  strings = smallest(strings, limit)
  table.sort(others, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    return tostring(a) < tostring(b)
  end)
  local out, n = {}, 0
  for _, list in ipairs({ numbers, strings, others }) do
    for _, k in ipairs(list) do
      if n >= limit then return out end
      n = n + 1
      out[n] = k
    end
  end
  return out
end

local function has_tostring(t)
  local mt = getmetatable(t)
  return type(mt) == "table" and rawget(mt, "__tostring") ~= nil
end

local function scalar(v, opts)
  local tv = type(v)
  if tv == "string" then return M.quote_string(v, opts.string_max) end
  if tv == "number" then
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
  end
  local ok, s = pcall(tostring, v)
  return ok and tostring(s) or ("<" .. tv .. ">")
end

-- Render one value; `path` holds the tables on the current path (cycles).
local function render(v, opts, level, path)
  if type(v) ~= "table" then return scalar(v, opts) end
  if has_tostring(v) then
    -- Inside a table, an object may show its one-line form (`__repr`), as Python shows the
    -- items of a list by their repr; at the top, its __tostring.
    local repr = level > 0 and rawget(getmetatable(v), "__repr")
    local ok, s = pcall(type(repr) == "function" and repr or tostring, v)
    if ok and type(s) == "string" then return s end
  end
  if path[v] then return "<cycle: " .. tostring(v) .. ">" end
  if level >= opts.depth then
    return next(v) == nil and "{}" or "{…}"
  end
  path[v] = true

  local parts, n = {}, 0
  local len = 0
  while rawget(v, len + 1) ~= nil do len = len + 1 end
  local shown = 0
  local function add(s)
    n = n + 1
    parts[n] = s
  end
  for i = 1, len do
    if shown >= opts.items then break end
    add(render(rawget(v, i), opts, level + 1, path))
    shown = shown + 1
  end
  local keys = {}
  for k in next, v do
    if not (type(k) == "number" and k >= 1 and k <= len and k % 1 == 0) then
      keys[#keys + 1] = k
    end
  end
  local total = len + #keys
  keys = sorted_keys(keys, math.max(0, opts.items - shown))
  for _, k in ipairs(keys) do
    if shown >= opts.items then break end
    local ks = is_identifier(k) and k or ("[" .. render(k, opts, opts.depth, path) .. "]")
    add(ks .. " = " .. render(rawget(v, k), opts, level + 1, path))
    shown = shown + 1
  end
  if total > shown then add("… (+" .. (total - shown) .. " more)") end
  path[v] = nil

  if n == 0 then return "{}" end
  local one_line = "{" .. table.concat(parts, ", ") .. "}"
  local margin = level * opts.indent
  if #one_line + margin <= opts.width and not one_line:find("\n") then
    return one_line
  end
  local pad = (" "):rep((level + 1) * opts.indent)
  local lines = {}
  for i, p in ipairs(parts) do
    lines[i] = pad .. p .. (i < n and "," or "")
  end
  return "{\n" .. table.concat(lines, "\n") .. "\n" .. (" "):rep(margin) .. "}"
end

function M.format(value, opts)
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  return render(value, o, 0, {})
end

-- Format a value list (packed with n) the way the REPL shows results:
-- each value on its own, separated by tabs when they are all one-liners.
function M.format_values(values, opts)
  local out, multiline = {}, false
  for i = 1, values.n or #values do
    out[i] = M.format(values[i], opts)
    if out[i]:find("\n") then multiline = true end
  end
  return table.concat(out, multiline and "\n" or "\t")
end

return M
