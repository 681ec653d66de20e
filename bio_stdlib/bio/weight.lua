--- Molecular weight of DNA, RNA and protein, as Biopython's Bio.SeqUtils.molecular_weight (1.88).
--
--   local weight = require "bio.weight"
--   weight.molecular_weight("AGC")                              --> 949.6095 (DNA)
--   weight.molecular_weight("AGC", "RNA")                       --> 997.6077
--   weight.molecular_weight("AGC", {seq_type = "protein"})      --> 249.2874
--   weight.molecular_weight("AGC", {double_stranded = true})    --> 1890.2057
--   weight.molecular_weight("AGC", {circular = true, monoisotopic = true})
--
-- Weight = sum of residue masses - (n - 1) waters; `circular` removes one more water;
-- `double_stranded` adds the complementary strand (DNA or RNA only). Nucleotides carry a
-- 5' phosphate. Whitespace is ignored and letters are upper-cased; any other letter that is
-- not an unambiguous residue of the type raises an error naming the position and character.
-- Residues are summed left to right like Biopython, so results agree to the last bit.
-- Runs on Lua 5.1-5.4 and LuaJIT.

local data = require "bio.weight_data"

local M = {}

local byte, char, format = string.byte, string.char, string.format

M.SEQ_TYPES = {"DNA", "RNA", "protein"}

-- byte -> mass arrays, one per (seq_type, kind); lower-case letters map like upper-case.
local MASS = {}
for seq_type, kinds in pairs(data) do
  if type(kinds) == "table" and seq_type ~= "water" then
    MASS[seq_type] = {}
    for kind, masses in pairs(kinds) do
      local t = {}
      for letter, mass in pairs(masses) do
        t[byte(letter)] = mass
        t[byte(letter:lower())] = mass
      end
      MASS[seq_type][kind] = t
    end
  end
end

-- Complement of each unambiguous nucleotide (Bio.Seq.complement / complement_rna).
local COMPLEMENT = {
  DNA = {A = "T", C = "G", G = "C", T = "A"},
  RNA = {A = "U", C = "G", G = "C", U = "A"},
}

-- Python's str.split() whitespace (ASCII): space, \t \n \v \f \r and \28-\31.
local SPACE = {}
for _, b in ipairs({32, 9, 10, 11, 12, 13, 28, 29, 30, 31}) do SPACE[b] = true end

-- Errors read "bio.weight.molecular_weight: bad argument #1 'seq': ..." (as the rest of bio.*)
-- and point at the caller's line.
local function fail(msg, level) error("bio.weight.molecular_weight: " .. msg, level or 3) end

local function printable(b)
  if b >= 32 and b < 127 then return "'" .. char(b) .. "'" end
  return format("byte 0x%02X", b)
end

--- Sum of residue masses (left to right) and number of residues; whitespace is skipped.
local function residue_sum(seq, masses, seq_type)
  local total, n = 0, 0
  for i = 1, #seq do
    local b = byte(seq, i)
    local m = masses[b]
    if m then
      total = total + m
      n = n + 1
    elseif not SPACE[b] then
      fail("bad argument #1 'seq': invalid character " .. printable(b) .. " at position " .. i
        .. " (not an unambiguous " .. seq_type .. " letter)", 4)
    end
  end
  return total, n
end

--- Sum of the masses of the complementary strand, in the same residue order.
local function complement_sum(seq, masses, seq_type)
  local comp = COMPLEMENT[seq_type]
  local cmass = {}
  for letter, partner in pairs(comp) do
    cmass[byte(letter)] = masses[byte(partner)]
    cmass[byte(letter:lower())] = masses[byte(partner)]
  end
  local total = 0
  for i = 1, #seq do
    local m = cmass[byte(seq, i)]
    if m then total = total + m end
  end
  return total
end

--- Molecular weight in daltons.
-- opts (a table, or just the seq_type string): seq_type = "DNA" | "RNA" | "protein"
-- (default "DNA"), double_stranded = false, circular = false, monoisotopic = false.
function M.molecular_weight(seq, opts)
  if type(seq) ~= "string" then fail("bad argument #1 'seq': expected a string, got " .. type(seq)) end
  if type(opts) == "string" then opts = {seq_type = opts} end
  opts = opts or {}
  if type(opts) ~= "table" then fail("bad argument #2 'opts': expected a table or a seq_type string") end
  for k in pairs(opts) do
    if k ~= "seq_type" and k ~= "double_stranded" and k ~= "circular" and k ~= "monoisotopic" then
      fail("bad argument #2 'opts': unknown option '" .. tostring(k) .. "'")
    end
  end
  local seq_type = opts.seq_type or "DNA"
  local kind = opts.monoisotopic and "monoisotopic" or "average"
  if not MASS[seq_type] then
    fail("bad argument #2 'opts': option 'seq_type' must be DNA, RNA or protein, not '" .. tostring(seq_type) .. "'")
  end
  local masses = MASS[seq_type][kind]
  local water = data.water[kind]

  local total, n = residue_sum(seq, masses, seq_type)
  local weight = total - (n - 1) * water
  if opts.circular then weight = weight - water end
  if opts.double_stranded then
    if seq_type == "protein" then fail("bad argument #2 'opts': option 'double_stranded': protein sequences cannot be double-stranded") end
    weight = weight + (complement_sum(seq, masses, seq_type) - (n - 1) * water)
    if opts.circular then weight = weight - water end
  end
  return weight
end

M.mw = M.molecular_weight

return M
