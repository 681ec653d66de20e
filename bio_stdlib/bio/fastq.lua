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

local ffi = F.ffi

local M = {}

local byte, char, sub, find, concat = string.byte, string.char, string.sub, string.find, table.concat

--- FASTQ variants: ASCII offset and the score range Biopython accepts.
M.variants = {
  sanger = { offset = 33, min = 0, max = 93 },
  illumina = { offset = 64, min = 0, max = 62 },
  solexa = { offset = 64, min = -5, max = 62 },
}

local function variant_of(opts, fname)
  local name = opts.variant or "sanger"
  local v = M.variants[name]
  if not v then A.arg_error(fname, 2, "variant", "must be \"sanger\", \"illumina\" or \"solexa\", got " .. tostring(name), 3) end
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
  return decode(q, offset or 33)
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

--- Encode scores (numbers) as a quality string.
function M.encode_qualities(scores, offset, fname)
  offset = offset or 33
  local parts, n = {}, #scores
  for i = 1, n, 4096 do
    local chunk = {}
    for k = i, math.min(i + 4095, n) do
      local v = scores[k]
      if type(v) ~= "number" or v ~= math.floor(v) or v + offset < 33 or v + offset > 126 then
        A.arg_error(fname or "bio.fastq.encode_qualities", 1, "qualities",
          string.format("score %s at position %d cannot be encoded with offset %d", tostring(v), k, offset), 2)
      end
      chunk[#chunk + 1] = v + offset
    end
    parts[#parts + 1] = char(unpack(chunk))
  end
  return concat(parts)
end

local function reader(read, close, name, fname, opts, line_base)
  local v, vname = variant_of(opts, fname)
  local lo, hi = v.offset + v.min, v.offset + v.max
  local want_numbers = opts.qualities ~= false
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
    if find(seq, " ", 1, true) or find(seq, "\t", 1, true) then fail("whitespace in the sequence of record '%s' (line %d)", title, L(header_line)) end
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
    local rec = { id = IO.first_word(title), description = title, seq = seq, quality = quality }
    if want_numbers then rec.qualities = decode(quality, v.offset) end
    return rec
  end
end

local READ_OPTS = { "variant", "qualities", "chunk_size" }
local function opts_of(opts, fname)
  return A.check_options(opts, READ_OPTS, fname, 2)
end

--- Iterate over the records of a FASTQ file (a path or an open file).
-- opts: variant ("sanger" default, "illumina", "solexa"), qualities (false:
-- skip the numeric scores), chunk_size.
function M.records(source, opts)
  opts = opts_of(opts, "bio.fastq.records")
  local read, close, name, line_base = IO.open_source(source, "bio.fastq.records", opts.chunk_size, "fastq")
  return IO.iterator(reader(read, close, name, "bio.fastq.records", opts, line_base), close)
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
function M.shards(path, n)
  return require("bio._shard").shards(path, n, "fastq", "bio.fastq.shards")
end

--- Iterate over the records in a string holding FASTQ text.
function M.records_from_string(text, opts)
  opts = opts_of(opts, "bio.fastq.records_from_string")
  local read, close, name = IO.string_source(text, "bio.fastq.records_from_string", opts.chunk_size)
  return reader(read, close, name, "bio.fastq.records_from_string", opts)
end

--- All records of a path or open file, as a list.
function M.read(source, opts)
  return IO.collect(M.records(source, opts))
end

--- All records of a FASTQ string, as a list.
function M.parse(text, opts)
  return IO.collect(M.records_from_string(text, opts))
end

--- One record as 4-line FASTQ text.  The quality comes from `quality` (a
-- string) or `qualities` (numbers, encoded with the variant's offset).
function M.format(rec, opts)
  local fname = "bio.fastq.format"
  opts = A.check_options(opts, { "variant" }, fname, 2)
  if type(rec) ~= "table" or type(rec.seq) ~= "string" then
    A.arg_error(fname, 1, "record", "expected a record with a string field 'seq'", 2)
  end
  local v = variant_of(opts, fname)
  local q = rec.quality
  if q == nil and rec.qualities then q = M.encode_qualities(rec.qualities, v.offset, fname) end
  if type(q) ~= "string" then A.arg_error(fname, 1, "record", "needs 'quality' (string) or 'qualities' (numbers)", 2) end
  if #q ~= #rec.seq then
    A.arg_error(fname, 1, "record", string.format("sequence and quality lengths differ (%d and %d)", #rec.seq, #q), 2)
  end
  local title = require("bio.fasta").title(rec)
  return "@" .. title .. "\n" .. rec.seq .. "\n+\n" .. q .. "\n"
end

--- Write records (a list, one record, or an iterator) to a path or open
-- file.  Returns the number written.
function M.write(dest, records, opts)
  local write, close = IO.open_dest(dest, "bio.fastq.write")
  local n = 0
  local ok, err = pcall(function()
    for rec in IO.each(records, "bio.fastq.write") do
      write(M.format(rec, opts))
      n = n + 1
    end
  end)
  close()
  if not ok then error(err, 0) end
  return n
end

return M
