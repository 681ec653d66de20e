-- Open reading frames in all six frames of every record of a FASTA file.
--
--   bioxen run examples/six_frame_orfs.lua examples/data/sample.fa
--   bioxen run examples/six_frame_orfs.lua genome.fa --min 300 --table 11 --start alternative
--   bioxen run examples/six_frame_orfs.lua genome.fa --fasta > proteins.fa
--
-- Coordinates are 1-based and inclusive on the record as given (start <= stop on both
-- strands), and include the stop codon; see docs/bio/translate.md.

local script = arg and arg[0]
if script then
  local dir = script:match("^(.*)[/\\][^/\\]*$") or "."
  package.path = dir .. "/../bio_stdlib/?.lua;" .. dir .. "/../bio_stdlib/?/init.lua;" .. package.path
end

local fasta = require "bio.fasta"
local translate = require "bio.translate"

local args = { ... }
local path
local opts = { min_length = 150, table = 1, start = "ATG" }
local as_fasta = false
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--min" then opts.min_length = tonumber(args[i + 1]); i = i + 2
  elseif a == "--table" then opts.table = tonumber(args[i + 1]) or args[i + 1]; i = i + 2
  elseif a == "--start" then opts.start = args[i + 1]; i = i + 2
  elseif a == "--fasta" then as_fasta = true; i = i + 1
  else path = a; i = i + 1 end
end
if not path then
  io.stderr:write("usage: six_frame_orfs.lua FILE.fa [--min NT] [--table ID] [--start ATG|alternative|any] [--fasta]\n")
  os.exit(2)
end

if not as_fasta then print("#record\tstrand\tframe\tstart\tstop\tlength_nt\tprotein") end
for rec in fasta.records(path) do
  for n, orf in ipairs(translate.orfs(rec.seq, opts)) do
    if as_fasta then
      io.write(fasta.format({ id = string.format("%s_orf%d", rec.id, n),
        description = string.format("%s:%d-%d(%s) frame=%d", rec.id, orf.start, orf.stop, orf.strand, orf.frame),
        seq = orf.protein }))
    else
      local p = #orf.protein > 30 and orf.protein:sub(1, 27) .. "..." or orf.protein
      print(table.concat({ rec.id, orf.strand, orf.frame, orf.start, orf.stop, orf.length, p }, "\t"))
    end
  end
end
