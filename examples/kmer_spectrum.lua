-- k-mer spectrum of a FASTA or FASTQ file: how many distinct k-mers occur once, twice, ...
-- and the most frequent k-mers.  Canonical k-mers by default (strand-independent).
--
--   bioxen run examples/kmer_spectrum.lua examples/data/reads.fq
--   bioxen run examples/kmer_spectrum.lua genome.fa --k 15 --top 20 --forward
--   bioxen run examples/kmer_spectrum.lua genome.fa --vms 2      (same bytes: shards counted in VMs, summed here)
--   zcat reads.fq.gz | bioxen run examples/kmer_spectrum.lua -  (FILE "-" is standard input; gzip is read too)
--
-- k may be 1..31; k-mers containing N or other non-ACGT letters are skipped.

local script = arg and arg[0]
if script then
  local dir = script:match("^(.*)[/\\][^/\\]*$") or "."
  package.path = dir .. "/../bio_stdlib/?.lua;" .. dir .. "/../bio_stdlib/?/init.lua;" .. package.path
end

local kmer = require "bio.kmer"

local args = { ... }
local path, k, top, canonical, nvms = nil, 21, 10, true, nil
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--k" then k = tonumber(args[i + 1]); i = i + 2
  elseif a == "--top" then top = tonumber(args[i + 1]); i = i + 2
  elseif a == "--forward" then canonical = false; i = i + 1
  elseif a == "--vms" then nvms = tonumber(args[i + 1]); i = i + 2
  else path = a; i = i + 1 end
end
if not path then
  io.stderr:write("usage: kmer_spectrum.lua FILE.fa|FILE.fq [--k K] [--top N] [--forward] [--vms N]\n")
  os.exit(2)
end

-- FASTQ if the first non-blank character of the (decompressed) text is '@', else FASTA.
-- Standard input can be read only once, so its first chunk is kept and handed back
-- to the reader first: `source` is then a stream (anything with read(n) will do).
local format, source
if nvms then
  format, source = require("bio._shard").sniff(path, "kmer_spectrum"), path
else
  local read = require("bio._io").open_source(path, "kmer_spectrum")
  local head = read()
  format = (head or ""):match("^%s*@") and "fastq" or "fasta"
  source = { read = function()
    local s = head
    if s then head = nil; return s end
    return read()
  end }
end

-- k-mer counts of every record of `source` (a path or a shard): counts, total, records.
-- Self-contained (no upvalues), so vm.map_file can send it to VMs as it is.
local function count_kmers(source, format, k, canonical)
  local seqs = {}
  for rec in require("bio." .. format).records(source) do seqs[#seqs + 1] = rec.seq end
  local counts, total = require("bio.kmer").count(seqs, k, { canonical = canonical })
  return { counts, total, #seqs }
end

local counts, total, nseqs
if not nvms then
  local r = count_kmers(source, format, k, canonical)
  counts, total, nseqs = r[1], r[2], r[3]
else
  -- Each VM counts its own shards of the file; the counts are summed here as they arrive.
  local vm = rawget(_G, "vm") or error("--vms needs bioxen (the vm table)")
  counts, total, nseqs = {}, 0, 0
  local _, failures = vm.map_file(count_kmers, path, { vms = nvms, format = format, args = { format, k, canonical },
    on_result = function(_, r)
      for km, c in pairs(r[1]) do counts[km] = (counts[km] or 0) + c end
      total, nseqs = total + r[2], nseqs + r[3]
    end })
  if failures then
    for _, fl in ipairs(failures) do io.stderr:write(string.format("shard %d failed: %s\n", fl.index, fl.error)) end
    os.exit(1)
  end
end

local distinct = 0
for _ in pairs(counts) do distinct = distinct + 1 end
print(string.format("# %d sequences, k = %d (%s), %d k-mers, %d distinct", nseqs, k,
  canonical and "canonical" or "forward strand", total, distinct))
print("#multiplicity\tdistinct_kmers")
for _, row in ipairs(kmer.spectrum(counts)) do print(row[1] .. "\t" .. row[2]) end
print("#top k-mers")
for _, row in ipairs(kmer.top(counts, top)) do print(row[1] .. "\t" .. row[2]) end
