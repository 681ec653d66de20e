-- Align two sequences and print the score, the alignment and its coordinates.
--
--   bioxen run examples/align_pair.lua HEAGAWGHEE PAWHEAE --matrix BLOSUM62 --open -10 --extend -0.5
--   bioxen run examples/align_pair.lua a.fa b.fa --local         (first record of each FASTA file)
--   zcat a.fa.gz | bioxen run examples/align_pair.lua - b.fa     ("-": the first record on standard input)
--   bioxen run examples/align_pair.lua GATTACA GCATGCU --match 1 --mismatch -1 --end-gap 0
--
-- Options: --local, --match N, --mismatch N, --matrix NAME, --open N, --extend N, --end-gap N.
-- Scores equal Biopython's PairwiseAligner with the same parameters (see docs/bio/align.md).

local align = require "bio.align"

local args = {...}
local seqs, opts = {}, {}
local numeric = {["--match"] = "match_score", ["--mismatch"] = "mismatch_score",
                 ["--open"] = "open_gap_score", ["--extend"] = "extend_gap_score",
                 ["--end-gap"] = "end_gap_score"}
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--local" then
    opts.mode = "local"
  elseif a == "--matrix" then
    i = i + 1
    opts.substitution_matrix = args[i]
  elseif numeric[a] then
    i = i + 1
    opts[numeric[a]] = tonumber(args[i]) or error(a .. " needs a number, got " .. tostring(args[i]))
  else
    seqs[#seqs + 1] = a
  end
  i = i + 1
end
if #seqs ~= 2 then
  io.stderr:write("usage: align_pair.lua TARGET QUERY [--local] [--matrix NAME] [--match N] "
    .. "[--mismatch N] [--open N] [--extend N] [--end-gap N]\n")
  os.exit(2)
end

-- A sequence argument may name a FASTA file ("-": standard input): use its first record.
local function sequence(text)
  if text ~= "-" then
    local f = io.open(text, "rb")
    if not f then return text, text end
    f:close()
  end
  local fasta = require "bio.fasta"
  for rec in fasta.records(text) do return rec.seq, rec.id end
  error(text .. ": no FASTA record")
end

local target, target_name = sequence(seqs[1])
local query, query_name = sequence(seqs[2])
local aligner = align.new(opts)
local aln, score = aligner:align(target, query)
print(("%s: %s (%d) vs %s (%d)"):format(aligner:algorithm(), target_name, #target, query_name, #query))
if not aln then
  print("score " .. score .. ": no positive-scoring local alignment")
  return
end
print("score " .. aln.score)
print(aln)
local counts = aln:counts()
print(("identities %d, mismatches %d, gaps %d"):format(counts.identities, counts.mismatches, counts.gaps))
print("coordinates (0-based, as Biopython): target {" .. table.concat(aln.coordinates[1], ", ")
  .. "}, query {" .. table.concat(aln.coordinates[2], ", ") .. "}")
