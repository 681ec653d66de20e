-- The per-record GC scan of gc_table.lua, spread over several VMs with vm.map.
--
--   bioxen run examples/gc_map_vms.lua examples/data/sample.fa --vms 2
--   bioxen run examples/gc_map_vms.lua genome.fa --vms 4 --profile standard
--
-- Every VM runs the same agent with the sequence library on its path, so the mapped function
-- simply requires bio.seq.  vm.map creates the VMs for this map, hands each a share of the
-- records, returns the results in input order, and destroys the VMs afterwards.

local fasta = require "bio.fasta"

local args = { ... }
local path, nvms, profile = nil, 2, nil
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--vms" then nvms = tonumber(args[i + 1]); i = i + 2
  elseif a == "--profile" then profile = args[i + 1]; i = i + 2
  else path = a; i = i + 1 end
end
if not path then
  io.stderr:write("usage: gc_map_vms.lua FILE.fa [--vms N] [--profile NAME]\n")
  os.exit(2)
end

local ids, seqs = {}, {}
for rec in fasta.records(path) do
  ids[#ids + 1] = rec.id
  seqs[#seqs + 1] = rec.seq
end

-- The function travels to the VMs as source text: it may use globals (require) but no upvalues.
local results, failures = vm.map(function(s)
  local seq = require "bio.seq"
  return { #s, seq.gc_fraction(s) }
end, seqs, { vms = nvms, profile = profile })

print("#id\tlength\tgc_percent")
for n, id in ipairs(ids) do
  local r = results[n]
  if r then print(string.format("%s\t%d\t%.2f", id, r[1], 100 * r[2])) end
end
if failures then
  for _, f in ipairs(failures) do io.stderr:write(string.format("record %s failed: %s\n", ids[f.index], f.error)) end
  os.exit(1)
end
