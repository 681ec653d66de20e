-- The pretty printer for REPL results.
--
--   pretty.format(value, opts) -> string
--
-- Tables show their array part in order, then the other keys sorted (numbers,
-- then strings, then the rest); a table reached again on its own path prints
-- as <cycle>; nesting deeper than opts.depth prints as {…}; more than
-- opts.items entries end in "… (+N more)"; strings longer than opts.string_max
-- are cut with a note of their full length.  A table whose metatable has
-- __tostring prints through it (so sequence objects show as themselves).
-- Output fits opts.width columns where it can: short tables on one line,
-- longer ones one entry per line.

local M = {}

M.defaults = { depth = 4, items = 100, string_max = 200, width = 80, indent = 2 }

local lex = require("bioxen.shell.lex")

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

local TYPE_ORDER = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return (TYPE_ORDER[ta] or 9) < (TYPE_ORDER[tb] or 9)
      or ((TYPE_ORDER[ta] or 9) == (TYPE_ORDER[tb] or 9) and ta < tb)
  end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
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
    local ok, s = pcall(tostring, v)
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
  table.sort(keys, key_less)
  for _, k in ipairs(keys) do
    if shown >= opts.items then break end
    local ks = is_identifier(k) and k or ("[" .. render(k, opts, opts.depth, path) .. "]")
    add(ks .. " = " .. render(rawget(v, k), opts, level + 1, path))
    shown = shown + 1
  end
  local total = len + #keys
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
