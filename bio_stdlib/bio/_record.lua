--- bio._record: the metatable of every sequence record the readers make
-- (bio.fasta, bio.fastq, bio.genbank, bio.embl).  It adds `__tostring`,
-- so the REPL, `print` and `tostring` show a record as Biopython's
-- `str(record)` does (and `__repr`, Biopython's one-line repr(record), which the
-- REPL shows for a record inside a table); the record stays a plain table of
-- fields (no `__index`, `__eq`, `__len` or `__pairs`: `==`, `#`, `pairs` and
-- the wire codec see it as before).
--
--   ID: seq1
--   Name: seq1
--   Description: seq1 a test
--   Number of features: 0
--   Seq('ACGT')
--
-- Runs on Lua 5.1-5.4 and LuaJIT.

local format, concat, sort = string.format, table.concat, table.sort
local type, tostring, tonumber, pairs, ipairs, next, rawget, setmetatable =
  type, tostring, tonumber, pairs, ipairs, next, rawget, setmetatable
local floor, huge = math.floor, math.huge

local M = {}

-- Biopython's repr(Seq): long sequences cut to 54 letters, "...", the last 3.
local function seq_repr(seq)
  if #seq > 60 then seq = seq:sub(1, 54) .. "..." .. seq:sub(-3) end
  return "Seq('" .. seq .. "')"
end
M.seq_repr = seq_repr

-- A number as Python's str() shows it: integral values as ints, others in the
-- shortest form that reads back the same.
local function py_number(v)
  if v ~= v then return "nan" end
  if v == huge then return "inf" end
  if v == -huge then return "-inf" end
  if floor(v) == v and v > -2^53 and v < 2^53 then return format("%d", v) end
  local s
  for digits = 15, 17 do
    s = format("%." .. digits .. "g", v)
    if tonumber(s) == v then break end
  end
  if not s:find("[%.eni]") then s = s .. ".0" end
  return s
end

-- Python's repr() of a str: single quotes unless the text holds one and no double quote.
local function py_quote(s)
  local q = (s:find("'", 1, true) and not s:find('"', 1, true)) and '"' or "'"
  s = s:gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub("\t", "\\t"):gsub("\r", "\\r")
  if q == "'" then s = s:gsub("'", "\\'") end
  return q .. s .. q
end

local function is_list(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do if rawget(t, i) == nil then return false end end
  return true, n
end

-- A value as Python's str() shows the plain list, dict or scalar it would be
-- (dict keys sorted: Lua tables keep no order).
local function py_value(v, top)
  local t = type(v)
  if t == "string" then return top and v or py_quote(v) end
  if t == "number" then return py_number(v) end
  if t == "boolean" then return v and "True" or "False" end
  if t ~= "table" then return tostring(v) end
  local list, n = is_list(v)
  local parts = {}
  if list and (n > 0 or next(v) == nil) then
    for i = 1, n do parts[i] = py_value(v[i]) end
    return "[" .. concat(parts, ", ") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for i, k in ipairs(keys) do parts[i] = py_value(k) .. ": " .. py_value(v[k]) end
  return "{" .. concat(parts, ", ") .. "}"
end

-- An annotation's value; references as Biopython's Reference objects show themselves.
local function annotation(key, v)
  if key == "references" and type(v) == "table" and is_list(v) then
    local parts = {}
    for i = 1, #v do
      local title = type(v[i]) == "table" and v[i].title or ""
      parts[i] = "Reference(title=" .. py_quote(tostring(title)) .. ", ...)"
    end
    return "[" .. concat(parts, ", ") .. "]"
  end
  return py_value(v, true)
end

local function summary(rec, letters)
  local lines = {}
  local function add(s) lines[#lines + 1] = s end
  local id, name, description = rec.id, rec.name or rec.id, rec.description
  if id and id ~= "" then add("ID: " .. tostring(id)) end
  if name and name ~= "" then add("Name: " .. tostring(name)) end
  if description and description ~= "" then add("Description: " .. tostring(description)) end
  if type(rec.dbxrefs) == "table" and rec.dbxrefs[1] ~= nil then
    add("Database cross-references: " .. concat(rec.dbxrefs, ", "))
  end
  add(format("Number of features: %d", type(rec.features) == "table" and #rec.features or 0))
  if type(rec.annotations) == "table" then
    local keys = {}
    for k in pairs(rec.annotations) do keys[#keys + 1] = tostring(k) end
    sort(keys)
    for _, k in ipairs(keys) do add("/" .. k .. "=" .. annotation(k, rec.annotations[k])) end
  end
  if letters then add("Per letter annotation for: " .. letters) end
  if type(rec.seq) == "string" then
    add(seq_repr(rec.seq))
  elseif type(rec.length) == "number" then
    add(format("Undefined sequence of length %d", rec.length))
  else
    add("Missing Sequence (None)")
  end
  return concat(lines, "\n")
end

-- Biopython's repr(record), one line: how a record shows inside a table in the REPL
-- (bioxen.shell.pretty reads `__repr`), as Python shows a list of records.
local function repr(rec)
  local seq
  if type(rec.seq) == "string" then seq = seq_repr(rec.seq)
  elseif type(rec.length) == "number" then seq = format("Seq(None, length=%d)", rec.length)
  else seq = "None" end
  local function text(v) return v == nil and "None" or py_quote(tostring(v)) end
  return format("SeqRecord(seq=%s, id=%s, name=%s, description=%s, dbxrefs=%s)", seq, text(rec.id),
    text(rec.name or rec.id), text(rec.description), py_value(type(rec.dbxrefs) == "table" and rec.dbxrefs or {}))
end
M.repr = repr

-- One metatable per kind of per-letter annotation, all with the one __tostring.
local function metatable(letters)
  return { __name = "bio.record", __tostring = function(rec) return summary(rec, letters) end, __repr = repr }
end

M.RECORD = metatable(nil)                 -- FASTA, GenBank, EMBL
M.PHRED = metatable("phred_quality")      -- FASTQ, Sanger and Illumina 1.3+
M.SOLEXA = metatable("solexa_quality")    -- FASTQ, Solexa

--- Give `rec` the record metatable (`mt`: M.RECORD by default); returns it.
function M.record(rec, mt)
  return setmetatable(rec, mt or M.RECORD)
end

return M
