--- bio: the bioxen sequence library.  `local bio = require "bio"` gives every
-- module lazily (bio.seq, bio.translate, ...); each is also a module of its
-- own (`require "bio.seq"`).  Index: docs/bio/index.md.
local MODULES = {
  seq = true, alphabet = true, translate = true, fasta = true, fastq = true,
  kmer = true, motif = true, stats = true,
  weight = true, tm = true, codon_usage = true, align = true, matrices = true,
  genbank = true, embl = true, location = true, protparam = true,
}

local bio = { _modules = MODULES }

return setmetatable(bio, {
  __index = function(t, name)
    if not MODULES[name] then return nil end
    local mod = require("bio." .. name)
    rawset(t, name, mod)
    return mod
  end,
})
