--- bio._insdc: what the GenBank and EMBL readers share.
--
-- Both formats carry the INSDC feature table (key at column 6, location and
-- qualifiers at column 22) and are read the way Biopython 1.88 reads them
-- (Bio/GenBank/Scanner.py's InsdcScanner and Bio.GenBank's _FeatureConsumer):
-- a scanner walks the lines of one record (header, features, footer), and a
-- builder turns what it finds into the record table (see docs/bio/genbank.md).
-- bio.genbank and bio.embl supply only the format-specific parts (first line,
-- header lines, sequence footer) as a "format" table; this module runs them.
local IO = require "bio._io"
local A = require "bio.alphabet"
local R = require "bio._record"

local M = {}

local sub, find, gsub, concat = string.sub, string.find, string.gsub, table.concat

---------------------------------------------------------------------------
-- Python string helpers, so the format code can follow Biopython's slicing.
---------------------------------------------------------------------------

--- s[i:j] with Python's 0-based, end-exclusive indices (j nil: to the end).
function M.sl(s, i, j)
  if j == nil then return sub(s, i + 1) end
  return sub(s, i + 1, j)
end

--- str.strip() / lstrip() / rstrip() and str.split() (no argument): Python's
-- whitespace, as every reader of the library sees it (bio._io).
M.strip, M.lstrip, M.rstrip, M.words = IO.strip, IO.lstrip, IO.rstrip, IO.words

--- str.split(sep) with a plain separator, and at most `max` splits.
function M.split(s, sep, max)
  local out, pos = {}, 1
  while max == nil or #out < max do
    local i, j = find(s, sep, pos, true)
    if not i then break end
    out[#out + 1] = sub(s, pos, i - 1)
    pos = j + 1
  end
  out[#out + 1] = sub(s, pos)
  return out
end

--- str.count(sub) (non-overlapping, plain).
function M.count(s, what)
  local n, pos = 0, 1
  while true do
    local i, j = find(s, what, pos, true)
    if not i then return n end
    n, pos = n + 1, j + 1
  end
end

--- str.replace(old, new), plain.
function M.replace(s, old, new)
  return (gsub(s, old:gsub("%p", "%%%0"), (new:gsub("%%", "%%%%"))))
end

function M.startswith(s, p) return sub(s, 1, #p) == p end
function M.endswith(s, p) return p == "" or sub(s, -#p) == p end
function M.contains(s, p) return find(s, p, 1, true) ~= nil end
function M.isdigit(s) return find(s, "^%d+$") ~= nil end

--- Collapse runs of two spaces, as Biopython's `while "  " in s: s = s.replace("  ", " ")`.
function M.collapse_spaces(s)
  return (gsub(s, "  +", " "))
end

local function set_of(list)
  local t = {}
  for _, v in ipairs(list) do t[v] = true end
  return t
end
M.set_of = set_of

--- t[k] = v, remembering the order in which keys first arrive (in the
-- metatable's __order list), as a Python dict does: the writer gives a
-- structured comment back in the file's order.  The table's fields stay
-- plain; code that does not look at the metatable sees an ordinary map.
function M.put_in_order(t, k, v)
  if t[k] == nil then
    local mt = getmetatable(t)
    if mt == nil then mt = { __order = {} }; setmetatable(t, mt) end
    mt.__order[#mt.__order + 1] = k
  end
  t[k] = v
end

--- An iterator over `lines` and then one "" (as Biopython appends to its
-- header and misc lines), shared by a for loop and the inner loops it runs.
function M.cursor(lines)
  local i, n = 0, #lines
  return function()
    i = i + 1
    if i <= n then return lines[i] end
    if i == n + 1 then return "" end
    return nil
  end
end

---------------------------------------------------------------------------
-- The record builder (Bio.GenBank._FeatureConsumer).
---------------------------------------------------------------------------

local Builder = {}
Builder.__index = Builder

local function new_builder(fail)
  return setmetatable({
    rec = R.record({ description = "", dbxrefs = {}, annotations = {}, features = {} }),
    seq_type = "", seq_data = nil, ref = nil, expected_size = nil, fail = fail,
  }, Builder)
end

function Builder:locus(name) self.rec.name = name end

function Builder:size(content)
  local s = M.strip(content)
  if not find(s, "^[+-]?%d+$") then self.fail("invalid literal for a sequence length: '%s'", content) end
  self.expected_size = tonumber(s)
end

function Builder:residue_type(t) self.seq_type = M.strip(t) end

function Builder:topology(t)
  if t ~= "" then
    if t ~= "linear" and t ~= "circular" then
      self.fail("unexpected topology '%s' (should be linear or circular)", t)
    end
    self.rec.annotations.topology = t
  end
end

function Builder:molecule_type(t)
  if t ~= "" then
    if find(t, "circular", 1, true) or find(t, "linear", 1, true) then
      self.fail("molecule type '%s' should not include the topology", t)
    end
    self.rec.annotations.molecule_type = t
  end
end

function Builder:set(key, value) self.rec.annotations[key] = value end

function Builder:definition(d)
  local r = self.rec
  if r.description ~= "" then r.description = r.description .. " " .. d else r.description = d end
end

function Builder:accession(text)
  local new = M.words((gsub(text, ";", " ")))
  local ann = self.rec.annotations
  if ann.accessions then
    local have = set_of(ann.accessions)
    for _, acc in ipairs(new) do
      if not have[acc] then ann.accessions[#ann.accessions + 1] = acc; have[acc] = true end
    end
  elseif #new > 0 then -- Biopython's KeyError path runs only inside its loop over `new`
    ann.accessions = new
  end
  if (self.rec.id == nil or self.rec.id == "") and #new > 0 then self.rec.id = ann.accessions[1] end
end

function Builder:dashed(key, content) self.rec.annotations[key] = M.split(content, "-") end

function Builder:add_wgs_scafld(content)
  local ann = self.rec.annotations
  ann.wgs_scafld = ann.wgs_scafld or {}
  ann.wgs_scafld[#ann.wgs_scafld + 1] = M.split(content, "-")
end

function Builder:version(v)
  local parts = M.split(v, ".")
  if #parts == 2 and M.isdigit(parts[2]) then
    self:accession(parts[1])
    self:version_suffix(parts[2])
  elseif v ~= "" then
    self.rec.id = v
  end
end

function Builder:version_suffix(v)
  if not M.isdigit(v) then self.fail("sequence version '%s' is not a number", v) end
  self.rec.annotations.sequence_version = tonumber(v)
end

function Builder:project(content)
  content = M.replace(content, "GenomeProject:", "Project:")
  local x = self.rec.dbxrefs
  for _, p in ipairs(M.words(content)) do x[#x + 1] = p end
end

function Builder:dblink(content)
  content = M.strip((gsub(content, ": +", ":")))
  local x = self.rec.dbxrefs
  for _, v in ipairs(x) do if v == content then return end end
  x[#x + 1] = content
end

-- annotations[key] extended by `list` (set to it the first time).
function Builder:extend(key, list)
  local have = self.rec.annotations[key]
  if not have then self.rec.annotations[key] = list; return end
  for _, v in ipairs(list) do have[#have + 1] = v end
end

function Builder:keywords(content)
  local k
  if content == "" or content == "." then k = ""
  elseif sub(content, -1) == "." then k = sub(content, 1, -2)
  else k = content end
  local list = {}
  for _, w in ipairs(M.split(k, ";")) do list[#list + 1] = M.strip(w) end
  self:extend("keywords", list)
end

function Builder:source(content)
  if sub(content, -1) == "." then content = sub(content, 1, -2) end
  self.rec.annotations.source = content
end

function Builder:taxonomy(content)
  local list = {}
  if content ~= "" and content ~= "." then
    if sub(content, -1) == "." then content = sub(content, 1, -2) end
    for _, item in ipairs(M.split(content, ";")) do
      for _, part in ipairs(M.split(item, "\n")) do
        if part ~= "" then list[#list + 1] = M.strip(part) end
      end
    end
  end
  self:extend("taxonomy", list)
end

function Builder:reference_num()
  local ann = self.rec.annotations
  if self.ref then ann.references[#ann.references + 1] = self.ref else ann.references = {} end
  self.ref = { location = {}, authors = "", consrtm = "", title = "", journal = "",
               medline_id = "", pubmed_id = "", comment = "" }
end

-- "1 to 20; 30 to 40" -> {{start=1, stop=20}, {start=30, stop=40}}
function Builder:reference_spans(text)
  local out = {}
  for _, info in ipairs(M.split(text, ";")) do
    local se = M.split(info, "to")
    local a, b = M.strip(se[1]), se[2] and M.strip(se[2])
    if #se ~= 2 or not find(a, "^[+-]?%d+$") or not find(b, "^[+-]?%d+$") then
      self.fail("cannot parse the reference location '%s'", info)
    end
    a, b = tonumber(a), tonumber(b)
    if b < a - 1 then self.fail("reference location '%s' ends before it starts", info) end
    out[#out + 1] = { start = a, stop = b }
  end
  return out
end

function Builder:reference_bases(content)
  if sub(content, -1) ~= ")" then self.fail("reference bases '%s' do not end with ')'", content) end
  local info = sub(content, 2, -2)
  local spans = {}
  if find(info, "bases", 1, true) and find(info, "to", 1, true) then
    spans = self:reference_spans(sub(info, 6))
  elseif find(info, "residues", 1, true) and find(info, "to", 1, true) then
    spans = self:reference_spans(sub(info, find(info, "residues", 1, true) + 9))
  elseif not (info == "sites" or M.strip(info) == "bases") then
    self.fail("could not parse the base info '%s'", info)
  end
  self.ref.location = spans
end

-- A field of the current reference; Biopython fails (AttributeError) when
-- there is no REFERENCE yet.
function Builder:ref_field(key, content, join)
  local ref = self.ref
  if not ref then
    if key == "title" then return end -- Biopython only warns here
    self.fail("a reference field (%s) before any reference", key)
  end
  if join and ref[key] ~= "" then ref[key] = ref[key] .. " " .. content else ref[key] = content end
end

function Builder:comment(lines)
  local ann, text = self.rec.annotations, concat(lines, "\n")
  if ann.comment then ann.comment = ann.comment .. "\n" .. text else ann.comment = text end
end

function Builder:start_feature_table()
  if self.ref then
    local refs = self.rec.annotations.references
    refs[#refs + 1] = self.ref
    self.ref = nil
  end
end

-- _FeatureConsumer.feature_qualifier, on a value already joined with spaces.
local function add_qualifier(feature, key, value)
  local q = feature.qualifiers
  if value == nil then
    if q[key] == nil then
      q[key] = { "" }
      feature.qualifier_names[#feature.qualifier_names + 1] = key
    end
    return
  end
  if #value > 1 and sub(value, 1, 1) == '"' and sub(value, -1) == '"' then value = sub(value, 2, -2) end
  value = gsub(value, '""', '"')
  if key == "translation" then value = concat(M.words(value)) end
  if q[key] then
    q[key][#q[key] + 1] = value
  else
    q[key] = { value }
    feature.qualifier_names[#feature.qualifier_names + 1] = key
  end
end

-- A feature tuple (key, location, qualifier pairs) as the record's feature.
function Builder:feature(key, location, pairs_)
  local f = { type = key, location = concat(M.words(location)), qualifiers = {}, qualifier_names = {} }
  for _, kv in ipairs(pairs_) do
    local v = kv[2]
    if v then v = gsub(v, "\n", " ") end
    add_qualifier(f, kv[1], v)
  end
  local fs = self.rec.features
  fs[#fs + 1] = f
end

-- Builder calls by the names of Biopython's consumer methods, for the header
-- keywords whose (joined) text goes to one call (its `consumer_dict`s).
local CONSUMER = {
  definition = Builder.definition, accession = Builder.accession, version = Builder.version,
  keywords = Builder.keywords, source = Builder.source, project = Builder.project, taxonomy = Builder.taxonomy,
  db_source = function(B, d) B:set("db_source", M.rstrip(d)) end,
}
for _, key in ipairs { "nid", "pid", "segment", "organism" } do
  CONSUMER[key] = function(B, d) B:set(key, d) end
end
for name, key in pairs { authors = "authors", consrtm = "consrtm", title = "title", journal = "journal",
                         remark = "comment", medline_id = false, pubmed_id = false } do
  CONSUMER[name] = function(B, d) B:ref_field(key or name, d, key ~= false) end
end

function Builder:consume(name, data) CONSUMER[name](self, data) end

-- Biopython's molecule type from the LOCUS/ID residue type.
local function molecule_of(seq_type, fail)
  if seq_type == "" then return nil end
  local up = seq_type:upper()
  if find(up, "DNA", 1, true) or find(up, "MRNA", 1, true) then return "DNA" end
  if find(up, "RNA", 1, true) then return "RNA" end
  if find(up, "PROTEIN", 1, true) or seq_type == "PRT" then return "protein" end
  if seq_type == "circular" or seq_type == "linear" or seq_type == "unspecified" then return nil end
  fail("could not determine the molecule type for the sequence type '%s'", seq_type)
end

--- The finished record (_FeatureConsumer.record_end, plus SeqIO's checks).
function Builder:finish(seq)
  local rec, ann = self.rec, self.rec.annotations
  if rec.id == nil or rec.id == "" then
    if ann.accessions then
      self.fail("problem adding the version number to the accession %s", concat(ann.accessions, " "))
    end
    rec.id = rec.name
  elseif not find(rec.id, ".", 1, true) and ann.sequence_version then
    rec.id = rec.id .. "." .. string.format("%d", ann.sequence_version)
  end
  if rec.name == nil then self.fail("failed to parse the record's name (invalid ID/LOCUS line?)") end
  local mol = molecule_of(self.seq_type, self.fail)
  if mol and ann.molecule_type == nil then ann.molecule_type = mol end
  seq = seq:upper()
  if seq == "" and self.expected_size and self.expected_size ~= 0 then
    rec.length = self.expected_size -- Biopython: a sequence of known length but undefined content
  else
    rec.seq, rec.length = seq, #seq
  end
  return rec
end

---------------------------------------------------------------------------
-- The scanner (InsdcScanner): lines of one record at a time.
---------------------------------------------------------------------------

--- A line source for the scanners: S.readline() -> line without its end of
-- line ("\r\n" as Python's text mode reads it) or nil at EOF; S.lineno.
local function line_source(read)
  local lines = IO.line_reader(read)
  local S = { lineno = 0 }
  function S.readline()
    local l = lines.next()
    S.lineno = lines.lineno
    if l and sub(l, -1) == "\r" then l = sub(l, 1, -2) end
    return l
  end
  return S
end

-- find_start: skip to the next ID/LOCUS line (anything before it, blank
-- lines and "//" included, is ignored, as Biopython does).
local function find_start(S, fmt)
  while true do
    local line = S.readline()
    if line == nil then return nil end
    if sub(line, 1, fmt.HEADER_WIDTH) == fmt.RECORD_START then return line end
  end
end

-- parse_header: the lines up to the feature table or the sequence.
local function parse_header(S, fmt)
  local lines, nums = {}, {}
  while true do
    local line = S.readline()
    if line == nil then S.fail("premature end of file in the header (no features, sequence or '//')") end
    line = M.rstrip(line)
    if fmt.FEATURE_START[line] or fmt.SEQUENCE_HEADERS[M.rstrip(sub(line, 1, fmt.HEADER_WIDTH))] then
      S.line = line
      return lines, nums
    end
    if line == "//" then S.fail("premature end of record: '//' before the features or the sequence") end
    lines[#lines + 1], nums[#lines + 1] = line, S.lineno
  end
end

-- parse_feature: a feature's lines (columns 22 on, stripped) as the tuple
-- {key, location, {{name, value-or-nil}, ...}}.  Quoted values keep their
-- quotes and line breaks here; the builder removes them.
local function parse_feature(S, key, lines, first_line)
  local i = 0
  local function nxt()
    while true do
      i = i + 1
      local l = lines[i]
      if l == nil then
        S.fail_at(first_line, "problem with the '%s' feature (an unfinished location or qualifier):\n%s",
          key, concat(lines, "\n"))
      end
      if l ~= "" then return l end
    end
  end
  local last = #lines -- the last non-blank line: qualifiers are read up to it
  while last > 0 and lines[last] == "" do last = last - 1 end
  local location = M.strip(nxt())
  local function unbalanced() return M.count(location, "(") > M.count(location, ")") end
  while sub(location, -1) == "," or unbalanced() do location = location .. M.strip(nxt()) end
  local quals, n = {}, 0
  while i < last do
    local line = nxt()
    n = n + 1
    if n == 1 and sub(line, 1, 1) == ")" then
      location = location .. M.strip(line) -- the location's closing parenthesis, wrapped
    elseif sub(line, 1, 1) == "/" then
      local eq = find(line, "=", 1, true)
      if not eq then
        quals[#quals + 1] = { sub(line, 2) }
      else
        local value = sub(line, eq + 1)
        if sub(value, 1, 1) == " " and sub(M.lstrip(value), 1, 1) == '"' then value = M.lstrip(value) end
        if value ~= "" and value ~= '"' and sub(value, 1, 1) == '"' then
          local parts = { value }
          while sub(parts[#parts], -1) ~= '"' do parts[#parts + 1] = nxt() end
          value = concat(parts, "\n")
        end
        quals[#quals + 1] = { sub(line, 2, eq - 1), value }
      end
    else
      -- an unquoted value continued on the next line
      local last = quals[#quals]
      if last == nil then
        S.fail_at(first_line, "problem with the '%s' feature: text '%s' where a qualifier (/name) should start",
          key, line)
      end
      if last[2] == nil then
        S.fail_at(first_line, "problem with the '%s' feature: qualifier /%s has no value but is continued by '%s'",
          key, last[1], line)
      end
      last[2] = last[2] .. "\n" .. line
    end
  end
  return key, location, quals
end

-- A feature's first line -> its key and the start of its location.
local function feature_start(S, line, W)
  if #line == W then S.fail("feature line too short for a location: '%s'", line) end
  if sub(line, W + 1, W + 1) ~= " " and find(M.sl(line, W), " ", 1, true) then
    -- an over-indented location (a key longer than the column allows); Biopython warns
    local rest = M.strip(sub(line, 3))
    local a, b = find(rest, "[" .. IO.SPACE .. "]+")
    return sub(rest, 1, a - 1), sub(rest, b + 1)
  end
  return M.strip(M.sl(line, 2, W)), M.sl(line, W)
end

-- parse_features: the feature table, from the FEATURES/FH line (S.line) to
-- the sequence header, feeding each feature to the builder.
local function parse_features(S, fmt, B)
  local line = S.line
  if not fmt.FEATURE_START[M.rstrip(line)] then return end
  B:start_feature_table()
  repeat line = S.readline() until line == nil or not fmt.FEATURE_START[M.rstrip(line)]
  local W, SP = fmt.QUALIFIER_INDENT, fmt.QUALIFIER_SPACER
  while true do
    if line == nil then S.fail("premature end of file in the features table") end
    if fmt.SEQUENCE_HEADERS[M.rstrip(sub(line, 1, fmt.HEADER_WIDTH))] then break end
    line = M.rstrip(line)
    if line == "//" then S.fail("premature end of the features table: '//' before the sequence") end
    if fmt.FEATURE_END[line] then line = S.readline(); break end
    if M.strip(M.sl(line, 2, W)) == "" or (#line < W and not fmt.feature_start) then
      -- an empty line between features, or one too short to hold a feature (Biopython warns)
      line = S.readline()
    else
      local start = S.lineno
      local key, first = (fmt.feature_start or feature_start)(S, line, W)
      local flines = { first }
      line = S.readline()
      while line ~= nil and (sub(line, 1, W) == SP or M.rstrip(line) == "") do
        flines[#flines + 1] = M.strip(M.sl(line, W))
        line = S.readline()
      end
      local k, loc, quals = parse_feature(S, key, flines, start)
      if fmt.fix_location then loc = fmt.fix_location(loc) end
      B:feature(k, loc, quals)
    end
  end
  S.line = line
end

--- A record iterator over a chunk reader, for format `fmt` (bio.genbank or
-- bio.embl's format table): yields one record table at a time.
function M.reader(fmt, read, close, name, fname, line_base)
  local S = line_source(read)
  local done = false
  local function L(n) return n + (line_base and line_base() or 0) end
  function S.fail_at(lineno, msg, ...)
    done = true
    close()
    error(string.format("%s: %s line %d: " .. msg, fname, name, L(lineno), ...), 0)
  end
  function S.fail(msg, ...) S.fail_at(S.at or S.lineno, msg, ...) end
  return function()
    if done then return nil end
    local first = find_start(S, fmt)
    if first == nil then done = true; close(); return nil end
    S.at = S.lineno
    local B = new_builder(S.fail)
    fmt.feed_first_line(S, B, first .. "\n") -- Biopython sees the line with its "\n"
    S.at = nil
    local header, nums = parse_header(S, fmt)
    fmt.feed_header_lines(S, B, header, nums)
    S.at = nil
    parse_features(S, fmt, B)
    B:start_feature_table()
    -- the footer gives the misc lines and the sequence lines' bases (spaces still in)
    local misc, parts = fmt.parse_footer(S)
    local seq = gsub(concat(parts), " ", "")
    S.at = S.lineno
    fmt.feed_misc_lines(S, B, misc)
    local rec = B:finish(seq)
    S.at = nil
    return rec
  end
end

--- The scanner's view of a format, from the list {record start ("LOCUS   "),
-- feature table start lines, end lines, feature line prefix ("" or "FT"),
-- sequence header set, feed_first_line, feed_header_lines, parse_footer,
-- feed_misc_lines}.  The feature table layout is common: key from column 6,
-- location and qualifiers from column 22.
local function format_spec(t)
  return {
    RECORD_START = t[1], HEADER_WIDTH = #t[1],
    FEATURE_START = set_of(t[2]), FEATURE_END = set_of(t[3]),
    QUALIFIER_INDENT = 21, QUALIFIER_SPACER = t[4] .. string.rep(" ", 21 - #t[4]),
    SEQUENCE_HEADERS = t[5],
    feed_first_line = t[6], feed_header_lines = t[7], parse_footer = t[8], feed_misc_lines = t[9],
    feature_start = t.feature_start, fix_location = t.fix_location,
  }
end

--- records / records_from_string / read / parse / extract / write wrappers
-- for a format module `Mod` named `modname` ("bio.genbank") whose writer
-- functions in bio._insdc_writer end in `suffix` ("genbank"); `spec` as
-- format_spec takes it.  `variants` (optional) maps an opts.variant name to a
-- table of the entries that differ from `spec` (EMBL's "imgt").
function M.install(Mod, modname, suffix, spec, variants)
  local fmt = format_spec(spec)
  local by_variant = {}
  for vname, v in pairs(variants or {}) do
    by_variant[vname] = format_spec(setmetatable(v, { __index = spec }))
  end
  Mod.format_spec = fmt
  local READ_OPTS = variants and { "chunk_size", "variant" } or { "chunk_size" }
  -- (raises at level 3: the caller of records / records_from_string)
  local function variant_of(opts, fname)
    if opts.variant == nil then return fmt end
    local f = by_variant[opts.variant]
    if not f then A.arg_error(fname, 2, "variant", "unknown variant " .. tostring(opts.variant), 3) end
    return f
  end
  function Mod.records(src, opts)
    local fname = modname .. ".records"
    opts = A.check_options(opts, READ_OPTS, fname, 2)
    local f = variant_of(opts, fname)
    local read, close, name, line_base = IO.open_source(src, fname, opts.chunk_size)
    return IO.iterator(M.reader(f, read, close, name, fname, line_base), close)
  end
  function Mod.records_from_string(text, opts)
    local fname = modname .. ".records_from_string"
    opts = A.check_options(opts, READ_OPTS, fname, 2)
    local f = variant_of(opts, fname)
    local read, close, name = IO.string_source(text, fname, opts.chunk_size)
    return M.reader(f, read, close, name, fname)
  end
  function Mod.read(src, opts) return IO.collect(Mod.records(src, opts)) end
  function Mod.parse(text, opts) return IO.collect(Mod.records_from_string(text, opts)) end
  function Mod.extract(f, seq, opts) return require("bio.location").extract(f, seq, opts) end
  -- The writer's own functions, named after this module in errors; no
  -- wrapper frame, so the caller's line is the one blamed on every runtime.
  local writer = require("bio._insdc_writer").functions(suffix, modname)
  Mod.write, Mod.format, Mod.to_string = writer.write, writer.format, writer.to_string
  return Mod
end

return M
