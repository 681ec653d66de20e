--- Pairwise sequence alignment, scored like Biopython's Bio.Align.PairwiseAligner (1.88).
--
--   local align = require "bio.align"
--   local aligner = align.new{mode = "global", match_score = 2, mismatch_score = -1,
--                             open_gap_score = -2, extend_gap_score = -0.5}
--   aligner:score("GAACT", "GAT")              --> same number as Biopython's aligner.score
--   local aln = aligner:align("GAACT", "GAT")
--   aln.score, aln.target, aln.query           --> 2.5, "GAACT", "GA--T" (one optimal alignment)
--   aln.coordinates                            --> {{0, 2, 4, 5}, {0, 2, 2, 3}} (as Biopython)
--   print(aln)                                 --> a three-line picture
--
--   align.score("HEAGAWGHEE", "PAWHEAE", {substitution_matrix = "BLOSUM62",
--                                          open_gap_score = -10, extend_gap_score = -0.5})
--
-- Scoring, as Biopython:
--  * match_score (default 1) and mismatch_score (0), or a substitution_matrix (a name from
--    bio.matrices, or a matrix object); `wildcard`, a letter that scores 0 against anything
--    (with match/mismatch scores only: like Biopython, a matrix ignores it);
--  * a gap of length k scores open + (k - 1) * extend. Insertions are gaps in the target
--    (the query has extra letters), deletions are gaps in the query. Each has its own
--    internal, left-end and right-end open/extend scores, set with Biopython's attribute names
--    (gap_score, open_gap_score, end_gap_score, open_left_insertion_score, ...; the deprecated
--    target_*/query_* names work too). All default to -1. Where two names overlap, the more
--    specific one wins: insertion/deletion over internal/left/right over end over open/extend,
--    ties in alphabetical order of the names (Biopython applies them in call order);
--  * scoring = "blastn" | "megablast" | "blastp" presets.
--  * mode = "global" (Needleman-Wunsch / Gotoh) or "local" (Smith-Waterman / Gotoh). In local
--    mode only the internal gap scores are used (end gaps never occur in a local alignment).
--
-- Algorithms: a one-matrix DP when every open score equals its extend score (linear gaps),
-- otherwise Gotoh's three-state DP, both O(n*m) time. score() keeps two rows: O(m) memory.
-- align() keeps a traceback code per cell (O(n*m) memory, a byte per cell with LuaJIT's FFI,
-- a Lua number otherwise) and returns one optimal alignment: where several are optimal, the
-- traceback prefers, at each step, a match/mismatch over a deletion over an insertion, and a
-- local alignment ends at the first best cell in row-major order. Letters are compared
-- byte by byte and case-sensitively (as Biopython does for str input).
-- Runs on Lua 5.1-5.4 and LuaJIT.

local A = require "bio.alphabet"
local matrices = require "bio.matrices"
local names_data = require "bio.align_names"

local M = {}

local byte, char, sub, rep, concat, format =
  string.byte, string.char, string.sub, string.rep, table.concat, string.format
local floor = math.floor
local NEG = -math.huge

-- The kernel family is decided once, at load time: bio._fast (shared with the rest of bio.*)
-- hands out FFI only on LuaJIT with the JIT on, and not when BIOXEN_BIO_PORTABLE forces the
-- portable path. Without bio._fast, detect LuaJIT ourselves.
local ffi
do
  local ok, F = pcall(require, "bio._fast")
  if ok and type(F) == "table" then
    ffi = F.ffi
  elseif rawget(_G, "jit") then
    local has, lib = pcall(require, "ffi")
    if has then ffi = lib end
  end
end

-- DP rows and score profiles: FFI double arrays on LuaJIT (no type checks, JIT-friendly),
-- plain tables elsewhere. Both are indexed 0..n.
local new_row
if ffi then
  local double_array = ffi.typeof("double[?]")
  new_row = function(n) return double_array(n + 1) end
else
  new_row = function() return {} end
end

---------------------------------------------------------------------------------------------
-- parameters

local Aligner = {}
Aligner.__index = Aligner

-- The twelve leaf gap scores: {open|extend}_{internal|left|right}_{insertion|deletion}.
local KINDS = {"open", "extend"}
local LOCATIONS = {"internal", "left", "right"}
local TYPES = {"insertion", "deletion"}

local VALID_GAP_NAME = {}
for _, n in ipairs(names_data.names) do VALID_GAP_NAME[n] = true end

-- Which leaves a Biopython gap-score name sets, and how specific it is.
local function parse_gap_name(name)
  local words = {}
  for w in string.gmatch(sub(name, 1, -7), "[^_]+") do words[#words + 1] = w end
  local kinds, locs, types = KINDS, LOCATIONS, TYPES
  local k = 1
  -- Specificity decides which of two overlapping names wins (Lua tables have no order):
  -- open/extend 1, end 2, internal/left/right 3, insertion/deletion 4, summed. So
  -- {open_gap_score = -10, extend_gap_score = -0.5, end_gap_score = 0} means free end gaps.
  local spec = 0
  if words[k] == "open" or words[k] == "extend" then kinds = {words[k]}; k = k + 1; spec = spec + 1 end
  if words[k] == "internal" or words[k] == "left" or words[k] == "right" then
    locs = {words[k]}; k = k + 1; spec = spec + 3
  elseif words[k] == "end" then
    locs = {"left", "right"}; k = k + 1; spec = spec + 2
  end
  if words[k] == "insertion" or words[k] == "deletion" then types = {words[k]}; spec = spec + 4 end
  return kinds, locs, types, spec
end

local PRESETS = {
  blastn = {matrix = "BLASTN", open = -7.0, extend = -2.0},
  megablast = {matrix = "MEGABLAST", open = -2.5, extend = -2.5},
  blastp = {matrix = "BLASTP", open = -12.0, extend = -1.0},
}

-- Errors read "bio.align.score: bad argument #1 'target': ..." (as the rest of bio.*).
local function fail(fn, msg) A.raise("bio.align." .. fn .. ": " .. msg, 2) end -- at the user's line

local function set_all(gaps, kinds, locs, types, value)
  for _, kd in ipairs(kinds) do
    for _, loc in ipairs(locs) do
      for _, ty in ipairs(types) do gaps[kd .. "_" .. loc .. "_" .. ty] = value end
    end
  end
end

--- A new aligner. opts: mode, scoring, match_score, mismatch_score, substitution_matrix,
-- wildcard and any of Biopython's gap-score names (see the module comment).
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("new", "bad argument #1 'opts': expected a table, got " .. type(opts)) end
  local self = setmetatable({mode = "global", match_score = 1, mismatch_score = 0, gaps = {}}, Aligner)
  set_all(self.gaps, KINDS, LOCATIONS, TYPES, -1)

  local preset = opts.scoring
  if preset ~= nil then
    local p = PRESETS[preset]
    if not p then fail("new", "bad argument #1 'opts': option 'scoring': unknown scoring scheme '" .. tostring(preset) .. "'") end
    self.substitution_matrix = matrices.load(p.matrix)
    set_all(self.gaps, {"open"}, LOCATIONS, TYPES, p.open)
    set_all(self.gaps, {"extend"}, LOCATIONS, TYPES, p.extend)
  end

  local gap_settings = {}
  for key, value in pairs(opts) do
    local name = key
    if type(name) == "string" and names_data.renamed[name] then name = names_data.renamed[name] end
    if name == "scoring" then
      -- handled above
    elseif name == "mode" then
      if value ~= "global" and value ~= "local" then
        fail("new", "bad argument #1 'opts': option 'mode' must be \"global\" or \"local\", not '" .. tostring(value) .. "'")
      end
      self.mode = value
    elseif name == "match_score" or name == "mismatch_score" then
      if type(value) ~= "number" or value ~= value then fail("new", "bad argument #1 'opts': option '" .. key .. "' must be a number") end
      self[name] = value
    elseif name == "substitution_matrix" then
      if type(value) == "string" then
        local ok, m = pcall(matrices.load, value)
        if not ok then fail("new", "bad argument #1 'opts': option 'substitution_matrix': unknown matrix '" .. value .. "'") end
        value = m
      elseif type(value) ~= "table" or not value.by_byte then
        fail("new", "bad argument #1 'opts': option 'substitution_matrix' must be a matrix name or a bio.matrices matrix")
      end
      self.substitution_matrix = value
    elseif name == "wildcard" then
      if value ~= nil and (type(value) ~= "string" or #value ~= 1) then
        fail("new", "bad argument #1 'opts': option 'wildcard' must be a single character")
      end
      self.wildcard = value
    elseif type(name) == "string" and VALID_GAP_NAME[name] then
      if type(value) ~= "number" or value ~= value then fail("new", "bad argument #1 'opts': option '" .. key .. "' must be a number") end
      local kinds, locs, types, spec = parse_gap_name(name)
      gap_settings[#gap_settings + 1] = {spec = spec, name = name, kinds = kinds, locs = locs, types = types, value = value}
    else
      fail("new", "bad argument #1 'opts': unknown option '" .. tostring(key) .. "'")
    end
  end
  if self.substitution_matrix and (opts.match_score ~= nil or opts.mismatch_score ~= nil) then
    fail("new", "bad argument #1 'opts': give either match_score/mismatch_score or substitution_matrix, not both")
  end
  -- General names first, specific names last, so the most specific setting wins.
  table.sort(gap_settings, function(a, b)
    if a.spec ~= b.spec then return a.spec < b.spec end
    return a.name < b.name
  end)
  for _, s in ipairs(gap_settings) do set_all(self.gaps, s.kinds, s.locs, s.types, s.value) end
  if self.mode == "local" then
    -- Biopython's local mode lets positive gap scores start or end an alignment with a gap;
    -- that is not reproduced here, so refuse rather than return a different number.
    for name, value in pairs(self.gaps) do
      if value > 0 then
        fail("new", "bad argument #1 'opts': local mode needs gap scores <= 0, but " .. name .. "_score is " .. value)
      end
    end
  end
  return self
end

--- The algorithm this aligner uses (as Biopython's `aligner.algorithm`).
function Aligner:algorithm()
  local linear = self:is_linear()
  if self.mode == "global" then
    return linear and "Needleman-Wunsch" or "Gotoh global alignment algorithm"
  end
  return linear and "Smith-Waterman" or "Gotoh local alignment algorithm"
end

--- True when every open score equals its extend score (one DP matrix suffices).
function Aligner:is_linear()
  local g = self.gaps
  for _, loc in ipairs(LOCATIONS) do
    for _, ty in ipairs(TYPES) do
      if g["open_" .. loc .. "_" .. ty] ~= g["extend_" .. loc .. "_" .. ty] then return false end
    end
  end
  return true
end

---------------------------------------------------------------------------------------------
-- scoring profiles

-- Check the sequence and return its bytes as an array.
local function to_bytes(fn, seq, argname, matrix)
  local arg = "bad argument #" .. (argname == "target" and 1 or 2) .. " '" .. argname .. "': "
  if type(seq) ~= "string" then fail(fn, arg .. "expected a string, got " .. type(seq)) end
  if #seq == 0 then fail(fn, arg .. "sequence has zero length") end
  local codes = {}
  for i = 1, #seq do codes[i] = byte(seq, i) end
  if matrix then
    local ok = matrix.by_byte
    for i = 1, #seq do
      if not ok[codes[i]] then
        fail(fn, arg .. "invalid character '" .. sub(seq, i, i) .. "' at position " .. i
          .. " (not in the alphabet of " .. matrix.name .. ": " .. matrix.alphabet .. ")")
      end
    end
  end
  return codes
end

-- profile[t][j] = score of aligning target letter t against query letter j.
local function make_profiles(self, a, b)
  local m = #b
  local profiles = {}
  local matrix, wild = self.substitution_matrix, self.wildcard and byte(self.wildcard)
  local match, mismatch = self.match_score, self.mismatch_score
  for i = 1, #a do
    local t = a[i]
    if not profiles[t] then
      local p = new_row(m)
      if matrix then
        local row = matrix.by_byte[t]
        for j = 1, m do p[j] = row[b[j]] end
      else
        for j = 1, m do
          local q = b[j]
          if q == t then p[j] = match else p[j] = mismatch end
        end
      end
      if wild and not matrix then -- Biopython ignores the wildcard when a matrix is used
        for j = 1, m do
          if t == wild or b[j] == wild then p[j] = 0 end
        end
      end
      profiles[t] = p
    end
  end
  return profiles
end

---------------------------------------------------------------------------------------------
-- score-only DP: O(m) memory

-- The four kernels are written once, with MAX(dst, x, y, ...) standing for
-- "dst = the largest of x, y, ...". At load time MAX becomes math.max on the LuaJIT fast path,
-- which the JIT compiles to branch-free maxsd (4-5x faster than unpredictable branches), and
-- inline comparisons on the portable path (PUC Lua, or LuaJIT forced portable / JIT off),
-- where a call per cell would cost more than the comparisons.
local KERNELS = [==[
local NEG, max = ...
local K = {}

function K.linear_global(a, b, P, g, H)
  local n, m = #a, #b
  local v
  local ins_left, ins_int, ins_right = g.open_left_insertion, g.open_internal_insertion, g.open_right_insertion
  local del_left, del_int, del_right = g.open_left_deletion, g.open_internal_deletion, g.open_right_deletion
  H[0] = 0
  for j = 1, m do H[j] = H[j - 1] + ins_left end
  for i = 1, n do
    local p = P[a[i]]
    local gi = ins_int
    if i == n then gi = ins_right end
    local diag = H[0]
    local left = diag + del_left
    H[0] = left
    for j = 1, m - 1 do
      local up = H[j]
      local best
      MAX(best, diag + p[j], up + del_int, left + gi)
      H[j] = best
      diag, left = up, best
    end
    local best
    MAX(best, diag + p[m], H[m] + del_right, left + gi)
    H[m] = best
  end
  return H[m]
end

function K.linear_local(a, b, P, g, H)
  local n, m = #a, #b
  local v
  local gi, gd = g.open_internal_insertion, g.open_internal_deletion
  for j = 0, m do H[j] = 0 end
  local top = 0
  for i = 1, n do
    local p = P[a[i]]
    local diag, left = 0, 0
    for j = 1, m do
      local up = H[j]
      local best
      MAX(best, diag + p[j], up + gd, left + gi, 0)
      MAX(top, top, best)
      H[j] = best
      diag, left = up, best
    end
  end
  return top
end

-- Gotoh with two rows: X = max(match, insertion) and D (deletion) of the previous row.
-- That is all the next row needs: a deletion opens from X and extends D; a match follows the
-- best of X and D on the diagonal; insertions run along the current row in locals.
function K.gotoh_global(a, b, P, g, X, D)
  local n, m = #a, #b
  local v
  local oil, eil = g.open_left_insertion, g.extend_left_insertion
  local oii, eii = g.open_internal_insertion, g.extend_internal_insertion
  local oir, eir = g.open_right_insertion, g.extend_right_insertion
  local odl, edl = g.open_left_deletion, g.extend_left_deletion
  local odi, edi = g.open_internal_deletion, g.extend_internal_deletion
  local odr, edr = g.open_right_deletion, g.extend_right_deletion
  -- Row 0: only insertions (left end gaps in the target).
  X[0], D[0] = 0, NEG
  local mprev, iprev = 0, NEG
  for j = 1, m do
    local x
    MAX(x, mprev + oil, iprev + eil)
    X[j], D[j] = x, NEG
    mprev, iprev = NEG, x
  end
  for i = 1, n do
    local p = P[a[i]]
    local oi, ei = oii, eii
    if i == n then oi, ei = oir, eir end
    -- Column 0: only deletions (left end gaps in the query).
    local dx, dd = X[0], D[0]                        -- (i-1, 0): the next diagonal
    local lm, li, ld = NEG, NEG, nil                 -- (i, 0)
    MAX(ld, dx + odl, dd + edl)
    X[0], D[0] = NEG, ld
    local od, ed = odi, edi
    for j = 1, m do
      if j == m then od, ed = odr, edr end
      local ux, ud = X[j], D[j]                      -- (i-1, j)
      local nm, nd, ni, nx
      MAX(nm, dx, dd)
      nm = nm + p[j]                                 -- match: diagonal + pair score
      MAX(nd, ux + od, ud + ed)                      -- deletion: vertical from (i-1, j)
      MAX(ni, lm + oi, ld + oi, li + ei)             -- insertion: horizontal from (i, j-1)
      MAX(nx, nm, ni)
      X[j], D[j] = nx, nd
      dx, dd = ux, ud
      lm, li, ld = nm, ni, nd
    end
  end
  local best
  MAX(best, X[m], D[m])
  return best
end

function K.gotoh_local(a, b, P, g, X, D)
  local n, m = #a, #b
  local v
  local oi, ei = g.open_internal_insertion, g.extend_internal_insertion
  local od, ed = g.open_internal_deletion, g.extend_internal_deletion
  for j = 0, m do X[j], D[j] = NEG, NEG end
  local top = 0
  for i = 1, n do
    local p = P[a[i]]
    local dx, dd = 0, NEG
    local lm, li, ld = NEG, NEG, NEG
    for j = 1, m do
      local ux, ud = X[j], D[j]
      local nm, nd, ni, nx
      MAX(nm, dx, dd, 0)
      nm = nm + p[j]
      MAX(top, top, nm)
      MAX(nd, ux + od, ud + ed)
      MAX(ni, lm + oi, ld + oi, li + ei)
      MAX(nx, nm, ni)
      X[j], D[j] = nx, nd
      dx, dd = ux, ud
      lm, li, ld = nm, ni, nd
    end
  end
  return top
end

return K
]==]

local function expand_max(use_math_max)
  return (KERNELS:gsub("MAX%(([^()]-)%)", function(args)
    local parts = {}
    for part in string.gmatch(args, "[^,]+") do parts[#parts + 1] = part:match("^%s*(.-)%s*$") end
    local dst = table.remove(parts, 1)
    if use_math_max then return dst .. " = max(" .. concat(parts, ", ") .. ")" end
    local out = {dst .. " = " .. parts[1]}
    for k = 2, #parts do
      out[#out + 1] = "v = " .. parts[k] .. "; if v > " .. dst .. " then " .. dst .. " = v end"
    end
    return concat(out, "; ")
  end))
end

local kernels
do
  local source = expand_max(ffi ~= nil)
  local chunk = assert((loadstring or load)(source, "=bio.align kernels"))
  kernels = chunk(NEG, math.max)
end

local function prepare(self, fn, target, query)
  local matrix = self.substitution_matrix
  local a = to_bytes(fn, target, "target", matrix)
  local b = to_bytes(fn, query, "query", matrix)
  return a, b, make_profiles(self, a, b)
end

--- The optimal alignment score of `target` and `query` (Biopython's aligner.score).
function Aligner:score(target, query)
  local a, b, P = prepare(self, "score", target, query)
  local m, g = #b, self.gaps
  if self:is_linear() then
    if self.mode == "global" then return kernels.linear_global(a, b, P, g, new_row(m)) end
    return kernels.linear_local(a, b, P, g, new_row(m))
  end
  if self.mode == "global" then return kernels.gotoh_global(a, b, P, g, new_row(m), new_row(m)) end
  return kernels.gotoh_local(a, b, P, g, new_row(m), new_row(m))
end

---------------------------------------------------------------------------------------------
-- alignment with traceback: O(n*m) memory

-- Traceback codes, one number per cell (i, j) at index i*(m+1)+j:
--   code % 4           where the match state came from: 0 M, 1 I, 2 D, 3 start (local)
--   floor(code/4) % 4  where the insertion state came from: 0 M, 1 I, 2 D
--   floor(code/16)     where the deletion state came from: 0 M, 1 I, 2 D
local FROM_M, FROM_I, FROM_D, FROM_START = 0, 1, 2, 3

-- Beyond this many traceback cells align() refuses (use score(), or align a smaller region):
-- 256 M cells is 256 MB as FFI bytes; 32 M cells is ~512 MB as Lua table slots.
local MAX_CELLS = ffi and 2 ^ 28 or 2 ^ 25

local function new_codes(size)
  if ffi then return ffi.new("uint8_t[?]", size) end
  return {}
end

local function fill(self, a, b, P)
  local n, m, g = #a, #b, self.gaps
  local is_local = self.mode == "local"
  local W = m + 1
  if (n + 1) * W > MAX_CELLS then
    fail("align", format("%d x %d cells are too many for a traceback; use score()", n + 1, W))
  end
  local T = new_codes((n + 1) * W)
  local function gap(kind, loc, ty) return g[kind .. "_" .. loc .. "_" .. ty] end
  local oil, eil = gap("open", "left", "insertion"), gap("extend", "left", "insertion")
  local odl, edl = gap("open", "left", "deletion"), gap("extend", "left", "deletion")
  local oii, eii = gap("open", "internal", "insertion"), gap("extend", "internal", "insertion")
  local odi, edi = gap("open", "internal", "deletion"), gap("extend", "internal", "deletion")
  local oir, eir = gap("open", "right", "insertion"), gap("extend", "right", "insertion")
  local odr, edr = gap("open", "right", "deletion"), gap("extend", "right", "deletion")
  if is_local then
    oil, eil, odl, edl, oir, eir, odr, edr = NEG, NEG, NEG, NEG, oii, eii, odi, edi
  end
  local Mr, Ir, Dr = new_row(m), new_row(m), new_row(m)
  Mr[0], Ir[0], Dr[0] = is_local and NEG or 0, NEG, NEG
  T[0] = 0
  for j = 1, m do
    Mr[j], Dr[j] = NEG, NEG
    local v, c = Mr[j - 1] + oil, FROM_M
    local w = Ir[j - 1] + eil
    if w > v then v, c = w, FROM_I end
    Ir[j] = v
    T[j] = c * 4
  end
  local top, ti, tj = 0, 0, 0
  for i = 1, n do
    local p = P[a[i]]
    local oi, ei = oii, eii
    if i == n then oi, ei = oir, eir end
    local dm, di, dd = Mr[0], Ir[0], Dr[0]
    if is_local then dm = 0 end
    local lm, li = NEG, NEG
    local ld, cd = dm + odl, FROM_M
    local v = dd + edl
    if v > ld then ld, cd = v, FROM_D end
    v = di + odl
    if v > ld then ld, cd = v, FROM_I end
    Mr[0], Ir[0], Dr[0] = lm, li, ld
    local base = i * W
    T[base] = cd * 16
    for j = 1, m do
      local od, ed = odi, edi
      if j == m then od, ed = odr, edr end
      local um, ui, ud = Mr[j], Ir[j], Dr[j]
      local best, cm = dm, FROM_M
      if dd > best then best, cm = dd, FROM_D end
      if di > best then best, cm = di, FROM_I end
      -- Local: a prefix worth nothing is dropped (the alignment starts here).
      if is_local and best <= 0 then best, cm = 0, FROM_START end
      local nm = best + p[j]
      if is_local and nm > top then top, ti, tj = nm, i, j end
      local nd, cdd = um + od, FROM_M
      v = ud + ed
      if v > nd then nd, cdd = v, FROM_D end
      v = ui + od
      if v > nd then nd, cdd = v, FROM_I end
      local ni, ci = lm + oi, FROM_M
      v = ld + oi
      if v > ni then ni, ci = v, FROM_D end
      v = li + ei
      if v > ni then ni, ci = v, FROM_I end
      Mr[j], Ir[j], Dr[j] = nm, ni, nd
      T[base + j] = cm + 4 * ci + 16 * cdd
      dm, di, dd = um, ui, ud
      lm, li, ld = nm, ni, nd
    end
  end
  if is_local then return T, top, ti, tj, FROM_M end
  local best, state = Mr[m], FROM_M
  if Dr[m] > best then best, state = Dr[m], FROM_D end
  if Ir[m] > best then best, state = Ir[m], FROM_I end
  return T, best, n, m, state
end

-- Walk the traceback from (i, j) in `state`; return the path's corner points, start first.
local function traceback(T, W, i, j, state, is_local)
  local ti, tj, n = {}, {}, 0
  local prev_state = nil
  while true do
    if state ~= prev_state then
      n = n + 1
      ti[n], tj[n] = i, j
      prev_state = state
    end
    if i == 0 and j == 0 then break end
    local code = T[i * W + j]
    if state == FROM_M then
      local from = code % 4
      i, j = i - 1, j - 1
      if from == FROM_START then break end
      state = from
    elseif state == FROM_I then
      state = floor(code / 4) % 4
      j = j - 1
    else
      state = floor(code / 16)
      i = i - 1
    end
  end
  -- The last corner is the start point.
  if ti[n] ~= i or tj[n] ~= j then
    n = n + 1
    ti[n], tj[n] = i, j
  end
  local ct, cq = {}, {}
  for k = 1, n do ct[k], cq[k] = ti[n + 1 - k], tj[n + 1 - k] end
  return ct, cq
end

local Alignment = {}
Alignment.__index = Alignment

-- Aligned rows from the coordinates: copy the letters of each segment, '-' for a gap.
local function rows(target, query, ct, cq)
  local rt, rq = {}, {}
  for k = 1, #ct - 1 do
    local dt, dq = ct[k + 1] - ct[k], cq[k + 1] - cq[k]
    if dt > 0 and dq > 0 then
      rt[#rt + 1] = sub(target, ct[k] + 1, ct[k + 1])
      rq[#rq + 1] = sub(query, cq[k] + 1, cq[k + 1])
    elseif dt > 0 then
      rt[#rt + 1] = sub(target, ct[k] + 1, ct[k + 1])
      rq[#rq + 1] = rep("-", dt)
    else
      rt[#rt + 1] = rep("-", dq)
      rq[#rq + 1] = sub(query, cq[k] + 1, cq[k + 1])
    end
  end
  return concat(rt), concat(rq)
end

--- One optimal alignment of `target` and `query`: a table with score, target and query
-- (the aligned rows, '-' for gaps; only the aligned region in local mode), coordinates
-- ({target_breakpoints, query_breakpoints}, 0-based as Biopython's alignment.coordinates)
-- and mode. In local mode, when no pair scores above 0, returns nil and the score 0
-- (Biopython returns no alignment).
function Aligner:align(target, query)
  local a, b, P = prepare(self, "align", target, query)
  local is_local = self.mode == "local"
  local T, best, i, j, state = fill(self, a, b, P)
  if is_local and best <= 0 then return nil, 0 end
  local ct, cq = traceback(T, #b + 1, i, j, state, is_local)
  -- Merge consecutive points that continue the same kind of step (e.g. M then M).
  local mt, mq = {ct[1]}, {cq[1]}
  local function kind(k) return (ct[k + 1] > ct[k] and 1 or 0) + (cq[k + 1] > cq[k] and 2 or 0) end
  for k = 2, #ct do
    if k < #ct and kind(k - 1) == kind(k) then
      -- same direction as the previous segment: drop the corner
    else
      mt[#mt + 1], mq[#mq + 1] = ct[k], cq[k]
    end
  end
  local rt, rq = rows(target, query, mt, mq)
  return setmetatable({score = best, target = rt, query = rq, coordinates = {mt, mq},
                       mode = self.mode}, Alignment)
end

--- Counts of the alignment with the field names of Biopython's alignment.counts() (1.88):
-- aligned, identities, mismatches; gaps split into left/internal/right insertions/deletions,
-- each split into open_* (gap runs) and extend_* (further gap positions), with the sums
-- (insertions, deletions, left_gaps, internal_gaps, right_gaps, open_gaps, extend_gaps, ...).
-- Given a substitution matrix (a name or a matrix), also positives (pairs scoring > 0) and
-- substitution_score (their total). A gap is left/right when it comes before the first /
-- after the last letter of the other sequence in the alignment, internal otherwise.
function Alignment:counts(substitution_matrix)
  local matrix = substitution_matrix
  if type(matrix) == "string" then matrix = matrices.load(matrix) end
  local t, q = self.target, self.query
  local c = {aligned = 0, identities = 0, mismatches = 0}
  for _, loc in ipairs(LOCATIONS) do
    for _, ty in ipairs(TYPES) do
      c["open_" .. loc .. "_" .. ty .. "s"], c["extend_" .. loc .. "_" .. ty .. "s"] = 0, 0
    end
  end
  if matrix then c.positives, c.substitution_score = 0, 0 end
  local nt, nq = #(t:gsub("-", "")), #(q:gsub("-", ""))
  local i, j, k, len = 0, 0, 1, #t
  while k <= len do
    local x, y = byte(t, k), byte(q, k)
    if x ~= 45 and y ~= 45 then
      c.aligned = c.aligned + 1
      if x == y then c.identities = c.identities + 1 else c.mismatches = c.mismatches + 1 end
      if matrix then
        local v = matrix:score(char(x), char(y))
        c.substitution_score = c.substitution_score + v
        if v > 0 then c.positives = c.positives + 1 end
      end
      i, j, k = i + 1, j + 1, k + 1
    else
      local ty, run = (x == 45) and "insertion" or "deletion", 0
      while k <= len and byte(ty == "insertion" and t or q, k) == 45
        and byte(ty == "insertion" and q or t, k) ~= 45 do
        run, k = run + 1, k + 1
      end
      local pos, total = i, nt
      if ty == "deletion" then pos, total = j, nq end
      local loc = (pos == 0 and "left") or (pos == total and "right") or "internal"
      local key = loc .. "_" .. ty .. "s"
      c["open_" .. key] = c["open_" .. key] + 1
      c["extend_" .. key] = c["extend_" .. key] + run - 1
      if ty == "insertion" then j = j + run else i = i + run end
    end
  end
  -- The sums, as Biopython's properties.
  local function sum(prefix, locs, types)
    local n = 0
    for _, loc in ipairs(locs) do
      for _, ty in ipairs(types) do
        for _, kind in ipairs(prefix) do n = n + c[kind .. "_" .. loc .. "_" .. ty .. "s"] end
      end
    end
    return n
  end
  local BOTH = {"open", "extend"}
  for _, loc in ipairs(LOCATIONS) do
    for _, ty in ipairs(TYPES) do c[loc .. "_" .. ty .. "s"] = sum(BOTH, {loc}, {ty}) end
    c[loc .. "_gaps"] = sum(BOTH, {loc}, TYPES)
    c["open_" .. loc .. "_gaps"] = sum({"open"}, {loc}, TYPES)
    c["extend_" .. loc .. "_gaps"] = sum({"extend"}, {loc}, TYPES)
  end
  for _, ty in ipairs(TYPES) do
    c[ty .. "s"] = sum(BOTH, LOCATIONS, {ty})
    c["open_" .. ty .. "s"] = sum({"open"}, LOCATIONS, {ty})
    c["extend_" .. ty .. "s"] = sum({"extend"}, LOCATIONS, {ty})
  end
  c.gaps = sum(BOTH, LOCATIONS, TYPES)
  c.open_gaps = sum({"open"}, LOCATIONS, TYPES)
  c.extend_gaps = sum({"extend"}, LOCATIONS, TYPES)
  return c
end

--- A three-line picture: target row, a match line ('|' identity, '.' mismatch, '-' gap), query.
function Alignment:format()
  local t, q = self.target, self.query
  local mid = {}
  for k = 1, #t do
    local x, y = byte(t, k), byte(q, k)
    mid[k] = (x == 45 or y == 45) and "-" or (x == y and "|" or ".")
  end
  local c = self.coordinates
  return format("target %6d %s %d\n       %6d %s %d\nquery  %6d %s %d\n",
    c[1][1], t, c[1][#c[1]], 0, concat(mid), #t, c[2][1], q, c[2][#c[2]])
end
Alignment.__tostring = Alignment.format

---------------------------------------------------------------------------------------------
-- one-call helpers

--- align.score(target, query, opts): score with a throwaway aligner.
function M.score(target, query, opts) return M.new(opts):score(target, query) end

--- align.align(target, query, opts): one optimal alignment with a throwaway aligner.
function M.align(target, query, opts) return M.new(opts):align(target, query) end

M.Aligner, M.Alignment = Aligner, Alignment

return M
