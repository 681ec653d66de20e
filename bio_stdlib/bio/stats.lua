--- bio.stats: length statistics (N50 and friends) and summaries of sequence sets.
--
--   local st = stats.lengths(fasta.records("asm.fa"))
--   print(st.count, st.total, st.n50, st.l50)
--
-- Nx: sort lengths in decreasing order and add them up; Nx is the length
-- at which the running sum first reaches x% of the total, Lx the number of
-- sequences added by then.  Reference: docs/bio/stats.md.
local A = require "bio.alphabet"
local seqmod = require "bio.seq"

local M = {}

-- Collect lengths (and the strings, when `keep` is set) from a list of
-- numbers, strings or records, or from an iterator yielding any of these.
local function collect(input, fname, visit)
  local function one(v, i)
    if type(v) == "table" then v = v.seq end
    if type(v) == "string" then visit(#v, v)
    elseif type(v) == "number" and v >= 0 then visit(v, nil)
    else A.arg_error(fname, 1, "sequences", "item " .. i .. " is not a length, a sequence or a record", 4) end
  end
  if type(input) == "function" then
    local i = 0
    for v in input do i = i + 1; one(v, i) end
  elseif type(input) == "table" then
    for i, v in ipairs(input) do one(v, i) end
  else
    A.arg_error(fname, 1, "sequences", "expected a list or an iterator, got " .. type(input), 3)
  end
end

--- Nx and Lx of a list of lengths for x in (0, 100].
function M.nx(lengths, x)
  if type(lengths) ~= "table" then A.arg_error("bio.stats.nx", 1, "lengths", "expected a list of lengths, got " .. type(lengths)) end
  A.check_int(x, "bio.stats.nx", 2, "x", 1, 100)
  local sorted, total = {}, 0
  for i, l in ipairs(lengths) do sorted[i] = l; total = total + l end
  if #sorted == 0 or total == 0 then return nil, nil end
  table.sort(sorted, function(a, b) return a > b end)
  local need, sum = total * x / 100, 0
  for i, l in ipairs(sorted) do
    sum = sum + l
    if sum >= need then return l, i end
  end
end

local function summarise(lengths)
  local n = #lengths
  local st = { count = n, total = 0 }
  if n == 0 then return st end
  local sorted = {}
  for i, l in ipairs(lengths) do sorted[i] = l; st.total = st.total + l end
  table.sort(sorted)
  st.min, st.max = sorted[1], sorted[n]
  st.mean = st.total / n
  if n % 2 == 1 then st.median = sorted[(n + 1) / 2]
  else st.median = (sorted[n / 2] + sorted[n / 2 + 1]) / 2 end
  for _, x in ipairs({ 10, 20, 30, 40, 50, 60, 70, 80, 90 }) do
    st["n" .. x], st["l" .. x] = M.nx(sorted, x)
  end
  return st
end

--- Length statistics of a set of sequences: count, total, min, max, mean,
-- median, n10..n90 and l10..l90 (n50/l50 are N50/L50).  Input: a list of
-- lengths, strings or records, or an iterator (e.g. fasta.records(path)).
function M.lengths(input)
  local lengths = {}
  collect(input, "bio.stats.lengths", function(len) lengths[#lengths + 1] = len end)
  return summarise(lengths)
end

--- Length statistics plus composition over all sequences: gc (Biopython's
-- gc_fraction "remove" mode over the whole set), gc_skew ((G-C)/(G+C)),
-- n_count (N and n).  Input as for lengths, but with sequences (records or
-- strings), not bare lengths.
function M.summary(input)
  local lengths, gc, valid, g, c, nn = {}, 0, 0, 0, 0, 0
  local GC_AT = seqmod._packed_map("GCSgcs", "ATWUatwu")
  local G_C = seqmod._packed_map("Gg", "Cc")
  local N_ = seqmod._packed_map("Nn", "")
  collect(input, "bio.stats.summary", function(len, s)
    if not s then A.arg_error("bio.stats.summary", 1, "sequences", "needs sequences, not bare lengths", 5) end
    lengths[#lengths + 1] = len
    local a, b = seqmod._count2(s, GC_AT, 1, len)
    gc, valid = gc + a, valid + a + b
    local gg, cc = seqmod._count2(s, G_C, 1, len)
    g, c = g + gg, c + cc
    nn = nn + seqmod._count2(s, N_, 1, len)
  end)
  local st = summarise(lengths)
  st.gc = valid == 0 and 0 or gc / valid
  st.gc_skew = (g + c) == 0 and 0.0 or (g - c) / (g + c)
  st.n_count = nn
  return st
end

return M
