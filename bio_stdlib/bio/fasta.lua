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

-- libc memchr through the FFI: a vectorised scan for the next newline.
local memchr
if ffi then
  local ok = pcall(ffi.cdef, "void *memchr(const void *s, int c, size_t n);")
  local ok2, fn = pcall(function() return ffi.C.memchr end)
  if ok2 and fn then memchr = fn elseif not ok then memchr = nil end
end

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
  return { id = IO.first_word(title), description = title }
end

-- The record iterator over a chunk reader.
local function reader(read, close, name, fname)
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
          fname, name, lineno, #line > 40 and sub(line, 1, 40) .. "..." or line), 0)
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

local function opts_of(opts, fname, allowed)
  return A.check_options(opts, allowed or { "chunk_size" }, fname, 2)
end

--- Iterate over the records of a FASTA file (a path or an open file).
-- opts.chunk_size: bytes per read (default 64 KiB on LuaJIT, 1 MiB elsewhere).
function M.records(source, opts)
  opts = opts_of(opts, "bio.fasta.records")
  local read, close, name = IO.open_source(source, "bio.fasta.records", opts.chunk_size)
  return IO.iterator(reader(read, close, name, "bio.fasta.records"), close)
end

--- Iterate over the records in a string holding FASTA text.
function M.records_from_string(text, opts)
  opts = opts_of(opts, "bio.fasta.records_from_string")
  local read, close, name = IO.string_source(text, "bio.fasta.records_from_string", opts.chunk_size)
  return reader(read, close, name, "bio.fasta.records_from_string")
end

--- All records of a path or open file, as a list.
function M.read(source, opts)
  local out = {}
  for rec in M.records(source, opts) do out[#out + 1] = rec end
  return out
end

--- All records of a FASTA string, as a list.
function M.parse(text, opts)
  local out = {}
  for rec in M.records_from_string(text, opts) do out[#out + 1] = rec end
  return out
end

---------------------------------------------------------------------------
-- Writer
---------------------------------------------------------------------------

local function clean(s) return (gsub(s, "[\r\n]", " ")) end

--- The header line Biopython's FASTA writer would produce for a record:
-- the description if it already starts with the id, else "id description".
function M.title(rec)
  local id = clean(rec.id or "")
  local desc = clean(rec.description or "")
  if desc ~= "" and desc:match("^[ \t\r\n\v\f]*([^ \t\r\n\v\f]+)") == id then return desc end
  if desc ~= "" then return id .. " " .. desc end
  return id
end

--- One record as FASTA text, sequence wrapped at `width` columns (default
-- 60; 0 or false writes the sequence on one line).
function M.format(rec, width)
  local fname = "bio.fasta.format"
  if type(rec) ~= "table" then A.arg_error(fname, 1, "record", "expected a record table, got " .. type(rec), 2) end
  local seq = rec.seq
  if type(seq) ~= "string" then A.arg_error(fname, 1, "record", "field 'seq' must be a string, got " .. type(seq), 2) end
  if width == nil then width = 60 end
  if width ~= false and width ~= 0 then A.check_int(width, fname, 2, "width", 1, math.huge) end
  if find(seq, "[\r\n]") then A.arg_error(fname, 1, "record", "sequence contains a line break", 2) end
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

--- Write records (a list, one record, or an iterator such as
-- fasta.records(...)) to a path or open file.  opts.width (default 60).
-- Returns the number of records written.
function M.write(dest, records, opts)
  opts = opts_of(opts, "bio.fasta.write", { "width" })
  local write, close = IO.open_dest(dest, "bio.fasta.write")
  local n = 0
  local ok, err = pcall(function()
    for rec in IO.each(records, "bio.fasta.write") do
      write(M.format(rec, opts.width))
      n = n + 1
    end
  end)
  close()
  if not ok then error(err, 0) end
  return n
end

--- Records as one FASTA string.
function M.to_string(records, opts)
  opts = opts_of(opts, "bio.fasta.to_string", { "width" })
  local parts = {}
  for rec in IO.each(records, "bio.fasta.to_string") do parts[#parts + 1] = M.format(rec, opts.width) end
  return concat(parts)
end

return M
