--- bio.alphabet: IUPAC letters, complement maps, and argument checking.
--
-- The tables here are the IUPAC nucleotide and protein codes as Biopython's
-- Bio.Data.IUPACData defines them (tests/bio/test_alphabet.py compares them).
-- The checking helpers give every bio function the same error format:
--
--   bio.kmer.count: bad argument #2 'k': must be an integer from 1 to 31, got 40
--   bio.motif.find: bad argument #2 'pattern': invalid character 'Q' at position 3
local A = {}

--- Unambiguous and IUPAC-ambiguous letters (upper case).
A.DNA = "ACGT"
A.RNA = "ACGU"
A.IUPAC_DNA = "ACGTRYSWKMBDHVN"
A.IUPAC_RNA = "ACGURYSWKMBDHVN"
--- The 20 standard amino acids, and the IUPAC extended set (B Z J X U O).
A.PROTEIN = "ACDEFGHIKLMNPQRSTVWY"
A.IUPAC_PROTEIN = "ACDEFGHIKLMNPQRSTVWYBZJXUO"

--- Which concrete bases each IUPAC DNA letter stands for (Bio.Data.IUPACData.ambiguous_dna_values).
A.dna_values = {
  A = "A", C = "C", G = "G", T = "T",
  M = "AC", R = "AG", W = "AT", S = "CG", Y = "CT", K = "GT",
  V = "ACG", H = "ACT", D = "AGT", B = "CGT", X = "GATC", N = "GATC",
}

--- Complement of each IUPAC DNA letter (Biopython's ambiguous_dna_complement, plus U -> A).
A.dna_complement = {
  A = "T", C = "G", G = "C", T = "A", U = "A",
  M = "K", R = "Y", W = "W", S = "S", Y = "R", K = "M",
  V = "B", H = "D", D = "H", B = "V", X = "X", N = "N",
}
--- Complement of each IUPAC RNA letter (Biopython's ambiguous_rna_complement, plus T -> A).
A.rna_complement = {
  A = "U", C = "G", G = "C", U = "A", T = "A",
  M = "K", R = "Y", W = "W", S = "S", Y = "R", K = "M",
  V = "B", H = "D", D = "H", B = "V", X = "X", N = "N",
}

-- A stack frame of the library itself: a bio/*.lua file, a chunk it
-- compiled ("=bio...."), or a 5.1 "(tail call)" marker.
local function in_library(source)
  return source:find("[/\\]bio[/\\][%w_]+%.lua$") ~= nil or source:find("^@bio[/\\][%w_]+%.lua$") ~= nil
    or source:find("^=bio[%._]") ~= nil or source == "=(tail call)"
end
local dbg = rawget(_G, "debug")
local getinfo = type(dbg) == "table" and type(dbg.getinfo) == "function" and dbg.getinfo or nil

--- Raise `msg` at the first stack frame outside the library, so an error
-- names the user's line however deep the check that found it sits (tail
-- calls and helpers included).  A C function there (pcall) gives no
-- position, as error() does.  Without the debug library (a sandbox),
-- `level` (as error() counts it from the caller of raise) is used; a
-- negative level raises without a position.
function A.raise(msg, level)
  level = level or 1
  if level < 0 then error(msg, 0) end
  if getinfo then
    for l = 3, 200 do -- 1: raise, 2: the library function that called it
      local info = getinfo(l, "S")
      if not info then break end
      if not in_library(info.source or "") then error(msg, l) end
    end
  end
  error(msg, level + 1)
end

--- Raise "<fname>: bad argument #<pos> '<name>': <msg>" at the user's line
-- (A.raise; `level` as error() counts it: 2, the caller's caller, is what a
-- check in a public function means, and the fallback without debug).
function A.arg_error(fname, pos, name, msg, level)
  level = level or 2
  A.raise(string.format("%s: bad argument #%d '%s': %s", fname, pos, name, msg), level < 0 and level or level + 1)
end

-- The check_* helpers raise at level 3: the caller of the bio function that
-- called them, so the error points at the user's line.

--- Require `value` to be a string; returns it.
function A.check_string(value, fname, pos, name)
  if type(value) ~= "string" then
    A.arg_error(fname, pos, name, "expected a string, got " .. type(value), 3)
  end
  return value
end

--- Require an integer in [lo, hi]; returns it.
function A.check_int(value, fname, pos, name, lo, hi)
  if type(value) ~= "number" or value ~= value or math.floor(value) ~= value or value < lo or value > hi then
    A.arg_error(fname, pos, name, string.format("must be an integer from %d to %s, got %s",
      lo, hi == math.huge and "infinity" or tostring(hi), tostring(value)), 3)
  end
  return value
end

--- Require `opts` to be nil or a table whose keys are all in `allowed` (a
-- list of names), so a misspelt option fails instead of being ignored.
-- Returns opts (or an empty table).
function A.check_options(opts, allowed, fname, pos)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    A.arg_error(fname, pos, "opts", "expected a table of options, got " .. type(opts), 3)
  end
  for k in pairs(opts) do
    local ok = false
    for _, name in ipairs(allowed) do if k == name then ok = true; break end end
    if not ok then
      A.arg_error(fname, pos, "opts", string.format("unknown option '%s' (known: %s)", tostring(k), table.concat(allowed, ", ")), 3)
    end
  end
  return opts
end

--- Describe a byte for error messages: printable as is, others as \ddd.
function A.show_char(c)
  local b = c:byte()
  if b and b >= 32 and b < 127 then return c end
  return string.format("\\%d", b or 0)
end

--- Check that every character of `s` is one of `letters` (case-insensitive
-- when `ignore_case`), raising an error that names the argument, the
-- 1-based position and the character. Returns `s`.
function A.check_letters(s, letters, fname, pos, name, ignore_case)
  A.check_string(s, fname, pos, name)
  local class = letters:gsub("%W", "%%%0")
  if ignore_case then class = class .. class:lower() end
  local at = s:find("[^" .. class .. "]")
  if at then
    A.arg_error(fname, pos, name, string.format("invalid character '%s' at position %d (allowed: %s)",
      A.show_char(s:sub(at, at)), at, letters), 3)
  end
  return s
end

--- True when every character of `s` is an IUPAC DNA letter (either case), else
-- false, the 1-based position and the offending character.
function A.is_iupac_dna(s)
  local at = s:find("[^ACGTRYSWKMBDHVNacgtryswkmbdhvn]")
  if at then return false, at, s:sub(at, at) end
  return true
end

return A
