--- Substitution matrices (BLOSUM62, PAM250, NUC.4.4, ...), as Bio.Align.substitution_matrices.
--
--   local matrices = require "bio.matrices"
--   local b62 = matrices.load("BLOSUM62")
--   b62:score("W", "W")      --> 11
--   b62.alphabet             --> "ARNDCQEGHILKMFPSTWYVBZX*"
--   matrices.names()         --> {"BENNER22", ..., "BLOSUM62", ..., "TRANS"}
--   matrices.new("ACGT", {{5,-4,-4,-4}, {-4,5,-4,-4}, {-4,-4,5,-4}, {-4,-4,-4,5}})
--
-- The scores are generated from Biopython 1.88 into bio/matrices_data.lua. Letters are
-- case-sensitive, as in Biopython: BLOSUM62 has "A" but not "a".
-- Runs on Lua 5.1-5.4 and LuaJIT.

local A = require "bio.alphabet"
local M = {}

local byte, sub = string.byte, string.sub

local data -- loaded on first use: the file is ~50 kB

local function load_data()
  data = data or require "bio.matrices_data"
  return data
end

local Matrix = {}
Matrix.__index = Matrix

--- Score of aligning letter `a` against letter `b` (single-character strings).
function Matrix:score(a, b)
  local row = self.by_byte[byte(a)]
  local v = row and row[byte(b)]
  if v == nil then
    local bad = row and b or a
    error("bio.matrices: matrix " .. self.name .. ": letter '" .. tostring(bad)
      .. "' is not in the alphabet '" .. self.alphabet .. "'", 2)
  end
  return v
end

--- True when `letter` (a one-character string) is in the alphabet.
function Matrix:has(letter) return self.by_byte[byte(letter)] ~= nil end

-- Build a matrix from an alphabet string and row-major values.
local function build(name, alphabet, values)
  local n = #alphabet
  if #values ~= n * n then
    A.raise("bio.matrices.new: bad argument #2 'rows': expected " .. (n * n) .. " scores for alphabet '" .. alphabet .. "', got " .. #values, 2)
  end
  local by_byte = {}
  for i = 1, n do
    local row = {}
    for j = 1, n do row[byte(alphabet, j)] = values[(i - 1) * n + j] end
    local b = byte(alphabet, i)
    if by_byte[b] then A.raise("bio.matrices.new: bad argument #1 'alphabet': letter '" .. sub(alphabet, i, i) .. "' appears twice", 2) end
    by_byte[b] = row
  end
  return setmetatable({name = name, alphabet = alphabet, by_byte = by_byte}, Matrix)
end

--- Load a matrix by name (Biopython's names: "BLOSUM62", "PAM250", "NUC.4.4", ...).
function M.load(name)
  if type(name) ~= "string" then error("bio.matrices.load: bad argument #1 'name': expected a string, got " .. type(name), 2) end
  local d = load_data()[name]
  if not d then
    error("bio.matrices.load: bad argument #1 'name': unknown matrix '" .. name .. "' (see matrices.names())", 2)
  end
  return build(name, d.alphabet, d.values)
end

--- A matrix from an alphabet string and either a list of rows or a flat row-major list.
function M.new(alphabet, rows, name)
  if type(alphabet) ~= "string" or #alphabet == 0 then
    error("bio.matrices.new: bad argument #1 'alphabet': expected a non-empty string", 2)
  end
  if type(rows) ~= "table" then error("bio.matrices.new: bad argument #2 'rows': expected a table, got " .. type(rows), 2) end
  local values = rows
  if type(rows[1]) == "table" then
    values = {}
    for i = 1, #rows do
      for j = 1, #rows[i] do values[#values + 1] = rows[i][j] end
    end
  end
  for i = 1, #values do
    if type(values[i]) ~= "number" then error("bio.matrices.new: bad argument #2 'rows': score " .. i .. " is not a number", 2) end
  end
  return build(name or "custom", alphabet, values)
end

--- Sorted list of the available matrix names.
function M.names()
  local names = {}
  for name in pairs(load_data()) do names[#names + 1] = name end
  table.sort(names)
  return names
end

M.Matrix = Matrix

return M
