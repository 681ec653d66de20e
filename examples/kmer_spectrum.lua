-- k-mer spectrum of a FASTA or FASTQ file: how many distinct k-mers occur once, twice, ...
-- and the most frequent k-mers.  Canonical k-mers by default (strand-independent).
--
--   bioxen run examples/kmer_spectrum.lua examples/data/reads.fq
--   bioxen run examples/kmer_spectrum.lua genome.fa --k 15 --top 20 --forward
--
-- k may be 1..31; k-mers containing N or other non-ACGT letters are skipped.

local script = arg and arg[0]
if script then
  local dir = script:match("^(.*)[/\\][^/\\]*$") or "."
  package.path = dir .. "/../bio_stdlib/?.lua;" .. dir .. "/../bio_stdlib/?/init.lua;" .. package.path
end

local kmer = require "bio.kmer"

local args = { ... }
local path, k, top, canonical = nil, 21, 10, true
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--k" then k = tonumber(args[i + 1]); i = i + 2
  elseif a == "--top" then top = tonumber(args[i + 1]); i = i + 2
  elseif a == "--forward" then canonical = false; i = i + 1
  else path = a; i = i + 1 end
end
if not path then
  io.stderr:write("usage: kmer_spectrum.lua FILE.fa|FILE.fq [--k K] [--top N] [--forward]\n")
  os.exit(2)
end

-- FASTQ if the first non-blank character is '@', else FASTA.
local f = assert(io.open(path, "rb"))
local head = f:read(4096) or ""
f:close()
local reader = head:match("^%s*@") and require("bio.fastq") or require("bio.fasta")

local seqs = {}
for rec in reader.records(path) do seqs[#seqs + 1] = rec.seq end
local counts, total = kmer.count(seqs, k, { canonical = canonical })

local distinct = 0
for _ in pairs(counts) do distinct = distinct + 1 end
print(string.format("# %d sequences, k = %d (%s), %d k-mers, %d distinct", #seqs, k,
  canonical and "canonical" or "forward strand", total, distinct))
print("#multiplicity\tdistinct_kmers")
for _, row in ipairs(kmer.spectrum(counts)) do print(row[1] .. "\t" .. row[2]) end
print("#top k-mers")
for _, row in ipairs(kmer.top(counts, top)) do print(row[1] .. "\t" .. row[2]) end
