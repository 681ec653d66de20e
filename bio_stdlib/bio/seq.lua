--- bio.seq: nucleotide sequence operations on plain Lua strings.
--
-- Semantics follow Biopython 1.88 (Bio.Seq, Bio.SeqUtils) exactly; the
-- reference page is docs/bio/seq.md.  Sequences are ordinary strings, so
-- they come straight from bio.fasta records and go straight back out.
--
-- Kernels: on LuaJIT with FFI the byte loops run over `const uint8_t*`
-- views with lookup tables (see bio._fast); elsewhere they use C-level
-- string functions (string.unpack/pack or string.byte/char over long runs,
-- see bio._bytemap; string.byte over 16-byte chunks for counting).
local F = require "bio._fast"
local A = require "bio.alphabet"

local M = {}

local ffi = F.ffi
local byte, char, sub, gsub, reverse = string.byte, string.char, string.sub, string.gsub, string.reverse
local floor = math.floor

---------------------------------------------------------------------------
-- Byte maps (complement, transcription)
---------------------------------------------------------------------------

-- {char -> char} for upper and lower case from an upper-case letter map.
local function both_cases(map)
  local out = {}
  for k, v in pairs(map) do
    out[k] = v
    out[k:lower()] = v:lower()
  end
  return out
end

local DNA_COMP = both_cases(A.dna_complement)
local RNA_COMP = both_cases(A.rna_complement)

-- A byte-mapping kernel: returns f(s, reversed) mapping every byte of s
-- through `charmap` (characters not in the map are kept), optionally
-- reversing the result.  `common`: the letters most input consists of
-- (the portable kernel is fastest on those).
-- Mappers return nil for a string with a byte >= 0x80: Biopython's
-- complement functions refuse non-ASCII text (UnicodeEncodeError).
local function make_mapper(charmap, common)
  if ffi then
    local u64 = ffi.typeof("const uint64_t *")
    local band, bor = require("bit").band, require("bit").bor
    local HIGH = ffi.cast("uint64_t", 0x80808080) * 0x100000001 -- 0x8080808080808080
    local function ascii(p, n) -- eight bytes at a time
      local w, acc = ffi.cast(u64, p), ffi.cast("uint64_t", 0)
      local nw = (n - n % 8) / 8
      for i = 0, nw - 1 do acc = bor(acc, w[i]) end
      for i = nw * 8, n - 1 do acc = bor(acc, p[i]) end
      return band(acc, HIGH) == 0
    end
    local bmap = {}
    for k, v in pairs(charmap) do bmap[byte(k)] = byte(v) end
    for b = 0, 255 do bmap[b] = bmap[b] or b end
    local lut = F.lut("uint8_t", bmap)
    return function(s, reversed)
      local n = #s
      if n == 0 then return s end
      local p = ffi.cast("const uint8_t*", s)
      if not ascii(p, n) then return nil end
      local out = F.scratch("map", n)
      if reversed then
        local last = n - 1
        for i = 0, last do out[last - i] = lut[p[i]] end
      else
        for i = 0, n - 1 do out[i] = lut[p[i]] end
      end
      return ffi.string(out, n)
    end
  end
  -- Portable: unrolled string.unpack/pack or string.byte/char kernels
  -- (bio._bytemap explains why and how fast).
  return require("bio._bytemap").new(charmap, common, true)
end

local map_dna = make_mapper(DNA_COMP, "ACGTNacgtn")
local map_rna = make_mapper(RNA_COMP, "ACGUNacgun")

-- map(s) or the error Biopython's UnicodeEncodeError stands for, at the
-- line that called the complement function.
local function mapped(map, s, reversed, fname)
  A.check_string(s, fname, 1, "seq")
  local out = map(s, reversed)
  if out then return out end
  local at = s:find("[\128-\255]")
  A.arg_error(fname, 1, "seq", string.format("non-ASCII byte \\%d at position %d (sequences are ASCII text; "
    .. "Biopython raises UnicodeEncodeError)", s:byte(at), at), 3)
end

--- Complement of a DNA sequence: IUPAC-aware, case kept, U -> A; other
-- ASCII characters (gaps, '*', digits) unchanged; a byte >= 0x80 is an
-- error.  Same as Bio.Seq.complement.
function M.complement(s)
  local out = mapped(map_dna, s, false, "bio.seq.complement")
  return out
end

--- Reverse complement of a DNA sequence (Bio.Seq.reverse_complement).
function M.reverse_complement(s)
  local out = mapped(map_dna, s, true, "bio.seq.reverse_complement")
  return out
end

--- Complement as RNA: A -> U, and T is read as U (Bio.Seq.complement_rna).
function M.complement_rna(s)
  local out = mapped(map_rna, s, false, "bio.seq.complement_rna")
  return out
end

--- Reverse complement as RNA (Bio.Seq.reverse_complement_rna).
function M.reverse_complement_rna(s)
  local out = mapped(map_rna, s, true, "bio.seq.reverse_complement_rna")
  return out
end

M.revcomp = M.reverse_complement

--- DNA -> RNA: T -> U, t -> u; nothing else changes (Bio.Seq.transcribe).
function M.transcribe(s)
  A.check_string(s, "bio.seq.transcribe", 1, "dna")
  return (gsub(s, "[Tt]", { T = "U", t = "u" }))
end

--- RNA -> DNA: U -> T, u -> t (Bio.Seq.back_transcribe).
function M.back_transcribe(s)
  A.check_string(s, "bio.seq.back_transcribe", 1, "rna")
  return (gsub(s, "[Uu]", { U = "T", u = "t" }))
end

---------------------------------------------------------------------------
-- Counting kernels
---------------------------------------------------------------------------

-- Counting uses one lookup per byte into a "packed" table whose value adds
-- 1 to the low counter and PACK to the high one, so one pass yields two
-- counts.  Sums are Lua numbers and stay exact: a block is short enough
-- that the low field cannot reach PACK, and block sums are far below 2^53.
local PACK = 65536
local BLOCK = 32768 -- bytes per block: low field <= 32768 < PACK

-- {byte -> packed value}: `low` letters add 1, `high` letters add PACK.
local function packed_map(low, high)
  local map = {}
  for b = 0, 255 do map[b] = 0 end
  for i = 1, #low do map[byte(low, i)] = 1 end
  for i = 1, #high do local b = byte(high, i); map[b] = (map[b] or 0) + PACK end
  return map
end

-- count2(s, map, i, j) -> low, high: the two counts over s[i..j].
local count2
if ffi then
  local luts = setmetatable({}, { __mode = "k" })
  -- Two lookup tables per map: 256 entries for single bytes, and 65536 for
  -- byte pairs (read as uint16; the entry is lut[a] + lut[b], symmetric, so
  -- byte order does not matter).  Pairs halve the loads per byte.
  local luts16 = setmetatable({}, { __mode = "k" })
  local function tables_for(map)
    local lut, lut16 = luts[map], luts16[map]
    if not lut then
      lut = F.lut("int32_t", map)
      lut16 = ffi.new("int32_t[65536]")
      for a = 0, 255 do
        local va, row = lut[a], a * 256
        for b = 0, 255 do lut16[row + b] = va + lut[b] end
      end
      luts[map], luts16[map] = lut, lut16
    end
    return lut, lut16
  end
  count2 = function(s, map, i, j)
    local lut, lut16 = tables_for(map)
    local p = ffi.cast("const uint8_t*", s)
    local low, high = 0, 0
    local pos = i - 1
    while pos < j do
      local stop = pos + BLOCK
      if stop > j then stop = j end
      -- four accumulators break the add dependency chain
      local a1, a2, a3, a4 = 0, 0, 0, 0
      local pairs_n = floor((stop - pos) / 2)
      local q = ffi.cast("const uint16_t*", p + pos)
      local last4 = pairs_n - pairs_n % 4
      for k = 0, last4 - 4, 4 do
        a1 = a1 + lut16[q[k]]; a2 = a2 + lut16[q[k + 1]]
        a3 = a3 + lut16[q[k + 2]]; a4 = a4 + lut16[q[k + 3]]
      end
      for k = last4, pairs_n - 1 do a1 = a1 + lut16[q[k]] end
      if pos + 2 * pairs_n < stop then a2 = a2 + lut[p[stop - 1]] end
      local acc = a1 + a2 + a3 + a4
      local h = floor(acc / PACK)
      high = high + h
      low = low + (acc - h * PACK)
      pos = stop
    end
    return low, high
  end
else
  count2 = function(s, L, i, j)
    local low, high = 0, 0
    local pos = i
    while pos <= j do
      local stop = pos + BLOCK - 1
      if stop > j then stop = j end
      local acc = 0
      local k = pos
      -- 16 bytes per string.byte call: the C call dominates, not the adds.
      while k + 15 <= stop do
        local a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16 = byte(s, k, k + 15)
        acc = acc + L[a1] + L[a2] + L[a3] + L[a4] + L[a5] + L[a6] + L[a7] + L[a8]
          + L[a9] + L[a10] + L[a11] + L[a12] + L[a13] + L[a14] + L[a15] + L[a16]
        k = k + 16
      end
      while k <= stop do acc = acc + L[byte(s, k)]; k = k + 1 end
      local h = floor(acc / PACK)
      high = high + h
      low = low + (acc - h * PACK)
      pos = stop + 1
    end
    return low, high
  end
end

-- histogram(s) -> {byte -> count} for every byte value 0..255.
local histogram
if ffi then
  histogram = function(s)
    local n = #s
    local counts = ffi.new("double[256]")
    local p = ffi.cast("const uint8_t*", s)
    for i = 0, n - 1 do local b = p[i]; counts[b] = counts[b] + 1 end
    local h = {}
    for b = 0, 255 do h[b] = counts[b] end
    return h
  end
else
  histogram = function(s)
    local h = {}
    for b = 0, 255 do h[b] = 0 end
    local n, k = #s, 1
    while k + 7 <= n do
      local a1, a2, a3, a4, a5, a6, a7, a8 = byte(s, k, k + 7)
      h[a1] = h[a1] + 1; h[a2] = h[a2] + 1; h[a3] = h[a3] + 1; h[a4] = h[a4] + 1
      h[a5] = h[a5] + 1; h[a6] = h[a6] + 1; h[a7] = h[a7] + 1; h[a8] = h[a8] + 1
      k = k + 8
    end
    while k <= n do local b = byte(s, k); h[b] = h[b] + 1; k = k + 1 end
    return h
  end
end

---------------------------------------------------------------------------
-- GC content
---------------------------------------------------------------------------

local GC_AT = packed_map("GCSgcs", "ATWUatwu") -- remove: low = GC, high = AT
local GC_ONLY = packed_map("GCSgcs", "")       -- ignore: low = GC

-- Biopython's _gc_values for the ambiguous letters, in the order its
-- weighted sum visits them (the order matters for bit-identical floats).
local WEIGHTED = {
  { "B", 2 / 3 }, { "D", 1 / 3 }, { "H", 1 / 3 }, { "K", 0.5 }, { "M", 0.5 },
  { "N", 0.5 }, { "R", 0.5 }, { "V", 2 / 3 }, { "X", 0.5 }, { "Y", 0.5 },
}

local function gc_counts(s, mode, fname)
  if mode == nil or mode == "remove" then
    local gc, at = count2(s, GC_AT, 1, #s)
    return gc, gc + at
  elseif mode == "ignore" then
    local gc = count2(s, GC_ONLY, 1, #s)
    return gc, #s
  elseif mode == "weighted" then
    local h = histogram(s)
    local gc = 0
    for _, c in ipairs({ "C", "G", "S", "c", "g", "s" }) do gc = gc + h[byte(c)] end
    local extra = 0
    for _, lw in ipairs(WEIGHTED) do
      local up, lo = byte(lw[1]), byte(lw[1]:lower())
      extra = extra + (h[up] + h[lo]) * lw[2]
    end
    return gc + extra, #s
  end
  A.arg_error(fname, 2, "ambiguous", "must be \"remove\", \"ignore\" or \"weighted\", got " .. tostring(mode), 3)
end

--- GC fraction in [0, 1], exactly as Bio.SeqUtils.gc_fraction(seq, ambiguous).
--   "remove"  (default) G+C+S over G,C,S,A,T,W,U: other letters are left out;
--   "ignore"  G+C+S over the full length;
--   "weighted" ambiguous letters count by their chance of being G or C
--             (N = 0.5, B = 2/3, D = 1/3, ...) over the full length.
-- Case does not matter.  An empty (or all-ambiguous, in "remove") sequence gives 0.
function M.gc_fraction(s, ambiguous)
  A.check_string(s, "bio.seq.gc_fraction", 1, "seq")
  local gc, len = gc_counts(s, ambiguous, "bio.seq.gc_fraction")
  if len == 0 then return 0 end
  return gc / len
end

local G_C = packed_map("Gg", "Cc") -- low = G, high = C

--- GC skew (G-C)/(G+C) in consecutive non-overlapping windows (default 100);
-- the last window may be shorter.  A window without G or C gives 0.0.
-- Same as Bio.SeqUtils.GC_skew; returns a list.  As there (Python's
-- range(0, len, window)), a negative window gives an empty list and a window
-- of 0 is an error.
function M.gc_skew(s, window)
  local fname = "bio.seq.gc_skew"
  A.check_string(s, fname, 1, "seq")
  if window == nil then window = 100 end
  if type(window) ~= "number" or window ~= math.floor(window) or window == 0 or window == math.huge or window == -math.huge then
    A.arg_error(fname, 2, "window", "must be a non-zero integer, got " .. tostring(window), 2)
  end
  if window < 0 then return {} end -- range(0, len, window) is empty
  local out, n = {}, #s
  for i = 1, n, window do
    local j = i + window - 1
    if j > n then j = n end
    local g, c = count2(s, G_C, i, j)
    out[#out + 1] = (g + c == 0) and 0.0 or (g - c) / (g + c)
  end
  return out
end

--- GC content of the whole sequence and of codon positions 1, 2, 3, as
-- percentages; only A, C, G, T (either case) are counted (Bio.SeqUtils.GC123).
-- Returns four numbers.
function M.gc123(s)
  A.check_string(s, "bio.seq.gc123", 1, "seq")
  local gc, all = { 0, 0, 0 }, { 0, 0, 0 }
  local isgc = { [67] = 1, [71] = 1, [99] = 1, [103] = 1 }
  local isat = { [65] = 1, [84] = 1, [97] = 1, [116] = 1 }
  local n = #s
  for i = 1, n, 3 do
    local b1, b2, b3 = byte(s, i, i + 2)
    local bs = { b1, b2, b3 }
    for pos = 1, 3 do
      local b = bs[pos]
      if b then
        if isgc[b] then gc[pos] = gc[pos] + 1; all[pos] = all[pos] + 1
        elseif isat[b] then all[pos] = all[pos] + 1 end
      end
    end
  end
  local pct = {}
  for pos = 1, 3 do pct[pos] = all[pos] == 0 and 0 or gc[pos] * 100.0 / all[pos] end
  local total = all[1] + all[2] + all[3]
  if total == 0 then
    error("bio.seq.gc123: bad argument #1 'seq': no A, C, G or T to count (Biopython raises ZeroDivisionError)", 2)
  end
  return 100.0 * (gc[1] + gc[2] + gc[3]) / total, pct[1], pct[2], pct[3]
end

---------------------------------------------------------------------------
-- Composition
---------------------------------------------------------------------------

--- Count of every character in the sequence: {A = 10, C = 12, ...}.
-- With `ignore_case`, lower-case letters are counted as upper case.
function M.composition(s, ignore_case)
  A.check_string(s, "bio.seq.composition", 1, "seq")
  local h = histogram(s)
  local out = {}
  for b = 0, 255 do
    local c = h[b]
    if c > 0 then
      local key = char(b)
      if ignore_case then key = key:upper() end
      out[key] = (out[key] or 0) + c
    end
  end
  return out
end

--- Number of (possibly overlapping) occurrences of `sub` in `s`, like
-- Bio.Seq.Seq.count_overlap.  Plain text, case-sensitive.
function M.count_overlap(s, pattern)
  A.check_string(s, "bio.seq.count_overlap", 1, "seq")
  A.check_string(pattern, "bio.seq.count_overlap", 2, "sub")
  if pattern == "" then return #s + 1 end
  local n, pos = 0, 1
  while true do
    local at = s:find(pattern, pos, true)
    if not at then return n end
    n, pos = n + 1, at + 1
  end
end

M._histogram = histogram
M._count2 = count2
M._packed_map = packed_map

return M
