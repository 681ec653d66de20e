-- The GC table of shard k of n (bio.fasta.shards) with a plain interpreter: what the machine
-- does with no shell and no VMs (bench/scale_out.py's floor rows).
--   luajit bench/gc_shard.lua FILE.fa K N
local dir = (arg[0]:match("^(.*)[/\\][^/\\]*$") or ".") .. "/../bio_stdlib/"
package.path = dir .. "?.lua;" .. dir .. "?/init.lua;" .. package.path
local fasta = require "bio.fasta"
local path, k, n = arg[1], tonumber(arg[2]), tonumber(arg[3])
local out = {}
if k == 1 then out[1] = "#id\tlength\tgc_percent\n" end
local shard = fasta.shards(path, n)[k]
if shard then
  for id, length, gc in fasta.gc_records(shard, "remove") do
    out[#out + 1] = string.format("%s\t%d\t%.2f\n", id, length, 100 * gc)
  end
end
io.write(table.concat(out))
