--- bio.fastq: streaming FASTQ reader and writer.
--
--   for rec in fastq.records("reads.fq") do print(rec.id, rec.seq, rec.qualities[1]) end
--
-- Records are {id, description, seq, quality, qualities}: `quality` is the
-- encoded quality string and `qualities` the scores as numbers (PHRED+33
-- for "sanger", the default).  Parsing follows Biopython's
-- FastqGeneralIterator: wrapped (multi-line) records are accepted, a '+' line
-- may repeat the title, and a quality line may begin with '@'.  Errors name
-- the line: a header without '@', a truncated record, differing sequence and
-- quality lengths, a quality character outside the variant's range.
-- Reference: docs/bio/fastq.md.
local F = require "bio._fast"
local A = require "bio.alphabet"
local IO = require "bio._io"
local R = require "bio._record"

local ffi = F.ffi

local M = {}

local byte, char, sub, find, concat = string.byte, string.char, string.sub, string.find, table.concat

--- FASTQ variants: ASCII offset and the score range Biopython accepts.
M.variants = {
  sanger = { offset = 33, min = 0, max = 93 },
  illumina = { offset = 64, min = 0, max = 62 },
  solexa = { offset = 64, min = -5, max = 62 },
}

-- The variant named by opts.variant; a bad name is an error at `level` (as
-- A.arg_error counts it: 3 names the line that called variant_of's caller).
local function variant_of(opts, fname, level)
  local name = opts.variant or "sanger"
  local v = M.variants[name]
  if not v then A.arg_error(fname, 2, "variant", "must be \"sanger\", \"illumina\" or \"solexa\", got " .. tostring(name), level) end
  return v, name
end

local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

--- Scores as numbers: byte values minus the offset (33 by default).
local decode
if ffi then
  decode = function(q, offset)
    local p = ffi.cast("const uint8_t*", q)
    local out = {}
    for k = 0, #q - 1 do out[k + 1] = p[k] - offset end
    return out
  end
else
  decode = function(q, offset) -- 4096 bytes per string.byte call
    local out, n = {}, #q
    for i = 1, n, 4096 do
      local bytes = { byte(q, i, i + 4095) }
      for k = 1, #bytes do out[i + k - 1] = bytes[k] - offset end
    end
    return out
  end
end
function M.decode_qualities(q, offset)
  local fname = "bio.fastq.decode_qualities"
  A.check_string(q, fname, 1, "quality")
  if offset ~= nil then A.check_int(offset, fname, 2, "offset", 0, 255) end
  local scores = decode(q, offset or 33)
  return scores
end

-- Position of the first byte of q outside [lo, hi], or nil.
local bad_quality
if ffi then
  bad_quality = function(q, lo, hi)
    local p = ffi.cast("const uint8_t*", q)
    for k = 0, #q - 1 do
      local b = p[k]
      if b < lo or b > hi then return k + 1 end
    end
    return nil
  end
else
  local classes = {}
  bad_quality = function(q, lo, hi)
    local key = lo * 256 + hi
    local class = classes[key]
    if not class then
      class = "[^" .. char(lo) .. "-" .. char(hi) .. "]" -- endpoints are never magic in a set
      classes[key] = class
    end
    return find(q, class)
  end
end

-- Scores as a quality string; a bad score is an error at `level` (as
-- A.arg_error counts it; -1: no position, for a caller that adds its own).
local function encode(scores, offset, fname, level)
  local parts, n = {}, #scores
  for i = 1, n, 4096 do
    local chunk = {}
    for k = i, math.min(i + 4095, n) do
      local v = scores[k]
      if type(v) ~= "number" or v ~= math.floor(v) or v + offset < 33 or v + offset > 126 then
        A.arg_error(fname or "bio.fastq.encode_qualities", 1, "qualities",
          string.format("score %s at position %d cannot be encoded with offset %d", tostring(v), k, offset), level)
      end
      chunk[#chunk + 1] = v + offset
    end
    parts[#parts + 1] = char(unpack(chunk))
  end
  return concat(parts)
end

--- Encode scores (numbers) as a quality string (offset 33 by default).
function M.encode_qualities(scores, offset)
  local fname = "bio.fastq.encode_qualities"
  if type(scores) ~= "table" then A.arg_error(fname, 1, "qualities", "expected a list of scores, got " .. type(scores), 2) end
  if offset ~= nil then A.check_int(offset, fname, 2, "offset", 0, 255) end
  local q = encode(scores, offset or 33, fname, 3)
  return q
end

local function reader(read, close, name, fname, opts, line_base, v, vname)
  local lo, hi = v.offset + v.min, v.offset + v.max
  local want_numbers = opts.qualities ~= false
  local mt = vname == "solexa" and R.SOLEXA or R.PHRED -- Biopython's letter annotation
  local lines = IO.line_reader(read)
  local pending -- a line read ahead (the next record's header)
  local done = false
  local started = false

  local at_line -- when set, the line to report instead of the last one read
  -- A line number of the whole file (a shard starts part-way in).
  local function L(n) return n + (line_base and line_base() or 0) end
  local function fail(msg, ...)
    done = true
    close()
    error(string.format("%s: %s line %d: " .. msg, fname, name, L(at_line or lines.lineno), ...), 0)
  end

  local function nextline()
    if pending then local l = pending; pending = nil; return l end
    return lines.next()
  end

  return function()
    if done then return nil end
    local line = nextline()
    if not started then
      started = true
      -- blank lines before the first record are skipped
      while line and not find(line, "[^ \t\r\v\f]") do line = nextline() end
    end
    if line == nil then done = true; close(); return nil end
    if byte(line, 1) ~= 64 then -- '@'
      fail("expected a record header starting with '@', got %q", #line > 40 and sub(line, 1, 40) .. "..." or line)
    end
    local title = IO.rstrip(sub(line, 2))
    local header_line = lines.lineno
    -- sequence lines up to the '+' line (usually exactly one)
    local seq, seq_parts = "", nil
    while true do
      line = nextline()
      if line == nil then
        fail("unexpected end of file in record '%s' (line %d): no '+' line and no quality", title, L(header_line))
      end
      if byte(line, 1) == 43 then break end -- '+'
      if seq_parts then seq_parts[#seq_parts + 1] = IO.rstrip(line)
      elseif seq == "" then seq = IO.rstrip(line)
      else seq_parts = { seq, IO.rstrip(line) } end
    end
    if seq_parts then seq = concat(seq_parts) end
    local second = IO.rstrip(sub(line, 2))
    if second ~= "" and second ~= title then
      fail("the '+' line repeats a different title ('%s') than the record header '%s' (line %d)", second, title, L(header_line))
    end
    -- Biopython's FASTQ parser: "not seq.isprintable() or ' ' in seq", i.e.
    -- no control character, space or DEL (bytes 0-32 and 127) may remain
    if find(seq, "[%z\1-\32\127]") then
      local at = find(seq, "[%z\1-\32\127]")
      fail("whitespace or a control character ('%s' at column %d) in the sequence of record '%s' (line %d)",
        A.show_char(sub(seq, at, at)), at, title, L(header_line))
    end
    local seq_len = #seq
    local qual_parts, qlen = {}, 0
    local any, any_q = false, false
    while true do
      line = nextline()
      if line == nil then break end
      any = true
      if byte(line, 1) == 64 and qlen >= seq_len then pending = line; break end
      local q = IO.rstrip(line)
      if qlen >= seq_len and q ~= "" and any_q then
        -- Biopython would append this line to the quality and then fail on
        -- the lengths; naming the stray line is more helpful
        at_line = nil
        fail("expected a record header starting with '@' after record '%s' (line %d), got %q",
          title, L(header_line), #line > 40 and sub(line, 1, 40) .. "..." or line)
      end
      any_q = any_q or q ~= "" or seq_len == 0
      local bad = bad_quality(q, lo, hi)
      if bad then
        fail("quality character '%s' (ASCII %d) at column %d is out of range for FASTQ variant %s (scores %d to %d, characters '%s' to '%s')",
          A.show_char(sub(q, bad, bad)), byte(q, bad), bad, vname, v.min, v.max, char(lo), char(hi))
      end
      qual_parts[#qual_parts + 1] = q
      qlen = qlen + #q
      at_line = lines.lineno
    end
    if not any then
      at_line = nil
      fail("unexpected end of file in record '%s' (line %d): no quality line after '+'", title, L(header_line))
    end
    if qlen ~= seq_len then
      if not pending then done = true end
      fail("sequence and quality lengths differ in record '%s' (line %d): %d and %d", title, L(header_line), seq_len, qlen)
    end
    at_line = nil
    if not pending then done = true; close() end
    local quality = #qual_parts == 1 and qual_parts[1] or concat(qual_parts)
    local rec = R.record({ id = IO.first_word(title), description = title, seq = seq, quality = quality }, mt)
    if want_numbers then rec.qualities = decode(quality, v.offset) end
    return rec
  end
end

local READ_OPTS = { "variant", "qualities", "chunk_size" }

-- The records iterator, for records() and read(): an error about the
-- source or the options names the line that called them.
local function open_records(source, opts, fname)
  local v, vname = variant_of(opts, fname, 4)
  local read, close, name, line_base = IO.open_source(source, fname, opts.chunk_size, "fastq", 1)
  return IO.iterator(reader(read, close, name, fname, opts, line_base, v, vname), close)
end

--- Iterate over the records of a FASTQ file (a path, "-" for standard
-- input, or an open file; gzip and BGZF are decompressed on the fly).
-- opts: variant ("sanger" default, "illumina", "solexa"), qualities (false:
-- skip the numeric scores), chunk_size.
function M.records(source, opts)
  opts = A.check_options(opts, READ_OPTS, "bio.fastq.records", 2)
  local a, b, c, d = open_records(source, opts, "bio.fastq.records")
  return a, b, c, d
end

--- Index a FASTQ file (plain or BGZF) as `samtools faidx --fastq` does:
-- writes path .. ".fai" (6 columns, the sixth `qualoffset`; and ".gzi" for
-- BGZF); returns the entries and warnings, as bio.fasta.index.  bio._fai.
function M.index(path, opts)
  local entries, warnings = require("bio._fai").index(path, opts, "bio.fastq.index", true)
  return entries, warnings
end

--- Record-aligned shards of a FASTQ file (plain or BGZF), as fasta.shards:
-- cuts are made only before a 4-line record ('@' line, sequence, '+' line,
-- quality of the same length), so a wrapped record is never split.
function M.shards(path, n, vms)
  IO.refuse_stdin(path, "bio.fastq.shards")
  local shards = require("bio._shard").shards(path, n, "fastq", "bio.fastq.shards", vms)
  return shards
end

--- Iterate over the records in a string holding FASTQ text.
-- The records iterator over a string, for records_from_string() and parse().
local function string_records(text, opts, fname)
  local v, vname = variant_of(opts, fname, 4)
  local read, close, name = IO.string_source(text, fname, opts.chunk_size)
  return reader(read, close, name, fname, opts, nil, v, vname)
end

function M.records_from_string(text, opts)
  opts = A.check_options(opts, READ_OPTS, "bio.fastq.records_from_string", 2)
  local it = string_records(text, opts, "bio.fastq.records_from_string")
  return it
end

--- All records of a path or open file, as a list.
function M.read(source, opts)
  opts = A.check_options(opts, READ_OPTS, "bio.fastq.read", 2)
  return IO.collect(open_records(source, opts, "bio.fastq.read"))
end

--- All records of a FASTQ string, as a list.
function M.parse(text, opts)
  opts = A.check_options(opts, READ_OPTS, "bio.fastq.parse", 2)
  return IO.collect(string_records(text, opts, "bio.fastq.parse"))
end

-- The FASTQ text of one record; errors at `level` (as A.arg_error counts).
local function format_record(rec, opts, fname, level)
  if type(rec) ~= "table" or type(rec.seq) ~= "string" then
    A.arg_error(fname, 1, "record", "expected a record with a string field 'seq'", level)
  end
  local v = variant_of(opts, fname, level)
  local q = rec.quality
  if q == nil and rec.qualities then q = encode(rec.qualities, v.offset, fname, level < 0 and level or level + 1) end
  if type(q) ~= "string" then A.arg_error(fname, 1, "record", "needs 'quality' (string) or 'qualities' (numbers)", level) end
  if #q ~= #rec.seq then
    A.arg_error(fname, 1, "record", string.format("sequence and quality lengths differ (%d and %d)", #rec.seq, #q), level)
  end
  local title = require("bio.fasta").title(rec)
  return "@" .. title .. "\n" .. rec.seq .. "\n+\n" .. q .. "\n"
end

--- One record as 4-line FASTQ text.  The quality comes from `quality` (a
-- string) or `qualities` (numbers, encoded with the variant's offset).
function M.format(rec, opts)
  opts = A.check_options(opts, { "variant" }, "bio.fastq.format", 2)
  local text = format_record(rec, opts, "bio.fastq.format", 3)
  return text
end

--- Write records (a list, one record, or an iterator) to a path, "-"
-- (standard output) or an open file.  Returns the number written.
function M.write(dest, records, opts)
  local fname = "bio.fastq.write"
  opts = A.check_options(opts, { "variant" }, fname, 3)
  local each = IO.each(records, fname)
  local write, close = IO.open_dest(dest, fname)
  local n = 0
  local ok, err = pcall(function()
    for rec in each do
      write(format_record(rec, opts, fname, -1)) -- -1: no position; raised again below at the caller's line
      n = n + 1
    end
  end)
  close()
  if not ok then error(err, 2) end
  return n
end

return M
