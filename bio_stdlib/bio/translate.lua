--- bio.translate: genetic codes, translation, six frames and ORFs.
--
-- Semantics are Biopython 1.88's Bio.Seq.translate, exactly: every NCBI
-- table Biopython has (ids 1-6, 9-16, 21-33, or their names), to_stop,
-- cds, a custom stop symbol, gap codons, and ambiguous codons resolved to an
-- amino acid, B/Z/J, X, or a stop.  The codon data is generated from
-- Biopython (bio.codon_tables, see tests/bio/gen_codon_tables.py), including
-- the result of every ambiguous codon, so resolution matches by construction.
-- Reference page: docs/bio/translate.md.
local F = require "bio._fast"
local A = require "bio.alphabet"
local DATA = require "bio.codon_tables"
local seqmod = require "bio.seq"

local M = {}

local ffi = F.ffi
local byte, char, sub, gsub, find, upper = string.byte, string.char, string.sub, string.gsub, string.find, string.upper
local LETTERS = DATA.letters -- "ACGTURYSWKMBDHVNX"

-- letter (either case) -> 0-based index into LETTERS
local LETTER_INDEX = {}
for i = 1, #LETTERS do
  local c = sub(LETTERS, i, i)
  LETTER_INDEX[c] = i - 1
  LETTER_INDEX[c:lower()] = i - 1
end

local FN = "bio.translate.translate"
local rename_stops -- defined with translate()

---------------------------------------------------------------------------
-- Genetic code tables
---------------------------------------------------------------------------

local by_name = {}
for _, id in ipairs(DATA.ids) do
  for _, name in ipairs(DATA.tables[id].names) do by_name[name] = id end
end

local function known_ids()
  return "1-6, 9-16, 21-33"
end

-- Python's int(str) in base 10, which Biopython tries first on a table
-- argument: surrounding whitespace (C isspace: not \28-\31, unlike
-- str.split), a sign, digits with single '_' between them ("1_1", " +11 ").
-- Nothing else ("1e1", "0x0B", "11.0") is a number.
local PY_SPACE = "[ \t\n\v\f\r]*"
local function python_int(s)
  local sign, digits = s:match("^" .. PY_SPACE .. "([+-]?)(%d[%d_]*)" .. PY_SPACE .. "$")
  if not digits or find(digits, "__", 1, true) or sub(digits, -1) == "_" then return nil end
  local n = tonumber((gsub(digits, "_", "")))
  return sign == "-" and -n or n
end

-- Resolve a table argument to the raw table, as Biopython does: a number
-- (an integral id), a string that Python's int() reads as one, or a name
-- (exact, as CodonTable's *_by_name dictionaries).  Errors at the line
-- that called the caller of resolve.
local function resolve(spec, fname, pos)
  fname, pos = fname or FN, pos or 2
  if spec == nil then return DATA.tables[1] end
  local id = spec
  if type(spec) == "string" then
    id = python_int(spec) or by_name[spec]
    if id == nil then
      A.arg_error(fname, pos, "table", string.format("unknown genetic code name '%s' (known: ids %s, as numbers or decimal strings, or names such as \"Standard\", \"Bacterial\", \"Vertebrate Mitochondrial\")", spec, known_ids()), 3)
    end
  elseif type(spec) ~= "number" then
    A.arg_error(fname, pos, "table", "expected a table id or name, got " .. type(spec), 3)
  elseif spec ~= math.floor(spec) then
    A.arg_error(fname, pos, "table", string.format("expected an integral table id, got %s", tostring(spec)), 3)
  end
  local t = DATA.tables[id]
  if not t then
    A.arg_error(fname, pos, "table", string.format("unknown genetic code id %s (NCBI ids Biopython has: %s)", tostring(spec), known_ids()), 3)
  end
  return t
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- The table's entry for a codon of known letters: an amino acid, "*" for a
-- stop, "#" for a codon Biopython rejects.  nil for unknown letters.
local function code_at(t, codon)
  local i1, i2, i3 = LETTER_INDEX[sub(codon, 1, 1)], LETTER_INDEX[sub(codon, 2, 2)], LETTER_INDEX[sub(codon, 3, 3)]
  if not (i1 and i2 and i3) then return nil end
  local i = i1 * 289 + i2 * 17 + i3 + 1
  return sub(t.code, i, i)
end

-- Compiled per-table state, built on first use.
local compiled = {}
local function compile(t)
  local c = compiled[t.id]
  if c then return c end
  c = { t = t, starts = set_of(t.starts), stops = set_of(t.stops) }
  -- Dual-coding tables (27, 28, 31): some stop codons also code for an amino
  -- acid.  Like Biopython, remember the first one and how many there are.
  for _, codon in ipairs(t.stops) do
    local aa = code_at(t, codon)
    if aa ~= "*" then
      c.dual = c.dual or { codon = codon, aa = aa, n = 0 }
      c.dual.n = c.dual.n + 1
    end
  end
  compiled[t.id] = c
  return c
end

--- The genetic code `spec` (id or name; default 1) as plain data:
-- {id, names, forward = {codon -> amino acid} over the DNA codons that are
--  not stops, starts = {DNA start codons}, stops = {DNA stop codons}} --
-- Biopython's CodonTable.unambiguous_dna_by_id[id].
function M.codon_table(spec)
  local t = resolve(spec, "bio.translate.codon_table", 1)
  local forward, starts, stops = {}, {}, {}
  for _, a in ipairs({ "A", "C", "G", "T" }) do
    for _, b in ipairs({ "A", "C", "G", "T" }) do
      for _, c in ipairs({ "A", "C", "G", "T" }) do
        local aa = code_at(t, a .. b .. c)
        if aa ~= "*" then forward[a .. b .. c] = aa end
      end
    end
  end
  for _, codon in ipairs(t.starts) do if not find(codon, "[^ACGT]") then starts[#starts + 1] = codon end end
  for _, codon in ipairs(t.stops) do if not find(codon, "[^ACGT]") then stops[#stops + 1] = codon end end
  local names = {}
  for i, n in ipairs(t.names) do names[i] = n end
  return { id = t.id, names = names, forward = forward, starts = starts, stops = stops }
end

--- The ids of every table, ascending.
function M.table_ids()
  local out = {}
  for i, id in ipairs(DATA.ids) do out[i] = id end
  return out
end

---------------------------------------------------------------------------
-- Codon lookup (shared by both kernels and the error paths)
---------------------------------------------------------------------------

-- Translate one 3-character codon: amino acid letter, "*" for a stop, the
-- gap character for a gap codon, or nil for an invalid codon.  As
-- Biopython, a codon is first a stop or an amino acid (so a gap letter that
-- is a nucleotide never makes a gap codon), and the upper-cased codon is
-- compared with three gap characters.
local function codon_aa(t, codon, gap)
  local aa = code_at(t, codon)
  if aa and aa ~= "#" then return aa end
  if gap and upper(codon) == gap .. gap .. gap then return gap end
  return nil
end

local function invalid_codon_error(s, offset, k, level)
  local codon = sub(s, offset + 3 * k, offset + 3 * k + 2)
  local at = offset + 3 * k
  local bad
  for j = 0, 2 do
    if not LETTER_INDEX[sub(codon, j + 1, j + 1)] then bad = j; break end
  end
  if not bad then
    -- only letters Biopython knows, but X where an expansion is a stop
    bad = (find(upper(codon), "X", 1, true) or 1) - 1
  end
  error(string.format("%s: bad argument #1 'seq': translation error: codon '%s' at position %d is invalid (character '%s' at position %d)",
    FN, codon, at, A.show_char(sub(codon, bad + 1, bad + 1)), at + bad), level + 1)
end

---------------------------------------------------------------------------
-- Kernels: translate whole codons of s[offset .. offset + 3*n - 1]
-- returning the protein with '*' for stops, and the 0-based index of the
-- first stop codon (or nil).  `to_stop` stops the output at that codon.
---------------------------------------------------------------------------

local kernel

if ffi then
  local L1, L2, L3 = ffi.new("int32_t[256]"), ffi.new("int32_t[256]"), ffi.new("int32_t[256]")
  for b = 0, 255 do
    local i = LETTER_INDEX[char(b)]
    L1[b] = i and i * 289 or 65536
    L2[b] = i and i * 17 or 65536
    L3[b] = i or 65536
  end
  local codes = {}
  local function code_array(t)
    local a = codes[t.id]
    if not a then
      a = ffi.new("uint8_t[4913]")
      ffi.copy(a, t.code, 4913)
      codes[t.id] = a
    end
    return a
  end
  local STAR = byte("*") -- stop; '#' (35, invalid codon) is below it

  kernel = function(t, s, offset, n, to_stop, gap)
    local code = code_array(t)
    local out = F.scratch("translate", n + 1)
    local p = ffi.cast("const uint8_t*", s) + (offset - 1)
    local first_stop
    local k = 0
    while k < n do
      -- hot loop: one lookup per letter, one per codon, and a rare branch
      local stopped_at, odd_at
      for j = k, n - 1 do
        local q = j * 3
        local idx = L1[p[q]] + L2[p[q + 1]] + L3[p[q + 2]]
        if idx >= 4913 then odd_at = j; break end
        local aa = code[idx]
        out[j] = aa
        if aa <= STAR then
          if aa == STAR then stopped_at = j else odd_at = j end
          break
        end
      end
      if stopped_at then
        first_stop = first_stop or stopped_at
        if to_stop then return ffi.string(out, stopped_at), first_stop end
        k = stopped_at + 1
      elseif odd_at then
        local aa = codon_aa(t, sub(s, offset + 3 * odd_at, offset + 3 * odd_at + 2), gap)
        if not aa then return nil, first_stop, odd_at end
        out[odd_at] = byte(aa)
        k = odd_at + 1
      else
        k = n
      end
    end
    return ffi.string(out, n), first_stop
  end
else
  -- Portable: string.gsub over 6-letter windows (two codons per table
  -- lookup) with a per-table memo.
  local memos = {}
  local INVALID = {}
  local function memo_for(t, gap)
    local key = t.id .. "\0" .. (gap or "")
    local m = memos[key]
    if m then return m end
    local size = 0
    m = setmetatable({}, { __index = function(tab, k)
      local a = codon_aa(t, sub(k, 1, 3), gap)
      local b = ""
      if #k == 6 then b = codon_aa(t, sub(k, 4, 6), gap) end
      if not a or not b then error(INVALID) end
      local v = a .. b
      if size < 40000 then size = size + 1; rawset(tab, k, v) end
      return v
    end })
    memos[key] = m
    return m
  end

  -- Translate whole codons of `region` (its length a multiple of 3): pairs
  -- through a fixed 6-letter window (faster than an optional-width pattern),
  -- then a last odd codon on its own.
  local function gsub_codons(region, memo)
    local n = #region / 3
    if n % 2 == 0 then return (gsub(region, "......", memo)) end
    local cut = #region - 3
    return gsub(sub(region, 1, cut), "......", memo) .. memo[sub(region, cut + 1)]
  end

  kernel = function(t, s, offset, n, to_stop, gap)
    local region = s
    if offset ~= 1 or #s ~= 3 * n then region = sub(s, offset, offset + 3 * n - 1) end
    local ok, protein = pcall(gsub_codons, region, memo_for(t, gap))
    if not ok then
      if protein ~= INVALID then error(protein, 0) end
      -- walk the codons in order, as Biopython does: a stop before the
      -- invalid codon ends a to_stop translation first
      local first_stop
      for k = 0, n - 1 do
        local aa = codon_aa(t, sub(region, 3 * k + 1, 3 * k + 3), gap)
        if not aa then return nil, first_stop, k end
        if not first_stop and code_at(t, sub(region, 3 * k + 1, 3 * k + 3)) == "*" then -- a stop, not a '*' gap
          first_stop = k
          if to_stop then return gsub_codons(sub(region, 1, 3 * k), memo_for(t, gap)), k end
        end
      end
      error("bio.translate: internal error locating an invalid codon")
    end
    local first = find(protein, "*", 1, true)
    if first and gap == "*" then
      -- a gap symbol '*' is not a stop: find the first real stop codon
      first = nil
      for k = 0, n - 1 do
        if codon_aa(t, sub(region, 3 * k + 1, 3 * k + 3), nil) == "*" then first = k + 1; break end
      end
    end
    if first and to_stop then return sub(protein, 1, first - 1), first - 1 end
    return protein, first and first - 1
  end
end

---------------------------------------------------------------------------
-- translate
---------------------------------------------------------------------------

-- The second argument is a table id or name, or a table of options.
local function options(opts, allowed, fname)
  if type(opts) == "table" then return A.check_options(opts, allowed, fname, 2) end
  if opts == nil then return {} end
  return { table = opts }
end

local TRANSLATE_OPTS = { "table", "stop_symbol", "to_stop", "cds", "gap" }
local SIX_FRAME_OPTS = { "table", "stop_symbol" }
local ORF_OPTS = { "table", "min_length", "start", "partial", "nested", "strand" }

local function check_bool(v, name)
  if v ~= nil and type(v) ~= "boolean" then
    A.arg_error(FN, 2, name, "expected a boolean, got " .. type(v), 3)
  end
  return v
end

-- The protein with each stop ('*') written as `stop_symbol`.  A '*' gap
-- residue (gap = "*", codon "***") stays: Biopython emits the gap itself.
rename_stops = function(protein, stop_symbol, gap, s, offset)
  local sym = gsub(stop_symbol, "%%", "%%%%")
  if gap ~= "*" then return (gsub(protein, "%*", sym)) end
  local parts, pos = {}, 1
  while true do
    local k = find(protein, "*", pos, true)
    if not k then break end
    local at = offset + 3 * (k - 1)
    parts[#parts + 1] = sub(protein, pos, k - 1)
    parts[#parts + 1] = sub(s, at, at + 2) == "***" and "*" or stop_symbol
    pos = k + 1
  end
  parts[#parts + 1] = sub(protein, pos)
  return table.concat(parts)
end

local function translation_error(msg, level)
  error(FN .. ": translation error: " .. msg, level + 1)
end

--- Translate a nucleotide sequence (DNA or RNA, any case) into protein.
--
--   translate(seq)                      -- standard code
--   translate(seq, 11)                  -- table id, or a name: "Bacterial"
--   translate(seq, {table = 2, to_stop = true, stop_symbol = "@", cds = false, gap = "-"})
--
-- Exactly Bio.Seq.translate: stops become `stop_symbol` ("*"); `to_stop`
-- ends at the first in-frame stop (not emitted); `cds` requires a start
-- codon (emitted as M), a length that is a multiple of 3, a final stop
-- (dropped) and no other in-frame stop, and raises a "translation error"
-- otherwise.  A trailing partial codon is dropped (Biopython warns).
-- Codons with letters outside IUPAC DNA/RNA raise an error naming the
-- codon, its position and the bad character.
function M.translate(s, opts)
  A.check_string(s, FN, 1, "seq")
  opts = options(opts, TRANSLATE_OPTS, FN)
  local t = resolve(opts.table, FN, 2)
  local c = compile(t)
  local stop_symbol = opts.stop_symbol
  if stop_symbol == nil then stop_symbol = "*" end
  A.check_string(stop_symbol, FN, 2, "stop_symbol")
  local to_stop, cds, gap = check_bool(opts.to_stop, "to_stop"), check_bool(opts.cds, "cds"), opts.gap
  if gap ~= nil and (type(gap) ~= "string" or #gap > 1) then
    A.arg_error(FN, 2, "gap", "must be a single character string", 2)
  end
  if gap == "" then gap = nil end -- Biopython: no codon equals "" * 3, so no gaps
  if c.dual and to_stop then
    A.arg_error(FN, 2, "to_stop", string.format(
      "cannot be used with table %d: it has %d codon(s) that are both STOP and an amino acid (e.g. '%s' -> '%s' or STOP)",
      t.id, c.dual.n, c.dual.codon, c.dual.aa), 2)
  end

  local n = #s
  local offset, ncodons, prefix = 1, (n - n % 3) / 3, ""
  if cds then
    local first, last = upper(sub(s, 1, 3)), upper(sub(s, -3))
    if not c.starts[first] then translation_error(string.format("first codon '%s' is not a start codon of table %d", first, t.id), 2) end
    if n % 3 ~= 0 then translation_error(string.format("sequence length %d is not a multiple of three", n), 2) end
    if n < 6 or not c.stops[last] then
      translation_error(string.format("final codon '%s' is not a stop codon of table %d", n < 6 and "" or last, t.id), 2)
    end
    offset, ncodons, prefix = 4, n / 3 - 2, "M"
  end

  local protein, first_stop, bad = kernel(t, s, offset, ncodons, to_stop and not cds, gap)
  if bad then
    -- Biopython meets an extra stop (cds) before a later invalid codon
    if not (cds and first_stop and first_stop < bad) then invalid_codon_error(s, offset, bad, 2) end
  end
  if cds and first_stop then
    local at = offset + 3 * first_stop
    translation_error(string.format("extra in frame stop codon '%s' found at position %d", upper(sub(s, at, at + 2)), at), 2)
  end
  if stop_symbol ~= "*" and first_stop then protein = rename_stops(protein, stop_symbol, gap, s, offset) end
  return prefix .. protein
end

---------------------------------------------------------------------------
-- Six frames and ORFs
---------------------------------------------------------------------------

local function frame_list(s, t, stop_symbol, fname)
  local ok, rc = pcall(seqmod.reverse_complement, s)
  if not ok then -- a non-ASCII byte: the error of the function the user called, at their line
    error((gsub(tostring(rc), "^bio%.seq%.reverse_complement", fname)), 3)
  end
  local frames = {}
  local n = #s
  for strand = 1, 2 do
    local src = strand == 1 and s or rc
    for f = 1, 3 do
      local len = n - (f - 1)
      local nc = len > 0 and (len - len % 3) / 3 or 0
      local protein = ""
      if nc > 0 then
        local p, _, bad = kernel(t, src, f, nc, false, nil)
        if bad then
          -- report the position on the strand the user gave
          local at = f + 3 * bad
          if strand == 2 then at = n - (at + 2) + 1 end
          error(string.format("bio.translate.six_frames: bad argument #1 'seq': invalid codon at position %d of the %s strand",
            at, strand == 1 and "+" or "-"), 3)
        end
        protein = p
        if stop_symbol ~= "*" then protein = gsub(protein, "%*", (gsub(stop_symbol, "%%", "%%%%"))) end
      end
      frames[#frames + 1] = { frame = (strand == 1 and f or -f), strand = strand == 1 and "+" or "-", protein = protein }
    end
  end
  return frames, rc
end

--- Translate all six reading frames.  Returns a list of six records
-- {frame = 1|2|3|-1|-2|-3, strand = "+"|"-", protein = "..."} in that
-- order.  Frame +f starts at position f of the sequence; frame -f starts at
-- position f of its reverse complement.  Partial trailing codons are dropped.
-- opts: table (id or name), stop_symbol.
function M.six_frames(s, opts)
  A.check_string(s, "bio.translate.six_frames", 1, "seq")
  opts = options(opts, SIX_FRAME_OPTS, "bio.translate.six_frames")
  local t = resolve(opts.table, "bio.translate.six_frames", 2)
  local frames = frame_list(s, t, opts.stop_symbol or "*", "bio.translate.six_frames")
  return frames
end

-- Check and complete the options of orfs().
local function orf_options(opts, fname)
  opts = options(opts, ORF_OPTS, fname)
  local o = { t = resolve(opts.table, fname, 2), partial = opts.partial, nested = opts.nested }
  o.min_length = opts.min_length
  if o.min_length == nil then o.min_length = 75 end
  A.check_int(o.min_length, fname, 2, "min_length", 0, math.huge)
  o.mode = opts.start or "ATG"
  if o.mode == "ATG" then
    o.starts = { "ATG" }
  elseif o.mode == "alternative" then
    o.starts = M.codon_table(o.t.id).starts
  elseif o.mode == "any" then
    o.starts = {}
  else
    A.arg_error(fname, 2, "start", "must be \"ATG\", \"alternative\" or \"any\", got " .. tostring(o.mode), 3)
  end
  o.strand = opts.strand or "both"
  if o.strand ~= "both" and o.strand ~= "+" and o.strand ~= "-" then
    A.arg_error(fname, 2, "strand", "must be \"both\", \"+\" or \"-\", got " .. tostring(o.strand), 3)
  end
  return o
end

-- Codon indices (1-based, within one frame) in [first, last] where an ORF
-- may begin: the first start codon only, or every one when `nested`.
local function start_positions(nt, frame_offset, first, last, o)
  if o.mode == "any" then return { first } end
  local found = {}
  for k = first, last do
    local at = frame_offset + 3 * (k - 1)
    local codon = sub(nt, at, at + 2)
    for _, st in ipairs(o.starts) do
      if codon == st then found[#found + 1] = k; break end
    end
    if #found > 0 and not o.nested then break end
  end
  return found
end

-- Append the ORFs of one translated frame to `result`.  `nt` is the
-- frame's strand, upper case with U read as T; `n` the sequence length.
local function orfs_in_frame(fr, nt, n, o, result)
  local f = math.abs(fr.frame)
  local protein = fr.protein
  local np = #protein
  local seg_start = 1 -- codon index where the current stop-free stretch begins
  while seg_start <= np do
    local stop_at = find(protein, "*", seg_start, true)
    local seg_end = stop_at and stop_at - 1 or np
    if stop_at or o.partial then
      for _, k in ipairs(start_positions(nt, f, seg_start, seg_end, o)) do
        local a = f + 3 * (k - 1)                 -- first base, on this strand
        local b = f + 3 * (stop_at or seg_end) - 1 -- last base (of the stop codon)
        if b - a + 1 >= o.min_length then
          local prot = sub(protein, k, seg_end)
          if o.mode ~= "any" and #prot > 0 then prot = "M" .. sub(prot, 2) end
          local start, stop = a, b
          if fr.strand == "-" then start, stop = n - b + 1, n - a + 1 end
          result[#result + 1] = { start = start, stop = stop, strand = fr.strand, frame = fr.frame,
                                  length = b - a + 1, protein = prot }
        end
      end
    end
    seg_start = seg_end + 2
  end
end

--- Open reading frames on both strands.
--
-- An ORF runs from a start codon to the next in-frame stop codon
-- (inclusive).  Coordinates are 1-based and inclusive on the *given*
-- (forward) strand, so start <= stop for both strands; for a "-" ORF the
-- start codon is at `stop` (read on the reverse strand).
--
-- opts:
--   table        genetic code id or name (default 1)
--   min_length   minimum ORF length in nucleotides, start and stop codons
--                included (default 75, as NCBI ORFfinder)
--   start        "ATG" (default), "alternative" (every start codon of the
--                table, e.g. GTG and TTG in table 11) or "any" (stop to stop:
--                the ORF begins right after the previous in-frame stop)
--   partial      also report ORFs that reach the end of the sequence without
--                a stop codon (default false)
--   nested       report every start codon, not only the first after a stop
--                (default false: the longest ORF per stop codon)
--   strand       "both" (default), "+" or "-"
--
-- Returns a list of {start, stop, strand, frame, length (nt), protein}, the
-- protein without the stop codon, its first residue written as M when it
-- begins at a start codon (as Biopython does with cds=True), sorted by
-- start, then strand.
function M.orfs(s, opts)
  local fname = "bio.translate.orfs"
  A.check_string(s, fname, 1, "seq")
  local o = orf_options(opts, fname)
  local frames, rc = frame_list(s, o.t, "*", fname)
  local strands = { ["+"] = upper(seqmod.back_transcribe(s)), ["-"] = upper(seqmod.back_transcribe(rc)) }
  local result = {}
  for _, fr in ipairs(frames) do
    if o.strand == "both" or fr.strand == o.strand then
      orfs_in_frame(fr, strands[fr.strand], #s, o, result)
    end
  end
  table.sort(result, function(x, y)
    if x.start ~= y.start then return x.start < y.start end
    if x.strand ~= y.strand then return x.strand == "+" end
    return x.stop < y.stop
  end)
  return result
end

return M
