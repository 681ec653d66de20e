--- Codon usage: counts, frequencies, RSCU and the codon adaptation index (CAI).
--
--   local cu = require "bio.codon_usage"
--   local counts = cu.counts({"ATGGCTGCA", "ATGGCGTAA"})   --> counts.GCT == 1, ...
--   cu.frequencies(counts)                                 --> codon -> fraction of all codons
--   cu.rscu(counts)                                        --> codon -> relative synonymous usage
--   local index = cu.cai_index(reference_cds_list)         --> like Biopython's CodonAdaptationIndex
--   index.weights.GCT                                      --> relative adaptiveness w
--   index:calculate("ATGGCTGCATAA")                        --> CAI of a gene
--
-- cai_index and calculate follow Bio.SeqUtils.CodonAdaptationIndex (Biopython 1.88) exactly:
-- sequences are upper-cased and read in frame from the first base; a codon missing from the
-- reference set counts 0.5 (Sharp & Li 1987); w = count / largest count among the synonymous
-- codons, with the stop codons forming one more synonymous group; calculate() skips ATG and
-- TGG but, like Biopython, includes stop codons. Genetic codes are Biopython's NCBI tables by
-- id or name (generated into bio/codon_usage_data.lua). Biopython 1.88 has no RSCU function;
-- rscu() uses Sharp & Li's definition, documented in docs/bio/codon_usage.md.
-- Runs on Lua 5.1-5.4 and LuaJIT.

local A = require "bio.alphabet"
local tables = require "bio.codon_usage_data"

local M = {}

local sub, upper, format = string.sub, string.upper, string.format
local log, exp = math.log, math.exp

-- The 64 codons in Biopython's order (AAA, AAC, ..., TTT).
local CODONS = {}
for _, a in ipairs({"A", "C", "G", "T"}) do
  for _, b in ipairs({"A", "C", "G", "T"}) do
    for _, c in ipairs({"A", "C", "G", "T"}) do CODONS[#CODONS + 1] = a .. b .. c end
  end
end
M.CODONS = CODONS

-- Errors read "bio.codon_usage.counts: bad argument #1 'sequences': ..." (as the rest of bio.*).
local function fail(fn, msg) A.raise("bio.codon_usage." .. fn .. ": " .. msg, 2) end -- at the user's line

--- A genetic code by NCBI id or name (default 1): {id, names, sense = codon -> aa, stops}.
local by_name = {}
for _, t in pairs(tables) do
  for _, n in ipairs(t.names) do by_name[n] = t end
end
local cache = {}
local function genetic_code(fn, spec)
  if spec == nil then spec = 1 end
  local t = tables[spec] or by_name[spec]
  if not t then fail(fn, "bad argument #2 'opts': option 'table': unknown genetic code '" .. tostring(spec) .. "'") end
  if not cache[t.id] then
    local sense = {}
    for k, codon in ipairs(CODONS) do
      local aa = sub(t.sense, k, k)
      if aa ~= "-" then sense[codon] = aa end
    end
    local order = {}
    for k = 1, #t.forward_order, 3 do order[#order + 1] = sub(t.forward_order, k, k + 2) end
    cache[t.id] = {id = t.id, names = t.names, protein_alphabet = t.protein_alphabet,
                   sense = sense, stops = t.stops, forward_order = order}
  end
  return cache[t.id]
end
M.genetic_code = function(spec) return genetic_code("genetic_code", spec) end

-- Accept one sequence or a list of them.
local function sequence_list(fn, seqs)
  if type(seqs) == "string" then return {seqs} end
  if type(seqs) ~= "table" then fail(fn, "bad argument #1 'sequences': expected a string or a list of strings, got " .. type(seqs)) end
  for i, s in ipairs(seqs) do
    if type(s) ~= "string" then fail(fn, "bad argument #1 'sequences': item " .. i .. " is a " .. type(s) .. ", not a string") end
  end
  return seqs
end

local function zero_counts()
  local counts = {}
  for _, c in ipairs(CODONS) do counts[c] = 0 end
  return counts
end

-- Add the in-frame codons of `seq` to `counts`; raise on a codon outside the 64 (including
-- a trailing partial codon), naming the sequence, the position and the codon.
local function add_codons(fn, counts, seq, index, skip_invalid)
  seq = upper(seq)
  for i = 1, #seq, 3 do
    local codon = sub(seq, i, i + 2)
    local n = counts[codon]
    if n then
      counts[codon] = n + 1
    elseif not skip_invalid then
      fail(fn, format("bad argument #1 'sequences': sequence %d, position %d: illegal codon '%s'", index, i, codon))
    end
  end
end

--- Counts of the 64 codons over one sequence or a list, read in frame from the first base.
-- opts: skip_invalid = false (true: ignore codons with other letters and a trailing partial codon).
-- opts checked: nil or a table of the `allowed` names (a misspelt one is an error).
local function options(fn, opts, allowed)
  return A.check_options(opts, allowed, "bio.codon_usage." .. fn, 2)
end

function M.counts(sequences, opts)
  opts = options("counts", opts, { "skip_invalid" })
  local counts = zero_counts()
  for i, s in ipairs(sequence_list("counts", sequences)) do
    add_codons("counts", counts, s, i, opts.skip_invalid)
  end
  return counts
end

local function as_counts(fn, x, opts)
  if type(x) == "table" and x.AAA ~= nil then return x end
  return M.counts(x, { skip_invalid = opts.skip_invalid })
end

--- Frequency of each codon: its count / the number of codons (0 when there are none).
function M.frequencies(counts_or_sequences, opts)
  opts = options("frequencies", opts, { "skip_invalid" })
  local counts = as_counts("frequencies", counts_or_sequences, opts)
  local total = 0
  for _, c in ipairs(CODONS) do total = total + counts[c] end
  local f = {}
  for _, c in ipairs(CODONS) do f[c] = total > 0 and counts[c] / total or 0 end
  return f
end

-- Synonymous codon groups of a genetic code, in Biopython's order: one per amino acid of the
-- protein alphabet, then the stop codons.
local function synonymous_groups(code)
  local groups, by_aa = {}, {}
  for k = 1, #code.protein_alphabet do
    local aa = sub(code.protein_alphabet, k, k)
    by_aa[aa] = {}
    groups[#groups + 1] = by_aa[aa]
  end
  for _, codon in ipairs(CODONS) do
    local aa = code.sense[codon]
    if aa then by_aa[aa][#by_aa[aa] + 1] = codon end
  end
  groups[#groups + 1] = code.stops
  return groups
end

--- Relative synonymous codon usage: count / (mean count of the codons for the same amino
-- acid; stops form one group). Codons of an amino acid that never occurs get 0.
-- opts: table (genetic code id or name, default 1), skip_invalid.
function M.rscu(counts_or_sequences, opts)
  opts = options("rscu", opts, { "table", "skip_invalid" })
  local code = genetic_code("rscu", opts.table)
  local counts = as_counts("rscu", counts_or_sequences, opts)
  local r = {}
  for _, group in ipairs(synonymous_groups(code)) do
    local total = 0
    for _, codon in ipairs(group) do total = total + counts[codon] end
    for _, codon in ipairs(group) do
      r[codon] = total > 0 and counts[codon] / (total / #group) or 0
    end
  end
  return r
end

---------------------------------------------------------------------------------------------
-- codon adaptation index

local Index = {}
Index.__index = Index

--- Relative adaptiveness of every codon from reference coding sequences (Biopython's
-- CodonAdaptationIndex(sequences, table)). opts: table = genetic code id or name (default 1).
function M.cai_index(sequences, opts)
  opts = options("cai_index", opts, { "table" })
  local code = genetic_code("cai_index", opts.table)
  local counts = zero_counts()
  for i, s in ipairs(sequence_list("cai_index", sequences)) do
    add_codons("cai_index", counts, s, i, false)
  end
  -- Following the original paper, codons absent from the reference count 0.5.
  for _, c in ipairs(CODONS) do
    if counts[c] == 0 then counts[c] = 0.5 end
  end
  local weights = {}
  for _, c in ipairs(CODONS) do weights[c] = 0 end
  for _, group in ipairs(synonymous_groups(code)) do
    local denominator = nil
    for _, codon in ipairs(group) do
      if denominator == nil or counts[codon] > denominator then denominator = counts[codon] end
    end
    for _, codon in ipairs(group) do weights[codon] = counts[codon] / denominator end
  end
  return setmetatable({weights = weights, counts = counts, table = code.id}, Index)
end

--- The CAI of a DNA sequence: the geometric mean of the weights of its codons, skipping ATG
-- and TGG. Raises on a codon outside the 64 (naming its position) and on a sequence that has
-- no scorable codon.
function Index:calculate(sequence)
  if type(sequence) ~= "string" then fail("calculate", "bad argument #1 'sequence': expected a string, got " .. type(sequence)) end
  sequence = upper(sequence)
  local value, length = 0, 0
  local weights = self.weights
  for i = 1, #sequence, 3 do
    local codon = sub(sequence, i, i + 2)
    if codon ~= "ATG" and codon ~= "TGG" then
      local w = weights[codon]
      if w == nil then
        fail("calculate", format("bad argument #1 'sequence': illegal codon '%s' at position %d", codon, i))
      end
      if w <= 0 then
        fail("calculate", format("codon '%s' at position %d has weight 0 (math domain error)", codon, i))
      end
      value = value + log(w)
      length = length + 1
    end
  end
  if length == 0 then fail("calculate", "bad argument #1 'sequence': no codon other than ATG and TGG") end
  return exp(value / length)
end

--- A DNA sequence for the same protein using only the preferred codon (weight 1) of each
-- amino acid (Biopython's CodonAdaptationIndex.optimize). opts: seq_type = "DNA" | "RNA" |
-- "protein" (default "DNA"; DNA and RNA are translated with the standard code by bio.translate,
-- as Biopython does), strict = true (raise when two codons are equally preferred; when false,
-- the last of them in the genetic code's order wins, as in Biopython).
function Index:optimize(sequence, opts)
  opts = opts or {}
  if type(sequence) ~= "string" then fail("optimize", "bad argument #1 'sequence': expected a string, got " .. type(sequence)) end
  local seq_type = opts.seq_type or "DNA"
  local strict = opts.strict ~= false
  local code = genetic_code("optimize", self.table)
  local preferred = {}
  for _, codon in ipairs(code.forward_order) do
    if self.weights[codon] == 1.0 then
      local aa = code.sense[codon]
      if preferred[aa] and strict then
        fail("optimize", preferred[aa] .. " and " .. codon .. " are equally preferred.")
      end
      preferred[aa] = codon
    end
  end
  for _, codon in ipairs(code.stops) do
    if self.weights[codon] == 1.0 then preferred["*"] = codon end
  end
  local protein
  sequence = upper(sequence)
  if seq_type == "DNA" or seq_type == "RNA" then
    protein = require("bio.translate").translate(sequence)
  elseif seq_type == "protein" then
    protein = sequence
  else
    fail("optimize", "bad argument #2 'opts': option 'seq_type' must be DNA, RNA or protein, not '" .. tostring(seq_type) .. "'")
  end
  local out = {}
  for k = 1, #protein do
    local aa = sub(protein, k, k)
    local codon = preferred[aa]
    if not codon then
      fail("optimize", format("unrecognized amino acid '%s' at position %d of the protein", aa, k))
    end
    out[k] = codon
  end
  return table.concat(out)
end

-- "%.3f" with Python's rounding: exact ties (x * 2000 an odd integer, e.g. 0.0625) go to the
-- even digit. PUC Lua's C printf does this already; LuaJIT's own formatter rounds ties up.
local function fixed3(x)
  if x >= 0 and x < 2 ^ 40 then
    local t = x * 2000
    -- Dekker's exact product: x * 2000 == t + err exactly (2000 has 11 bits).
    local c = 134217729 * x
    local hi = c - (c - x)
    local lo = x - hi
    local err = (hi * 2000 - t) + lo * 2000
    if err == 0 and t % 2 == 1 then
      local k = (t - 1) / 2              -- x * 1000 == k + 0.5
      if k % 2 == 1 then k = k + 1 end
      return format("%d.%03d", math.floor(k / 1000), k % 1000)
    end
  end
  return format("%.3f", x)
end

--- Biopython's str(index): one "codon<TAB>weight" line per codon, weights with 3 decimals.
function Index:format()
  local lines = {}
  for k, c in ipairs(CODONS) do lines[k] = c .. "\t" .. fixed3(self.weights[c]) end
  return table.concat(lines, "\n") .. "\n"
end
Index.__tostring = Index.format

M.Index = Index

return M
