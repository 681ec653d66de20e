--- bio._gzip: gzip (RFC 1952) and BGZF files, decompressed as a stream.
--
--   local G = require "bio._gzip"
--   local read, close = G.chunks("genome.fa.gz")          -- plain gzip or BGZF
--   for piece in read do io.write(piece) end               -- nil at the end
--   close()                                                -- idempotent
--   G.chunks(path, {start = block_offset, skip = n, limit = m, chunk_size = k})
--   for b in G.blocks("genome.fa.gz") do print(b.offset, b.csize, b.usize) end
--   G.is_gzip(path), G.is_bgzf(path)
--
-- A file of several gzip members (concatenated .gz files; every BGZF file)
-- reads as one stream, as zcat reads it.  Each member's CRC32 and ISIZE are
-- checked once it has been decoded to its end.  Memory stays bounded: the
-- file is read 64 KiB at a time and decoded member by member, a large plain
-- gzip member as a stream with its 32 KiB window.
--
-- Two engines give the same bytes:
--   * LuaJIT fast path: with the FFI (bio._fast's F.ffi), raw inflate and
--     crc32 from the system zlib (ffi.load "z", then "libz.so.1"), and
--     whole BGZF blocks through libdeflate when it loads (G.libdeflate_available);
--   * portable pure Lua everywhere else: bio._inflate and a table-driven
--     CRC32 below (arithmetic only).
-- The fast path is skipped when zlib cannot be loaded, when bio._fast uses
-- the portable kernels (BIOXEN_BIO_PORTABLE), or when the global
-- BIOXEN_NO_FFI_ZLIB is true or the environment variable BIOXEN_NO_FFI_ZLIB
-- is set (not "" or "0") when this module loads.  G.backend says which
-- engine new readers use ("zlib" or "lua"); assigning "lua" to it forces
-- the pure-Lua engine from then on.  Reference: docs/bio/gzip.md.
local F = require "bio._fast"
local A = require "bio.alphabet"
local I = require "bio._inflate"

local G = {}

local byte, sub, fmt, concat = string.byte, string.sub, string.format, table.concat
local floor = math.floor

--- Default size of the pieces read() returns (opts.chunk_size changes it):
-- 64 KiB on LuaJIT, 1 MiB on PUC Lua, as bio._io reads plain files.
G.CHUNK = rawget(_G, "jit") and 65536 or 1048576

--- Compressed bytes read from the file at a time (tests shrink it to put
-- read boundaries everywhere; readers take the value current at G.chunks).
G.READ_SIZE = 65536
local PIECE = 65536      -- decompressed bytes asked of an engine at a time
local TWO32 = 4294967296

-- Open `path` for reading; errors are raised at `level` (1: the caller).
local function open_file(path, fname, level)
  local lib = rawget(_G, "io")
  if type(lib) ~= "table" or type(lib.open) ~= "function" then
    A.raise(fname .. ": cannot open files here (io.open is disabled, e.g. in a sandboxed VM)", level + 1)
  end
  local f, err = lib.open(path, "rb")
  if not f then A.raise(fmt("%s: cannot open '%s': %s", fname, path, tostring(err)), level + 1) end
  return f
end

local function le16(s, p)
  local a, b = byte(s, p, p + 1)
  return a + b * 256
end

local function le32(s, p)
  local a, b, c, d = byte(s, p, p + 3)
  return a + b * 256 + c * 65536 + d * 16777216
end

-- The BC subfield's BSIZE in a gzip extra field (a string), or nil.
local function bc_bsize(extra)
  local i, n = 1, #extra
  while i + 3 <= n do
    local si1, si2 = byte(extra, i, i + 1)
    local slen = le16(extra, i + 2)
    if si1 == 66 and si2 == 67 and slen == 2 and i + 5 <= n then return le16(extra, i + 4) end
    i = i + 4 + slen
  end
  return nil
end

---------------------------------------------------------------------------
-- CRC32, portable: a byte-at-a-time table (reflected polynomial
-- 0xEDB88320) with the state split into four bytes c0 (low) .. c3, and
-- XOR of two bytes looked up in a 256 x 256 table, X[a * 256 + b].  One
-- input byte b costs
--   i = b xor c0;  c0, c1, c2, c3 = T0[i] xor c1, T1[i] xor c2, T2[i] xor c3, T3[i]
-- Tables are built on first use (about 65,000 entries).
---------------------------------------------------------------------------

local X, T0m, T1m, T2m, T3

local function crc_tables()
  if X then return end
  local n4 = {}
  for a = 0, 15 do
    for b = 0, 15 do
      local r, p, aa, bb = 0, 1, a, b
      for _ = 1, 4 do
        local x, y = aa % 2, bb % 2
        if x ~= y then r = r + p end
        aa, bb, p = floor(aa / 2), floor(bb / 2), p * 2
      end
      n4[a * 16 + b] = r
    end
  end
  local x = {}
  for a = 0, 255 do
    local ah, al = floor(a / 16) * 16, a % 16 * 16
    for b = 0, 255 do
      x[a * 256 + b] = n4[ah + floor(b / 16)] * 16 + n4[al + b % 16]
    end
  end
  local function xor32(u, v)
    local r, p = 0, 1
    for _ = 1, 4 do
      local ub, vb = u % 256, v % 256
      r = r + x[ub * 256 + vb] * p
      u, v, p = floor(u / 256), floor(v / 256), p * 256
    end
    return r
  end
  local t0, t1, t2, t3 = {}, {}, {}, {}
  for n = 0, 255 do
    local c = n
    for _ = 1, 8 do
      if c % 2 == 1 then c = xor32(floor(c / 2), 0xEDB88320) else c = floor(c / 2) end
    end
    t0[n] = c % 256 * 256
    t1[n] = floor(c / 256) % 256 * 256
    t2[n] = floor(c / 65536) % 256 * 256
    t3[n] = floor(c / 16777216) % 256
  end
  X, T0m, T1m, T2m, T3 = x, t0, t1, t2, t3
end

-- Feed the byte values t[a..z] to the state c0..c3; returns the new state.
local function crc_array(c0, c1, c2, c3, t, a, z)
  local x, t0, t1, t2, t3 = X, T0m, T1m, T2m, T3
  for k = a, z do
    local i = x[t[k] * 256 + c0]
    c0 = x[t0[i] + c1]
    c1 = x[t1[i] + c2]
    c2 = x[t2[i] + c3]
    c3 = t3[i]
  end
  return c0, c1, c2, c3
end

-- A CRC value (as zlib's crc32 takes and returns it) <-> the state bytes.
local function crc_state(v)
  local c = 4294967295 - v
  return c % 256, floor(c / 256) % 256, floor(c / 65536) % 256, floor(c / 16777216) % 256
end

local function crc_value(c0, c1, c2, c3)
  return 4294967295 - (c0 + c1 * 256 + c2 * 65536 + c3 * 16777216)
end

local function lua_crc32(crc, s)
  crc_tables()
  local c0, c1, c2, c3 = crc_state(crc)
  for i = 1, #s, 4096 do
    local j = i + 4095
    if j > #s then j = #s end
    local t = { byte(s, i, j) }
    c0, c1, c2, c3 = crc_array(c0, c1, c2, c3, t, 1, j - i + 1)
  end
  return crc_value(c0, c1, c2, c3)
end

---------------------------------------------------------------------------
-- LuaJIT fast path: raw inflate (windowBits -15) and crc32 from the system
-- zlib through the FFI.  The gzip framing (headers, trailers, members)
-- stays in Lua for both engines, so both check and report the same way.
---------------------------------------------------------------------------

local Z, ffi -- the zlib library namespace, when the fast path is on

-- A switch that turns a fast path off: the global `name`, or the
-- environment variable of that name set (not "" or "0") when this loads.
local function env_disabled(name)
  if rawget(_G, name) then return true end
  local os_lib = rawget(_G, "os")
  local v = type(os_lib) == "table" and type(os_lib.getenv) == "function" and os_lib.getenv(name)
  return v ~= nil and v ~= false and v ~= "" and v ~= "0"
end

if F.ffi and not env_disabled("BIOXEN_NO_FFI_ZLIB") then
  ffi = F.ffi
  -- Own names bound to zlib's symbols (asm labels), so a different
  -- declaration of zlib elsewhere in the process cannot clash with ours.
  pcall(ffi.cdef, [[
    typedef struct bioxen_z_stream {
      const uint8_t *next_in; unsigned int avail_in; unsigned long total_in;
      uint8_t *next_out; unsigned int avail_out; unsigned long total_out;
      const char *msg; void *state;
      void *zalloc; void *zfree; void *opaque;
      int data_type; unsigned long adler; unsigned long reserved;
    } bioxen_z_stream;
    const char *bioxen_zlibVersion(void) __asm__("zlibVersion");
    int bioxen_inflateInit2_(bioxen_z_stream *strm, int windowBits, const char *version, int stream_size) __asm__("inflateInit2_");
    int bioxen_inflate(bioxen_z_stream *strm, int flush) __asm__("inflate");
    int bioxen_inflateReset(bioxen_z_stream *strm) __asm__("inflateReset");
    int bioxen_inflateEnd(bioxen_z_stream *strm) __asm__("inflateEnd");
    unsigned long bioxen_crc32(unsigned long crc, const void *buf, unsigned int len) __asm__("crc32");
  ]])
  for _, name in ipairs({ "z", "libz.so.1" }) do
    local ok, lib = pcall(ffi.load, name)
    if ok and pcall(function()
      return lib.bioxen_zlibVersion, lib.bioxen_inflateInit2_, lib.bioxen_inflate,
        lib.bioxen_inflateReset, lib.bioxen_inflateEnd, lib.bioxen_crc32
    end) then
      Z = lib
      break
    end
  end
  if not Z then ffi = nil end
end

-- libdeflate (htslib's inflater, ~2x zlib's speed) for whole BGZF blocks on
-- the zlib fast path: a block's compressed and decompressed sizes are in
-- its header and trailer and are at most 64 KiB, so it is decompressed in
-- one call into a fixed buffer.  Plain gzip members stay on zlib's stream.
-- Off without zlib, or with BIOXEN_NO_LIBDEFLATE (global or environment).
local D
if Z and not env_disabled("BIOXEN_NO_LIBDEFLATE") then
  pcall(ffi.cdef, [[
    typedef struct bioxen_ld_decompressor bioxen_ld_decompressor;
    bioxen_ld_decompressor *bioxen_ld_alloc(void) __asm__("libdeflate_alloc_decompressor");
    void bioxen_ld_free(bioxen_ld_decompressor *d) __asm__("libdeflate_free_decompressor");
    int bioxen_ld_inflate(bioxen_ld_decompressor *d, const void *in, size_t in_n, void *out, size_t out_avail,
                          size_t *in_used, size_t *out_made) __asm__("libdeflate_deflate_decompress_ex");
  ]])
  for _, name in ipairs({ "deflate", "libdeflate.so.0" }) do
    local ok, lib = pcall(ffi.load, name)
    if ok and pcall(function() return lib.bioxen_ld_alloc, lib.bioxen_ld_free, lib.bioxen_ld_inflate end) then
      D = lib
      break
    end
  end
end
--- Whether BGZF blocks are inflated with libdeflate (on the zlib fast path).
G.libdeflate_available = D ~= nil
local BGZF_MAX = 65536 -- the largest text a BGZF block holds

--- "zlib" (LuaJIT FFI fast path) or "lua" (portable): the engine new
-- readers use.  Set it to "lua" to force the portable engine.
G.backend = Z and "zlib" or "lua"
--- Whether the zlib fast path could be loaded at all.
G.zlib_available = Z ~= nil

local function use_zlib() return Z ~= nil and G.backend == "zlib" end

--- CRC32 of the string s, continuing from crc (default 0), as zlib.crc32.
function G.crc32(s, crc)
  A.check_string(s, "bio._gzip.crc32", 1, "s")
  crc = crc or 0
  if use_zlib() then return tonumber(Z.bioxen_crc32(crc, s, #s)) end
  return lua_crc32(crc, s)
end

-- A zlib engine: one z_stream for a whole reader, reset for each member.
local function zlib_engine()
  local strm = ffi.new("bioxen_z_stream[1]")
  local rc = Z.bioxen_inflateInit2_(strm, -15, Z.bioxen_zlibVersion(), ffi.sizeof("bioxen_z_stream"))
  if rc ~= 0 then error("bio._gzip: zlib inflateInit2_ failed (" .. tonumber(rc) .. ")", 0) end
  local live = true
  ffi.gc(strm, Z.bioxen_inflateEnd)
  local out = ffi.new("uint8_t[?]", PIECE)
  local cast = ffi.cast
  local engine = {}
  local ld = D and G.backend == "zlib" and ffi.gc(D.bioxen_ld_alloc(), D.bioxen_ld_free) or nil
  function engine.close()
    if live then
      live = false
      ffi.gc(strm, nil)
      Z.bioxen_inflateEnd(strm)
      if ld ~= nil then ffi.gc(ld, nil); D.bioxen_ld_free(ld); ld = nil end
    end
  end
  -- A whole BGZF block whose deflate data is the next `in_n` bytes of src
  -- (all in src.s), through libdeflate: a member object as engine.member
  -- gives, or nil (no libdeflate, or it failed: the caller then streams the
  -- block through zlib, src untouched, which reports any fault its own way).
  local used, made = ffi.new("size_t[1]"), ffi.new("size_t[1]")
  function engine.block(src, in_n)
    if ld == nil then return nil end
    local p = cast("const uint8_t *", src.s) + (src.pos - 1)
    if D.bioxen_ld_inflate(ld, p, in_n, out, BGZF_MAX, used, made) ~= 0 then return nil end
    local n = tonumber(made[0])
    src.pos = src.pos + tonumber(used[0])
    local text = n > 0 and ffi.string(out, n) or nil
    local crc = n > 0 and tonumber(Z.bioxen_crc32(0, out, n)) or 0
    return {
      read = function() local t = text; text = nil; return t end,
      crc = function() return crc end,
      size = function() return n end,
    }
  end
  function engine.member(src)
    if Z.bioxen_inflateReset(strm) ~= 0 then error("bio._gzip: zlib inflateReset failed", 0) end
    local z = strm[0]
    local crc, size, ended = 0, 0, false
    local m = {}
    function m.read(max)
      if ended then return nil end
      if max > PIECE then max = PIECE end
      while true do
        local s, pos = src.s, src.pos
        local avail = #s - pos + 1
        if avail <= 0 then
          if not src.more() then error("inflate: " .. I.TRUNCATED, 0) end
          s, pos = src.s, 1
          avail = #s
        end
        z.next_in = cast("const uint8_t *", s) + (pos - 1)
        z.avail_in = avail
        z.next_out = out
        z.avail_out = max
        local rc = Z.bioxen_inflate(strm, 0)
        local left = z.avail_in
        z.next_in = nil
        src.pos = pos + (avail - left)
        local produced = max - z.avail_out
        if rc == 1 then
          ended = true
        elseif rc ~= 0 and rc ~= -5 then -- Z_OK; Z_BUF_ERROR is "no progress", more input will come
          local msg = z.msg ~= nil and ffi.string(z.msg) or ("zlib error " .. tonumber(rc))
          error("inflate: " .. msg, 0)
        end
        if produced > 0 then
          crc = tonumber(Z.bioxen_crc32(crc, out, produced))
          size = size + produced
          return ffi.string(out, produced)
        end
        if ended then return nil end
      end
    end
    function m.crc() return crc end
    function m.size() return size end
    return m
  end
  return engine
end

-- A pure-Lua member decoder (bio._inflate, CRC over its output array).
local function lua_member(src)
  crc_tables()
  local c0, c1, c2, c3 = 255, 255, 255, 255
  local size = 0
  local d = I.stream(src, function(t, a, z)
    c0, c1, c2, c3 = crc_array(c0, c1, c2, c3, t, a, z)
    size = size + (z - a + 1)
  end)
  return {
    read = d.read,
    crc = function() return crc_value(c0, c1, c2, c3) end,
    size = function() return size end,
  }
end

---------------------------------------------------------------------------
-- Reading members
---------------------------------------------------------------------------

local decoder -- decoder(f, name, fname, opts, head, own) -> read, close (below)

--- The decompressed text of a gzip file, in pieces.
-- opts (all optional):
--   start       compressed byte offset to begin at: a member (BGZF block)
--               start, e.g. from G.blocks or a .gzi index (default 0)
--   skip        decompressed bytes to drop first (default 0); whole BGZF
--               blocks inside it are stepped over without decoding
--   limit       at most this many bytes in all (default: to the end); no
--               more is decoded than needed for them
--   chunk_size  the largest piece read() returns (default G.CHUNK)
--   fname       the function name errors start with (default
--               "bio._gzip.chunks")
-- Returns read() -> next piece (a non-empty string) or nil at the end, and
-- close() (idempotent; the file is also closed at the end and on errors).
function G.chunks(path, opts)
  local fname = type(opts) == "table" and type(opts.fname) == "string" and opts.fname or "bio._gzip.chunks"
  A.check_string(path, fname, 1, "path")
  opts = A.check_options(opts, { "start", "skip", "limit", "chunk_size", "fname" }, fname, 2)
  local start = opts.start or 0
  A.check_int(start, fname, 2, "start", 0, math.huge)
  A.check_int(opts.skip or 0, fname, 2, "skip", 0, math.huge)
  if opts.limit ~= nil then A.check_int(opts.limit, fname, 2, "limit", 0, math.huge) end
  A.check_int(opts.chunk_size or G.CHUNK, fname, 2, "chunk_size", 1, 1073741824)
  local f = open_file(path, fname, 2)
  if start > 0 then
    local ok, err = f:seek("set", start)
    if not ok then
      f:close()
      A.raise(fmt("%s: '%s': cannot seek to byte offset %d: %s", fname, path, start, tostring(err)), 2)
    end
  end
  return decoder(f, path, fname, opts, "", true)
end

--- The decompressed text of a gzip stream that cannot seek (a pipe,
-- standard input): `f` has read(n) and close(); `head` holds the bytes
-- already read from it (e.g. the magic bytes a caller sniffed).  Memory
-- and checks as G.chunks; opts: limit, chunk_size, fname, name (how errors
-- name the stream, default "<stream>"), close (false: leave f open at the
-- end, as for io.stdin).
function G.stream(f, head, opts)
  local fname = type(opts) == "table" and type(opts.fname) == "string" and opts.fname or "bio._gzip.stream"
  opts = A.check_options(opts, { "limit", "chunk_size", "fname", "name", "close" }, fname, 3)
  if opts.limit ~= nil then A.check_int(opts.limit, fname, 3, "limit", 0, math.huge) end
  A.check_int(opts.chunk_size or G.CHUNK, fname, 3, "chunk_size", 1, 1073741824)
  A.check_string(head or "", fname, 2, "head")
  return decoder(f, opts.name or "<stream>", fname, opts, head or "", opts.close ~= false)
end

-- The reader over an open handle `f` positioned at opts.start (its first
-- bytes already read into `head`); `own`: close f at the end.  Seeks only
-- to step over skipped BGZF blocks (opts.skip), which a stream never asks.
decoder = function(f, path, fname, opts, head, own)
  local start = opts.start or 0
  local skip_left = opts.skip or 0
  local limit_left = opts.limit
  local chunk_size = opts.chunk_size or G.CHUNK
  local in_chunk = G.READ_SIZE
  local engine = use_zlib() and zlib_engine() or nil

  local src = { s = head, pos = 1, base = start }
  function src.more()
    local nx = f:read(in_chunk)
    if nx then
      src.base = src.base + #src.s
      src.s, src.pos = nx, 1
    end
    return nx
  end

  local closed = false
  local function close()
    if not closed then
      closed = true
      if own then f:close() end
      if engine then engine.close() end
    end
  end

  local function fail(msg, ...)
    error(fmt("%s: '%s': " .. msg, fname, path, ...), 0)
  end
  local function truncated(off)
    fail("truncated gzip member at byte offset %d (unexpected end of file)", off)
  end

  -- Make k bytes available at src.pos; false if the file ends first.
  local function need(k)
    local have = #src.s - src.pos + 1
    while have < k do
      local nx = f:read(in_chunk > k - have and in_chunk or k - have)
      if not nx then return false end
      src.base = src.base + src.pos - 1
      src.s = sub(src.s, src.pos) .. nx
      src.pos = 1
      have = #src.s
    end
    return true
  end
  local function offset() return src.base + src.pos - 1 end

  local member, member_off, member_end -- the member being decoded
  local first = true
  local done = false
  local pending -- decoded text beyond the last piece returned

  -- Skip a zero-terminated header field, adding it to the header CRC.
  local function skip_cstring(off, hcrc)
    while true do
      if not need(1) then truncated(off) end
      local s, p = src.s, src.pos
      local z = string.find(s, "\0", p, true)
      local stop = z or #s
      if hcrc then hcrc(sub(s, p, stop)) end
      src.pos = stop + 1
      if z then return end
    end
  end

  -- Parse the header of the next member.  Returns false at a clean end of
  -- the stream (only after a member; zero bytes after a member are padding,
  -- skipped as gzip and Python do).
  local function begin_member()
    if not first then
      while need(1) and byte(src.s, src.pos) == 0 do
        local p, s = src.pos, src.s
        while p <= #s and byte(s, p) == 0 do p = p + 1 end
        src.pos = p
      end
    end
    local off = offset()
    local whole = need(10)
    local s, p = src.s, src.pos
    if p > #s then
      if first then
        if off == 0 then fail("not a gzip file (it is empty)") end
        fail("no gzip member at byte offset %d (end of file)", off)
      end
      return false
    end
    local id1, id2, cm, flg = byte(s, p, p + 3)
    if id1 ~= 31 or (id2 or 139) ~= 139 then
      if first and off > 0 then
        fail("no gzip member starts at byte offset %d (no gzip magic there; `start` must be a member or BGZF block offset)", off)
      end
      if first then fail("not a gzip file (no gzip magic at byte offset %d)", off) end
      fail("unexpected data after the last gzip member (no gzip magic at byte offset %d)", off)
    end
    if not whole then truncated(off) end
    if cm ~= 8 then fail("unsupported compression method %d in gzip member at byte offset %d", cm, off) end
    if flg >= 32 then fail("reserved header flags set in gzip member at byte offset %d", off) end
    local fhcrc, fextra = floor(flg / 2) % 2 == 1, floor(flg / 4) % 2 == 1
    local fname_, fcomment = floor(flg / 8) % 2 == 1, floor(flg / 16) % 2 == 1
    local hcrc_value = 0
    local hcrc = fhcrc and function(piece)
      hcrc_value = G.crc32(piece, hcrc_value)
    end or nil
    if hcrc then hcrc(sub(s, p, p + 9)) end
    src.pos = p + 10
    local bsize
    if fextra then
      if not need(2) then truncated(off) end
      local xlen = le16(src.s, src.pos)
      if not need(2 + xlen) then truncated(off) end
      local x = sub(src.s, src.pos, src.pos + 1 + xlen)
      if hcrc then hcrc(x) end
      bsize = bc_bsize(sub(x, 3))
      src.pos = src.pos + 2 + xlen
    end
    if fname_ then skip_cstring(off, hcrc) end
    if fcomment then skip_cstring(off, hcrc) end
    if fhcrc then
      if not need(2) then truncated(off) end
      local stored = le16(src.s, src.pos)
      src.pos = src.pos + 2
      if stored ~= hcrc_value % 65536 then
        fail("header CRC mismatch in gzip member at byte offset %d (stored 0x%04x, computed 0x%04x)",
          off, stored, hcrc_value % 65536)
      end
    end
    first = false
    member_end = nil
    if bsize then
      member_end = off + bsize + 1
      if member_end < offset() + 8 then
        fail("invalid BGZF block size %d in the block at byte offset %d", bsize + 1, off)
      end
      if skip_left > 0 then
        -- Step over the whole block if all of its text is to be skipped.
        local isize
        if member_end <= src.base + #src.s then
          isize = le32(src.s, member_end - 4 - src.base + 1)
          if isize <= skip_left then src.pos = member_end - src.base + 1 end
        else
          local resume = src.base + #src.s
          f:seek("set", member_end - 4)
          local t = f:read(4)
          if t == nil or #t < 4 then truncated(off) end
          isize = le32(t, 1)
          if isize <= skip_left then
            src.s, src.pos, src.base = "", 1, member_end
          else
            f:seek("set", resume)
          end
        end
        if isize <= skip_left then
          skip_left = skip_left - isize
          return true -- no member opened: the caller asks for the next one
        end
      end
    end
    member_off = off
    member = nil
    if bsize and engine and need(member_end - offset()) then
      member = engine.block(src, member_end - 8 - offset())
    end
    member = member or (engine and engine.member(src)) or lua_member(src)
    return true
  end

  local function end_member()
    local off = member_off
    if not need(8) then truncated(off) end
    local s, p = src.s, src.pos
    local crc, isize = le32(s, p), le32(s, p + 4)
    src.pos = p + 8
    local got_crc, got_size = member.crc(), member.size() % TWO32
    member = nil
    if crc ~= got_crc then
      fail("CRC32 mismatch in gzip member at byte offset %d (stored 0x%08x, computed 0x%08x)", off, crc, got_crc)
    end
    if isize ~= got_size then
      fail("ISIZE mismatch in gzip member at byte offset %d (stored %d, decompressed %d mod 2^32)", off, isize, got_size)
    end
    if member_end and offset() ~= member_end then
      fail("BGZF block at byte offset %d ends at byte offset %d, not where its BSIZE says (%d)",
        off, offset(), member_end)
    end
  end

  local function member_read(max)
    local ok, piece = pcall(member.read, max)
    if ok then return piece end
    if type(piece) == "string" and sub(piece, 1, 9) == "inflate: " then
      local detail = sub(piece, 10)
      if detail == I.TRUNCATED then truncated(member_off) end
      fail("corrupt deflate data in gzip member at byte offset %d: %s", member_off, detail)
    end
    error(piece, 0)
  end

  -- The next piece of text (any size), or nil at the end.
  local function next_piece()
    while true do
      if limit_left == 0 then return nil end
      if member then
        local max = PIECE
        if limit_left and skip_left + limit_left < max then max = skip_left + limit_left end
        local piece = member_read(max)
        if piece == nil then
          end_member()
        else
          if skip_left > 0 then
            if #piece <= skip_left then
              skip_left = skip_left - #piece
              piece = nil
            else
              piece = sub(piece, skip_left + 1)
              skip_left = 0
            end
          end
          if piece then
            if limit_left then
              if #piece > limit_left then piece = sub(piece, 1, limit_left) end
              limit_left = limit_left - #piece
            end
            return piece
          end
        end
      elseif not begin_member() then
        return nil
      end
    end
  end

  local function read_impl()
    local parts, np, got = {}, 0, 0
    if pending then
      parts[1], np, got = pending, 1, #pending
      pending = nil
    end
    while got < chunk_size do
      local piece = next_piece()
      if piece == nil then
        done = true
        break
      end
      np = np + 1
      parts[np] = piece
      got = got + #piece
    end
    if np == 0 then return nil end
    local s = np == 1 and parts[1] or concat(parts, "", 1, np)
    if #s > chunk_size then
      pending = sub(s, chunk_size + 1)
      s = sub(s, 1, chunk_size)
    end
    return s
  end

  local function read()
    if closed then return nil end
    if done and not pending then
      close()
      return nil
    end
    local ok, s = pcall(read_impl)
    if not ok then
      close()
      error(s, 0)
    end
    if s == nil then close() end
    return s
  end

  return read, close
end

---------------------------------------------------------------------------
-- BGZF block layout and format checks
---------------------------------------------------------------------------

--- The blocks of a BGZF file, from its headers and ISIZE trailers only
-- (nothing is decompressed): an iterator of
--   {offset = compressed offset, csize = compressed size, usize = text size}
-- in file order, the empty EOF block included.  For a generic `for`; on
-- Lua 5.4 breaking out of the loop closes the file at once, else it is
-- closed at the end or by the garbage collector.
function G.blocks(path)
  local fname = "bio._gzip.blocks"
  A.check_string(path, fname, 1, "path")
  local f = open_file(path, fname, 2)
  local off, open = 0, true
  local function close()
    if open then
      open = false
      f:close()
    end
  end
  local function fail(msg, ...)
    close()
    error(fmt("%s: '%s': " .. msg, fname, path, ...), 0)
  end
  local function next_block()
    if not open then return nil end
    local h = f:read(12)
    if h == nil then
      if off == 0 then fail("not a BGZF file (it is empty)") end
      close()
      return nil
    end
    local id1, id2, cm, flg = byte(h, 1, 4)
    if id1 ~= 31 or (id2 or 139) ~= 139 or (cm or 8) ~= 8 then
      fail("not a BGZF file (no gzip header at byte offset %d)", off)
    end
    if #h < 12 then fail("truncated BGZF block at byte offset %d (file ends inside its header)", off) end
    if floor(flg / 4) % 2 ~= 1 then
      fail("not a BGZF file (the gzip member at byte offset %d has no extra field)", off)
    end
    local xlen = le16(h, 11)
    local x = xlen > 0 and f:read(xlen) or ""
    if x == nil or #x < xlen then fail("truncated BGZF block at byte offset %d (file ends inside its header)", off) end
    local bsize = bc_bsize(x)
    if not bsize then
      fail("not a BGZF file (the gzip member at byte offset %d has no BC extra subfield)", off)
    end
    local csize = bsize + 1
    if csize < 12 + xlen + 8 then fail("invalid BGZF block size %d in the block at byte offset %d", csize, off) end
    f:seek("set", off + csize - 4)
    local t = f:read(4)
    if t == nil or #t < 4 then
      fail("truncated BGZF block at byte offset %d (the file ends before its %d bytes)", off, csize)
    end
    local b = { offset = off, csize = csize, usize = le32(t, 1) }
    off = off + csize
    return b
  end
  local closer = setmetatable({}, { __close = close })
  return next_block, nil, nil, closer
end

--- Whether the file starts with the gzip magic bytes 1f 8b.
function G.is_gzip(path)
  local fname = "bio._gzip.is_gzip"
  A.check_string(path, fname, 1, "path")
  local f = open_file(path, fname, 2)
  local s = f:read(2) or ""
  f:close()
  return s == "\31\139"
end

--- Whether the file starts with a BGZF block: a gzip member (deflate) with
-- an extra field holding the BC subfield.
function G.is_bgzf(path)
  local fname = "bio._gzip.is_bgzf"
  A.check_string(path, fname, 1, "path")
  local f = open_file(path, fname, 2)
  local h = f:read(12) or ""
  local ok = false
  if #h == 12 then
    local id1, id2, cm, flg = byte(h, 1, 4)
    if id1 == 31 and id2 == 139 and cm == 8 and floor(flg / 4) % 2 == 1 then
      local xlen = le16(h, 11)
      local x = xlen > 0 and f:read(xlen) or ""
      ok = x ~= nil and #x == xlen and bc_bsize(x) ~= nil
    end
  end
  f:close()
  return ok
end

return G
