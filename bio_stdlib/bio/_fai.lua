--- bio._fai: the FASTA index (.fai, and .gzi for BGZF) as samtools faidx
-- writes it, and region fetches through it.  Entry points: bio.fasta.index,
-- bio.fasta.read_index, bio.fasta.fetch, bio.fastq.index (docs/bio/fasta.md,
-- "Index and fetch"); bio._shard reads the .fai to place cut points.
--
-- The indexer follows htslib's fai_build_core (samtools 1.16) line by line,
-- so the same files are accepted, the same ones refused, and the columns are
-- the same bytes:
--   * a record's NAME is the header's first word; OFFSET is the byte after
--     the header line; LINEBASES / LINEWIDTH come from its first sequence
--     line (printable characters / all bytes with the line end);
--   * only the last line of a record may be shorter, and after a shorter line
--     only blank lines or the next header may follow;
--   * a record without any sequence line is left out of the index (as
--     htslib does), a duplicate name is warned about and the first kept, and
--     a last record without sequence fails the whole file.
--   * FASTQ (bio.fastq.index): the same, plus QUALOFFSET (the byte after the
--     '+' line), and the quality checked against the sequence's length and
--     line width as htslib checks it.
-- The file is read in chunks (bio._io: plain or BGZF), one pattern search per
-- line, so memory stays bounded whatever the record or line sizes.
local IO = require "bio._io"
local A = require "bio.alphabet"

local M = {}

local byte, sub, find, gsub, fmt, concat = string.byte, string.sub, string.find, string.gsub, string.format, table.concat
local floor = math.floor

-- Errors about arguments name the user's line: arg_error at 4 counts
-- arg_error, check, the _fai entry point and the bio.fasta wrapper.
-- `depth`: more functions between the entry point and check (default 0).
local function check(ok, fname, pos, name, msg, depth)
  if not ok then A.arg_error(fname, pos, name, msg, 4 + (depth or 0)) end
end

local function check_path(path, fname)
  check(type(path) == "string", fname, 1, "path", "expected a file path, got " .. type(path), 1)
end

-- "plain", "bgzf" or "gzip": how the file's bytes are stored.
local function storage(path, fname)
  local f = IO.open_file(path, fname, 4) -- storage, the entry point, the bio.fasta wrapper, the user
  local magic = f:read(2)
  f:close()
  if magic ~= "\31\139" then return "plain" end
  return require("bio._gzip").is_bgzf(path) and "bgzf" or "gzip"
end

local function refuse_gzip(path, fname)
  A.raise(fmt("%s: '%s' is compressed with plain gzip, which cannot be indexed (samtools: \"Cannot index "
    .. "files compressed with gzip, please use bgzip\"); recompress it with bgzip", fname, path), 4)
end

---------------------------------------------------------------------------
-- Building the index
---------------------------------------------------------------------------

-- States of htslib's scanner, at a line start.
local OUT, SEQ = 1, 2 -- between records (after a short or blank line) / inside a sequence
local SEQ_END, QUAL = 3, 4 -- FASTQ: after a short sequence line (a '+' line must follow) / in the quality

local function printable(c)
  return c >= 32 and c < 127
end

-- Scan FASTA (or, with `fastq`, FASTQ) text from a chunk reader; returns
-- entries, warnings.  `where` names the file in errors (raised with level
-- 0: they are about the data).
local function scan(read, where, fname, fastq)
  local entries, warnings, seen = {}, {}, {}
  local state = OUT
  local lineno = 1          -- the line being looked at (1-based), as htslib counts
  local name                -- the current record's name (nil before the first header)
  local seq_offset, seq_len, line_len, char_len, qual_offset, qual_len = 0, 0, 0, 0, 0, 0
  local read_done = false   -- FASTA: the record has had a sequence line; FASTQ: its quality is complete
  local MARK, OTHER = fastq and 64 or 62, fastq and 62 or 64 -- '@' / '>'
  local KIND = fastq and "FASTQ" or "FASTA"

  local function fail(msg, ...)
    error(fmt("%s: %s: " .. msg, fname, where, ...), 0)
  end
  local function insert()
    if seen[name] then
      warnings[#warnings + 1] = fmt("Ignoring duplicate sequence \"%s\" at byte offset %.0f", name, seq_offset)
      return
    end
    seen[name] = true
    entries[#entries + 1] = { name = name, length = seq_len, offset = seq_offset, linebases = char_len,
      linewidth = line_len, qualoffset = fastq and qual_offset or nil }
  end
  -- A sequence line of ll bytes (with its end) and cl printable characters.
  local function seq_line(ll, cl)
    if not fastq then read_done = true end
    seq_len = seq_len + cl
    if line_len == 0 then
      line_len, char_len = ll, cl
    elseif line_len > ll then
      state = fastq and SEQ_END or OUT
    elseif line_len < ll then
      fail("different line length in sequence '%s' (line %d; samtools: \"Different line length in sequence\")",
        name, lineno)
    end
    lineno = lineno + 1
  end
  -- A quality line, checked against the sequence as htslib checks it.
  local function qual_line(ll, cl)
    qual_len = qual_len + cl
    if line_len < ll then
      fail("quality line too long in '%s' at line %d", name, lineno)
    elseif qual_len == seq_len then
      read_done = true
    elseif qual_len > seq_len then
      fail("quality longer than the sequence in '%s' at line %d", name, lineno)
    elseif line_len > ll then
      fail("quality line too short in '%s' at line %d", name, lineno)
    end
    lineno = lineno + 1
  end

  local s, pos, base = "", 1, 0 -- current chunk, next byte in it, offset of s[1]
  local function more()
    local chunk = read()
    if chunk == nil then return false end
    base = base + #s
    s, pos = chunk, 1
    return true
  end

  -- The rest of a header line (from pos): returns its text; sets pos after its '\n'.
  -- `nil, text` when the file ends inside it.
  local function header_line()
    local parts = {}
    while true do
      local nl = find(s, "\n", pos, true)
      if nl then
        parts[#parts + 1] = sub(s, pos, nl - 1)
        pos = nl + 1
        return concat(parts)
      end
      parts[#parts + 1] = sub(s, pos)
      pos = #s + 1
      if not more() then return nil, concat(parts) end
    end
  end

  -- The rest of a sequence line (from pos, which is in it): bytes and
  -- printable characters, counted across chunks; pos ends after its '\n'.
  local function rest_of_line()
    local ll, cl = 0, 0
    while true do
      local q = find(s, "[^!-~]", pos)
      if not q then
        local n = #s - pos + 1
        ll, cl = ll + n, cl + n
        pos = #s + 1
        if not more() then return ll + 1, cl end -- no final newline: htslib still counts one
      else
        ll, cl = ll + (q - pos) + 1, cl + (q - pos)
        pos = q + 1
        if byte(s, q) == 10 then return ll, cl end
      end
    end
  end

  local function header()
    if read_done then insert(); read_done = false end
    pos = pos + 1
    local text, partial = header_line()
    name = IO.first_word(text or partial)
    if not text then
      fail("the last entry '%s' has no sequence (line %d)", name, lineno)
    end
    seq_offset = base + pos - 1
    seq_len, line_len, char_len, qual_len = 0, 0, 0, 0
    state = SEQ
    lineno = lineno + 1
  end
  local function plus_line() -- FASTQ: the '+' line; the quality starts after it
    header_line()
    qual_offset = base + pos - 1
    state = QUAL
    lineno = lineno + 1
  end

  while true do
    if pos > #s and not more() then break end
    local c = byte(s, pos)
    if state == SEQ and fastq then
      if c == 43 then plus_line()
      elseif c == 10 then fail("empty line inside the sequence of '%s' at line %d", name, lineno)
      else seq_line(rest_of_line()) end
    elseif state == SEQ_END then
      if c ~= 43 then fail("expected '+' at line %d, got %q", lineno, string.char(c)) end
      plus_line()
    elseif state == QUAL then
      if c == 10 then
        if not read_done then fail("empty line inside the quality of '%s' at line %d", name, lineno) end
        pos = pos + 1
        state = OUT
        lineno = lineno + 1
      elseif c == 64 and read_done then header()
      else qual_line(rest_of_line()) end
    elseif c == MARK or (c == 62 and state == SEQ) then -- a header
      header()
    elseif c == 10 then -- a blank line ends a sequence
      pos = pos + 1
      state = OUT
      lineno = lineno + 1
    elseif state == SEQ then
      seq_line(rest_of_line())
    elseif c == 13 then -- a blank CRLF line between records
      pos = pos + 1
      if pos > #s then more() end
      if byte(s, pos) ~= 10 then fail("carriage return not followed by a newline at line %d", lineno) end
      pos = pos + 1
      lineno = lineno + 1
    elseif c == OTHER and name == nil then
      fail("this is %s ('%s' at line %d), not %s", fastq and "FASTA" or "FASTQ", string.char(c), lineno, KIND)
    elseif c == OTHER then
      fail("found '%s' in a %s file at line %d", string.char(c), KIND, lineno)
    else
      local shown = printable(c) and fmt("%q", string.char(c)) or fmt("character \\%d", c)
      fail("unexpected %s at line %d (%s)", shown, lineno,
        not name and fmt("text before the first '%s' header", string.char(MARK))
        or fastq and "only a header or blank lines may follow a record"
        or "a shorter line or a blank line ends a sequence; only a header or blank lines may follow")
    end
  end
  if not read_done then
    if name == nil then fail("no %s records", KIND) end
    fail("the last entry '%s' has no %s", name, fastq and "complete quality" or "sequence")
  end
  insert()
  return entries, warnings
end

-- Little-endian uint64 of a whole number below 2^53.
local function u64(x)
  local out = {}
  for i = 1, 8 do
    local b = x % 256
    out[i] = string.char(b)
    x = (x - b) / 256
  end
  return concat(out)
end

-- The .gzi htslib writes for a BGZF file: the count, then (compressed,
-- uncompressed) offsets of each block after the first that holds text.
local function gzi_bytes(path)
  local G = require "bio._gzip"
  local pairs_, u = {}, 0
  for b in G.blocks(path) do
    if b.offset > 0 and b.usize > 0 then pairs_[#pairs_ + 1] = u64(b.offset) .. u64(u) end
    u = u + b.usize
  end
  return u64(#pairs_) .. concat(pairs_)
end

local function format_entry(e)
  local line = fmt("%s\t%.0f\t%.0f\t%.0f\t%.0f", e.name, e.length, e.offset, e.linebases, e.linewidth)
  if e.qualoffset then line = line .. fmt("\t%.0f", e.qualoffset) end -- a FASTQ index
  return line .. "\n"
end

local function write_file(path, data, fname)
  local f, err = io.open(path, "wb")
  if not f then A.raise(fmt("%s: cannot write '%s': %s", fname, path, tostring(err))) end
  local ok, werr = f:write(data)
  f:close()
  if not ok then A.raise(fmt("%s: cannot write '%s': %s", fname, path, tostring(werr))) end
end

--- Index `path` (plain or BGZF FASTA, or FASTQ when `fastq`): writes
-- path .. ".fai" (and ".gzi" for BGZF) and returns the entries and a list
-- of warnings.  opts.write = false builds the entries without writing files.
function M.index(path, opts, fname, fastq)
  check_path(path, fname)
  opts = opts or {}
  check(type(opts) == "table", fname, 2, "opts", "expected a table of options, got " .. type(opts))
  for k in pairs(opts) do check(k == "write" or k == "chunk_size", fname, 2, "opts",
    fmt("unknown option '%s' (known: write, chunk_size)", tostring(k))) end
  local cs = opts.chunk_size
  check(cs == nil or (type(cs) == "number" and cs == floor(cs) and cs >= 1), fname, 2, "opts",
    "chunk_size must be a whole number >= 1, got " .. tostring(cs))
  local kind = storage(path, fname)
  if kind == "gzip" then refuse_gzip(path, fname) end
  local read, close = IO.open_source(path, fname, opts.chunk_size)
  local ok, entries, warnings = pcall(scan, read, "'" .. path .. "'", fname, fastq)
  close()
  if not ok then A.raise(entries) end
  if opts.write ~= false then
    write_file(path .. ".fai", M.format(entries), fname)
    if kind == "bgzf" then write_file(path .. ".gzi", gzi_bytes(path), fname) end
  end
  return entries, warnings
end

--- The text of a .fai, as index() writes it.
function M.format(entries)
  local lines = {}
  for i, e in ipairs(entries) do lines[i] = format_entry(e) end
  return concat(lines)
end

---------------------------------------------------------------------------
-- Reading an index
---------------------------------------------------------------------------

local NUM = "(%d+)"
local LINE5 = "^([^\t]*)\t" .. NUM .. "\t" .. NUM .. "\t" .. NUM .. "\t" .. NUM .. "\r?$"
local LINE6 = "^([^\t]*)\t" .. NUM .. "\t" .. NUM .. "\t" .. NUM .. "\t" .. NUM .. "\t" .. NUM .. "\r?$"

-- The text of a file (errors name the user's line at `level`, as open_file counts).
local function slurp(path, fname, level)
  local f = IO.open_file(path, fname, level + 1)
  local text = f:read("*a") or ""
  f:close()
  return text
end

-- Entries of a .fai's text: a list, and a map from name to entry (the first
-- of duplicate names, as htslib keeps).  Lines as f:lines() gives them.
local function parse_index(text, fai, fname)
  local entries, by_name, lineno = {}, {}, 0
  local pos, n = 1, #text
  while pos <= n do
    local nl = find(text, "\n", pos, true)
    local line = sub(text, pos, (nl or n + 1) - 1)
    pos = (nl or n) + 1
    lineno = lineno + 1
    local name, len, off, lb, lw, qo = line:match(LINE6)
    if not name then name, len, off, lb, lw = line:match(LINE5) end
    if not name then
      A.raise(fmt("%s: '%s' line %d: not a FASTA index line (expected NAME, LENGTH, OFFSET, LINEBASES, "
        .. "LINEWIDTH separated by tabs): %q", fname, fai, lineno, #line > 60 and sub(line, 1, 60) .. "..." or line))
    end
    local e = { name = name, length = tonumber(len), offset = tonumber(off), linebases = tonumber(lb),
      linewidth = tonumber(lw), qualoffset = qo and tonumber(qo) or nil }
    entries[#entries + 1] = e
    if not by_name[name] then by_name[name] = e end
  end
  return entries, by_name
end

--- Parse an existing .fai (the path of the .fai itself).
function M.read_index(fai, fname)
  check_path(fai, fname)
  local entries = parse_index(slurp(fai, fname, 3), fai, fname)
  return entries
end

--- For bio._shard: the entries of path .. ".fai" when it exists and parses,
-- else nil (sharding then scans, as without an index).
function M.entries_if_present(path)
  local f = io.open(path .. ".fai", "rb")
  if not f then return nil end
  f:close()
  local ok, entries = pcall(function() return parse_index(slurp(path .. ".fai", "bio._fai", 1), path, "bio._fai") end)
  return ok and entries or nil
end

-- The byte offset of 0-based base p of entry e.
local function byte_of(e, p)
  local lines = floor(p / e.linebases)
  return e.offset + lines * e.linewidth + (p - lines * e.linebases)
end

--- The (0-based) offset of the last sequence byte of entry e.
function M.last_byte(e)
  if e.length == 0 or e.linebases == 0 then return e.offset end
  return byte_of(e, e.length - 1)
end

---------------------------------------------------------------------------
-- Fetching a region
---------------------------------------------------------------------------

-- The (compressed, uncompressed) offset pairs of a .gzi, with (0, 0) first.
local function read_gzi(gzi, fname)
  local f = IO.open_file(gzi, fname, 3)
  local data = f:read("*a") or ""
  f:close()
  local function num(p)
    local v = 0
    for i = p + 7, p, -1 do v = v * 256 + byte(data, i) end
    return v
  end
  if #data < 8 then A.raise(fmt("%s: '%s': not a .gzi index (too short)", fname, gzi)) end
  local n = num(1)
  if #data ~= 8 + 16 * n then A.raise(fmt("%s: '%s': not a .gzi index (%d entries need %d bytes, it has %d)",
    fname, gzi, n, 8 + 16 * n, #data)) end
  local c, u = { 0 }, { 0 }
  for i = 1, n do
    c[i + 1], u[i + 1] = num(9 + 16 * (i - 1)), num(17 + 16 * (i - 1))
  end
  return c, u
end

-- A chunk reader over the text from uncompressed byte `from`, `len` bytes.
local function text_reader(path, kind, from, len, fname)
  if kind == "bgzf" then
    local c, u = read_gzi(path .. ".gzi", fname)
    local lo, hi = 1, #u -- the last block starting at or before `from`
    while lo < hi do
      local mid = floor((lo + hi + 1) / 2)
      if u[mid] <= from then lo = mid else hi = mid - 1 end
    end
    return require("bio._gzip").chunks(path, { start = c[lo], skip = from - u[lo], limit = len, fname = fname })
  end
  local f = IO.open_file(path, fname, 3)
  f:seek("set", from)
  local left = len or math.huge
  return function()
    if left <= 0 then return nil end
    local piece = f:read(left < 65536 and left or 65536)
    if piece == nil then left = 0; return nil end
    left = left - #piece
    return piece
  end, function() f:close() end
end


-- Read `want` printable characters from uncompressed byte `from` (as
-- htslib's fai_retrieve does: whatever is not printable is skipped).
local function retrieve(path, kind, e, beg, want, fname)
  local from = byte_of(e, beg)
  local span = byte_of(e, beg + want - 1) + 1 - from -- the bytes of a well-formed record
  local got, n = {}, 0
  -- Lines with non-printable bytes inside make the span too short: read on.
  for _, range in ipairs({ { from, span }, { from + span, nil } }) do
    if n >= want then break end
    local read, close = text_reader(path, kind, range[1], range[2], fname)
    local ok, err = pcall(function()
      while n < want do
        local piece = read()
        if piece == nil then break end
        if find(piece, "[^!-~]") then piece = gsub(piece, "[^!-~]+", "") end
        if n + #piece > want then piece = sub(piece, 1, want - n) end
        got[#got + 1] = piece
        n = n + #piece
      end
    end)
    close()
    if not ok then A.raise(err) end
  end
  return concat(got)
end

local last_text, last_by_name -- the .fai text fetch() parsed last, and its entries by name

-- Entries by name for `path`, from its .fai (built, as samtools does, when
-- missing; an existing one is used as it is, as samtools does).
local function load(path, kind, fname)
  local fai = path .. ".fai"
  local f = io.open(fai, "rb")
  if f then
    f:close()
  else
    M.index(path, nil, fname)
  end
  if kind == "bgzf" then
    local g = io.open(path .. ".gzi", "rb")
    if g then g:close() else write_file(path .. ".gzi", gzi_bytes(path), fname) end
  end
  -- Many fetches from one file: its .fai is read each time (cheap) but parsed
  -- again only when its text changed.
  local text = slurp(fai, fname, 3)
  if text ~= last_text then
    local _, by_name = parse_index(text, fai, fname)
    last_text, last_by_name = text, by_name
  end
  return last_by_name
end

--- The sequence of name:start-stop (1-based, inclusive; start defaults to
-- 1 and stop to the end), as samtools faidx prints it without line breaks.
-- Returns the sequence and a warning string (or nil): "Truncated sequence:
-- REGION" when stop is past the end, "Zero length sequence: REGION" when
-- nothing is left.
function M.fetch(path, name, start, stop, fname)
  check_path(path, fname)
  check(type(name) == "string", fname, 2, "name", "expected a sequence name, got " .. type(name))
  local function int(v, pos, what)
    check(v == nil or (type(v) == "number" and v == floor(v) and v >= 1 and v < 2 ^ 53), fname, pos, what,
      "must be a whole number >= 1 (positions are 1-based), got " .. tostring(v), 1)
  end
  int(start, 3, "start"); int(stop, 4, "stop")
  if start and stop then
    check(start <= stop, fname, 3, "start", fmt("start %.0f is after stop %.0f", start, stop))
  end
  local kind = storage(path, fname)
  if kind == "gzip" then refuse_gzip(path, fname) end
  local e = load(path, kind, fname)[name]
  if not e then
    error(fmt("%s: no sequence named '%s' in '%s' (see its .fai)", fname, name, path), 3)
  end
  local region = name
  if start then region = region .. ":" .. fmt("%.0f", start) .. (stop and fmt("-%.0f", stop) or "") end
  local beg = (start or 1) - 1
  local stop_ = stop or e.length
  local last = stop_ < e.length and stop_ or e.length
  local warning
  local seq = ""
  if beg < last and e.linebases > 0 then
    seq = retrieve(path, kind, e, beg, last - beg, fname)
  end
  if #seq == 0 then
    warning = "Zero length sequence: " .. region
  elseif stop and #seq < stop - beg then
    warning = "Truncated sequence: " .. region
  end
  return seq, warning
end

return M
