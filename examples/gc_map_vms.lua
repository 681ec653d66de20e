-- The per-record GC table of gc_table.lua, spread over several VMs: byte-identical output.
--
--   bioxen run examples/gc_map_vms.lua examples/data/sample.fa --vms 2
--   bioxen run examples/gc_map_vms.lua genome.fa --vms 4 --profile standard --mode ignore
--   bioxen run examples/gc_map_vms.lua genome.fa.gz --vms 2        (BGZF: sharded too)
--   bioxen run examples/gc_map_vms.lua genome.fa --vms 8 --type slurm --cluster hpc
--
-- The input must be a file: "-" (standard input) cannot be cut into shards; pipe it to
-- gc_table.lua instead.
--
-- vm.map_file cuts the file into record-aligned shards (bio.fasta.shards: a few byte
-- ranges, more than there are VMs), creates the VMs, and hands the next shard to whichever
-- VM is idle.  Each VM opens its own byte range, so the sequence data never passes through
-- the shell; only each shard's finished table text comes back, and on_result writes it as
-- soon as it is next in order.

local args = { ... }
local path, nvms, profile, mode, nshards, vmtype, cluster = nil, 2, nil, "remove", nil, nil, nil
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--vms" then nvms = tonumber(args[i + 1]); i = i + 2
  elseif a == "--profile" then profile = args[i + 1]; i = i + 2
  elseif a == "--mode" then mode = args[i + 1]; i = i + 2
  elseif a == "--shards" then nshards = tonumber(args[i + 1]); i = i + 2
  elseif a == "--type" then vmtype = args[i + 1]; i = i + 2
  elseif a == "--cluster" then cluster = args[i + 1]; i = i + 2
  else path = a; i = i + 1 end
end
if not path or not nvms then
  io.stderr:write("usage: gc_map_vms.lua FILE.fa [--vms N] [--shards N] [--profile NAME] [--mode remove|ignore|weighted] [--type local|slurm|…] [--cluster NAME]\n")
  os.exit(2)
end

io.write("#id\tlength\tgc_percent\n")
-- The function travels to the VMs as source text: it may use globals (require) but no
-- upvalues, so the mode comes as an extra argument (opts.args).
local _, failures = vm.map_file(function(shard, mode)
  local fasta = require "bio.fasta"
  local format, out, n = string.format, {}, 0
  for id, length, gc in fasta.gc_records(shard, mode) do
    n = n + 1
    out[n] = format("%s\t%d\t%.2f\n", id, length, 100 * gc)
  end
  return table.concat(out)
end, path, {
  vms = nvms, shards = nshards, profile = profile, format = "fasta", type = vmtype, cluster = cluster,
  args = { mode },
  on_result = function(_, text) io.write(text) end,
})
if failures then
  for _, f in ipairs(failures) do io.stderr:write(string.format("shard %d failed: %s\n", f.index, f.error)) end
  os.exit(1)
end
