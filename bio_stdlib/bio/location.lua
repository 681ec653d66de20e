--- bio.location: INSDC feature locations (GenBank, EMBL, DDBJ).
--
-- parse(text [, opts])    -> {operator = "join"|"order"|"bond"|nil, parts = {part, ...}}
-- extract(feature_or_location, seq [, opts]) -> the feature's sequence
-- format(parsed [, opts]) -> INSDC text, as Biopython's GenBank/EMBL writer writes it
--
-- Semantics follow Biopython 1.88 exactly: parse mirrors what Bio.GenBank's
-- feature consumer does with a location line (all whitespace removed, the
-- old `replace(...)` form reduced to its position, then
-- Bio.SeqFeature.Location.fromstring with the record's length, topology and
-- strandedness), quirks included: the parts of a join are found by the same
-- scan as Biopython's splitting regex (so stray commas are ignored and a
-- one-part join is a plain location), and a missing closing bracket after
-- join( is not an error.  docs/bio/location.md is the reference page.
--
-- A part keeps its coordinates 1-based and inclusive, as written; Biopython's
-- 0-based half-open slice of a part is [start - 1 : stop], except for a
-- between position (`between = true`, written start^stop), which is the
-- empty slice [start : start].
local A = require "bio.alphabet"
local S = require "bio.seq"

local M = {}

local find, sub, format = string.find, string.sub, string.format

-- Raised inside the parser and turned into a message at the caller's line by
-- parse_at: the functions in between need no level arithmetic.
local function bad(why)
  error({ bad_location = why }, 0)
end

-- Python's int(text) for the ASCII text a location holds: optional sign,
-- digits with single underscores between them (int("1_0") is 10).
local function py_int(text)
  local sign, body = text:match("^([+-]?)([%d_]+)$")
  if not body or find(body, "^_") or find(body, "_$") or find(body, "__", 1, true) then return nil end
  local n = tonumber((body:gsub("_", "")))
  if sign == "-" then n = 0 - n end
  return n
end

-- text split on `sep` into exactly two pieces (Python's `a, b = text.split(sep)`), else nil.
local function split2(text, sep)
  local i, j = find(text, sep, 1, true)
  if not i or find(text, sep, j + 1, true) then return nil end
  return sub(text, 1, i - 1), sub(text, j + 1)
end

---------------------------------------------------------------------------
-- Positions
---------------------------------------------------------------------------

-- A position is {v = Biopython's integer value (0-based for a start),
-- partial = "<"|">"|nil, within = {a, b}|nil, one_of = {...}|nil}; the
-- within/one_of numbers are kept as written.

local function exact(v) return { v = v } end

-- Bio.SeqFeature.Position.fromstring(text, offset): offset -1 for a start.
local function position(text, offset)
  local c = sub(text, 1, 1)
  if c == "<" or c == ">" then
    local n = py_int(sub(text, 2))
    if not n then bad("bad position '" .. text .. "'") end
    return { v = n + offset, partial = c }
  end
  local a, b = text:match("^%((%d+)%.(%d+)%)")
  if a then
    a, b = tonumber(a), tonumber(b)
    return { v = (offset == -1 and a or b) + offset, within = { a, b } }
  end
  local list = text:match("^one%-of%((%d[%d,+]+)%)")
  if list then
    local choices, best = {}, nil
    for piece in (list .. ","):gmatch("([^,]*),") do
      local n = py_int(piece)
      if not n or find(piece, "_", 1, true) then bad("bad one-of position '" .. text .. "'") end
      choices[#choices + 1] = n
      if not best or (offset == -1 and n < best) or (offset == 0 and n > best) then best = n end
    end
    return { v = best + offset, one_of = choices }
  end
  local n = py_int(text)
  if not n then bad("bad position '" .. text .. "'") end
  return exact(n + offset)
end

---------------------------------------------------------------------------
-- Simple locations (one part, or two for an origin-spanning range)
---------------------------------------------------------------------------

-- The public part table from two positions (see the header for the mapping).
local function make_part(s, e, strand, ref)
  if s.v > e.v then
    bad(format("end %.0f before start %.0f", e.v, s.v + 1))
  end
  local p = { start = s.v + 1, stop = e.v, strand = strand, ref = ref,
              start_partial = s.partial, stop_partial = e.partial,
              start_within = s.within, stop_within = e.within,
              start_one_of = s.one_of, stop_one_of = e.one_of }
  return p
end

-- End index of the first-matching alternative of a position at text[i]:
-- `[<>]?\d+` or, failing that, `special` (a Lua pattern).
local function pos_end(text, i, special)
  local _, j = find(text, "^[<>]?%d+", i)
  if j then return j end
  _, j = find(text, special, i)
  return j
end

-- `pos..pos` where pos is `[<>]?\d+` or `special`: end of the match or nil.
local function range_end(text, special)
  local j = pos_end(text, 1, special)
  if not j or sub(text, j + 1, j + 2) ~= ".." then return nil end
  return pos_end(text, j + 3, special)
end

local WITHIN = "^%(%d+%.%d+%)"
local ONE_OF = "^one%-of%(%d[%d,+]+%)"

-- Biopython's _re_location_category: the first alternative that matches a
-- prefix decides, and it must cover the whole text.
local CATEGORIES = {
  { "pair", function(t) local _, j = find(t, "^[<>]?%-?%d+%.%.[<>]?%-?%d+"); return j end },
  { "between", function(t) local _, j = find(t, "^%d+%^%d+"); return j end },
  { "within", function(t) return range_end(t, WITHIN) end },
  { "oneof", function(t) return range_end(t, ONE_OF) end },
  { "bond", function(t) local _, j = find(t, "^bond%([<>]?%d+%)"); return j end },
  { "solo", function(t) local _, j = find(t, "^[<>]?%d+$"); return j end },
}

local function category(text)
  for _, c in ipairs(CATEGORIES) do
    local j = c[2](text)
    if j then
      if j ~= #text then break end
      return c[1]
    end
  end
  bad("cannot parse '" .. text .. "'")
end

-- Bio.SeqFeature.SimpleLocation.fromstring: returns a list of parts (two
-- when a range crosses the origin of a circular sequence).
local function simple(text, length, circular)
  local strand
  if sub(text, 1, 11) == "complement(" then
    text, strand = sub(text, 12, -2), -1
  end
  local a, b = split2(text, "..")
  if a then -- Biopython's fast path: plain integers
    local s, e = py_int(a), py_int(b)
    if s and e and 0 <= s - 1 and s - 1 < e then
      return { make_part(exact(s - 1), exact(e), strand) }
    end
  end
  local ref, rest = split2(text, ":")
  if ref then text = rest end
  local kind = category(text)
  local s_pos, e_pos
  if kind == "bond" or kind == "solo" then
    local body = kind == "bond" and sub(text, 6, -2) or text
    s_pos, e_pos = position(body, -1), position(body, 0)
  elseif kind == "between" then
    local l, r = text:match("^(%d+)%^(%d+)$")
    l, r = tonumber(l), tonumber(r)
    if not (l + 1 == r or (l == length and r == 1)) then
      bad("a between position must join neighbouring bases")
    end
    local p = make_part(exact(l), exact(l), strand, ref)
    p.start, p.stop, p.between = l, r, true
    return { p }
  else
    local l, r = split2(text, "..")
    s_pos, e_pos = position(l, -1), position(r, 0)
    if e_pos.v <= s_pos.v and length and length ~= 0 and s_pos.v < length then
      -- Biopython reads this as a range across the origin.
      if not circular then
        bad("it appears to span the origin, but the sequence is not circular")
      end
      -- (Biopython's two halves do not keep the reference.)
      local f1 = make_part(s_pos, exact(length), strand)
      local f2 = make_part(exact(0), e_pos, strand)
      if strand == -1 then return { f2, f1 } end
      return { f1, f2 }
    end
  end
  if s_pos.v < 0 then bad("negative starting position") end
  return { make_part(s_pos, e_pos, strand, ref) }
end

---------------------------------------------------------------------------
-- Compound locations
---------------------------------------------------------------------------

-- One piece of a join's body at text[i], as Biopython's _split regex finds
-- it: `ref?range`, `complement(range)` (range: `[<>]?(\d+|one-of(...))`
-- twice), else a run of non-commas.  Returns the end index or nil.
local function piece_end(text, i)
  local function range_at(k)
    local j = pos_end(text, k, ONE_OF)
    if not j or sub(text, j + 1, j + 2) ~= ".." then return nil end
    return pos_end(text, j + 3, ONE_OF)
  end
  local _, r = find(text, "^[A-Za-z][A-Za-z0-9_.|]*:", i)
  local j = r and range_at(r + 1) or range_at(i)
  if j then return j end
  if sub(text, i, i + 10) == "complement(" then
    j = range_at(i + 11)
    if j and sub(text, j + 1, j + 1) == ")" then return j + 1 end
  end
  _, j = find(text, "^[^,]+", i)
  return j
end

local function split_pieces(text)
  local pieces, i = {}, 1
  while i <= #text do
    local j = piece_end(text, i)
    if j then
      pieces[#pieces + 1] = sub(text, i, j)
      i = j + 1
    else
      i = i + 1 -- a comma between pieces
    end
  end
  return pieces
end

local function reverse(list)
  local n = #list
  for i = 1, math.floor(n / 2) do list[i], list[n + 1 - i] = list[n + 1 - i], list[i] end
end

local function all_minus(parts)
  for _, p in ipairs(parts) do
    if p.strand ~= -1 then return false end
  end
  return true
end

local function set_strand(parts, strand)
  for _, p in ipairs(parts) do p.strand = strand end
end

local OPERATORS = { "join", "order", "bond" }

-- Bio.SeqFeature.Location.fromstring.
local function location(text, length, circular, stranded)
  local strand
  if sub(text, 1, 11) == "complement(" then
    if sub(text, -1) ~= ")" then bad("closing bracket missing") end
    text, strand = sub(text, 12, -2), -1
  elseif stranded then
    strand = 1
  end
  local operator
  for _, op in ipairs(OPERATORS) do
    if sub(text, 1, #op + 1) == op .. "(" then operator = op end
  end
  if not operator then
    local parts = simple(text, length, circular)
    set_strand(parts, strand)
    if strand == -1 then reverse(parts) end
    return { operator = #parts > 1 and "join" or nil, parts = parts }
  end
  local parts, last = {}, nil
  for _, piece in ipairs(split_pieces(sub(text, #operator + 2, -2))) do
    last = simple(piece, length, circular)
    if all_minus(last) then
      if strand == -1 then bad("complement inside complement") end
    else
      set_strand(last, strand)
    end
    for _, p in ipairs(last) do parts[#parts + 1] = p end
  end
  if #parts == 0 then bad("no parts") end
  if #parts == 1 then return { parts = parts } end -- Biopython drops the operator
  if strand == -1 then reverse(parts) end
  return { operator = operator, parts = parts }
end

-- What Bio.GenBank's consumer does to a location line before parsing it.
local function clean(text)
  text = text:gsub("[%s\28-\31]", "")
  if find(text, "replace", 1, true) then
    local comma = find(text, ",", 1, true)
    text = sub(text, 9, (comma or #text) - 1)
  end
  return text
end

local PARSE_OPTS = { "length", "circular", "stranded" }
local EXTRACT_OPTS = { "length", "circular", "stranded", "references" }

-- parse with errors raised `level` levels up (1 = parse_at's caller).
local function parse_at(text, opts, fname, level)
  local ok, res = pcall(function()
    local cleaned = clean(text)
    return location(cleaned, opts.length, opts.circular, opts.stranded ~= false)
  end)
  if ok then return res end
  if type(res) == "table" and res.bad_location then
    error(format("%s: bad location '%s': %s", fname, text, res.bad_location), level + 1)
  end
  error(res, 0)
end

--- Parse INSDC location text.  opts: `length` (the record's length: a range
-- whose end is before its start then crosses the origin, and `N^1` is the
-- origin of a circular sequence of length N), `circular` (the record is
-- circular), `stranded` (default true; false for protein records: strand nil
-- instead of 1 on parts without complement).
function M.parse(text, opts)
  A.check_string(text, "bio.location.parse", 1, "text")
  opts = A.check_options(opts, PARSE_OPTS, "bio.location.parse", 2)
  local loc = parse_at(text, opts, "bio.location.parse", 2) -- not a tail call (error level)
  return loc
end

---------------------------------------------------------------------------
-- Extraction
---------------------------------------------------------------------------

--- 0-based half-open bounds of a part, as Biopython's int(start), int(end).
function M.bounds(part)
  if part.between then return part.start, part.start end
  return part.start - 1, part.stop
end

--- Length in bases of a parsed location: Biopython's len(location), the sum
-- of its parts' slice lengths (order and bond parts too; remote parts count).
function M.length(loc)
  if type(loc) ~= "table" or type(loc.parts) ~= "table" then
    A.arg_error("bio.location.length", 1, "location", "expected a parsed location, got " .. type(loc), 2)
  end
  local n = 0
  for _, part in ipairs(loc.parts) do
    local s, e = M.bounds(part)
    n = n + (e - s)
  end
  return n
end

local EXTRACT = "bio.location.extract"

-- Resolve the first argument of extract to a parsed location.
local function as_location(f, opts, seq)
  if type(f) == "table" and f.parts then return f end
  if type(f) == "table" then
    if f.location == nil then
      error(EXTRACT .. ": bad argument #1: the feature has no location", 3)
    end
    f = f.location
    if type(f) == "table" then return f end
  end
  if type(f) ~= "string" then
    A.arg_error(EXTRACT, 1, "feature", "expected a feature, a location string or a parsed location, got " .. type(f), 3)
  end
  local loc = parse_at(f, opts, EXTRACT, 3) -- not a tail call: the level counts this frame
  return loc
end

-- The parse options for text extracted from `seq`: opts first, then what a
-- record says (as Biopython's reader takes them from LOCUS), then #seq.
local function record_options(opts, rec, seq)
  local o = { length = opts.length, circular = opts.circular, stranded = opts.stranded }
  local ann = rec and type(rec.annotations) == "table" and rec.annotations or {}
  if o.length == nil then o.length = rec and rec.length or #seq end
  if o.circular == nil and type(ann.topology) == "string" then
    o.circular = find(ann.topology:lower(), "circular", 1, true) ~= nil
  end
  if o.stranded == nil and type(ann.molecule_type) == "string" then
    o.stranded = not find(ann.molecule_type:upper(), "PROTEIN", 1, true)
  end
  return o
end

local function part_source(part, seq, refs)
  if part.ref == nil or part.ref == "" then return seq end
  if not refs or next(refs) == nil then
    error(format("%s: the location refers to another sequence (%s); pass opts.references", EXTRACT, part.ref), 3)
  end
  local s = refs[part.ref]
  if s == nil then
    error(format("%s: the location refers to another sequence (%s), not found in opts.references", EXTRACT, part.ref), 3)
  end
  return s
end

--- The sequence of a feature (`{location = ...}`), a location string or a
-- parsed location: Biopython's feature.extract(seq).  `seq` is a string or
-- a record ({seq = ..., length = ..., annotations = {topology = ...,
-- molecule_type = ...}}).  opts: `references` ({[accession] = seq} for
-- remote parts), and `length`, `circular`, `stranded` for parsing text
-- (defaults: from the record, else #seq, linear, stranded).
function M.extract(f, seq, opts)
  local rec
  if type(seq) == "table" then -- a record: its sequence, length and topology
    rec, seq = seq, seq.seq
    if type(seq) ~= "string" then A.arg_error(EXTRACT, 2, "seq", "the record has no sequence", 2) end
  end
  A.check_string(seq, EXTRACT, 2, "seq")
  opts = A.check_options(opts, EXTRACT_OPTS, EXTRACT, 3)
  local loc = as_location(f, record_options(opts, rec, seq), seq)
  local out = {}
  for i, part in ipairs(loc.parts) do
    local s, e = M.bounds(part)
    local piece = sub(part_source(part, seq, opts.references), s + 1, e)
    if part.strand == -1 then piece = S.reverse_complement(piece) end
    out[i] = piece
  end
  return table.concat(out)
end

---------------------------------------------------------------------------
-- Formatting
---------------------------------------------------------------------------

local function is_exact(part, side)
  return not (part[side .. "_partial"] or part[side .. "_within"] or part[side .. "_one_of"])
end

-- Biopython's _insdc_feature_position_string on one end of a part.
local function position_text(part, side, value)
  local within, one_of = part[side .. "_within"], part[side .. "_one_of"]
  if within then return format("(%d.%d)", within[1], within[2]) end
  if one_of then
    local t = {}
    for i, n in ipairs(one_of) do t[i] = format("%d", n) end
    return "one-of(" .. table.concat(t, ",") .. ")"
  end
  return (part[side .. "_partial"] or "") .. format("%d", value)
end

-- Biopython's _insdc_location_string_ignoring_strand_and_subfeatures.
local function part_text(part, length)
  local ref = (part.ref and part.ref ~= "") and part.ref .. ":" or ""
  local s, e = M.bounds(part)
  local exact_both = is_exact(part, "start") and is_exact(part, "stop")
  if exact_both and s == e then
    if e == length then return format("%s%d^1", ref, e) end
    return format("%s%d^%d", ref, e, e + 1)
  end
  if exact_both and s + 1 == e then return format("%s%d", ref, e) end
  return ref .. position_text(part, "start", s + 1) .. ".." .. position_text(part, "stop", e)
end

local function stranded_text(part, length)
  local t = part_text(part, length)
  if part.strand == -1 then return "complement(" .. t .. ")" end
  return t
end

--- INSDC text for a parsed location, as Biopython's GenBank/EMBL writer
-- writes the location it parsed.  opts.length: the record's length (a
-- between position at the end is written `N^1`).
function M.format(loc, opts)
  if type(loc) ~= "table" or type(loc.parts) ~= "table" or #loc.parts == 0 then
    A.arg_error("bio.location.format", 1, "location", "expected a parsed location", 2)
  end
  local length = (opts or {}).length
  local parts = loc.parts
  if #parts == 1 then return stranded_text(parts[1], length) end
  local op, t = loc.operator or "join", {}
  if all_minus(parts) then
    for i = #parts, 1, -1 do t[#t + 1] = part_text(parts[i], length) end
    return format("complement(%s(%s))", op, table.concat(t, ","))
  end
  for i, p in ipairs(parts) do t[i] = stranded_text(p, length) end
  return format("%s(%s)", op, table.concat(t, ","))
end

return M
