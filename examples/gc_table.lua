-- Per-record GC table of a FASTA file: id, length and GC% (Biopython's gc_fraction).
--
--   bioxen run examples/gc_table.lua examples/data/sample.fa
--   bioxen run examples/gc_table.lua genome.fa --mode ignore     (N counted in the length, like seqkit)
--   luajit examples/gc_table.lua genome.fa                       (plain interpreters work too)
--   zcat genome.fa.gz | bioxen run examples/gc_table.lua -       (FILE "-" is standard input)
--   bioxen run examples/gc_table.lua genome.fa.gz                (gzip and BGZF are read directly, from a pipe too)
--   luajit examples/gc_table.lua genome.fa --shard 2/8            (only shard 2 of bio.fasta.shards(file, 8):
--                                                                  shards 1/8 … 8/8 in order make the whole table)
--
-- Modes: remove (default: only A/C/G/T/S/W/U count in the length), ignore, weighted;
-- see docs/bio/seq.md.  The file is streamed, one record at a time.

-- Find the library when run with a plain interpreter from a checkout.
local script = arg and arg[0]
if script then
  local dir = script:match("^(.*)[/\\][^/\\]*$") or "."
  package.path = dir .. "/../bio_stdlib/?.lua;" .. dir .. "/../bio_stdlib/?/init.lua;" .. package.path
end

local fasta = require "bio.fasta"

local args = { ... }
local path, mode, shard = nil, "remove", nil
local i = 1
while i <= #args do
  if args[i] == "--mode" then mode = args[i + 1]; i = i + 2
  elseif args[i] == "--shard" then shard = args[i + 1] or ""; i = i + 2
  else path = args[i]; i = i + 1 end
end
local k, n = (shard or ""):match("^(%d+)/(%d+)$")
k, n = tonumber(k), tonumber(n)
if not path or (shard and not (k and k >= 1 and k <= n)) then
  io.stderr:write("usage: gc_table.lua FILE.fa|- [--mode remove|ignore|weighted] [--shard K/N, 1 <= K <= N]\n")
  os.exit(2)
end

-- --shard K/N: the K-th of bio.fasta.shards(FILE, N) (nothing if the file makes fewer); the
-- header comes with the first, so the outputs of 1/N … N/N, in order, are the whole table.
local source = path
if shard then source = fasta.shards(path, n)[k] end

-- fasta.gc_records gives each record's id, length and gc_fraction without
-- building the sequence strings (on LuaJIT it counts in the read buffer).
local format = string.format
if not shard or k == 1 then io.write("#id\tlength\tgc_percent\n") end
if source then
  for id, length, gc in fasta.gc_records(source, mode) do
    io.write(format("%s\t%d\t%.2f\n", id, length, 100 * gc))
  end
end
