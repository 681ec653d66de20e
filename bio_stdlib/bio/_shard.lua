--- bio._shard: record-aligned byte ranges of a sequence file, for data-parallel jobs.
--
--   local shards = fasta.shards("genome.fa", 8)   -- (or fastq.shards)
--   for _, s in ipairs(shards) do for rec in fasta.records(s) do ... end end
--
-- A shard is a plain table (it travels to VMs as data):
--   { path = "genome.fa", offset = 0, length = 12345, format = "fasta",
--     index = 1, count = 8, first_id = "chr1" }
-- `offset` and `length` are byte positions in the file -- in its decompressed
-- text for a BGZF file, which also gets `bgzf = true`, `block` (the
-- compressed offset of the BGZF block holding `offset`) and `skip` (bytes of
-- that block's text before `offset`).  Shards start at record boundaries and,
-- in order, cover the file exactly once.  A plain-gzip file cannot be entered
-- in the middle: it is always one shard.
--
-- Cut points are found by reading forward from size*k/n to the next record
-- start, each byte at most once in all, so sharding reads at most the file
-- once (a file of one huge record) and usually a few KiB per cut.
local IO = require "bio._io"
local A = require "bio.alphabet"

local M = {}

local find, sub, byte = string.find, string.sub, string.byte
local floor = math.floor

local WINDOW = 65536

-- Record starts.  Each finder gets a chunk reader positioned at file offset
-- `at` (the byte just before the first candidate position) and returns the
-- offset of the first record start >= at + 1 and that record's header line
-- (or nil, nil at the end of the text).

-- FASTA: a '>' that begins a line.  The byte at `at` is the previous line's
-- end if the candidate at `at + 1` starts a line.
local function next_fasta_start(read, at)
  local prev, base = nil, at -- prev: the byte before the window (nil: `at` itself comes first)
  while true do
    local chunk = read()
    if chunk == nil then return nil end
    -- Look for '>' (rare in sequence text, and a one-byte search runs at memchr speed),
    -- then check that it begins a line; "\n>" would stop at every line end.
    local p = find(chunk, ">", 1, true)
    while p do
      local before = p > 1 and byte(chunk, p - 1) or prev
      if before == 10 then break end
      p = find(chunk, ">", p + 1, true)
    end
    if p and p == 1 and prev == nil then p = nil end -- the byte at `at` is not a candidate
    if p then
      local start = base + p - 1 -- 0-based offset of the '>'
      local nl = find(chunk, "\n", p + 1, true)
      local header = sub(chunk, p + 1, (nl or #chunk + 1) - 1)
      if not nl then -- a header longer than the window: read its end
        local more = read()
        header = header .. (more and sub(more, 1, (find(more, "\n", 1, true) or #more + 1) - 1) or "")
      end
      return start, header
    end
    base = base + #chunk
    prev = byte(chunk, -1)
  end
end

-- FASTQ: a line L0 starting with '@' whose line L2 starts with '+' and whose
-- sequence (L1) and quality (L3) have the same length.  A quality line may
-- start with '@', but then L2 is a sequence line, never a '+' line; a wrapped
-- (multi-line) record is not entered, so its shard simply grows.
local function next_fastq_start(read, at)
  local lines = IO.line_reader(read)
  -- The first line returned is the rest of the line holding byte `at`.
  local window, offsets = {}, {}
  local first = lines.next()
  if first == nil then return nil end
  local pos = at + #first + 1 -- offset of the next line start
  local function push()
    local line = lines.next()
    if line == nil then return false end
    window[#window + 1], offsets[#offsets + 1] = line, pos
    pos = pos + #line + 1
    return true
  end
  for _ = 1, 4 do if not push() then break end end
  while #window >= 4 do
    local l0, l2 = window[1], window[3]
    if byte(l0, 1) == 64 and byte(l2, 1) == 43 and #IO.rstrip(window[2]) == #IO.rstrip(window[4]) then
      return offsets[1], sub(l0, 2)
    end
    table.remove(window, 1); table.remove(offsets, 1)
    if not push() then break end
  end
  return nil
end

local FINDERS = { fasta = next_fasta_start, fastq = next_fastq_start }

-- LuaJIT fast path for FASTA cut points in a plain file: the same search as
-- next_fasta_start, with fread into one byte buffer and memchr, and no Lua
-- string per window.  (LuaJIT interns every string it makes: windows of
-- similar sequence text cost it far more than the search itself.)  Returns
-- find_at(at) -> start, header, or nil where the FFI path is unavailable.
local F = require "bio._fast"
local function ffi_fasta_finder(path, string_find_at)
  local ffi, C, memchr = F.ffi, F.stdio, F.memchr
  if not (ffi and C and memchr) then return nil end
  local fp, close = F.fopen(path)
  if not fp then return nil end
  local SIZE = 262144
  local buf = ffi.new("uint8_t[?]", SIZE)
  local u8p = ffi.typeof("const uint8_t *")
  local function find_at(at)
    if C.fseek(fp, at, 0) ~= 0 then return string_find_at(at) end
    local base, prev = at, nil -- prev: the byte before the buffer (nil: `at` is the buffer's first)
    while true do
      local got = tonumber(C.fread(buf, 1, SIZE, fp))
      if got == 0 then return nil end
      local i = 0
      while true do
        local q = memchr(buf + i, 62, got - i)
        if q == nil then break end
        i = ffi.cast(u8p, q) - buf
        local before = i > 0 and buf[i - 1] or prev
        if before == 10 then
          local nl = memchr(buf + i + 1, 10, got - i - 1)
          if nl == nil then -- the header runs past the buffer: read it the portable way
            return string_find_at(base + i - 1)
          end
          return base + i, ffi.string(buf + i + 1, ffi.cast(u8p, nl) - (buf + i + 1))
        end
        i = i + 1
      end
      prev = buf[got - 1]
      base = base + got
    end
  end
  return find_at, close
end

-- With a .fai (bio._fai), a FASTA cut point inside a record's sequence can
-- skip to that sequence's last byte: no line inside a sequence starts with
-- '>'.  The header found after the jump must be one the index lists (its
-- sequence starts at an indexed offset under the same name), else -- an
-- empty record the index leaves out, a stale index -- the cut is scanned
-- for as without an index.  Entries are in file order.  nil without a .fai.
local function fai_finder(path, find_at)
  local entries = require("bio._fai").entries_if_present(path)
  if not entries or #entries == 0 then return nil end
  local FAI = require "bio._fai"
  local by_offset = {}
  for _, e in ipairs(entries) do by_offset[e.offset] = e.name end
  return function(at)
    local lo, hi = 1, #entries -- the last entry whose sequence starts at or before `at`
    if entries[1].offset > at then return find_at(at) end
    while lo < hi do
      local mid = floor((lo + hi + 1) / 2)
      if entries[mid].offset <= at then lo = mid else hi = mid - 1 end
    end
    local last = FAI.last_byte(entries[lo])
    if last > at then
      local start, header = find_at(last)
      if start and by_offset[start + #header + 2] == IO.first_word(IO.rstrip(header)) then
        return start, header
      end
    end
    return find_at(at)
  end
end

-- The id of the first record, from the text at the start of the file.
local function first_id_at_start(read, format)
  local marker = format == "fasta" and 62 or 64
  local lines = IO.line_reader(read)
  while true do
    local line = lines.next()
    if line == nil then return nil end
    if byte(line, 1) == marker then return IO.first_word(IO.rstrip(sub(line, 2))) end
    if find(line, "[^ \t\r\v\f]") then return nil end
  end
end

---------------------------------------------------------------------------
-- The text of a file: plain, or BGZF (through bio._gzip)
---------------------------------------------------------------------------

-- A plain file: its size and reader(from) -> chunk reader starting at `from`.
local function plain_text(f)
  local size = f:seek("end")
  return size, function(from)
    f:seek("set", from)
    return function() return f:read(WINDOW) end
  end
end

-- A BGZF file: decompressed size, reader(from), and where(offset) -> block, skip.
local function bgzf_text(G, path)
  local blocks = G.blocks(path)
  if type(blocks) == "function" then
    local list = {}
    for b in blocks do list[#list + 1] = b end
    blocks = list
  end
  local starts, total = {}, 0
  for i, b in ipairs(blocks) do starts[i] = total; total = total + b.usize end
  -- The last block with text that holds `offset` (empty blocks hold nothing).
  local function where(offset)
    local lo, hi, best = 1, #blocks, nil
    while lo <= hi do
      local mid = floor((lo + hi) / 2)
      if starts[mid] <= offset then best = mid; lo = mid + 1 else hi = mid - 1 end
    end
    while best and blocks[best].usize == 0 and best > 1 do best = best - 1 end
    while best and starts[best] + blocks[best].usize <= offset and best < #blocks do best = best + 1 end
    return blocks[best].offset, offset - starts[best]
  end
  local closers = {}
  local function reader(from)
    local block, skip = where(from)
    local read, close = G.chunks(path, { start = block, skip = skip })
    closers[#closers + 1] = close
    return read
  end
  local function close_all() for _, c in ipairs(closers) do pcall(c) end end
  return total, reader, where, close_all
end

---------------------------------------------------------------------------
-- Sharding
---------------------------------------------------------------------------

-- Where the n - 1 cuts of a text aim, as increasing fractions of its size, for
-- shards that `vms` VMs take in turn, whichever is idle taking the next one:
-- "factoring" (Hummel, Schonberg & Flynn, 1992).  The shards come in rounds of
-- `vms`, each round's half the size of the previous round's, so the last ones
-- are small and no VM waits long for the slowest one's last shard (with equal
-- shards it waits up to a whole shard).
local function factoring_aims(n, vms)
  local sizes, total = {}, 0
  for i = 1, n do
    sizes[i] = 0.5 ^ math.min(floor((i - 1) / vms), 30)
    total = total + sizes[i]
  end
  local aims, at = {}, 0
  for i = 1, n - 1 do
    at = at + sizes[i]
    aims[i] = at / total
  end
  return aims
end

-- Equal shards: cut k of n aims at k/n.
local function equal_aims(n)
  local aims = {}
  for k = 1, n - 1 do aims[k] = k / n end
  return aims
end

--- Record-aligned shards of `path` in `format` ("fasta" or "fastq"): up to
-- `n` of them.  fname names the public function in errors.  Each cut is the
-- first record start at or after where it aims: k/n of the text, or, given
-- `vms`, the factoring sizes for that many VMs (smaller shards towards the end),
-- unless a cut then lands further past its aim than half the next shard's size:
-- records that big would make factoring's first shards swallow several of them
-- (4 records cut for 2 VMs: 2, 1, 1), so such a file gets equal shards.
function M.shards(path, n, format, fname, vms)
  A.check_string(path, fname, 1, "path")
  A.check_int(n, fname, 2, "n", 1, math.huge)
  if vms ~= nil then A.check_int(vms, fname, 3, "vms", 1, math.huge) end
  local f = IO.open_file(path, fname, 2)
  local magic = f:read(2) or ""
  local gzip = magic == "\31\139"
  local size, reader, where, close_readers
  local G
  if gzip then
    G = require "bio._gzip"
    if not G.is_bgzf(path) then
      -- Plain gzip has no entry points but the start: one shard.
      f:close()
      local read, close = G.chunks(path)
      local ok, id = pcall(first_id_at_start, read, format)
      close()
      if not ok then error(id, 0) end
      return { { path = path, offset = 0, length = -1, format = format, index = 1, count = 1,
        gzip = true, first_id = id } }
    end
    f:close()
    size, reader, where, close_readers = bgzf_text(G, path)
  else
    size, reader = plain_text(f)
  end
  -- find_at(at): the first record start after byte `at`, and its header line.
  local scan = FINDERS[format]
  local find_at = function(at) return scan(reader(at), at) end
  local close_fast
  if format == "fasta" and not gzip then
    local fast, close = ffi_fasta_finder(path, find_at)
    if fast then find_at, close_fast = fast, close end
  end
  local finder = format == "fasta" and fai_finder(path, find_at) or find_at
  local bounds, ids
  -- The cuts for `aims`; false if one lands further past its aim than `strict`
  -- times the size of the shard that follows it (no limit without `strict`).
  local function cut(aims, strict)
    bounds, ids = { 0 }, { first_id_at_start(reader(0), format) }
    local found = 0 -- the last boundary found; targets before it are covered
    for k = 1, n - 1 do
      local target = floor(size * aims[k])
      if target > found and target > 0 then
        local start, header = finder(target - 1)
        if start == nil then break end -- no record starts after target: the rest is one shard
        if strict and start - target > strict * size * ((aims[k + 1] or 1) - aims[k]) then return false end
        bounds[#bounds + 1] = start
        ids[#bounds] = IO.first_word(IO.rstrip(header or ""))
        found = start
      end
    end
    return true
  end
  local ok, failure = pcall(function()
    if not (vms and vms > 1 and cut(factoring_aims(n, vms), 0.5)) then cut(equal_aims(n)) end
  end)
  if close_readers then close_readers() else f:close() end
  if close_fast then close_fast() end
  if not ok then error(failure, 0) end
  bounds[#bounds + 1] = size
  local out = {}
  for i = 1, #bounds - 1 do
    local s = { path = path, offset = bounds[i], length = bounds[i + 1] - bounds[i], format = format,
      index = i, count = #bounds - 1, first_id = ids[i] }
    if where then
      s.bgzf = true
      s.block, s.skip = where(bounds[i])
    end
    out[i] = s
  end
  return out
end

--- "fasta" or "fastq": what the first record of a (plain or gzip) file is.
function M.sniff(path, fname)
  local read, close = IO.open_source(path, fname)
  local ok, format = pcall(function()
    local lines = IO.line_reader(read)
    while true do
      local line = lines.next()
      if line == nil then return "fasta" end -- an empty file: either reads as no records
      local c = byte(line, 1)
      if c == 62 then return "fasta" elseif c == 64 then return "fastq" end
      if find(line, "[^ \t\r\v\f]") then
        error(string.format("%s: %s line %d: neither FASTA ('>') nor FASTQ ('@'): %q", fname, path,
          lines.lineno, #line > 40 and sub(line, 1, 40) .. "..." or line), 0)
      end
    end
  end)
  close()
  if not ok then error(format, 0) end
  return format
end

--- Is `v` a shard table (of `format`, if given)?  Raises a clear error for a
-- table that looks like one but is malformed, at `level` (default: the caller
-- of the function that called check).
function M.check(v, fname, format, level)
  level = level or 3
  if type(v) ~= "table" or v.offset == nil or v.path == nil then return false end
  if type(v.path) ~= "string" then A.arg_error(fname, 1, "shard", "field 'path' must be a string", level) end
  for _, k in ipairs({ "offset", "length" }) do
    local x = v[k]
    if type(x) ~= "number" or x ~= floor(x) or (x < 0 and not (k == "length" and x == -1)) then
      A.arg_error(fname, 1, "shard", string.format("field '%s' must be a whole number >= 0, got %s", k, tostring(x)), level)
    end
  end
  if format and v.format ~= nil and v.format ~= format then
    A.arg_error(fname, 1, "shard", string.format("this is a %s shard (made by bio.%s.shards)", tostring(v.format), tostring(v.format)), level)
  end
  return true
end

return M
