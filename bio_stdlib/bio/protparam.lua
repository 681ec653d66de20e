--- Protein analysis, as Biopython 1.88's Bio.SeqUtils.ProtParam (ProteinAnalysis), plus
-- Bio.SeqUtils.seq1 / seq3.
--
--   local pp = require "bio.protparam"
--   local r = pp.analyze("MAEGEITTFTALTEKFNLPPGNYKKPKLLYCSNGGHFLRILPDGTVDGT")
--   r.isoelectric_point, r.gravy, r.secondary_structure_fraction.helix, r.charge_at_pH(7)
--   pp.gravy("ACDK", "Eisenberg"); pp.protein_scale("ACDKLMNP", "KyteDoolitle", 5, 0.4)
--
-- Every measure follows Biopython's arithmetic step by step (same order of additions, same
-- divisions), so results agree to the last bit or nearly (10^x comes from the C library).
-- The protein is upper-cased; `length` counts every byte, non-standard letters included.
-- Where Biopython raises (an 'X' in gravy, an empty protein in aromaticity, ...), the function
-- here raises too, naming the letter and its 1-based position, at the caller's line.
-- Data: bio/protparam_data.lua, generated from Biopython by tests/bio/gen_protparam_data.py.
-- Runs on Lua 5.1-5.4 and LuaJIT.

local data = require "bio.protparam_data"
local weight = require "bio.weight"
local alphabet = require "bio.alphabet"

local M = {}

local byte, sub, upper, floor = string.byte, string.sub, string.upper, math.floor
local format, concat = string.format, table.concat

M.DEFAULT_SCALE = "KyteDoolitle"   -- Biopython's spelling
M.gravy_scales = data.gravy_scales  -- name -> {letter = value}
M.scales = data.scales              -- Flex, HoppWoods, Emini, Janin

--- Sorted names of the GRAVY scales (what `gravy` accepts).
function M.scale_names()
  local names = {}
  for name in pairs(data.gravy_scales) do names[#names + 1] = name end
  table.sort(names)
  return names
end

-- Letter tables re-keyed by byte, built once per table: the per-residue loops index by byte.
local by_byte_cache = setmetatable({}, {__mode = "k"})
local function by_byte(t)
  local b = by_byte_cache[t]
  if not b then
    b = {}
    for letter, v in pairs(t) do
      if type(letter) == "string" and #letter == 1 then b[byte(letter)] = v end
    end
    by_byte_cache[t] = b
  end
  return b
end

local STD = data.protein_letters
local DIWV = {}
for a, row in pairs(data.DIWV) do DIWV[byte(a)] = by_byte(row) end
local FLEX = by_byte(data.scales.Flex)
-- Flexibility window (Vihinen 1994) as Biopython codes it: 9 residues, these edge weights.
local FLEX_WEIGHTS = {0.25, 0.4375, 0.625, 0.8125}

-- "bio.protparam.gravy: 'X' at position 4 has no value in scale 'KyteDoolitle'"
local function no_value(fname, s, i, what)
  return "bio.protparam." .. fname .. ": '" .. alphabet.show_char(sub(s, i, i)) .. "' at position " .. i .. " has no " .. what
end

local function empty_error(fname, what)
  return "bio.protparam." .. fname .. ": empty protein (" .. what .. ")"
end

-- The measures.  Each takes the upper-cased protein and its counts and returns the value, or
-- nil and an error message where Biopython raises; the public wrappers and `analyze` decide
-- where the error is raised.
local compute = {}

--- Counts of the 20 standard letters (Biopython counts no others).  One pass over the bytes
-- (faster than 20 gsub passes on every runtime).
local function count(s)
  local n = {}
  for b = 0, 255 do n[b] = 0 end
  for i = 1, #s do
    local b = byte(s, i)
    n[b] = n[b] + 1
  end
  local counts = {}
  for i = 1, #STD do counts[sub(STD, i, i)] = n[byte(STD, i)] end
  return counts
end

function compute.amino_acids_percent(s, counts)
  local n = #s
  if n == 0 then return nil, empty_error("amino_acids_percent", "percentages of 0 residues") end
  local pct = {}
  for letter, c in pairs(counts) do pct[letter] = c * 100 / n end
  return pct
end

-- Sum of count*100/length/100 over `letters`, in that order, as Biopython adds them.
local function fraction_of(s, counts, letters, fname)
  local pct = compute.amino_acids_percent(s, counts)
  if not pct then return nil, empty_error(fname, "fractions of 0 residues") end
  local total = 0
  for i = 1, #letters do total = total + pct[sub(letters, i, i)] / 100 end
  return total
end

function compute.aromaticity(s, counts)
  return fraction_of(s, counts, "YWF", "aromaticity")
end

--- {helix, turn, sheet} (also as named keys); letter sets of Biopython >= 1.82.
function compute.secondary_structure_fraction(s, counts)
  local helix, err = fraction_of(s, counts, "EMALK", "secondary_structure_fraction")
  if not helix then return nil, err end
  local turn = fraction_of(s, counts, "NPGSD", "secondary_structure_fraction")
  local sheet = fraction_of(s, counts, "VIYFWLT", "secondary_structure_fraction")
  return {helix, turn, sheet, helix = helix, turn = turn, sheet = sheet}
end

--- {reduced, oxidized} (also as named keys): W*5500 + Y*1490, plus 125 per cystine.
function compute.molar_extinction_coefficient(_, counts)
  local reduced = counts.W * 5500 + counts.Y * 1490
  local oxidized = reduced + floor(counts.C / 2) * 125
  return {reduced, oxidized, reduced = reduced, oxidized = oxidized}
end

function compute.molecular_weight(s, _, monoisotopic)
  local ok, v = pcall(weight.molecular_weight, s, {seq_type = "protein", monoisotopic = monoisotopic})
  if ok then return v end
  -- bio.weight names the character and position; say it in Biopython's words.
  local c, pos = tostring(v):match("invalid character (.-) at position (%d+)")
  if not c then return nil, "bio.protparam.molecular_weight: " .. tostring(v) end
  return nil, "bio.protparam.molecular_weight: " .. c .. " is not a valid unambiguous letter for protein (position " .. pos .. ")"
end

local DIWV_WHAT = "dipeptide instability weight (only the 20 standard amino acids have)"

--- Guruprasad 1990: (10 / L) * sum of DIWV[a_i][a_i+1].
function compute.instability_index(s)
  local n = #s
  local score = 0.0
  for i = 1, n - 1 do
    local row = DIWV[byte(s, i)]
    if not row then return nil, no_value("instability_index", s, i, DIWV_WHAT) end
    local v = row[byte(s, i + 1)]
    if not v then return nil, no_value("instability_index", s, i + 1, DIWV_WHAT) end
    score = score + v
  end
  if n == 0 then return nil, empty_error("instability_index", "division by its length 0") end
  return (10.0 / n) * score
end

--- Vihinen 1994, Biopython's way: L - 9 windows of 9, the "middle" residue is the 6th of the
-- window (and it is also the last "back" residue), the 5th residue is never used.
function compute.flexibility(s)
  local values = {}  -- Flex value of every residue (nil where there is none), looked up once
  for i = 1, #s do values[i] = FLEX[byte(s, i)] end
  local scores = {}
  for i = 0, #s - 10 do
    local score = 0.0
    for j = 0, 3 do
      -- Biopython looks up front, then back: the first one missing is the one it names.
      local front, back = i + j + 1, i + 9 - j
      local f, b = values[front], values[back]
      if not f then return nil, no_value("flexibility", s, front, "flexibility value") end
      if not b then return nil, no_value("flexibility", s, back, "flexibility value") end
      score = score + (f + b) * FLEX_WEIGHTS[j + 1]
    end
    score = score + values[i + 6]
    scores[#scores + 1] = score / 5.25
  end
  return scores
end

--- Mean of a GRAVY scale over the residues (Kyte & Doolittle by default).
function compute.gravy(s, _, scale)
  scale = scale or M.DEFAULT_SCALE
  local t = data.gravy_scales[scale]
  if not t then
    return nil, "bio.protparam.gravy: bad argument #2 'scale': scale '" .. tostring(scale)
      .. "' not known (known: " .. concat(M.scale_names(), ", ") .. ")"
  end
  local values = by_byte(t)
  local total = 0
  for i = 1, #s do
    local v = values[byte(s, i)]
    if not v then return nil, no_value("gravy", s, i, "value in scale '" .. scale .. "'") end
    total = total + v
  end
  if #s == 0 then return nil, empty_error("gravy", "mean over 0 residues") end
  return total / #s
end

--- The charged groups of a protein: {content, pK} lists for positive and negative groups, in
-- Biopython's order, with the terminal pK values chosen by the terminal residues.
local function charged_groups(s, counts, fname)
  if #s == 0 then return nil, empty_error(fname, "no terminal residues") end
  local function groups(pks, term, term_pks, term_letter)
    local out = {}
    for k, e in ipairs(pks) do
      local name, pK = e[1], e[2]
      if name == term then
        out[k] = {1.0, term_pks[term_letter] or pK}
      else
        out[k] = {counts[name], pK}
      end
    end
    return out
  end
  return {groups(data.positive_pKs, "Nterm", data.pKnterminal, sub(s, 1, 1)),
          groups(data.negative_pKs, "Cterm", data.pKcterminal, sub(s, -1))}
end

-- Henderson-Hasselbalch, summed in Biopython's order.
local function charge(groups, pH)
  local positive = 0.0
  for _, g in ipairs(groups[1]) do positive = positive + g[1] * (1.0 / (10 ^ (pH - g[2]) + 1.0)) end
  local negative = 0.0
  for _, g in ipairs(groups[2]) do negative = negative + g[1] * (1.0 / (10 ^ (g[2] - pH) + 1.0)) end
  return positive - negative
end

local function check_pH(pH)
  if type(pH) ~= "number" then
    return "bio.protparam.charge_at_pH: bad argument #2 'pH': expected a number, got " .. type(pH)
  end
end

function compute.charge_at_pH(s, counts, pH)
  local err = check_pH(pH)
  if err then return nil, err end
  local groups, gerr = charged_groups(s, counts, "charge_at_pH")
  if not groups then return nil, gerr end
  return charge(groups, pH)
end

--- Biopython's bisection: from pH 7.775 on [4.05, 12] until the interval is <= 0.0001.
function compute.isoelectric_point(s, counts)
  local groups, err = charged_groups(s, counts, "isoelectric_point")
  if not groups then return nil, err end
  local pH, lo, hi = 7.775, 4.05, 12
  while hi - lo > 0.0001 do
    if charge(groups, pH) > 0.0 then lo = pH else hi = pH end
    pH = (lo + hi) / 2
  end
  return pH
end

local function need_protein(p, fname)
  if type(p) ~= "string" then
    alphabet.arg_error(fname, 1, "protein", "expected a string, got " .. type(p), 3)
  end
  return upper(p)
end

--- Public one-measure functions: M.aromaticity(protein), M.gravy(protein [, scale]),
-- M.charge_at_pH(protein, pH), M.molecular_weight(protein [, opts]), ...
for _, name in ipairs({"amino_acids_percent", "aromaticity", "secondary_structure_fraction",
                       "molar_extinction_coefficient", "instability_index", "flexibility",
                       "gravy", "charge_at_pH", "isoelectric_point"}) do
  local f = compute[name]
  local fname = "bio.protparam." .. name
  M[name] = function(p, arg)
    local s = need_protein(p, fname)
    local v, err = f(s, count(s), arg)
    if err then error(err, 2) end
    return v
  end
end

--- Counts of the 20 standard amino acids (other letters are not counted).
function M.count_amino_acids(p)
  return count(need_protein(p, "bio.protparam.count_amino_acids"))
end

--- Molecular weight (bio.weight, seq_type protein); opts.monoisotopic as in Biopython.
function M.molecular_weight(p, opts)
  local s = need_protein(p, "bio.protparam.molecular_weight")
  opts = alphabet.check_options(opts, {"monoisotopic"}, "bio.protparam.molecular_weight", 2)
  local v, err = compute.molecular_weight(s, nil, opts.monoisotopic)
  if err then error(err, 2) end
  return v
end

-- Weights of the window positions from the edge to the centre (Biopython's _weight_list).
local function weight_list(window, edge)
  local unit = 2 * (1.0 - edge) / (window - 1)
  local weights = {}
  for i = 0, floor(window / 2) - 1 do weights[i + 1] = edge + unit * i end
  return weights
end

--- Sliding-window profile of a per-residue scale (Biopython's protein_scale): one score per
-- window of `window` residues, the centre weighted 1 and the ends `edge` (default 1.0),
-- linear in between.  `scale` is a {letter = value} table or the name of a GRAVY scale or of
-- M.scales.  Letters the scale lacks are left out of their window, as in Biopython; the
-- second result lists Biopython's warning for each (empty when none).
function M.protein_scale(p, scale, window, edge)
  local fname = "bio.protparam.protein_scale"
  local s = need_protein(p, fname)
  if type(scale) == "string" then
    local named = data.gravy_scales[scale] or data.scales[scale]
    if not named then alphabet.arg_error(fname, 2, "scale", "scale '" .. scale .. "' not known", 2) end
    scale = named
  elseif type(scale) ~= "table" then
    alphabet.arg_error(fname, 2, "scale", "expected a table or a scale name, got " .. type(scale), 2)
  end
  if type(window) ~= "number" or window ~= floor(window) or window < 2 then
    alphabet.arg_error(fname, 3, "window", "must be an integer of at least 2, got " .. tostring(window), 2)
  end
  edge = edge == nil and 1.0 or edge
  if type(edge) ~= "number" then alphabet.arg_error(fname, 4, "edge", "expected a number, got " .. type(edge), 2) end

  local weights = weight_list(window, edge)
  local sum_of_weights = 0
  for _, w in ipairs(weights) do sum_of_weights = sum_of_weights + w end
  sum_of_weights = sum_of_weights * 2 + 1
  -- Scale value of every residue, looked up once (nil where the scale has no entry).
  local n, values = #s, {}
  for i = 1, n do values[i] = scale[sub(s, i, i)] end
  local half = floor(window / 2)
  local scores, warnings = {}, {}
  for i = 0, n - window do
    local score = 0.0
    for j = 1, half do
      local front, back = values[i + j], values[i + window - j + 1]
      if front ~= nil and back ~= nil then
        score = score + (weights[j] * front + weights[j] * back)
      else
        warnings[#warnings + 1] = format("warning: %s or %s is not a standard amino acid.",
          sub(s, i + j, i + j), sub(s, i + window - j + 1, i + window - j + 1))
      end
    end
    local middle = values[i + half + 1]
    if middle ~= nil then
      score = score + middle
    else
      warnings[#warnings + 1] = format("warning: %s is not a standard amino acid.", sub(s, i + half + 1, i + half + 1))
    end
    scores[#scores + 1] = score / sum_of_weights
  end
  return scores, warnings
end

-- The measures `analyze` computes, each with the option it takes.
local ANALYSIS = {
  {"amino_acids_percent"}, {"molecular_weight", "monoisotopic"}, {"aromaticity"},
  {"instability_index"}, {"isoelectric_point"}, {"gravy", "scale"},
  {"secondary_structure_fraction"}, {"molar_extinction_coefficient"}, {"flexibility"},
}

--- Every measure at once.  All are computed here; a measure Biopython cannot compute for this
-- protein (an 'X' for gravy, an empty protein for aromaticity, ...) is left out of the table,
-- and reading it raises that error at the reader's line.  `charge_at_pH` is a function of pH.
-- opts: monoisotopic (molecular_weight), scale (gravy; default "KyteDoolitle").
function M.analyze(p, opts)
  local fname = "bio.protparam.analyze"
  local s = need_protein(p, fname)
  opts = alphabet.check_options(opts, {"monoisotopic", "scale"}, fname, 2)
  if opts.scale ~= nil and not data.gravy_scales[opts.scale] then
    alphabet.arg_error(fname, 2, "opts", "option 'scale': scale '" .. tostring(opts.scale) .. "' not known (known: "
      .. concat(M.scale_names(), ", ") .. ")", 2)
  end
  local counts = count(s)
  local r = {sequence = s, length = #s, count_amino_acids = counts,
             monoisotopic = opts.monoisotopic and true or false, scale = opts.scale or M.DEFAULT_SCALE}
  local errors = {}
  for _, m in ipairs(ANALYSIS) do
    local v, err = compute[m[1]](s, counts, m[2] and opts[m[2]])
    if err then errors[m[1]] = err else r[m[1]] = v end
  end
  local groups = charged_groups(s, counts, "charge_at_pH")
  -- Works both as r.charge_at_pH(pH) and r:charge_at_pH(pH).
  r.charge_at_pH = function(a, b)
    local pH = a
    if a == r then pH = b end
    local err = check_pH(pH) or (not groups and empty_error("charge_at_pH", "no terminal residues"))
    if err then error(err, 2) end
    return charge(groups, pH)
  end
  return setmetatable(r, {__index = function(_, k)
    local err = errors[k]
    if err then error(err, 2) end
  end})
end

-- seq1 / seq3 arguments: a string and an optional table (errors at the caller's caller).
local function check_code_args(fname, text, custom_map)
  if type(text) ~= "string" then
    alphabet.arg_error(fname, 1, "text", "expected a string, got " .. type(text), 3)
  end
  if custom_map ~= nil and type(custom_map) ~= "table" then
    alphabet.arg_error(fname, 2, "custom_map", "expected a table, got " .. type(custom_map), 3)
  end
end

--- Bio.SeqUtils.seq3: one-letter to three-letter codes ("*" -> "Ter" unless custom_map is
-- given, which replaces that default); other characters become undef_code ("Xaa").
function M.seq3(text, custom_map, undef_code)
  check_code_args("bio.protparam.seq3", text, custom_map)
  local map = {}
  for k, v in pairs(data.one_to_three) do map[k] = v end
  for k, v in pairs(custom_map or {["*"] = "Ter"}) do map[k] = v end
  undef_code = undef_code or "Xaa"
  return (text:gsub(".", function(c) return map[c] or undef_code end))
end

--- Bio.SeqUtils.seq1: three-letter codes (any case) to one letter ("Ter" -> "*" unless
-- custom_map is given); unknown triplets become undef_code ("X"); a trailing partial
-- triplet is dropped.
function M.seq1(text, custom_map, undef_code)
  check_code_args("bio.protparam.seq1", text, custom_map)
  local map = {}
  for k, v in pairs(data.three_to_one) do map[upper(k)] = v end
  for k, v in pairs(custom_map or {Ter = "*"}) do map[upper(k)] = v end
  undef_code = undef_code or "X"
  local out = {}
  for i = 1, floor(#text / 3) do
    out[i] = map[upper(sub(text, 3 * i - 2, 3 * i))] or undef_code
  end
  return concat(out)
end

return M
