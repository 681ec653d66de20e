--- bio.kmer: k-mer counting with optional canonical k-mers (k = 1 .. 31).
--
--   local counts, total = kmer.count(seq, 21, {canonical = true})
--
-- k-mers are read from the upper-cased sequence; a k-mer is counted only
-- when all its letters are A, C, G or T (so N, IUPAC codes, gaps and U break
-- k-mers; back-transcribe RNA first).  The canonical form of a k-mer is the
-- lexicographically smaller of the k-mer and its reverse complement.
-- Counting uses rolling 2-bit integer codes (exact in a double up to k = 26);
-- for k = 27..31 it falls back to string keys.  Reference: docs/bio/kmer.md.
local F = require "bio._fast"
local A = require "bio.alphabet"
local seqmod = require "bio.seq"

local M = {}

M.MAX_K = 31

local ffi = F.ffi
local byte, char, sub, upper, floor = string.byte, string.char, string.sub, string.upper, math.floor

-- byte -> 0..3 for ACGT (either case), -1 otherwise
local CODE = {}
for b = 0, 255 do CODE[b] = -1 end
for i, c in ipairs({ "A", "C", "G", "T" }) do CODE[byte(c)] = i - 1; CODE[byte(c:lower())] = i - 1 end
local LETTER = { [0] = "A", "C", "G", "T" }

-- Decoding a code back to letters goes 6 bases at a time through a table
-- of all 4^w strings of width w <= 6 (5460 strings in all).
local BY_WIDTH = { [0] = { [0] = "" } }
for w = 1, 6 do
  local prev, cur = BY_WIDTH[w - 1], {}
  for code = 0, 4 ^ w - 1 do
    local v = code % 4
    cur[code] = prev[(code - v) / 4] .. LETTER[v]
  end
  BY_WIDTH[w] = cur
end

local BASE = {} -- 4^w as an integer on Lua 5.3+ (4 ^ w would be a float)
for w = 1, 6 do BASE[w] = (w == 1) and 4 or BASE[w - 1] * 4 end

local DECODE_TEMPLATE = [[
local BY_WIDTH, BASE, concat = ...
return function(code, k)
  local parts, np = {}, 0
  local rem = k
  while rem > 0 do
    local w = rem >= 6 and 6 or rem
    local base = BASE[w]
    local v = code %% base
    code = %s
    np = np + 1
    parts[np] = BY_WIDTH[w][v]
    rem = rem - w
  end
  if np == 1 then return parts[1] end
  -- parts hold the k-mer from its right end
  for i = 1, np / 2 do parts[i], parts[np + 1 - i] = parts[np + 1 - i], parts[i] end
  return concat(parts)
end
]]
local load_chunk = rawget(_G, "loadstring") or load
local decode = assert(load_chunk(string.format(DECODE_TEMPLATE, F.int64 and "code // base" or "(code - v) / base"),
  "=bio.kmer.decode"))(BY_WIDTH, BASE, table.concat)

--- The canonical form of one k-mer: min(kmer, reverse complement), upper case.
function M.canonical(kmer)
  A.check_letters(kmer, "ACGT", "bio.kmer.canonical", 1, "kmer", true)
  local up = upper(kmer)
  local rc = seqmod.reverse_complement(up)
  return rc < up and rc or up
end

-- Numeric counting: adds into `counts` (code -> n); returns k-mers seen.
-- The same loop is compiled twice from this template: with float division
-- (exact while codes stay below 2^53, k <= 26) and, on Lua 5.3+, with
-- integer floor division, which keeps k <= 31 exact in 64-bit integers.
local NUMERIC_TEMPLATE = [[
local CODE, byte, floor = ...
return function(s, k, canonical, counts)
  local top = 1
  for _ = 1, k - 1 do top = top * 4 end
  local n = #s
  local code, rc, run, total = 0, 0, 0, 0
  local i = 1
  while i <= n do
    local last = i + 255
    if last > n then last = n end
    local bytes = { byte(s, i, last) }
    for j = 1, #bytes do
      local v = CODE[bytes[j] ]
      if v < 0 then
        run, code, rc = 0, 0, 0
      else
        code = (code %% top) * 4 + v
        run = run + 1
        if canonical then rc = %s + (3 - v) * top end
        if run >= k then
          local key = code
          if canonical and rc < code then key = rc end
          counts[key] = (counts[key] or 0) + 1
          total = total + 1
        end
      end
    end
    i = last + 1
  end
  return total
end
]]
local function numeric_counter(shift)
  return assert(load_chunk(string.format(NUMERIC_TEMPLATE, shift), "=bio.kmer.numeric"))(CODE, byte, floor)
end
local count_numeric = numeric_counter("floor(rc / 4)")
local NUMERIC_MAX_K = 26
if F.int64 then
  count_numeric = numeric_counter("rc // 4") -- Lua 5.3+ syntax; never parsed elsewhere
  NUMERIC_MAX_K = 31
end

-- Dense counting under FFI for small k: an array of 4^k counters.
local count_dense
if ffi then
  local CODE8 = ffi.new("int8_t[256]")
  for b = 0, 255 do CODE8[b] = CODE[b] end
  count_dense = function(s, k, canonical, arr)
    local top = 4 ^ (k - 1)
    local mask = 4 ^ k
    local p = ffi.cast("const uint8_t*", s)
    local code, rc, run, total = 0, 0, 0, 0
    for i = 0, #s - 1 do
      local v = CODE8[p[i]]
      if v < 0 then
        run, code, rc = 0, 0, 0
      else
        code = (code * 4 + v) % mask
        run = run + 1
        if canonical then rc = (rc - rc % 4) / 4 + (3 - v) * top end
        if run >= k then
          local key = code
          if canonical and rc < code then key = rc end
          arr[key] = arr[key] + 1
          total = total + 1
        end
      end
    end
    return total
  end
end

-- String-keyed counting for k = 27..31 (beyond a double's exact range).
local function count_strings(s, k, canonical, counts)
  local up = upper(s)
  local total = 0
  local pos = 1
  local n = #up
  while pos <= n - k + 1 do
    -- next run of ACGT
    local a, b = up:find("[ACGT]+", pos)
    if not a then break end
    for i = a, b - k + 1 do
      local km = sub(up, i, i + k - 1)
      if canonical then
        local rc = seqmod.reverse_complement(km)
        if rc < km then km = rc end
      end
      counts[km] = (counts[km] or 0) + 1
      total = total + 1
    end
    pos = b + 1
  end
  return total
end

local function sequences_of(input, fname)
  if type(input) == "string" then return { input } end
  if type(input) == "table" then
    local out = {}
    for i, v in ipairs(input) do
      if type(v) == "table" then v = v.seq end
      if type(v) ~= "string" then A.arg_error(fname, 1, "seq", "item " .. i .. " is not a sequence string or record", 3) end
      out[i] = v
    end
    return out
  end
  A.arg_error(fname, 1, "seq", "expected a sequence string, or a list of strings or records, got " .. type(input), 3)
end

--- Count k-mers in a sequence (or a list of sequences or records).
-- opts.canonical: count canonical k-mers.  Returns counts {kmer -> n} and
-- the total number of k-mers counted.
function M.count(input, k, opts)
  local fname = "bio.kmer.count"
  local seqs = sequences_of(input, fname)
  A.check_int(k, fname, 2, "k", 1, M.MAX_K)
  opts = A.check_options(opts, { "canonical" }, fname, 3)
  local canonical = opts.canonical and true or false
  local result, total = {}, 0
  if k <= 10 and ffi then
    local arr = ffi.new("double[?]", 4 ^ k)
    for _, s in ipairs(seqs) do total = total + count_dense(s, k, canonical, arr) end
    for code = 0, 4 ^ k - 1 do
      local c = arr[code]
      if c > 0 then result[decode(code, k)] = c end
    end
  elseif k <= NUMERIC_MAX_K then
    local counts = {}
    for _, s in ipairs(seqs) do total = total + count_numeric(s, k, canonical, counts) end
    for code, c in pairs(counts) do result[decode(code, k)] = c end
  else
    for _, s in ipairs(seqs) do total = total + count_strings(s, k, canonical, result) end
  end
  return result, total
end

--- Like count, but keyed by 2-bit integer codes (A=0, C=1, G=2, T=3, first
-- base most significant) instead of strings: much faster when most k-mers
-- are distinct, since no string is made per k-mer.  k up to 26 (31 on Lua
-- 5.3+, whose integers are 64-bit).  kmer.decode(code, k) gives the string.
function M.count_codes(input, k, opts)
  local fname = "bio.kmer.count_codes"
  local seqs = sequences_of(input, fname)
  A.check_int(k, fname, 2, "k", 1, NUMERIC_MAX_K)
  opts = A.check_options(opts, { "canonical" }, fname, 3)
  local counts, total = {}, 0
  for _, s in ipairs(seqs) do total = total + count_numeric(s, k, opts.canonical and true or false, counts) end
  return counts, total
end

--- The k-mer (upper case) for a code from count_codes.
function M.decode(code, k)
  A.check_int(k, "bio.kmer.decode", 2, "k", 1, NUMERIC_MAX_K)
  return decode(code, k)
end

--- The k-mer spectrum: a list of {multiplicity, number of distinct k-mers}
-- sorted by multiplicity.
function M.spectrum(counts)
  local by = {}
  for _, c in pairs(counts) do by[c] = (by[c] or 0) + 1 end
  local out = {}
  for m, n in pairs(by) do out[#out + 1] = { m, n } end
  table.sort(out, function(x, y) return x[1] < y[1] end)
  return out
end

--- The `n` most frequent k-mers as a list of {kmer, count}, ties broken
-- alphabetically.
function M.top(counts, n)
  local out = {}
  for km, c in pairs(counts) do out[#out + 1] = { km, c } end
  table.sort(out, function(x, y)
    if x[2] ~= y[2] then return x[2] > y[2] end
    return x[1] < y[1]
  end)
  if n and #out > n then
    for i = #out, n + 1, -1 do out[i] = nil end
  end
  return out
end

return M
