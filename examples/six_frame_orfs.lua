-- Open reading frames in all six frames of every record of a FASTA file.
--
--   bioxen run examples/six_frame_orfs.lua examples/data/sample.fa
--   bioxen run examples/six_frame_orfs.lua genome.fa --min 300 --table 11 --start alternative
--   bioxen run examples/six_frame_orfs.lua genome.fa --fasta > proteins.fa
--   bioxen run examples/six_frame_orfs.lua genome.fa --vms 2        (same bytes, over 2 VMs)
--   luajit examples/six_frame_orfs.lua genome.fa --shard 2/8         (only shard 2 of bio.fasta.shards(file, 8):
--                                                                     shards 1/8 … 8/8 in order make the whole output)
--   zcat genome.fa.gz | bioxen run examples/six_frame_orfs.lua -   (FILE "-" is standard input; not with --vms)
--
-- Coordinates are 1-based and inclusive on the record as given (start <= stop on both
-- strands), and include the stop codon; see docs/bio/translate.md.

local script = arg and arg[0]
if script then
  local dir = script:match("^(.*)[/\\][^/\\]*$") or "."
  package.path = dir .. "/../bio_stdlib/?.lua;" .. dir .. "/../bio_stdlib/?/init.lua;" .. package.path
end

local args = { ... }
local path, nvms, shard
local opts = { min_length = 150, table = 1, start = "ATG" }
local as_fasta = false
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--min" then opts.min_length = tonumber(args[i + 1]); i = i + 2
  elseif a == "--table" then opts.table = tonumber(args[i + 1]) or args[i + 1]; i = i + 2
  elseif a == "--start" then opts.start = args[i + 1]; i = i + 2
  elseif a == "--fasta" then as_fasta = true; i = i + 1
  elseif a == "--vms" then nvms = tonumber(args[i + 1]); i = i + 2
  elseif a == "--shard" then shard = args[i + 1] or ""; i = i + 2
  else path = a; i = i + 1 end
end
local k, n = (shard or ""):match("^(%d+)/(%d+)$")
k, n = tonumber(k), tonumber(n)
if not path or (shard and (nvms or not (k and k >= 1 and k <= n))) then
  io.stderr:write("usage: six_frame_orfs.lua FILE.fa [--min NT] [--table ID] [--start ATG|alternative|any] [--fasta] [--vms N | --shard K/N]\n")
  os.exit(2)
end

-- The ORFs of every record of `source` (a path or a shard) as text.  Self-contained (no
-- upvalues), so vm.map_file can send it to VMs as it is.
local function orfs_text(source, opts, as_fasta)
  local fasta, translate = require "bio.fasta", require "bio.translate"
  local out = {}
  for rec in fasta.records(source) do
    for n, orf in ipairs(translate.orfs(rec.seq, opts)) do
      if as_fasta then
        out[#out + 1] = fasta.format({ id = string.format("%s_orf%d", rec.id, n),
          description = string.format("%s:%d-%d(%s) frame=%d", rec.id, orf.start, orf.stop, orf.strand, orf.frame),
          seq = orf.protein })
      else
        local p = #orf.protein > 30 and orf.protein:sub(1, 27) .. "..." or orf.protein
        out[#out + 1] = table.concat({ rec.id, orf.strand, orf.frame, orf.start, orf.stop, orf.length, p }, "\t") .. "\n"
      end
    end
  end
  return table.concat(out)
end

-- --shard K/N: the K-th of bio.fasta.shards(FILE, N) (nothing if the file makes fewer); the
-- header comes with the first, so the outputs of 1/N … N/N, in order, are the whole output.
if not as_fasta and (not shard or k == 1) then print("#record\tstrand\tframe\tstart\tstop\tlength_nt\tprotein") end
if shard then
  local source = require("bio.fasta").shards(path, n)[k]
  if source then io.write(orfs_text(source, opts, as_fasta)) end
elseif not nvms then
  io.write(orfs_text(path, opts, as_fasta))
else
  -- Record-aligned shards of the file, each read by a VM itself; text written in order.
  local vm = rawget(_G, "vm") or error("--vms needs bioxen (the vm table)")
  local _, failures = vm.map_file(orfs_text, path, { vms = nvms, format = "fasta", args = { opts, as_fasta },
    on_result = function(_, text) io.write(text) end })
  if failures then
    for _, f in ipairs(failures) do io.stderr:write(string.format("shard %d failed: %s\n", f.index, f.error)) end
    os.exit(1)
  end
end
