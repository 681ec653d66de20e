--- bio.fasta: streaming FASTA reader and writer.
--
--   for rec in fasta.records("genome.fa") do print(rec.id, #rec.seq) end
--   for rec in fasta.records_from_string(">a x\nACGT\n") do ... end
--   fasta.write("out.fa", records, {width = 60})
--
-- Records are {id, description, seq}: `description` is the whole header
-- line after '>' (trailing whitespace removed), `id` its first word, and
-- `seq` the sequence lines joined with spaces, tabs, CR and LF removed
-- (as Biopython's SeqIO "fasta" parser does; case and other characters are
-- kept).  Blank lines before the first record are skipped; any other text
-- there is an error naming the line.  The file is read in fixed-size chunks,
-- so memory is bounded by the largest record.  Reference: docs/bio/fasta.md.
local F = require "bio._fast"
local A = require "bio.alphabet"
local IO = require "bio._io"
local R = require "bio._record"

local M = {}

local ffi = F.ffi
local byte, sub, find, gsub, concat = string.byte, string.sub, string.find, string.gsub, table.concat

---------------------------------------------------------------------------
-- Sequence sinks: collect the body bytes of one record, dropping
-- whitespace, and hand back the joined sequence.
---------------------------------------------------------------------------

local new_sink

-- Sinks collect one record's body and hand back the sequence.  Their one
-- method, add_until(s, i), appends s[i..] up to the next line that starts
-- with '>' and returns that '>' position, or nil when s ends first.

-- libc memchr through the FFI (bio._fast): a vectorised scan for the next newline.
local memchr = F.memchr

if ffi and memchr then
  -- Copy whole lines with ffi.copy (memcpy), found with memchr; spaces,
  -- tabs and CRs are removed afterwards, only when memchr sees one.
  local KEEP = F.lut("uint8_t", { [32] = 0, [9] = 0, [13] = 0, [10] = 0 }, 1)
  local NL, GT = 10, 62
  local cast, copy = ffi.cast, ffi.copy
  new_sink = function()
    -- one buffer per reader: readers may be interleaved (zip two files)
    local buf, cap = ffi.new("uint8_t[?]", 65536), 65536
    local w = 0
    local sink = {}
    local function reserve(n)
      if w + n > cap then
        local newcap = cap
        while newcap < w + n do newcap = newcap * 2 end
        local nb = ffi.new("uint8_t[?]", newcap)
        copy(nb, buf, w)
        buf, cap = nb, newcap
      end
    end
    function sink.add_until(s, i)
      local n = #s
      if i > n then return nil end
      local base = cast("const uint8_t*", s)
      reserve(n - i + 1)
      local pos = i - 1 -- 0-based
      while pos < n do
        local q = memchr(base + pos, NL, n - pos)
        if q == nil then
          copy(buf + w, base + pos, n - pos)
          w = w + (n - pos)
          return nil
        end
        local nl = cast("const uint8_t*", q) - base
        local len = nl - pos
        copy(buf + w, base + pos, len)
        w = w + len
        pos = nl + 1
        if pos < n and base[pos] == GT then return pos + 1 end
      end
      return nil
    end
    function sink.finish()
      if memchr(buf, 13, w) ~= nil or memchr(buf, 32, w) ~= nil or memchr(buf, 9, w) ~= nil then
        local out, keep, k = buf, KEEP, 0
        for j = 0, w - 1 do
          local b = out[j]
          out[k] = b
          k = k + keep[b]
        end
        w = k
      end
      local seq = ffi.string(buf, w)
      w = 0
      if cap > 16777216 then buf, cap = ffi.new("uint8_t[?]", 65536), 65536 end -- do not pin huge buffers
      return seq
    end
    return sink
  end
else
  -- Portable: split into lines with plain find (memchr in C), join once,
  -- and only run a gsub if a stray space, tab or CR is present.
  new_sink = function()
    local parts, np = {}, 0
    local sink = {}
    local function add(s, i, j)
      local pos = i
      while pos <= j do
        local nl = find(s, "\n", pos, true)
        if not nl or nl > j then
          np = np + 1; parts[np] = sub(s, pos, j)
          return
        end
        if nl > pos then np = np + 1; parts[np] = sub(s, pos, nl - 1) end
        pos = nl + 1
      end
    end
    function sink.add_until(s, i)
      local nxt = find(s, "\n>", i, true)
      if nxt then
        add(s, i, nxt)
        return nxt + 1
      end
      add(s, i, #s)
      return nil
    end
    function sink.finish()
      local s = np == 1 and parts[1] or concat(parts, "", 1, np)
      parts, np = {}, 0
      if find(s, "\r", 1, true) or find(s, " ", 1, true) or find(s, "\t", 1, true) then
        s = gsub(s, "[ \t\r]+", "")
      end
      return s
    end
    return sink
  end
end

---------------------------------------------------------------------------
-- Reader
---------------------------------------------------------------------------

local function make_record(title)
  return R.record({ id = IO.first_word(title), description = title })
end

-- The record iterator over a chunk reader.
local function reader(read, close, name, fname, line_base)
  local buf, pos = "", 1
  local eof, started, done = false, false, false
  local lineno = 0 -- only tracked before the first record (for errors)
  local sink = new_sink()

  -- Append the next chunk to the unconsumed part of buf; false at EOF.
  local function more()
    if eof then return false end
    local chunk = read()
    if chunk == nil then eof = true; return false end
    if pos > #buf then buf = chunk else buf = sub(buf, pos) .. chunk end
    pos = 1
    return true
  end

  -- Skip blank lines before the first header; anything else is an error.
  local function find_first_header()
    while true do
      if pos > #buf and not more() then return false end
      local nl = find(buf, "\n", pos, true)
      while not nl and more() do nl = find(buf, "\n", pos, true) end
      local line = sub(buf, pos, (nl or #buf + 1) - 1)
      lineno = lineno + 1
      if byte(line, 1) == 62 then return true end -- '>'
      if find(line, "[^ \t\r\v\f]") then
        close()
        error(string.format("%s: %s line %d: text before the first '>' header: %q (FASTA records start with '>')",
          fname, name, lineno + (line_base and line_base() or 0), #line > 40 and sub(line, 1, 40) .. "..." or line), 0)
      end
      if not nl then pos = #buf + 1; if eof then return false end
      else pos = nl + 1 end
    end
  end

  local function next_record()
    if done then return nil end
    if not started then
      started = true
      if not find_first_header() then done = true; close(); return nil end
    end
    -- buf[pos] is '>': read the header line
    local nl = find(buf, "\n", pos, true)
    while not nl and more() do nl = find(buf, "\n", pos, true) end
    local title = IO.rstrip(sub(buf, pos + 1, (nl or #buf + 1) - 1))
    local rec = make_record(title)
    if not nl then
      pos = #buf + 1
      rec.seq = ""
      done = true; close()
      return rec
    end
    pos = nl + 1
    -- body: up to the next line that starts with '>'.  Chunks are handed to
    -- the sink as they are read (no joining); `prev_nl` carries "the last
    -- byte was a newline" across a chunk boundary.
    local prev_nl = true -- the header's own newline
    while true do
      if prev_nl and pos <= #buf and byte(buf, pos) == 62 then break end
      local gt = sink.add_until(buf, pos)
      if gt then pos = gt; break end
      prev_nl = byte(buf, #buf) == 10 or (prev_nl and pos > #buf)
      pos = #buf + 1
      if eof then done = true; break end
      local chunk = read()
      if chunk == nil then eof = true; done = true; break end
      buf, pos = chunk, 1
    end
    rec.seq = sink.finish()
    if done then close() end
    return rec
  end
  return next_record
end

local READ_OPTS = { "chunk_size" }

-- The records iterator, for records() and read(): an error about the
-- source names the line that called them (one level above this function).
local function open_records(source, opts, fname)
  local read, close, name, line_base = IO.open_source(source, fname, opts.chunk_size, "fasta", 1)
  return IO.iterator(reader(read, close, name, fname, line_base), close)
end

--- Iterate over the records of a FASTA file (a path, "-" for standard
-- input, or an open file; gzip and BGZF are decompressed on the fly).
-- opts.chunk_size: bytes per read (default 64 KiB on LuaJIT, 1 MiB elsewhere).
function M.records(source, opts)
  opts = A.check_options(opts, READ_OPTS, "bio.fasta.records", 2)
  local a, b, c, d = open_records(source, opts, "bio.fasta.records")
  return a, b, c, d
end

--- Record-aligned shards of a FASTA file (plain or BGZF): up to `n` plain
-- tables {path, offset, length, ...} that start at record starts and cover
-- the file exactly once; records(shard) and gc_records(shard) read only that
-- range.  A plain-gzip file is one shard.  vms (optional): size them for that
-- many VMs taking them in turn (smaller shards last).  See docs/bio/fasta.md.
function M.shards(path, n, vms)
  IO.refuse_stdin(path, "bio.fasta.shards")
  local shards = require("bio._shard").shards(path, n, "fasta", "bio.fasta.shards", vms)
  return shards
end

--- Index a FASTA file (plain or BGZF) as `samtools faidx` does: writes
-- path .. ".fai" (and ".gzi" for BGZF) and returns the entries
-- {name, length, offset, linebases, linewidth} and a list of warnings
-- (duplicate names).  opts.write = false only returns them.  bio._fai.
function M.index(path, opts)
  local entries, warnings = require("bio._fai").index(path, opts, "bio.fasta.index")
  return entries, warnings
end

--- The entries of an existing .fai file (its own path).
function M.read_index(fai)
  local entries = require("bio._fai").read_index(fai, "bio.fasta.read_index")
  return entries
end

--- The sequence of name:start-stop (1-based, inclusive; start and stop
-- optional) as `samtools faidx path region` prints it, unwrapped, read
-- through the index (built when missing), and a warning string or nil.
function M.fetch(path, name, start, stop)
  local seq, warning = require("bio._fai").fetch(path, name, start, stop, "bio.fasta.fetch")
  return seq, warning
end

--- Iterate over the records in a string holding FASTA text.
function M.records_from_string(text, opts)
  opts = A.check_options(opts, READ_OPTS, "bio.fasta.records_from_string", 2)
  local read, close, name = IO.string_source(text, "bio.fasta.records_from_string", opts.chunk_size)
  return reader(read, close, name, "bio.fasta.records_from_string")
end

--- All records of a path or open file, as a list.
function M.read(source, opts)
  opts = A.check_options(opts, READ_OPTS, "bio.fasta.read", 2)
  return IO.collect(open_records(source, opts, "bio.fasta.read"))
end

--- All records of a FASTA string, as a list.
function M.parse(text, opts)
  return IO.collect(M.records_from_string(text, opts))
end

---------------------------------------------------------------------------
-- Per-record GC content without building the sequences
---------------------------------------------------------------------------

-- gc_records yields, for each record, exactly what
--   rec.id, #rec.seq, seq.gc_fraction(rec.seq, ambiguous), rec.description
-- would be (same parser, same errors), but on LuaJIT it never builds
-- rec.seq: a fused scanner reads the file with fread into one reused
-- buffer, finds record starts with memchr('>') and counts G/C, A/T and
-- line-break bytes of each body in place with a byte-pair lookup table.
-- Elsewhere it is the plain loop above (records + gc_fraction).

local MODES = { remove = true, ignore = true, weighted = true }

local function check_mode(mode, fname)
  if mode == nil then return "remove" end
  if not MODES[mode] then
    A.arg_error(fname, 2, "ambiguous", "must be \"remove\", \"ignore\" or \"weighted\", got " .. tostring(mode), 3)
  end
  return mode
end

-- The portable way: the ordinary reader and bio.seq.gc_fraction.
local function gc_iterator_plain(next_record, mode)
  local gc_fraction = require("bio.seq").gc_fraction
  return function()
    local rec = next_record()
    if rec == nil then return nil end
    return rec.id, #rec.seq, gc_fraction(rec.seq, mode), rec.description
  end
end

local gc_scanner -- LuaJIT + FFI: gc_scanner(chunk_reader, close, name, fname, mode) -> next()
local fopen_chunks, string_chunks
if ffi and memchr then
  local C = F.stdio -- fopen, fread, fclose, fseek (nil: no stdio through the FFI)
  local cast, floor = ffi.cast, math.floor
  local u8p, u16p = ffi.typeof("const uint8_t *"), ffi.typeof("const uint16_t *")
  local NL, GT = 10, 62
  local F17, F34 = 131072, 17179869184 -- field weights: gc + at * 2^17 + ws * 2^34
  local BLOCK = 65536 -- bytes per block: each field stays below 2^17
  local FAST_CHUNK = 262144 -- fread size: stays in L2 cache while it is scanned

  -- Lookup tables, built on first use: one byte, and a byte pair read as uint16.
  local LUT1, LUT2
  local function build_luts()
    local one = {}
    for b = 0, 255 do one[b] = 0 end
    for i = 1, 6 do one[byte("GCSgcs", i)] = 1 end
    for i = 1, 8 do one[byte("ATWUatwu", i)] = F17 end
    for _, b in ipairs({ 9, 10, 13, 32 }) do one[b] = F34 end -- removed from the sequence
    LUT1, LUT2 = ffi.new("double[256]"), ffi.new("double[65536]")
    for a = 0, 255 do
      LUT1[a] = one[a]
      for b = 0, 255 do LUT2[a * 256 + b] = one[a] + one[b] end
    end
  end

  -- Counts over p[i .. j-1]: G/C/S, A/T/W/U and whitespace bytes (both cases).
  local function count3(p, i, j)
    local gc, at, ws = 0, 0, 0
    while i < j do
      local stop = i + BLOCK
      if stop > j then stop = j end
      local npairs = floor((stop - i) / 2)
      local q = cast(u16p, p + i)
      local a1, a2, a3, a4 = 0, 0, 0, 0
      local last4 = npairs - npairs % 4
      for k = 0, last4 - 4, 4 do
        a1 = a1 + LUT2[q[k]]; a2 = a2 + LUT2[q[k + 1]]
        a3 = a3 + LUT2[q[k + 2]]; a4 = a4 + LUT2[q[k + 3]]
      end
      for k = last4, npairs - 1 do a1 = a1 + LUT2[q[k]] end
      if i + 2 * npairs < stop then a2 = a2 + LUT1[p[stop - 1]] end
      local acc = a1 + a2 + a3 + a4
      local w = floor(acc / F34)
      acc = acc - w * F34
      local a = floor(acc / F17)
      gc, at, ws = gc + (acc - a * F17), at + a, ws + w
      i = stop
    end
    return gc, at, ws
  end

  -- Weighted mode needs every letter's count: a histogram of the body.
  local WEIGHTED_ORDER = { "B", "D", "H", "K", "M", "N", "R", "V", "X", "Y" } -- as bio.seq sums them
  local WEIGHT = { B = 2 / 3, D = 1 / 3, H = 1 / 3, K = 0.5, M = 0.5, N = 0.5, R = 0.5, V = 2 / 3, X = 0.5, Y = 0.5 }
  local function add_histogram(h, p, i, j)
    for k = i, j - 1 do local b = p[k]; h[b] = h[b] + 1 end
  end
  local function weighted_gc(h)
    local gc = 0
    for _, c in ipairs({ "C", "G", "S", "c", "g", "s" }) do gc = gc + h[byte(c)] end
    local extra = 0
    for _, c in ipairs(WEIGHTED_ORDER) do
      extra = extra + (h[byte(c)] + h[byte(c:lower())]) * WEIGHT[c]
    end
    return gc + extra
  end

  gc_scanner = function(read_chunk, close, name, fname, mode, line_base)
    if not LUT1 then build_luts() end
    local p, n, pos = nil, 0, 0 -- current chunk (0-based), bytes in it, next byte
    local hold                  -- the Lua string p points into, if any (kept alive)
    local eof, started, done = false, false, false
    local hist = mode == "weighted" and ffi.new("double[256]") or nil

    -- Next chunk into p/n (pos = 0); false at end of file.
    local function refill()
      if eof then return false end
      local ptr, len, keep = read_chunk()
      if ptr == nil then eof = true; return false end
      p, n, pos, hold = ptr, len, 0, keep
      return true
    end

    -- Before the first record: blank lines are skipped, other text is an
    -- error naming the line (as the record reader does).  Returns the
    -- first header line (without '>') and whether a newline ended it.
    local function first_header()
      local lineno = 0
      while true do
        if pos >= n and not refill() then return nil end
        lineno = lineno + 1
        local parts, ended = {}, false
        while true do -- one line, possibly across chunks
          local q = memchr(p + pos, NL, n - pos)
          local stop = q ~= nil and cast(u8p, q) - p or n
          parts[#parts + 1] = ffi.string(p + pos, stop - pos)
          if q ~= nil then pos, ended = stop + 1, true; break end
          pos = n
          if not refill() then break end
        end
        local line = concat(parts)
        if byte(line, 1) == GT then return sub(line, 2), ended end
        if find(line, "[^ \t\r\v\f]") then
          close()
          error(string.format("%s: %s line %d: text before the first '>' header: %q (FASTA records start with '>')",
            fname, name, lineno + (line_base and line_base() or 0), #line > 40 and sub(line, 1, 40) .. "..." or line), 0)
        end
      end
    end

    -- The header line after '>' (p[pos] is the '>'), and whether it ended.
    local function header()
      pos = pos + 1
      local parts = {}
      while true do
        local q = memchr(p + pos, NL, n - pos)
        local stop = q ~= nil and cast(u8p, q) - p or n
        parts[#parts + 1] = ffi.string(p + pos, stop - pos)
        if q ~= nil then pos = stop + 1; return concat(parts), true end
        pos = n
        if not refill() then return concat(parts), false end
      end
    end

    return function()
      if done then return nil end
      local title, header_done
      if not started then
        started = true
        title, header_done = first_header()
        if title == nil then done = true; close(); return nil end
      else
        title, header_done = header()
      end
      title = IO.rstrip(title)
      local id = IO.first_word(title)
      if not header_done then -- a header at the very end of the file
        done = true; close()
        return id, 0, 0, title
      end
      -- body: up to the next '>' that starts a line
      local gc, at, ws, bytes = 0, 0, 0, 0
      if hist then ffi.fill(hist, 256 * 8) end
      local prev_nl = true -- the byte before p[pos] is the header's newline
      while true do
        local start, search = pos, pos
        local stop, boundary = n, false
        while search < n do
          local q = memchr(p + search, GT, n - search)
          if q == nil then break end
          local at_gt = cast(u8p, q) - p
          if (at_gt == 0 and prev_nl) or (at_gt > 0 and p[at_gt - 1] == NL) then
            stop, boundary = at_gt, true
            break
          end
          search = at_gt + 1 -- a '>' inside a line is a sequence character
        end
        if stop > start then
          local g, a, w = count3(p, start, stop)
          gc, at, ws, bytes = gc + g, at + a, ws + w, bytes + (stop - start)
          if hist then add_histogram(hist, p, start, stop) end
        end
        pos = stop
        if boundary then break end
        if n > 0 then prev_nl = p[n - 1] == NL end
        if not refill() then done = true; break end
      end
      if done then close() end
      local length = bytes - ws
      local frac
      if mode == "remove" then
        frac = (gc + at == 0) and 0 or gc / (gc + at)
      elseif mode == "ignore" then
        frac = length == 0 and 0 or gc / length
      else
        frac = length == 0 and 0 or weighted_gc(hist) / length
      end
      return id, length, frac, title
    end
  end

  -- Chunk readers for the scanner: each call gives (pointer, length,
  -- keep-alive) or nil at the end.  A path is read with fread into a
  -- buffer of its own (readers may interleave); nil if fopen fails.
  -- `offset`/`length` (a shard's range) read only those bytes.  A gzip file
  -- is left to the decompressing reader of bio._io (nil is returned).
  fopen_chunks = function(path, chunk_size, offset, length)
    local fp, close = F.fopen(path) -- closed by the GC if a loop is abandoned
    if not fp then return nil end
    local size = chunk_size or FAST_CHUNK
    local buf = ffi.new("uint8_t[?]", size)
    if tonumber(C.fread(buf, 1, 2, fp)) == 2 and buf[0] == 31 and buf[1] == 139 then close(); return nil end
    if C.fseek(fp, offset or 0, 0) ~= 0 then close(); return nil end
    local left = length or math.huge
    local open = true -- a closed FILE* must never be read again
    return function()
      if not open or left <= 0 then return nil end
      local got = tonumber(C.fread(buf, 1, left < size and left or size, fp))
      if got == 0 then return nil end
      left = left - got
      return buf, got, nil
    end, function() open = false; close() end
  end

  -- Over a chunk reader that returns Lua strings (open files, strings).
  string_chunks = function(read)
    return function()
      local s = read()
      if s == nil or #s == 0 then return nil end
      return cast(u8p, s), #s, s
    end
  end
end

--- Iterate over a FASTA file's records as (id, length, gc, description):
-- `length` is #rec.seq and `gc` is bio.seq.gc_fraction(rec.seq, ambiguous)
-- ("remove" by default, "ignore" or "weighted"), without building the
-- sequences on LuaJIT.  Same source types, parsing and errors as records().
--   for id, len, gc in fasta.gc_records("genome.fa") do print(id, len, gc) end
function M.gc_records(source, ambiguous, opts)
  local fname = "bio.fasta.gc_records"
  local mode = check_mode(ambiguous, fname)
  opts = A.check_options(opts, { "chunk_size" }, fname, 3)
  if gc_scanner then
    local read_chunk, close, name, line_base
    local shard = type(source) == "table" and require("bio._shard").check(source, fname, "fasta") and source
    if shard then
      read_chunk, close = fopen_chunks(shard.path, opts.chunk_size, shard.offset, shard.length)
      name = shard.path
      line_base = function() -- counted only for an error message
        local _, c, _, base = IO.open_source(shard, fname)
        local ok, n = pcall(base)
        c()
        return ok and n or 0
      end
    elseif type(source) == "string" and source ~= IO.STDIN then
      read_chunk, close = fopen_chunks(source, opts.chunk_size)
      name = source
    end
    if not read_chunk then -- an open file, a gzip file, or fopen failed (io.open names the error)
      local read
      read, close, name, line_base = IO.open_source(source, fname, opts.chunk_size, "fasta")
      read_chunk = string_chunks(read)
    end
    return IO.iterator(gc_scanner(read_chunk, close, name, fname, mode, line_base), close)
  end
  local read, close, name, line_base = IO.open_source(source, fname, opts.chunk_size, "fasta")
  return IO.iterator(gc_iterator_plain(reader(read, close, name, fname, line_base), mode), close)
end

--- gc_records over a string holding FASTA text.
function M.gc_records_from_string(text, ambiguous, opts)
  local fname = "bio.fasta.gc_records_from_string"
  local mode = check_mode(ambiguous, fname)
  opts = A.check_options(opts, { "chunk_size" }, fname, 3)
  local read, close, name = IO.string_source(text, fname, opts.chunk_size)
  if gc_scanner then return gc_scanner(string_chunks(read), close, name, fname, mode) end
  return gc_iterator_plain(reader(read, close, name, fname), mode)
end

---------------------------------------------------------------------------
-- Writer
---------------------------------------------------------------------------

local function clean(s) return (gsub(s, "[\r\n]", " ")) end

--- The header line Biopython's FASTA writer would produce for a record:
-- the description if it already starts with the id, else "id description".
function M.title(rec)
  if type(rec) ~= "table" then A.arg_error("bio.fasta.title", 1, "record", "expected a record table, got " .. type(rec), 2) end
  local id = clean(rec.id or "")
  local desc = clean(rec.description or "")
  local word = IO.first_word(desc) -- desc.split(None, 1)[0], "" for none
  if word ~= "" and word == id then return desc end
  if desc ~= "" then return id .. " " .. desc end
  return id
end

-- A valid `width` (nil: 60; false or 0: one line), checked at the line
-- that called check_width's caller.
local function check_width(width, fname, pos)
  if width == nil then return 60 end
  if width ~= false and width ~= 0 then A.check_int(width, fname, pos, "width", 1, math.huge) end
  return width
end

-- One record as FASTA text; a bad record is an error at `level` (as
-- A.arg_error counts it; -1: no position, for write() to add the caller's).
local function format_record(rec, width, fname, level)
  if type(rec) ~= "table" then A.arg_error(fname, 1, "record", "expected a record table, got " .. type(rec), level) end
  local seq = rec.seq
  if type(seq) ~= "string" then A.arg_error(fname, 1, "record", "field 'seq' must be a string, got " .. type(seq), level) end
  if find(seq, "[\r\n]") then A.arg_error(fname, 1, "record", "sequence contains a line break", level) end
  local header = ">" .. M.title(rec) .. "\n"
  local n = #seq
  if not width or width == 0 then return header .. seq .. "\n" end
  if n <= width then return n == 0 and header or header .. seq .. "\n" end
  local lines, k = { header }, 1
  for i = 1, n, width do
    k = k + 1
    lines[k] = sub(seq, i, i + width - 1)
  end
  return lines[1] .. concat(lines, "\n", 2, k) .. "\n"
end

--- One record as FASTA text, sequence wrapped at `width` columns (default
-- 60; 0 or false writes the sequence on one line).
function M.format(rec, width)
  local fname = "bio.fasta.format"
  if type(rec) ~= "table" then A.arg_error(fname, 1, "record", "expected a record table, got " .. type(rec), 2) end
  width = check_width(width, fname, 2)
  local text = format_record(rec, width, fname, 3)
  return text
end

--- Write records (a list, one record, or an iterator such as
-- fasta.records(...)) to a path, "-" (standard output) or an open file.
-- opts.width (default 60).  Returns the number of records written.
function M.write(dest, records, opts)
  local fname = "bio.fasta.write"
  opts = A.check_options(opts, { "width" }, fname, 3)
  local width = check_width(opts.width, fname, 3)
  local each = IO.each(records, fname)
  local write, close = IO.open_dest(dest, fname)
  local n = 0
  local ok, err = pcall(function()
    for rec in each do
      write(format_record(rec, width, fname, -1)) -- -1: no position; raised again below at the caller's line
      n = n + 1
    end
  end)
  close()
  if not ok then error(err, 2) end
  return n
end

--- Records as one FASTA string.
function M.to_string(records, opts)
  local fname = "bio.fasta.to_string"
  opts = A.check_options(opts, { "width" }, fname, 2)
  local width = check_width(opts.width, fname, 2)
  local parts = {}
  for rec in IO.each(records, fname) do parts[#parts + 1] = format_record(rec, width, fname, 3) end
  return concat(parts)
end

return M
