--- bio._insdc_writer: GenBank and EMBL writers over the record shape of
-- bio.genbank / bio.embl (docs/bio/genbank-writing.md).
--
--   local W = require "bio._insdc_writer"
--   io.write(W.format_genbank(rec))                 -- one record as text
--   W.write_embl("out.embl", records)               -- a list, one record, or an iterator
--
-- The text is what Biopython 1.88's SeqIO.write(records, handle, "genbank")
-- / "embl" writes for the same records, byte for byte: the same header
-- wrapping at 80 columns, the same feature-table layout, qualifier quoting
-- and wrapping, the same sequence blocks.  Feature locations are written
-- from the record's location text (not re-derived from parsed positions);
-- a location longer than a line is wrapped at commas as Biopython wraps
-- its own.  Biopython's warnings (over-long keys, odd molecule types) are
-- not repeated; where Biopython raises, we raise.
local A = require "bio.alphabet"
local IO = require "bio._io"

local M = {}

local concat, sub, find, gsub, rep, format, byte = table.concat, string.sub, string.find, string.gsub, string.rep,
  string.format, string.byte
local floor = math.floor

local MAX_WIDTH = 80
local QUALIFIER_INDENT = 21

---------------------------------------------------------------------------
-- Errors: helpers raise a marked message; the public functions re-raise it
-- with their own name at their caller's line.
---------------------------------------------------------------------------

local Failure = {}

local function fail(fmt, ...)
  error(setmetatable({ msg = format(fmt, ...) }, Failure), 0)
end

-- Run fn(...) and return its result; a Failure becomes "<fname>: <msg>" at
-- `level` (counted from the caller of `guarded`'s caller, as error() does).
local function guarded(fname, level, fn, ...)
  local ok, res = pcall(fn, ...)
  if ok then return res end
  if getmetatable(res) == Failure then error(fname .. ": " .. res.msg, level + 1) end
  error(res, 0)
end

---------------------------------------------------------------------------
-- Python string semantics the writers rely on: str.strip()/split() (ASCII
-- whitespace and the separators \x1c-\x1f, as Python's str), and len()
-- counting characters of UTF-8 text rather than bytes.
---------------------------------------------------------------------------

local lstrip, strip, split_words = IO.lstrip, IO.strip, IO.words

-- Characters in UTF-8 text: the bytes that do not continue a character.
local function ulen(s)
  if not find(s, "[\128-\255]") then return #s end
  local _, cont = gsub(s, "[\128-\191]", "")
  return #s - cont
end

-- The first n characters of s (Python's s[:n]) and the rest (s[n:]).
local function usplit(s, n)
  if not find(s, "[\128-\255]") then return sub(s, 1, n), sub(s, n + 1) end
  local k = 0
  for p in s:gmatch("()[^\128-\191]") do
    if k == n then return sub(s, 1, p - 1), sub(s, p) end
    k = k + 1
  end
  return s, ""
end

-- The (0-based) character at index i of s, for Python's s[i].
local function uchar(s, i)
  if not find(s, "[\128-\255]") then return sub(s, i + 1, i + 1) end
  local _, rest = usplit(s, i)
  return rest:match("^[%z\1-\127\192-\255][\128-\191]*") or ""
end

local function ljust(s, n) local l = ulen(s); return l < n and s .. rep(" ", n - l) or s end
local function rjust(s, n) local l = ulen(s); return l < n and rep(" ", n - l) .. s or s end

local function startswith(s, prefix) return sub(s, 1, #prefix) == prefix end

local function isdigit(s) return s ~= "" and not find(s, "%D") end

-- Python's int(s) for a string, as a decimal string ("%i" of it), or nil
-- when int() would raise: surrounding whitespace, a sign, digits with
-- single underscores between them.
local function pyint(s)
  s = strip(s)
  local sign, body = s:match("^([+-]?)(.*)$")
  if body == "" or find(body, "[^%d_]") or find(body, "^_") or find(body, "_$") or find(body, "__", 1, true) then
    return nil
  end
  body = gsub(body, "_", ""):gsub("^0+", "")
  if body == "" then return "0" end
  return (sign == "-" and "-" or "") .. body
end

-- Python's str() of an annotation value (numbers as Python ints print).
local function pystr(v)
  if type(v) == "number" and v == floor(v) and math.abs(v) < 2 ^ 53 then return format("%d", v) end
  return tostring(v)
end

-- The items of a list annotation; a string is iterated by character, as
-- Python iterates a str given where a list was expected.
local function items(v)
  if type(v) == "table" then return v end
  local out = {}
  for ch in tostring(v):gmatch("[%z\1-\127\192-\255][\128-\191]*") do out[#out + 1] = ch end
  return out
end

local function join(v, sep)
  local parts = {}
  for i, x in ipairs(items(v)) do parts[i] = pystr(x) end
  return concat(parts, sep)
end

-- Pairs of a table in a fixed order: a list of {key, value} pairs keeps
-- its order; a map from the reader keeps the file's order (its metatable's
-- __order, see bio._insdc.put_in_order); other keys of a map (no order in
-- Lua) follow, sorted.
local function ordered_pairs(t)
  local out = {}
  if t[1] ~= nil then
    for i, kv in ipairs(t) do out[i] = kv end
    return out
  end
  local mt, seen = getmetatable(t), {}
  if type(mt) == "table" and type(mt.__order) == "table" then
    for _, k in ipairs(mt.__order) do
      if t[k] ~= nil and not seen[k] then out[#out + 1] = { k, t[k] }; seen[k] = true end
    end
  end
  local keys = {}
  for k in pairs(t) do if not seen[k] then keys[#keys + 1] = k end end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do out[#out + 1] = { k, t[k] } end
  return out
end

---------------------------------------------------------------------------
-- The record: checks, length, annotations
---------------------------------------------------------------------------

-- Name a record in messages by its id (or its position in the input).
local function record_label(rec, index)
  if type(rec.id) == "string" then return format("record '%s'", rec.id) end
  return format("record %d", index or 1)
end

local function check_feature(f, i, label)
  if type(f) ~= "table" then fail("%s feature %d: expected a feature table, got %s", label, i, type(f)) end
  if type(f.type) ~= "string" or f.type == "" then
    fail("%s feature %d: field 'type' must be a non-empty string, got %s", label, i, type(f.type))
  end
  if type(f.location) ~= "string" or f.location == "" then
    fail("%s feature %d (%s): field 'location' must be a non-empty string, got %s", label, i, f.type, type(f.location))
  end
  local q = f.qualifiers
  if q == nil then return end
  if type(q) ~= "table" then fail("%s feature %d (%s): field 'qualifiers' must be a table, got %s", label, i, f.type, type(q)) end
  for key, values in pairs(q) do
    local ok = type(values) == "table"
    if ok then for _, v in ipairs(values) do if type(v) ~= "string" then ok = false end end end
    if not ok then
      fail("%s feature %d (%s) qualifier '%s': the value must be a list of strings, got %s", label, i, f.type,
        tostring(key), type(values) == "table" and "a list holding a non-string" or type(values))
    end
  end
end

-- Debian's stock LuaJIT (2.1.0-beta3) crashes (SIGSEGV, about one run in
-- six, as addresses fall) on traces it compiles through this function when
-- it runs over many records; turning the JIT off for it alone stops that,
-- and costs nothing measurable (it runs once per feature).  Found by
-- tests/bio/test_insdc_writer.py's generated records.
local jit_lib = rawget(_G, "jit") -- absent on PUC Lua; a sandbox may keep only part of it
if type(jit_lib) == "table" and type(jit_lib.off) == "function" then jit_lib.off(check_feature) end

-- Check what the writers index into; returns the record's length.
local function check_record(rec, index)
  if type(rec) ~= "table" then fail("record %d: expected a record table, got %s", index or 1, type(rec)) end
  local label = record_label(rec, index)
  local seq = rec.seq
  if seq ~= nil and type(seq) ~= "string" then fail("%s: field 'seq' must be a string, got %s", label, type(seq)) end
  local length = seq and #seq or rec.length
  if type(length) ~= "number" or length < 0 or floor(length) ~= length then
    fail("%s: has neither 'seq' (a string) nor 'length' (an integer)", label)
  end
  if rec.annotations ~= nil and type(rec.annotations) ~= "table" then
    fail("%s: field 'annotations' must be a table, got %s", label, type(rec.annotations))
  end
  if rec.features ~= nil and type(rec.features) ~= "table" then
    fail("%s: field 'features' must be a list, got %s", label, type(rec.features))
  end
  for i, f in ipairs(rec.features or {}) do check_feature(f, i, label) end
  return length
end

-- SeqRecord defaults for fields the record leaves out.
local function id_of(rec) return rec.id or "<unknown id>" end
local function name_of(rec) return rec.name or "<unknown name>" end
local function description_of(rec) return rec.description or "<unknown description>" end

-- Biopython's _get_annotation_str: the annotation as text; of a list,
-- the first item (just_first) or the only one.
local function annotation_str(rec, key, default, just_first)
  local v = rec.annotations and rec.annotations[key]
  if v == nil then return default end
  if type(v) == "table" then
    if #v == 0 or (not just_first and #v ~= 1) then fail("%s: annotation '%s' must hold one value", record_label(rec), key) end
    return pystr(v[1])
  end
  return pystr(v)
end

local function annotation(rec, key) return rec.annotations and rec.annotations[key] end

---------------------------------------------------------------------------
-- Text wrapping shared by both formats
---------------------------------------------------------------------------

-- Biopython's _split_multi_line: words packed into lines of at most
-- max_len characters; a longer word gets a line of its own.  (A first word
-- of max_len characters or more leaves the first line empty, as there.)
local function split_multi_line(text, max_len)
  text = strip(text)
  if ulen(text) <= max_len then return { text } end
  local words, i = split_words(text), 1
  local line = ""
  while words[i] and ulen(line) + 1 + ulen(words[i]) <= max_len do
    line = line == "" and words[i] or line .. " " .. words[i]
    i = i + 1
  end
  local out = { line }
  while words[i] do
    line = words[i]
    i = i + 1
    while words[i] and ulen(line) + 1 + ulen(words[i]) <= max_len do
      line = line .. " " .. words[i]
      i = i + 1
    end
    out[#out + 1] = line
  end
  return out
end

-- A location longer than a line breaks after the last comma that fits;
-- one with no comma there stays whole.
local function wrap_location(location, indent)
  local width = MAX_WIDTH - QUALIFIER_INDENT
  local lines = {}
  while #location > width do
    local head = sub(location, 1, width)
    local comma = head:match(".*(),")
    if not comma then break end
    lines[#lines + 1] = sub(location, 1, comma)
    location = sub(location, comma + 1)
  end
  lines[#lines + 1] = location
  return concat(lines, "\n" .. indent)
end

-- Qualifiers Biopython writes without quotes.
local NO_QUOTE = {}
for _, k in ipairs({ "anticodon", "citation", "codon_start", "compare", "direction", "estimated_length", "mod_base",
  "number", "rpt_type", "rpt_unit_range", "tag_peptide", "transl_except", "transl_table" }) do
  NO_QUOTE[k] = true
end

-- Where Biopython breaks an over-long qualifier line: the last space at
-- (0-based) index 23..80, else index 80.  Plain byte offsets for ASCII
-- text (the usual case, and fast for long /translation values).
local function break_index(line, n, ascii)
  local last = math.min(n - 1, MAX_WIDTH)
  if ascii then
    local p = sub(line, QUALIFIER_INDENT + 3, last + 1):match("^.*() ") -- anchored: one pass
    return p and QUALIFIER_INDENT + 1 + p or MAX_WIDTH
  end
  for i = last, QUALIFIER_INDENT + 2, -1 do
    if uchar(line, i) == " " then return i end
  end
  return MAX_WIDTH
end

-- One /key=value line, wrapped at the last space that keeps a line within
-- 80 columns, or at column 80 when there is none (e.g. /translation).
local function write_qualifier(out, indent, key, value)
  value = gsub(value, '"', '""')
  local line = NO_QUOTE[key] and format("%s/%s=%s", indent, key, value) or format('%s/%s="%s"', indent, key, value)
  local ascii = not find(line, "[\128-\255]")
  while lstrip(line) ~= "" do
    local n = ascii and #line or ulen(line)
    if n <= MAX_WIDTH then out[#out + 1] = line; return end
    local index = break_index(line, n, ascii)
    local head, rest
    if ascii then head, rest = sub(line, 1, index), sub(line, index + 1) else head, rest = usplit(line, index) end
    out[#out + 1] = head
    line = indent .. lstrip(rest)
  end
end

-- The qualifier names in writing order: qualifier_names (file order), then
-- any other keys, sorted.
local function qualifier_order(f)
  local q, names, seen = f.qualifiers or {}, {}, {}
  for _, k in ipairs(f.qualifier_names or {}) do
    if q[k] ~= nil and not seen[k] then names[#names + 1] = k; seen[k] = true end
  end
  local extra = {}
  for k in pairs(q) do if not seen[k] then extra[#extra + 1] = k end end
  table.sort(extra)
  for _, k in ipairs(extra) do names[#names + 1] = k end
  return names
end

-- A feature: key at column 6, location from column 22, then qualifiers.
-- `prefix` is "" (GenBank) or "FT" (EMBL); it fills the first columns.
local function write_feature(out, f, prefix)
  local indent = prefix .. rep(" ", QUALIFIER_INDENT - #prefix)
  local key = gsub(f.type, " ", "_")
  local lead = sub(prefix .. rep(" ", 5 - #prefix) .. key .. rep(" ", 16), 1, QUALIFIER_INDENT)
  out[#out + 1] = lead .. wrap_location(f.location, indent)
  for _, k in ipairs(qualifier_order(f)) do
    for _, v in ipairs(f.qualifiers[k]) do write_qualifier(out, indent, k, v) end
  end
end

-- The contig annotation as lines of at most max_len, broken after commas.
local function split_contig(rec, max_len)
  local contig = annotation(rec, "contig") or ""
  if type(contig) == "table" then contig = concat(contig) end
  contig = gsub(contig, "[\r\n]", " ")
  local lines = {}
  while contig ~= "" do
    if ulen(contig) > max_len then
      local head = usplit(contig, max_len - 1)
      local comma = head:match(".*(),")
      if not comma then fail("%s: could not break up CONTIG", record_label(rec)) end
      lines[#lines + 1] = sub(contig, 1, comma)
      contig = sub(contig, comma + 1)
    else
      lines[#lines + 1] = contig
      contig = ""
    end
  end
  return lines
end

-- The comment annotation as a list of lines.
local function comment_lines(rec)
  local c = annotation(rec, "comment")
  if type(c) == "string" then
    local lines = {}
    for line in (c .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
    return lines
  elseif type(c) == "table" then
    local lines = {}
    for i, line in ipairs(c) do lines[i] = pystr(line) end
    return lines
  end
  fail("%s: could not understand the comment annotation (%s)", record_label(rec), type(c))
end

---------------------------------------------------------------------------
-- GenBank
---------------------------------------------------------------------------

local GB_HEADER = 12

local function gb_line(out, tag, text)
  out[#out + 1] = ljust(tag, GB_HEADER) .. gsub(text, "\n", " ")
end

local function gb_multi_line(out, tag, text)
  local lines = split_multi_line(text, MAX_WIDTH - GB_HEADER)
  gb_line(out, tag, lines[1])
  for i = 2, #lines do gb_line(out, "", lines[i]) end
end

local MONTHS = { "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC" }
local MONTH_NUMBER = {}
for i, m in ipairs(MONTHS) do MONTH_NUMBER[m] = i end

-- DD-MMM-YYYY if it names a real day, else Biopython's default date.
local function gb_date(rec)
  local default = "01-JAN-1980"
  local d = annotation(rec, "date")
  if d == nil then return default end
  if type(d) == "table" and #d == 1 then d = d[1] end
  if type(d) ~= "string" or ulen(d) ~= 11 then return default end
  local year, month, day = tonumber(pyint(sub(d, -4)) or ""), MONTH_NUMBER[sub(d, 4, 6)], tonumber(pyint(sub(d, 1, 2)) or "")
  if not (year and month and day) or year < 1 or year > 9999 or day < 1 then return default end
  local leap = (year % 4 == 0 and year % 100 ~= 0) or year % 400 == 0
  local days = ({ 31, leap and 29 or 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 })[month]
  if day > days then return default end
  return d
end

local GB_DIVISIONS = {}
for _, d in ipairs({ "PRI", "ROD", "MAM", "VRT", "INV", "PLN", "BCT", "VRL", "PHG", "SYN", "UNA", "EST", "PAT", "STS",
  "GSS", "HTG", "HTC", "ENV", "CON", "TSA" }) do
  GB_DIVISIONS[d] = d
end
local EMBL_TO_GB = { FUN = "PLN", HUM = "PRI", MUS = "ROD", PRO = "BCT", UNC = "UNK", XXX = "UNK" }

local function gb_division(rec)
  local d = annotation(rec, "data_file_division")
  if d == nil then return "UNK" end
  return GB_DIVISIONS[d] or EMBL_TO_GB[d] or "UNK"
end

-- The LOCUS line's fixed columns, checked as Biopython checks them.
local function check_locus_columns(line)
  local function col(i, j) return sub(line, i + 1, j) end
  local checks = {
    { col(40, 44) == " bp " or col(40, 44) == " aa ", "does not contain size units at expected position" },
    { ({ ["   "] = 1, ["ss-"] = 1, ["ds-"] = 1, ["ms-"] = 1 })[col(44, 47)], "does not have valid strand type (Single stranded, ...)" },
    { strip(col(47, 54)) == "" or find(col(47, 54):upper(), "[DR]NA"), "does not contain valid sequence type (DNA, RNA, ...)" },
    { col(54, 55) == " ", "does not contain space at position 55" },
    { ({ [""] = 1, linear = 1, circular = 1 })[strip(col(55, 63))], "does not contain valid entry (linear, circular, ...)" },
    { col(63, 64) == " ", "does not contain space at position 64" },
    { col(67, 68) == " ", "does not contain space at position 68" },
    { col(70, 71) == "-", "does not contain - at position 71 in date" },
    { col(74, 75) == "-", "does not contain - at position 75 in date" },
  }
  for _, c in ipairs(checks) do
    if not c[1] then fail("LOCUS line %s: %q", c[2], line) end
  end
end

local function gb_locus(out, rec, length)
  local locus = name_of(rec)
  if locus == "" or locus == "<unknown name>" then locus = id_of(rec) end
  if locus == "" or locus == "<unknown id>" then locus = annotation_str(rec, "accession", ".", true) end
  if #split_words(locus) > 1 then fail("invalid whitespace in %q for LOCUS line", locus) end
  local mol_type = annotation_str(rec, "molecule_type", nil)
  if mol_type == nil then fail("%s: missing molecule_type in annotations", record_label(rec)) end
  if ulen(mol_type) > 7 then
    mol_type = gsub(gsub(mol_type, "unassigned ", ""), "genomic ", "")
    if ulen(mol_type) > 7 then mol_type = "DNA" end
  end
  if mol_type == "protein" or mol_type == "PROTEIN" then mol_type = "" end
  local units = mol_type == "" and "aa" or "bp"
  local topology = annotation_str(rec, "topology", "")
  topology = (topology ~= "" and ulen(topology) <= 8) and ljust(topology, 8) or rep(" ", 8)
  local size = format("%d", length)
  local name_length
  if #locus > 16 and #size > 11 - (#locus - 16) then
    name_length = locus .. " " .. size -- a long name pushes the later fields right
  else
    name_length = locus .. sub(rjust(size, 28), #locus + 1)
    if not find(name_length, " ", 1, true) then fail("LOCUS name and length do not fit: %q", name_length) end
  end
  local line = format("LOCUS       %s %s    %s %s %s %s", name_length, units, ljust(mol_type, 7), topology,
    gb_division(rec), gb_date(rec))
  if ulen(line) > 79 then
    local w = split_words(line)
    if w[4] ~= "bp" and w[4] ~= "aa" then fail("LOCUS line does not contain size units at expected position: %q", line) end
    if not (w[4] == "aa" or find((w[5] or ""):upper(), "[DR]NA")) then
      fail("LOCUS line does not contain valid sequence type (DNA, RNA, ...): %q", line)
    end
  else
    check_locus_columns(line)
  end
  out[#out + 1] = line
end

local function gb_references(out, rec)
  local number = 0
  local mol = annotation(rec, "molecule_type")
  local units = (type(mol) == "string" and find(mol, "protein", 1, true)) and "residues" or "bases"
  for _, ref in ipairs(annotation(rec, "references")) do
    number = number + 1
    local data = format("%d", number)
    local loc = ref.location
    if type(loc) == "table" and #loc == 1 then
      data = data .. format("  (%s %d to %d)", units, loc[1].start, loc[1].stop)
    end
    gb_line(out, "REFERENCE", data)
    for _, field in ipairs({ { "authors", "  AUTHORS" }, { "consrtm", "  CONSRTM" }, { "title", "  TITLE" },
      { "journal", "  JOURNAL" }, { "medline_id", "  MEDLINE" }, { "pubmed_id", "   PUBMED" }, { "comment", "  REMARK" } }) do
      local v = ref[field[1]]
      if v ~= nil and v ~= "" then gb_multi_line(out, field[2], pystr(v)) end
    end
  end
end

-- Structured comments first (##Name-START## / key :: value / ##Name-END##,
-- keys padded to the longest), then the free comment's lines.
local function gb_comment(out, rec)
  local lines = {}
  local sc = annotation(rec, "structured_comment")
  if sc ~= nil then
    local sections, padding = ordered_pairs(sc), 0
    for _, s in ipairs(sections) do
      s[2] = ordered_pairs(s[2])
      for _, kv in ipairs(s[2]) do padding = math.max(padding, ulen(kv[1])) end
    end
    for _, s in ipairs(sections) do
      lines[#lines + 1] = "##" .. s[1] .. "-START##"
      for _, kv in ipairs(s[2]) do
        lines[#lines + 1] = kv[1] .. rep(" ", padding - ulen(kv[1])) .. " :: " .. pystr(kv[2])
      end
      lines[#lines + 1] = "##" .. s[1] .. "-END##"
    end
  end
  if annotation(rec, "comment") ~= nil then
    for _, line in ipairs(comment_lines(rec)) do lines[#lines + 1] = line end
  end
  if #lines == 0 then fail("%s: the comment annotation is empty", record_label(rec)) end
  gb_multi_line(out, "COMMENT", lines[1])
  for i = 2, #lines do gb_multi_line(out, "", lines[i]) end
end

-- The six 10-base blocks of the sequence line that starts at i (the last
-- ones empty past the end).
local function line_blocks(seq, i)
  return sub(seq, i, i + 9), sub(seq, i + 10, i + 19), sub(seq, i + 20, i + 29), sub(seq, i + 30, i + 39),
    sub(seq, i + 40, i + 49), sub(seq, i + 50, i + 59)
end

-- ORIGIN and lines of "%9d" then six 10-base blocks; a record without a
-- sequence gets its CONTIG lines, or a bare ORIGIN line.
local function gb_sequence(out, rec)
  local seq = rec.seq
  if seq == nil then
    if annotation(rec, "contig") ~= nil then
      local lines = split_contig(rec, MAX_WIDTH - GB_HEADER)
      gb_line(out, "CONTIG", lines[1])
      for i = 2, #lines do gb_line(out, "", lines[i]) end
    else
      out[#out + 1] = "ORIGIN"
    end
    return
  end
  seq = seq:lower()
  out[#out + 1] = "ORIGIN"
  local n = #seq
  local full = n - n % 60
  for i = 1, full, 60 do out[#out + 1] = format("%9d %s %s %s %s %s %s", i, line_blocks(seq, i)) end
  if full < n then -- the last line: only the blocks that hold bases
    local blocks = { format("%9d", full + 1) }
    for j = full + 1, n, 10 do blocks[#blocks + 1] = sub(seq, j, j + 9) end
    out[#out + 1] = concat(blocks, " ")
  end
end

-- The ACCESSION (and VERSION) Biopython derives from the id: "X.1" gives
-- X and X.1; an annotation 'accession' overrides the first.
local function gb_accession(rec)
  local id = id_of(rec)
  local default = id
  local before, after = id:match("^([^.]*)%.(.*)$")
  if before and not find(after, ".", 1, true) and isdigit(after) then default = before end
  local accession = annotation_str(rec, "accession", default, true)
  local with_version = accession
  if startswith(id, accession .. ".") then
    local v = pyint(id:match("^[^.]*%.(.*)$"))
    if v then with_version = accession .. "." .. v end
  end
  return accession, with_version
end

local function gb_record(out, rec, length)
  gb_locus(out, rec, length)
  local accession, with_version = gb_accession(rec)
  local gi = annotation_str(rec, "gi", ".", true)
  local descr = description_of(rec)
  if descr == "<unknown description>" then descr = "" end
  gb_multi_line(out, "DEFINITION", descr .. ".")
  gb_line(out, "ACCESSION", accession)
  gb_line(out, "VERSION", gi ~= "." and with_version .. "  GI:" .. gi or with_version)
  for i, x in ipairs(rec.dbxrefs or {}) do
    if not find(x, ": ", 1, true) then x = gsub(x, ":", ": ") end
    gb_line(out, i == 1 and "DBLINK" or "", x)
  end
  local keywords = annotation(rec, "keywords")
  keywords = keywords ~= nil and join(keywords, "; ") or "."
  if sub(keywords, -1) ~= "." then keywords = keywords .. "." end
  gb_multi_line(out, "KEYWORDS", keywords)
  if annotation(rec, "segment") ~= nil then gb_line(out, "SEGMENT", annotation_str(rec, "segment", nil)) end
  gb_multi_line(out, "SOURCE", annotation_str(rec, "source", "."))
  -- ORGANISM must stay on one line: a continuation would read as taxonomy
  local org = annotation_str(rec, "organism", ".")
  if ulen(org) > MAX_WIDTH - GB_HEADER then org = usplit(org, MAX_WIDTH - GB_HEADER - 4) .. "..." end
  gb_line(out, "  ORGANISM", org)
  local taxonomy = annotation(rec, "taxonomy")
  taxonomy = taxonomy ~= nil and join(taxonomy, "; ") or "."
  if sub(taxonomy, -1) ~= "." then taxonomy = taxonomy .. "." end
  gb_multi_line(out, "", taxonomy)
  if annotation(rec, "db_source") ~= nil then gb_line(out, "DBSOURCE", annotation_str(rec, "db_source", nil, true)) end
  if annotation(rec, "references") ~= nil then gb_references(out, rec) end
  if annotation(rec, "comment") ~= nil or annotation(rec, "structured_comment") ~= nil then gb_comment(out, rec) end
  out[#out + 1] = "FEATURES             Location/Qualifiers"
  for _, f in ipairs(rec.features or {}) do write_feature(out, f, "") end
  gb_sequence(out, rec)
  out[#out + 1] = "//"
end

---------------------------------------------------------------------------
-- EMBL
---------------------------------------------------------------------------

local EMBL_HEADER = 5

local function embl_line(out, tag, text) out[#out + 1] = tag .. "   " .. text end

local function embl_multi_line(out, tag, text)
  for _, line in ipairs(split_multi_line(text, MAX_WIDTH - EMBL_HEADER)) do embl_line(out, tag, line) end
end

local EMBL_DIVISIONS = {}
for _, d in ipairs({ "PHG", "ENV", "FUN", "HUM", "INV", "MAM", "VRT", "MUS", "PLN", "PRO", "ROD", "SYN", "TGN", "UNC",
  "VRL", "XXX" }) do
  EMBL_DIVISIONS[d] = d
end
local GB_TO_EMBL = { BCT = "PRO", UNK = "UNC" }

local function embl_division(rec)
  local d = annotation(rec, "data_file_division")
  if d == nil then return "UNC" end
  return EMBL_DIVISIONS[d] or GB_TO_EMBL[d] or "UNC"
end

-- ID and AC: the accession and SV version come from the id ("X.1").
local function embl_first_lines(out, rec, length)
  local id = id_of(rec)
  local before, after = id:match("^(.*)%.([^.]*)$")
  local version, accession = "", nil
  if before and isdigit(after) then
    version = "SV " .. after
    accession = annotation_str(rec, "accession", before, true)
  else
    accession = annotation_str(rec, "accession", id, true)
  end
  if find(accession, ";", 1, true) then fail("cannot have semi-colon in EMBL accession, '%s'", accession) end
  if find(accession, " ", 1, true) then fail("cannot have spaces in EMBL accession, '%s'", accession) end
  local topology = annotation_str(rec, "topology", "")
  local mol_type = annotation(rec, "molecule_type")
  if mol_type == nil then fail("%s: missing molecule_type in annotations", record_label(rec)) end
  mol_type = pystr(mol_type)
  local upper, units = mol_type:upper(), nil
  if find(upper, "DNA", 1, true) or find(upper, "RNA", 1, true) then
    units = "BP"
  elseif find(upper, "PROTEIN", 1, true) then
    mol_type, units = "PROTEIN", "AA"
  else
    fail("%s: failed to understand molecule_type '%s'", record_label(rec), mol_type)
  end
  embl_line(out, "ID", format("%s; %s; %s; %s; ; %s; %d %s.", accession, version, topology, mol_type,
    embl_division(rec), length, units))
  out[#out + 1] = "XX"
  embl_line(out, "AC", accession .. ";")
  out[#out + 1] = "XX"
end

-- PR: the first BioProject (else Project) cross-reference, in sorted order.
local function embl_project(out, rec)
  local xrefs = {}
  for i, x in ipairs(rec.dbxrefs or {}) do xrefs[i] = x end
  table.sort(xrefs)
  for _, x in ipairs(xrefs) do
    if startswith(x, "BioProject:") or startswith(x, "Project:") then
      embl_line(out, "PR", (startswith(x, "Bio") and sub(x, 4) or x) .. ";")
      out[#out + 1] = "XX"
      return
    end
  end
end

local function embl_references(out, rec)
  for number, ref in ipairs(annotation(rec, "references")) do
    embl_line(out, "RN", format("[%d]", number))
    local loc = ref.location
    if type(loc) == "table" and #loc == 1 then embl_line(out, "RP", format("%d-%d", loc[1].start, loc[1].stop)) end
    local function has(k) return ref[k] ~= nil and ref[k] ~= "" end
    if has("pubmed_id") then embl_line(out, "RX", "PUBMED; " .. pystr(ref.pubmed_id) .. ".") end
    if has("consrtm") then embl_line(out, "RG", pystr(ref.consrtm)) end
    if has("authors") then embl_multi_line(out, "RA", pystr(ref.authors) .. ";") end
    if has("title") then embl_multi_line(out, "RT", '"' .. pystr(ref.title) .. '";') end
    if has("journal") then embl_multi_line(out, "RL", pystr(ref.journal)) end
    out[#out + 1] = "XX"
  end
end

-- SQ with base counts (DNA) and lines of six 10-base blocks, the position
-- right-justified at the end; CO lines for a record without a sequence.
local function embl_sequence(out, rec)
  local seq = rec.seq
  if seq == nil then
    if annotation(rec, "contig") ~= nil then
      for _, text in ipairs(split_contig(rec, MAX_WIDTH - EMBL_HEADER)) do embl_line(out, "CO", text) end
    else
      out[#out + 1] = "SQ   "
    end
    return
  end
  seq = seq:lower()
  local n = #seq
  local mol = annotation(rec, "molecule_type")
  if mol ~= nil and find(pystr(mol), "DNA", 1, true) then
    local function count(c) return n - #gsub(seq, c .. "+", "") end -- runs at a time: fewer matches
    local a, c, g, t = count("a"), count("c"), count("g"), count("t")
    out[#out + 1] = format("SQ   Sequence %d BP; %d A; %d C; %d G; %d T; %d other;", n, a, c, g, t, n - (a + c + g + t))
  else
    out[#out + 1] = "SQ   "
  end
  local full = n - n % 60
  for i = 1, full, 60 do
    local a, b, c, d, e, f = line_blocks(seq, i)
    out[#out + 1] = format("     %s %s %s %s %s %s%10d", a, b, c, d, e, f, i + 59)
  end
  if full < n then -- the last line: blocks padded to their full width
    local a, b, c, d, e, f = line_blocks(seq, full + 1)
    out[#out + 1] = format("     %-10s %-10s %-10s %-10s %-10s %-10s%10d", a, b, c, d, e, f, n)
  end
end

local function embl_record(out, rec, length)
  embl_first_lines(out, rec, length)
  embl_project(out, rec)
  local descr = description_of(rec)
  if descr == "<unknown description>" then descr = "." end
  embl_multi_line(out, "DE", descr)
  out[#out + 1] = "XX"
  local keywords = annotation(rec, "keywords")
  if keywords ~= nil then
    for _, k in ipairs(items(keywords)) do embl_line(out, "KW", pystr(k)) end
    out[#out + 1] = "XX"
  end
  embl_multi_line(out, "OS", annotation_str(rec, "organism", "."))
  local taxonomy = annotation(rec, "taxonomy")
  embl_multi_line(out, "OC", taxonomy ~= nil and join(taxonomy, "; ") .. "." or ".")
  out[#out + 1] = "XX"
  if annotation(rec, "references") ~= nil then embl_references(out, rec) end
  if annotation(rec, "comment") ~= nil then
    local lines = comment_lines(rec)
    if #lines > 0 then
      for _, line in ipairs(lines) do embl_multi_line(out, "CC", line) end
      out[#out + 1] = "XX"
    end
  end
  out[#out + 1] = "FH   Key             Location/Qualifiers"
  out[#out + 1] = "FH"
  for _, f in ipairs(rec.features or {}) do write_feature(out, f, "FT") end
  out[#out + 1] = "XX"
  embl_sequence(out, rec)
  out[#out + 1] = "//"
end

---------------------------------------------------------------------------
-- Public functions
---------------------------------------------------------------------------

local function render(body, rec, index)
  local length = check_record(rec, index)
  local out = {}
  body(out, rec, length)
  out[#out + 1] = ""
  return concat(out, "\n")
end

-- A single record (a table with record fields and no list part) is
-- written as a list of one; IO.each only recognises one that has `seq`.
local function each(records, fname, pos)
  if type(records) == "table" and records[1] == nil
    and (records.seq ~= nil or records.length ~= nil or records.id ~= nil or records.features ~= nil) then
    records = { records }
  end
  return IO.each(records, fname, pos)
end

local function to_string(body, next_record)
  local parts = {}
  for rec in next_record do parts[#parts + 1] = render(body, rec, #parts + 1) end
  return concat(parts)
end

-- Write each record through emit(); a Failure is raised at the user's line.
local function write(body, fname, emit, close, next_record)
  local n = 0
  local ok, err = pcall(function()
    for rec in next_record do
      n = n + 1
      emit(render(body, rec, n))
    end
  end)
  close()
  if not ok then
    if getmetatable(err) == Failure then A.raise(fname .. ": " .. err.msg, 2) end
    error(err, 0)
  end
  return n
end

-- Each public function names itself in errors and raises them at the
-- caller's line (level 2 from here; no tail calls, so the frame counts).
-- `prefix` is the name users call them by: bio.genbank's format, write and
-- to_string are these functions made with prefix "bio.genbank".
local function functions(body, prefix)
  local fmt, str, wr = prefix .. ".format", prefix .. ".to_string", prefix .. ".write"
  local fns = {}
  function fns.format(rec)
    local s = guarded(fmt, 2, render, body, rec)
    return s
  end
  -- The records argument is checked before any output is made (and outside
  -- the pcall that turns Failures into errors, so its error names the caller).
  function fns.to_string(records)
    local s = guarded(str, 2, to_string, body, each(records, str, 1))
    return s
  end
  function fns.write(dest, records, opts)
    A.check_options(opts, {}, wr, 3)
    local next_record = each(records, wr, 2)
    local emit, close = IO.open_dest(dest, wr)
    local n = write(body, wr, emit, close, next_record)
    return n
  end
  return fns
end

local BODIES = { genbank = gb_record, embl = embl_record }

--- The writer functions of one format ("genbank" or "embl"), with errors
-- named after `prefix` (the module users call: "bio.genbank", "bio.embl"):
-- {format = (record) -> text, to_string = (records) -> text,
--  write = (dest, records) -> number written}.  dest: a path or an open
-- file; records: a list, one record, or an iterator such as
-- bio.genbank.records(...).
function M.functions(format, prefix)
  return functions(assert(BODIES[format], "unknown format"), prefix)
end

--- format_genbank(record), to_string_genbank(records), write_genbank(dest,
-- records); format_embl, to_string_embl, write_embl: the same, named after
-- this module.
for format, body in pairs(BODIES) do
  local fns = functions(body, "bio._insdc_writer")
  M["format_" .. format], M["to_string_" .. format], M["write_" .. format] = fns.format, fns.to_string, fns.write
end

return M
