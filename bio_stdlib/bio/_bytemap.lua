--- bio._bytemap: map every byte of a string through a table, optionally
-- reversing it.  The portable (PUC Lua 5.1-5.4) kernel behind bio.seq's
-- complement functions; LuaJIT with FFI uses a byte loop in bio.seq instead.
--
--   local map = require("bio._bytemap").new({A = "T", T = "A", ...}, "ACGTNacgtn")
--   map("AACG", true)   --> "CGTT"  (mapped and reversed)
--
-- Why the code looks like this: on PUC Lua every per-byte step costs a VM
-- instruction or a C API call, and string.gsub costs ~75 ns per match, so a
-- per-character gsub maps ~15 MB/s and a 6-byte-window gsub ~65 MB/s.  The
-- cheapest ways in and out of a string are string.unpack/string.pack of
-- 8-byte integers (Lua 5.3+) and string.byte/string.char of many bytes per
-- call.  Two kernels, both unrolled straight-line code generated once with
-- load() (as bio.kmer and bio.align do):
--
-- * words (Lua 5.3+ with 64-bit integers): 96 eight-byte words per
--   unpack/pack call.  Each word is mapped as two 4-byte halves, each looked
--   up in a table holding every 4-letter string over a common alphabet
--   (for DNA ACGTN in both cases: 10^4 keys, built on first use; the value
--   is the mapped half, byte-reversed for the reversing variant).  A half
--   holding any other byte misses the table and the arithmetic on nil
--   raises: the call then falls back to
-- * bytes (every version): 100 bytes per string.byte/string.char call, each
--   through a 256-entry array.  Exact for every byte value.
--
-- Speed on lua5.4 here, 98 Mbp of ACGTNacgtn: words ~150 MB/s, bytes
-- ~140 MB/s (Biopython's reverse_complement: ~400 MB/s).  The two table
-- lookups (hash part: an integer modulo each) are most of the words
-- kernel's mapping cost; a larger alphabet (12^4 keys) collides more in
-- Lua's hash and is ~15% slower, so keep it small.
local M = {}

local byte, char, sub, gsub, rep, concat = string.byte, string.char, string.sub, string.gsub, string.rep, table.concat
local load_chunk = rawget(_G, "loadstring") or load

local BYTES_PER_CALL = 100 -- string.byte/char arguments per call (registers: 2 * 100 + a few < 250)
local WORDS_PER_CALL = 96  -- 8-byte words per unpack/pack (768 bytes: pack's stack buffer holds 1 KiB)
local WORDS_MIN = 2048     -- shorter strings are not worth building the 4-letter tables for

-- "a1,a2,...,aN" (or reversed).
local function names(n, reversed, fmt)
  local out = {}
  for i = 1, n do out[reversed and n + 1 - i or i] = (fmt or "a%d"):format(i) end
  return concat(out, ",")
end

---------------------------------------------------------------------------
-- bytes: string.byte -> T[b] -> string.char, 100 bytes per call
---------------------------------------------------------------------------

local BYTES_SRC = [[
local byte, char, sub, gsub, reverse, concat = ...
local K = %d
return function(s, T, charmap, reversed)
  local n = #s
  local out, no = {}, 0
  if reversed then
    local pos = n - K + 1
    while pos >= 1 do
      local %s = byte(s, pos, pos + K - 1)
      no = no + 1
      out[no] = char(%s)
      pos = pos - K
    end
    no = no + 1
    out[no] = gsub(reverse(sub(s, 1, pos + K - 1)), ".", charmap)
  else
    local pos = 1
    while pos + K - 1 <= n do
      local %s = byte(s, pos, pos + K - 1)
      no = no + 1
      out[no] = char(%s)
      pos = pos + K
    end
    no = no + 1
    out[no] = gsub(sub(s, pos), ".", charmap)
  end
  return concat(out, "", 1, no)
end
]]

local bytes_kernel = assert(load_chunk(BYTES_SRC:format(BYTES_PER_CALL,
  names(BYTES_PER_CALL), names(BYTES_PER_CALL, true, "T[a%d]"),
  names(BYTES_PER_CALL), names(BYTES_PER_CALL, false, "T[a%d]")), "=bio._bytemap bytes"))(
  byte, char, sub, gsub, string.reverse, concat)

---------------------------------------------------------------------------
-- words: string.unpack -> two 4-byte table lookups -> string.pack
---------------------------------------------------------------------------

-- Only where string.pack exists and integers have 64 bits (Lua 5.3+).  The
-- source uses 5.3 operators, so it is only compiled there.
local has_words = rawget(_G, "math") and math.type ~= nil and string.pack ~= nil
  and string.packsize("j") == 8

local WORDS_SRC = [[
local unpack, pack, rep = ...
local K = %d
local FMT = "<" .. rep("j", K)
local STEP = 8 * K
-- Returns the mapped pieces, their count, and where the unmapped rest is:
-- bytes 1..rest (reversed) or rest..#s (forward).
return function(s, Q, reversed)
  local n = #s
  local out, no = {}, 0
  if reversed then
    local pos = n - STEP + 1
    while pos >= 1 do
      local %s = unpack(FMT, s, pos)
      %s
      no = no + 1
      out[no] = pack(FMT, %s)
      pos = pos - STEP
    end
    return out, no, pos + STEP - 1
  end
  local pos = 1
  while pos + STEP - 1 <= n do
    local %s = unpack(FMT, s, pos)
    %s
    no = no + 1
    out[no] = pack(FMT, %s)
    pos = pos + STEP
  end
  return out, no, pos
end
]]

local words_kernel
if has_words then
  local K = WORDS_PER_CALL
  local rev_map, fwd_map = {}, {}
  for i = 1, K do
    -- reversed: the high half's bytes come first, each half byte-reversed by Q
    rev_map[i] = ("a%d = Q[a%d >> 32] | Q[a%d & 0xFFFFFFFF] << 32"):format(i, i, i)
    fwd_map[i] = ("a%d = Q[a%d & 0xFFFFFFFF] | Q[a%d >> 32] << 32"):format(i, i, i)
  end
  words_kernel = assert(load_chunk(WORDS_SRC:format(K,
    names(K), concat(rev_map, "\n      "), names(K, true),
    names(K), concat(fwd_map, "\n    "), names(K)), "=bio._bytemap words"))(string.unpack, string.pack, rep)
end

-- {4-byte little-endian integer -> mapped integer} for every 4-letter string
-- over `common`: byte order kept (forward) or reversed.
local function quad_tables(T, common)
  local fwd, rev = {}, {}
  local letters = { byte(common, 1, -1) }
  local m = #letters
  for i = 1, m do
    local a = letters[i]
    for j = 1, m do
      local b = letters[j]
      for k = 1, m do
        local c = letters[k]
        for l = 1, m do
          local d = letters[l]
          local key = a + b * 256 + c * 65536 + d * 16777216
          fwd[key] = T[a] + T[b] * 256 + T[c] * 65536 + T[d] * 16777216
          rev[key] = T[d] + T[c] * 256 + T[b] * 65536 + T[a] * 16777216
        end
      end
    end
  end
  return fwd, rev
end

-- The words kernel met a byte outside `common` (arithmetic on a nil lookup).
local function is_miss(err)
  return type(err) == "string" and err:find("bitwise operation on a nil value", 1, true) ~= nil
end

-- Raised (as a value) for a byte >= 0x80 by the `ascii_only` kernels.
local NON_ASCII = {}

--- A mapper for `charmap` ({char -> char}; other bytes are kept):
-- returns map(s, reversed) -> the mapped string, reversed when asked.
-- `common`: the letters most input is made of (at most ~10: see above);
-- strings with other bytes are still mapped exactly, by the bytes kernel.
-- `ascii_only`: map(s) returns nil if s has a byte >= 0x80 (found at no
-- cost: such a byte misses every table, and the bytes kernel then fails).
function M.new(charmap, common, ascii_only)
  local T = {}
  for b = 0, 255 do T[b] = b end
  for k, v in pairs(charmap) do T[byte(k)] = byte(v) end
  if ascii_only then
    for b = 128, 255 do T[b] = nil end -- string.char(nil) raises
    local strict = {}
    for k, v in pairs(charmap) do strict[k] = v end
    charmap = setmetatable(strict, { __index = function(_, c) -- the short tail (gsub)
      if byte(c) >= 128 then error(NON_ASCII) end
    end })
  end
  local function bytes(s, reversed)
    if not ascii_only then return bytes_kernel(s, T, charmap, reversed) end
    local ok, out = pcall(bytes_kernel, s, T, charmap, reversed)
    if ok then return out end
    if out == NON_ASCII or (type(out) == "string" and out:find("'char'", 1, true)) then error(NON_ASCII) end
    error(out, 0)
  end
  local fwd, rev -- 4-letter tables, built on the first long string
  local function map(s, reversed)
    local n = #s
    if words_kernel and n >= WORDS_MIN then
      if not fwd then fwd, rev = quad_tables(T, common) end
      local ok, out, no, rest = pcall(words_kernel, s, reversed and rev or fwd, reversed)
      if ok then
        if reversed then
          if rest > 0 then no = no + 1; out[no] = bytes(sub(s, 1, rest), true) end
        elseif rest <= n then
          no = no + 1; out[no] = bytes(sub(s, rest), false)
        end
        return concat(out, "", 1, no)
      end
      if not is_miss(out) then error(out, 0) end -- an interrupt, out of memory: not ours to hide
    end
    return bytes(s, reversed)
  end
  if not ascii_only then return map end
  return function(s, reversed)
    local ok, out = pcall(map, s, reversed)
    if ok then return out end
    if out == NON_ASCII then return nil end
    error(out, 0)
  end
end

--- Which kernels this runtime has ("words+bytes" or "bytes"), for tests and benchmarks.
M.kernels = words_kernel and "words+bytes" or "bytes"

return M
