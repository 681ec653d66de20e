-- Per-record GC table of a FASTA file: id, length and GC% (Biopython's gc_fraction).
--
--   bioxen run examples/gc_table.lua examples/data/sample.fa
--   bioxen run examples/gc_table.lua genome.fa --mode ignore     (N counted in the length, like seqkit)
--   luajit examples/gc_table.lua genome.fa                       (plain interpreters work too)
--   zcat genome.fa.gz | bioxen run examples/gc_table.lua -       (FILE "-" is standard input)
--   bioxen run examples/gc_table.lua genome.fa.gz                (gzip and BGZF are read directly, from a pipe too)
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
local path, mode = nil, "remove"
local i = 1
while i <= #args do
  if args[i] == "--mode" then mode = args[i + 1]; i = i + 2
  else path = args[i]; i = i + 1 end
end
if not path then
  io.stderr:write("usage: gc_table.lua FILE.fa|- [--mode remove|ignore|weighted]\n")
  os.exit(2)
end

-- fasta.gc_records gives each record's id, length and gc_fraction without
-- building the sequence strings (on LuaJIT it counts in the read buffer).
local format = string.format
io.write("#id\tlength\tgc_percent\n")
for id, length, gc in fasta.gc_records(path, mode) do
  io.write(format("%s\t%d\t%.2f\n", id, length, 100 * gc))
end
