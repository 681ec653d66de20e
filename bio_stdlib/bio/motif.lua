--- bio.motif: IUPAC motif search.
--
--   motif.find(seq, "GAATTC")            -- both strands, every overlapping hit
--   motif.nt_search(seq, "RGATCY")       -- exactly Bio.SeqUtils.nt_search
--
-- Coordinates: `find` reports 1-based, inclusive positions on the given
-- (forward) strand, so start <= stop on both strands; a "-" hit means the
-- reverse complement of the motif occurs there (the motif is read on the
-- minus strand from `stop` down to `start`).  A palindromic site is reported
-- once per strand.  Pattern letters are IUPAC DNA codes; each matches the
-- concrete bases it stands for (R matches A or G), so an N in the sequence
-- matches nothing.  Reference: docs/bio/motif.md.
local A = require "bio.alphabet"
local seqmod = require "bio.seq"

local M = {}

local upper, find, sub = string.upper, string.find, string.sub
local LETTERS = "ACGTMRWSYKVHDBXN"

-- IUPAC pattern -> Lua pattern (and Biopython's regex, which has the same
-- syntax for these classes).  Letters must be upper case, as in Biopython.
local function compile(pattern, fname, pos)
  A.check_string(pattern, fname, pos, "pattern")
  if pattern == "" then A.arg_error(fname, pos, "pattern", "must not be empty", 3) end
  local parts = {}
  for i = 1, #pattern do
    local c = sub(pattern, i, i)
    local v = A.dna_values[c]
    if not v then
      A.arg_error(fname, pos, "pattern", string.format("invalid character '%s' at position %d (IUPAC DNA letters, upper case: %s)",
        A.show_char(c), i, LETTERS), 3)
    end
    parts[i] = #v == 1 and v or "[" .. v .. "]"
  end
  return table.concat(parts)
end

--- Biopython's nt_search: returns {regex, pos0, pos1, ...} with 0-based
-- start positions of every (overlapping) forward-strand match.  The
-- sequence is matched case-sensitively, like Biopython.
function M.nt_search(s, pattern)
  A.check_string(s, "bio.motif.nt_search", 1, "seq")
  local pat = compile(pattern, "bio.motif.nt_search", 2)
  local out = { pat }
  local pos = 1
  while true do
    local a = find(s, pat, pos)
    if not a then break end
    out[#out + 1] = a - 1
    pos = a + 1
  end
  return out
end

--- The Lua pattern for an IUPAC motif, e.g. "RGATCY" -> "[AG]GATC[CT]".
function M.to_pattern(pattern)
  return compile(pattern, "bio.motif.to_pattern", 1)
end

local function scan(s, pat, len, strand, hits, original)
  local pos = 1
  while true do
    local a = find(s, pat, pos)
    if not a then return end
    local b = a + len - 1
    local m = sub(original, a, b)
    if strand == "-" then m = seqmod.reverse_complement(m) end
    hits[#hits + 1] = { start = a, stop = b, strand = strand, match = m }
    pos = a + 1
  end
end

--- Every occurrence of an IUPAC motif, overlapping hits included.
-- opts.strand: "both" (default), "+" or "-";
-- opts.ignore_case: match lower-case sequence letters too (default true).
-- Returns a list of {start, stop, strand, match} sorted by start, then
-- strand ("+" first); `match` is the matched text read on the hit's strand.
function M.find(s, pattern, opts)
  local fname = "bio.motif.find"
  A.check_string(s, fname, 1, "seq")
  opts = A.check_options(opts, { "strand", "ignore_case" }, fname, 3)
  local strand = opts.strand or "both"
  if strand ~= "both" and strand ~= "+" and strand ~= "-" then
    A.arg_error(fname, 3, "strand", "must be \"both\", \"+\" or \"-\", got " .. tostring(strand), 2)
  end
  local up = upper(pattern)
  if type(pattern) ~= "string" then A.check_string(pattern, fname, 2, "pattern") end
  -- validate with the user's spelling so positions refer to what they typed
  compile(up, fname, 2)
  local target = s
  if opts.ignore_case ~= false then target = upper(s) end
  local hits = {}
  if strand ~= "-" then scan(target, compile(up, fname, 2), #up, "+", hits, s) end
  if strand ~= "+" then scan(target, compile(seqmod.reverse_complement(up), fname, 2), #up, "-", hits, s) end
  table.sort(hits, function(x, y)
    if x.start ~= y.start then return x.start < y.start end
    return x.strand == "+" and y.strand == "-"
  end)
  return hits
end

--- Number of hits (both strands by default); same options as find.
function M.count(s, pattern, opts)
  return #M.find(s, pattern, opts)
end

return M
