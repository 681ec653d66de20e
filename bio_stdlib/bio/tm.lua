--- Melting temperature of oligonucleotides, as Biopython's Bio.SeqUtils.MeltingTemp (1.88).
--
--   local tm = require "bio.tm"
--   tm.Tm_Wallace("ACGTTGCAATGCCGTA")                 --> 48
--   tm.Tm_GC("CTGCTGATXGCACGAGGTTATGG", {valueset = 2}) --> 69.20...
--   tm.Tm_NN("CGTTCCAAAGATGTGGGCATGAGCTTAC")          --> 60.32...
--   tm.Tm_NN(seq, {nn_table = "RNA_NN2", Na = 100, saltcorr = 7, Mg = 1.5})
--
-- Every function takes the sequence and an optional table of options whose names and
-- defaults are Biopython's keyword arguments, and computes with the same formulas in
-- the same order, so results agree with Biopython to the last bit or two.
-- The thermodynamic tables are generated from Biopython into bio/tm_data.lua.
-- Unknown option names raise an error (a misspelt `na=` would otherwise be ignored).
-- Runs on Lua 5.1-5.4 and LuaJIT.

local A = require "bio.alphabet"
local data = require "bio.tm_data"

local M = {}

local floor, sqrt, log = math.floor, math.sqrt, math.log
-- Lua 5.3+ dropped math.log10; its math.log(x, 10) calls C log10 itself, so results agree.
local log10 = math.log10 or function(x) return log(x, 10) end
local char, sub, gsub, upper, rep, reverse =
  string.char, string.sub, string.gsub, string.upper, string.rep, string.reverse

-- The tables, by name: tm.DNA_NN3 etc. (copies are made by make_table, never mutate these).
for name, t in pairs(data.tables) do M[name] = t end
M.table_names = {"DNA_NN1", "DNA_NN2", "DNA_NN3", "DNA_NN4", "RNA_NN1", "RNA_NN2", "RNA_NN3",
                 "R_DNA_NN1", "DNA_IMM1", "DNA_TMM1", "DNA_DE1", "RNA_DE1"}

---------------------------------------------------------------------------------------------
-- helpers

-- Errors read "bio.tm.Tm_NN: bad argument #1 'seq': ..." (as the rest of bio.*).
local function fail(fn, msg) A.raise("bio.tm." .. fn .. ": " .. msg, 2) end -- at the user's line

-- Check an options table against the allowed names and fill in defaults.
local function options(fn, opts, defaults, pos)
  local arg = "bad argument #" .. (pos or 2) .. " 'opts': "
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then fail(fn, arg .. "expected a table, got " .. type(opts)) end
  local o = {}
  for k, v in pairs(opts) do
    if defaults[k] == nil then fail(fn, arg .. "unknown option '" .. tostring(k) .. "'") end
    if type(defaults[k]) == "number" and type(v) ~= "number" then
      fail(fn, arg .. "option '" .. k .. "' must be a number, got " .. type(v))
    end
    o[k] = v
  end
  for k, v in pairs(defaults) do
    -- A default of `false` stands for "no default" (Python's None).
    if o[k] == nil and v ~= false then o[k] = v end
  end
  return o
end

-- Python's math.log/log10/sqrt raise ValueError outside their domain; so do we.
local function ln(x, fn, what)
  if x <= 0 then fail(fn, "math domain error: log of " .. tostring(x) .. " (" .. what .. ")") end
  return log(x)
end
local function lg10(x, fn, what)
  if x <= 0 then fail(fn, "math domain error: log10 of " .. tostring(x) .. " (" .. what .. ")") end
  return log10(x)
end
local function root(x, fn, what)
  if x < 0 then fail(fn, "math domain error: sqrt of " .. tostring(x) .. " (" .. what .. ")") end
  return sqrt(x)
end

-- Python raises ZeroDivisionError where Lua would give inf or nan; so do we.
local function divide(a, b, fn, what)
  if b == 0 then fail(fn, "division by zero (" .. what .. ")") end
  return a / b
end

-- Number of (plain, non-overlapping) occurrences of the single byte `c` in `s`.
local function count(s, c)
  local n = 0
  local i = 1
  while true do
    i = string.find(s, c, i, true)
    if not i then return n end
    n = n + 1
    i = i + 1
  end
end

-- Python's str.split() whitespace (ASCII part): space, \t \n \v \f \r and \28-\31.
local WHITESPACE = "[ \t\n\v\f\r\28\29\30\31]"

local function check_string(fn, seq, argname)
  if type(seq) ~= "string" then
    fail(fn, "bad argument #" .. (argname == "seq" and 1 or 2) .. " '" .. argname .. "': expected a string, got " .. type(seq))
  end
end

--- Bio.Seq complement of a DNA string (IUPAC aware, case kept, other bytes unchanged).
local COMP = {}
for i = 0, 255 do COMP[char(i)] = char(data.complement[i] or i) end
local function complement(s) return (gsub(s, ".", COMP)) end
M._complement = complement

--- Bio.SeqUtils.gc_fraction(seq, "ignore" | "weighted"), with the same summation order.
local function gc_fraction(seq, mode)
  local n = #seq
  local gc = 0
  for c in string.gmatch("CGScgs", ".") do gc = gc + count(seq, c) end
  if mode == "weighted" then
    local extra = 0
    for c in string.gmatch("BDHKMNRVXY", ".") do
      extra = extra + (count(seq, c) + count(seq, string.lower(c))) * data.gc_values[c]
    end
    gc = gc + extra
  end
  if n == 0 then return 0 end
  return gc / n
end
M._gc_fraction = gc_fraction

--- Biopython's _check: drop whitespace, upper-case, back-transcribe (U->T) and, for
-- Tm_GC and Tm_NN, keep only the letters that method understands.
local KEEP = {Tm_GC = "[^ABCDGHIKMNRSTVWXY]", Tm_NN = "[^ACGTI]"}
local function prepare(seq, method)
  seq = upper((gsub(seq, WHITESPACE, "")))
  seq = gsub(seq, "U", "T")
  if KEEP[method] then seq = gsub(seq, KEEP[method], "") end
  return seq
end
M._check = prepare

---------------------------------------------------------------------------------------------
-- salt and chemical corrections

local SALT_DEFAULTS = {Na = 0, K = 0, Tris = 0, Mg = 0, dNTPs = 0, method = 1, seq = false}

local function salt_correction(fn, o)
  local Na, K, Tris, Mg, dNTPs, method, seq = o.Na, o.K, o.Tris, o.Mg, o.dNTPs, o.method, o.seq
  if (method == 5 or method == 6 or method == 7) and (seq == nil or seq == "") then
    fail(fn, "sequence is missing (is needed to calculate GC content or sequence length).")
  end
  local corr = 0
  if method == nil or method == 0 or method == false then return corr end
  if type(method) ~= "number" then fail(fn, "option 'method' must be a number 0-7") end
  local Mon = Na + K + Tris / 2.0          -- millimolar
  local mg = Mg * 1e-3                      -- molar
  -- Na equivalent according to von Ahsen et al. (2001); dNTPs bind Mg2+ strongly.
  if (K + Mg + Tris + dNTPs) > 0 and method ~= 7 and dNTPs < Mg then
    Mon = Mon + 120 * root(Mg - dNTPs, fn, "Mg - dNTPs")
  end
  local mon = Mon * 1e-3
  if method >= 1 and method <= 6 and method == floor(method) and mon == 0 then
    fail(fn, "Total ion concentration of zero is not allowed in this method.")
  end
  local what = "monovalent ion concentration"
  if method == 1 then corr = 16.6 * lg10(mon, fn, what) end
  if method == 2 then corr = 16.6 * lg10((mon) / (1.0 + 0.7 * (mon)), fn, what) end
  if method == 3 then corr = 12.5 * lg10(mon, fn, what) end
  if method == 4 then corr = 11.7 * lg10(mon, fn, what) end
  if method == 5 then corr = 0.368 * (#seq - 1) * ln(mon, fn, what) end
  if method == 6 then
    local l = ln(mon, fn, what)
    corr = ((4.29 * gc_fraction(seq, "ignore") - 3.95) * 1e-5 * l) + 9.40e-6 * l ^ 2
  end
  if method == 7 then
    local a, b, c, d = 3.92, -0.911, 6.26, 1.42
    local e, f, g = -48.2, 52.5, 8.31
    if dNTPs > 0 then
      local dntps = dNTPs * 1e-3
      local ka = 3e4 -- dissociation constant for Mg:dNTP; free Mg2+ follows
      mg = (-(ka * dntps - ka * mg + 1.0)
            + root((ka * dntps - ka * mg + 1.0) ^ 2 + 4.0 * ka * mg, fn, "free Mg2+"))
           / (2.0 * ka)
    end
    if Mon > 0 then
      local R = root(mg, fn, "Mg2+") / mon
      local lmon = ln(mon, fn, what)
      if R < 0.22 then
        return (4.29 * gc_fraction(seq, "ignore") - 3.95) * 1e-5 * lmon + 9.40e-6 * lmon ^ 2
      elseif R < 6.0 then
        a = 3.92 * (0.843 - 0.352 * sqrt(mon) * lmon)
        d = 1.42 * (1.279 - 4.03e-3 * lmon - 8.03e-3 * lmon ^ 2)
        g = 8.31 * (0.486 - 0.258 * lmon + 5.25e-3 * lmon ^ 3)
      end
    end
    if #seq - 1 == 0 then fail(fn, "division by zero: method 7 needs a sequence of 2 or more bases") end
    local lmg = ln(mg, fn, "free Mg2+ concentration")
    corr = (a + b * lmg + (gc_fraction(seq, "ignore"))
            * (c + d * lmg) + (1 / (2.0 * (#seq - 1)))
            * (e + f * lmg + g * lmg ^ 2)) * 1e-5
  end
  if method > 7 then fail(fn, "Allowed values for parameter 'method' are 1-7.") end
  return corr
end

--- A term that corrects Tm (methods 1-4), delta S (method 5) or 1/Tm (methods 6, 7) for salt.
-- opts: Na, K, Tris, Mg, dNTPs (mM), method (default 1), seq (needed by 5-7).
function M.salt_correction(opts)
  local o = options("salt_correction", opts, SALT_DEFAULTS, 1)
  if o.seq ~= nil then check_string("salt_correction", o.seq, "seq") end
  return salt_correction("salt_correction", o)
end

--- Correct a Tm for DMSO and formamide (rough approximations, as Biopython).
-- opts: DMSO (%), fmd (% for fmdmethod 1, molar for 2), DMSOfactor=0.75, fmdfactor=0.65,
-- fmdmethod=1, GC (percent, needed by fmdmethod 2).
function M.chem_correction(melting_temp, opts)
  local fn = "chem_correction"
  if type(melting_temp) ~= "number" then fail(fn, "bad argument #1 'melting_temp': expected a number, got " .. type(melting_temp)) end
  local o = options(fn, opts, {DMSO = 0, fmd = 0, DMSOfactor = 0.75, fmdfactor = 0.65,
                               fmdmethod = 1, GC = false})
  if o.DMSO ~= 0 then melting_temp = melting_temp - o.DMSOfactor * o.DMSO end
  if o.fmd ~= 0 then
    if o.fmdmethod == 1 then melting_temp = melting_temp - o.fmdfactor * o.fmd end
    if o.fmdmethod == 2 then
      if o.GC == nil or o.GC < 0 then fail(fn, "'GC' is missing or negative") end
      melting_temp = melting_temp + (0.453 * (o.GC / 100.0) - 2.88) * o.fmd
    end
    if o.fmdmethod ~= 1 and o.fmdmethod ~= 2 then fail(fn, "'fmdmethod' must be 1 or 2") end
  end
  return melting_temp
end

---------------------------------------------------------------------------------------------
-- Wallace rule

--- Tm = 4 degC * (G + C) + 2 degC * (A + T); ambiguous bases count as averages when
-- strict=false and raise when strict=true (the default). opts: check=true, strict=true.
function M.Tm_Wallace(seq, opts)
  local fn = "Tm_Wallace"
  check_string(fn, seq, "seq")
  local o = options(fn, opts, {check = true, strict = true})
  if o.check then seq = prepare(seq, "Tm_Wallace") end
  local function sum(letters)
    local n = 0
    for c in string.gmatch(letters, ".") do n = n + count(seq, c) end
    return n
  end
  local melting_temp = 2 * sum("ATW") + 4 * sum("CGS")
  local tmp = 3 * sum("KMNRY") + 10 / 3.0 * sum("BV") + 8 / 3.0 * sum("DH")
  if o.strict and tmp ~= 0 then
    local pos = string.find(seq, "[KMNRYBVDH]")
    fail(fn, "bad argument #1 'seq': ambiguous base '" .. sub(seq, pos, pos) .. "' at position " .. pos
      .. " (of the checked sequence): ambiguous bases B, D, H, K, M, N, R, V, Y not allowed when strict=true")
  end
  return melting_temp + tmp
end

---------------------------------------------------------------------------------------------
-- GC-content formulas

local VALUESETS = {
  [1] = {69.3, 0.41, 650, 1, 0}, [2] = {81.5, 0.41, 675, 1, 0},
  [3] = {81.5, 0.41, 675, 1, 1}, [4] = {81.5, 0.41, 500, 1, 2},
  [5] = {78.0, 0.7, 500, 1, 2},  [6] = {67.0, 0.8, 500, 1, 2},
  [7] = {81.5, 0.41, 600, 1, 1}, [8] = {77.1, 0.41, 528, 1, 4},
}

--- Tm = A + B(%GC) - C/N + salt correction - D(%mismatch). 'X' marks a mismatch.
-- opts: check=true, strict=true, valueset=7 (1-8), userset={A,B,C,D}, Na=50, K, Tris, Mg,
-- dNTPs, saltcorr=0 (a valueset sets its own), mismatch=true.
function M.Tm_GC(seq, opts)
  local fn = "Tm_GC"
  check_string(fn, seq, "seq")
  local o = options(fn, opts, {check = true, strict = true, valueset = 7, userset = false,
                               Na = 50, K = 0, Tris = 0, Mg = 0, dNTPs = 0, saltcorr = 0,
                               mismatch = true})
  local saltcorr = o.saltcorr or 0
  if saltcorr == 5 then fail(fn, "salt-correction method 5 not applicable to Tm_GC") end
  if o.check then seq = prepare(seq, "Tm_GC") end
  if o.strict then
    local pos = string.find(seq, "[KMNRYBVDH]")
    if pos then
      fail(fn, "bad argument #1 'seq': ambiguous base '" .. sub(seq, pos, pos) .. "' at position " .. pos
        .. " (of the checked sequence): ambiguous bases B, D, H, K, M, N, R, V, Y not allowed when strict=true")
    end
  end
  local n = #seq
  local percent_gc = gc_fraction(seq, "weighted") * 100
  if o.mismatch then
    if n == 0 then fail(fn, "bad argument #1 'seq': no bases (after removing whitespace and other characters)") end
    percent_gc = percent_gc - count(seq, "X") * 50.0 / n
  end
  local A, B, C, D
  if o.userset and #o.userset > 0 then
    if #o.userset ~= 4 then fail(fn, "bad argument #2 'opts': option 'userset' must hold four numbers {A, B, C, D}") end
    A, B, C, D = o.userset[1], o.userset[2], o.userset[3], o.userset[4]
  else
    local v = VALUESETS[o.valueset]
    if v then
      A, B, C, D, saltcorr = v[1], v[2], v[3], v[4], v[5]
    end
  end
  if type(o.valueset) ~= "number" or o.valueset > 8 then
    fail(fn, "allowed values for parameter 'valueset' are 0-8.")
  end
  if A == nil then fail(fn, "bad argument #2 'opts': option 'valueset' must be 1-8 (or give 'userset')") end
  if n == 0 then fail(fn, "bad argument #1 'seq': no bases (after removing whitespace and other characters)") end
  local melting_temp = A + B * percent_gc - C / n
  if saltcorr ~= 0 then
    melting_temp = melting_temp + salt_correction(fn, {Na = o.Na, K = o.K, Tris = o.Tris,
      Mg = o.Mg, dNTPs = o.dNTPs, seq = seq, method = saltcorr})
  end
  if o.mismatch then melting_temp = melting_temp - D * (count(seq, "X") * 100.0 / n) end
  return melting_temp
end

---------------------------------------------------------------------------------------------
-- nearest-neighbour thermodynamics

local function resolve_table(fn, t, name, default)
  if t == nil or t == false then return data.tables[default] end
  local where = "bad argument #2 'opts': option '" .. name .. "'"
  if name == "oldtable" then where = "bad argument #1 'oldtable'" end
  if type(t) == "string" then
    local found = data.tables[t]
    if not found then fail(fn, where .. ": unknown table '" .. t .. "'") end
    return found
  end
  if type(t) ~= "table" then fail(fn, where .. ": expected a table name or a table") end
  return t
end

--- A new thermodynamic table: a copy of `oldtable` (a table or a name; default: all the
-- initiation and Watson-Crick keys set to {0, 0}) updated with `values`.
function M.make_table(oldtable, values)
  local t = {}
  if oldtable == nil then
    for _, k in ipairs({"init", "init_A/T", "init_G/C", "init_oneG/C", "init_allA/T", "init_5T/A",
                        "sym", "AA/TT", "AT/TA", "TA/AT", "CA/GT", "GT/CA", "CT/GA", "GA/CT",
                        "CG/GC", "GC/CG", "GG/CC"}) do
      t[k] = {0, 0}
    end
  else
    for k, v in pairs(resolve_table("make_table", oldtable, "oldtable")) do t[k] = v end
  end
  if values then
    for k, v in pairs(values) do
      if type(v) ~= "table" or type(v[1]) ~= "number" or type(v[2]) ~= "number" then
        fail("make_table", "bad argument #2 'values': values['" .. tostring(k) .. "'] must be {delta_H, delta_S}")
      end
      t[k] = v
    end
  end
  return t
end

local NN_DEFAULTS = {check = true, strict = true, c_seq = false, shift = 0, nn_table = false,
                     tmm_table = false, imm_table = false, de_table = false, dnac1 = 25,
                     dnac2 = 25, selfcomp = false, Na = 50, K = 0, Tris = 0, Mg = 0, dNTPs = 0,
                     saltcorr = 5}

--- Tm by nearest-neighbour thermodynamics (Biopython's Tm_NN).
-- opts: check, strict, c_seq (template 3'->5'), shift, nn_table (default "DNA_NN3"),
-- tmm_table ("DNA_TMM1"), imm_table ("DNA_IMM1"), de_table ("DNA_DE1"), dnac1=25, dnac2=25
-- (nM), selfcomp=false, Na=50, K, Tris, Mg, dNTPs (mM), saltcorr=5 (0 = none).
-- Returns Tm (degC) and, with strict=false, a list of warnings for neighbours without data
-- (nil when there were none).
function M.Tm_NN(seq, opts)
  local fn = "Tm_NN"
  check_string(fn, seq, "seq")
  local o = options(fn, opts, NN_DEFAULTS)
  local nn_table = resolve_table(fn, o.nn_table, "nn_table", "DNA_NN3")
  local tmm_table = resolve_table(fn, o.tmm_table, "tmm_table", "DNA_TMM1")
  local imm_table = resolve_table(fn, o.imm_table, "imm_table", "DNA_IMM1")
  local de_table = resolve_table(fn, o.de_table, "de_table", "DNA_DE1")
  local c_seq = o.c_seq
  if c_seq == nil or c_seq == "" then
    -- Without a template, take the perfect complement.
    c_seq = complement(seq)
  end
  check_string(fn, c_seq, "c_seq")
  if o.check then
    seq = prepare(seq, "Tm_NN")
    c_seq = prepare(c_seq, "Tm_NN")
  end
  if #seq == 0 then fail(fn, "bad argument #1 'seq': no bases (after removing whitespace and other characters)") end
  local shift = o.shift
  if type(shift) ~= "number" or shift ~= floor(shift) then
    fail(fn, "bad argument #2 'opts': option 'shift' must be an integer")
  end
  local warnings
  local function key_error(neighbors)
    if o.strict then
      fail(fn, "no thermodynamic data for neighbors '" .. neighbors .. "' available")
    end
    warnings = warnings or {}
    warnings[#warnings + 1] = "no thermodynamic data for neighbors '" .. neighbors
      .. "' available. Calculation will be wrong"
  end
  local function param(t, key, what)
    local v = t[key]
    if v == nil then fail(fn, what .. " has no entry '" .. key .. "'") end
    return v
  end

  local tmp_seq, tmp_cseq = seq, c_seq
  local delta_h, delta_s = 0, 0
  -- Dangling ends?
  if shift ~= 0 or #seq ~= #c_seq then
    -- Align both sequences using the shift parameter.
    if shift > 0 then tmp_seq = rep(".", shift) .. seq end
    if shift < 0 then tmp_cseq = rep(".", -shift) .. c_seq end
    if #tmp_cseq > #tmp_seq then tmp_seq = tmp_seq .. rep(".", #tmp_cseq - #tmp_seq) end
    if #tmp_cseq < #tmp_seq then tmp_cseq = tmp_cseq .. rep(".", #tmp_seq - #tmp_cseq) end
    -- Remove 'over-dangling' ends.
    while sub(tmp_seq, 1, 2) == ".." or sub(tmp_cseq, 1, 2) == ".." do
      tmp_seq, tmp_cseq = sub(tmp_seq, 2), sub(tmp_cseq, 2)
    end
    while sub(tmp_seq, -2) == ".." or sub(tmp_cseq, -2) == ".." do
      tmp_seq, tmp_cseq = sub(tmp_seq, 1, -2), sub(tmp_cseq, 1, -2)
    end
    if sub(tmp_seq, 1, 1) == "." or sub(tmp_cseq, 1, 1) == "." then
      local left_de = sub(tmp_seq, 1, 2) .. "/" .. sub(tmp_cseq, 1, 2)
      local v = de_table[left_de]
      if v then
        delta_h, delta_s = delta_h + v[1], delta_s + v[2]
      else
        key_error(left_de)
      end
      tmp_seq, tmp_cseq = sub(tmp_seq, 2), sub(tmp_cseq, 2)
    end
    if sub(tmp_seq, -1) == "." or sub(tmp_cseq, -1) == "." then
      local right_de = reverse(sub(tmp_cseq, -2)) .. "/" .. reverse(sub(tmp_seq, -2))
      local v = de_table[right_de]
      if v then
        delta_h, delta_s = delta_h + v[1], delta_s + v[2]
      else
        key_error(right_de)
      end
      tmp_seq, tmp_cseq = sub(tmp_seq, 1, -2), sub(tmp_cseq, 1, -2)
    end
  end
  -- Terminal mismatches.
  local left_tmm = reverse(sub(tmp_cseq, 1, 2)) .. "/" .. reverse(sub(tmp_seq, 1, 2))
  local v = tmm_table[left_tmm]
  if v then
    delta_h, delta_s = delta_h + v[1], delta_s + v[2]
    tmp_seq, tmp_cseq = sub(tmp_seq, 2), sub(tmp_cseq, 2)
  end
  local right_tmm = sub(tmp_seq, -2) .. "/" .. sub(tmp_cseq, -2)
  v = tmm_table[right_tmm]
  if v then
    delta_h, delta_s = delta_h + v[1], delta_s + v[2]
    tmp_seq, tmp_cseq = sub(tmp_seq, 1, -2), sub(tmp_cseq, 1, -2)
  end
  -- Initiation.
  v = param(nn_table, "init", "nn_table")
  delta_h, delta_s = delta_h + v[1], delta_s + v[2]
  if gc_fraction(seq, "ignore") == 0 then
    v = param(nn_table, "init_allA/T", "nn_table")
  else
    v = param(nn_table, "init_oneG/C", "nn_table")
  end
  delta_h, delta_s = delta_h + v[1], delta_s + v[2]
  if sub(seq, 1, 1) == "T" then
    v = param(nn_table, "init_5T/A", "nn_table")
    delta_h, delta_s = delta_h + v[1], delta_s + v[2]
  end
  if sub(seq, -1) == "A" then
    v = param(nn_table, "init_5T/A", "nn_table")
    delta_h, delta_s = delta_h + v[1], delta_s + v[2]
  end
  local ends = sub(seq, 1, 1) .. sub(seq, -1)
  local AT = count(ends, "A") + count(ends, "T")
  local GC = count(ends, "G") + count(ends, "C")
  v = param(nn_table, "init_A/T", "nn_table")
  delta_h, delta_s = delta_h + v[1] * AT, delta_s + v[2] * AT
  v = param(nn_table, "init_G/C", "nn_table")
  delta_h, delta_s = delta_h + v[1] * GC, delta_s + v[2] * GC
  -- The 'zipping': one nearest-neighbour pair at a time.
  for i = 1, #tmp_seq - 1 do
    local neighbors = sub(tmp_seq, i, i + 1) .. "/" .. sub(tmp_cseq, i, i + 1)
    local backwards = reverse(neighbors)
    v = imm_table[neighbors] or imm_table[backwards] or nn_table[neighbors] or nn_table[backwards]
    if v then
      delta_h, delta_s = delta_h + v[1], delta_s + v[2]
    else
      key_error(neighbors)
    end
  end
  local k = (o.dnac1 - (o.dnac2 / 2.0)) * 1e-9
  if o.selfcomp then
    k = o.dnac1 * 1e-9
    v = param(nn_table, "sym", "nn_table")
    delta_h, delta_s = delta_h + v[1], delta_s + v[2]
  end
  local R = 1.987 -- universal gas constant in cal/(K mol)
  local saltcorr = o.saltcorr or 0
  local corr
  if saltcorr ~= 0 then
    corr = salt_correction(fn, {Na = o.Na, K = o.K, Tris = o.Tris, Mg = o.Mg, dNTPs = o.dNTPs,
                                method = saltcorr, seq = seq})
  end
  if saltcorr == 5 then delta_s = delta_s + corr end
  local melting_temp = divide(1000 * delta_h, delta_s + (R * (ln(k, fn, "dnac1 - dnac2/2"))),
                              fn, "delta S + R ln(k) is zero") - 273.15
  if saltcorr == 1 or saltcorr == 2 or saltcorr == 3 or saltcorr == 4 then
    melting_temp = melting_temp + corr
  end
  if saltcorr == 6 or saltcorr == 7 then
    local what = "salt-corrected 1/Tm"
    melting_temp = divide(1, divide(1, melting_temp + 273.15, fn, what) + corr, fn, what) - 273.15
  end
  if warnings then return melting_temp, warnings end
  return melting_temp
end

-- Lower-case aliases for Lua style.
M.wallace, M.gc, M.nn = M.Tm_Wallace, M.Tm_GC, M.Tm_NN

return M
