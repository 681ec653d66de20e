--- bio._inflate: a raw DEFLATE decoder (RFC 1951) in portable pure Lua.
--
--   local I = require "bio._inflate"
--   local out, next_pos = I.inflate(deflate_data, 1)     -- a whole string
--   local d = I.stream(src)                              -- or streamed:
--   for piece in d.read do ... end                       -- read(max) -> string | nil
--
-- Stored, fixed-Huffman and dynamic-Huffman blocks.  The same source runs
-- on Lua 5.1-5.4 and LuaJIT: no bitwise operators and no bit library, only
-- arithmetic on numbers that stay below 2^53 (exact in a double).
--
-- How it decodes: bits are taken least-significant first from a bit buffer
-- (a number holding up to 52 bits; `bitbuf % 2^k` is the next k bits, an
-- exact division drops them).  Each Huffman code has a lookup table indexed
-- by its next FAST (10) bits, which gives the symbol, its length and what
-- the buffer becomes once the code is dropped; a length or distance code's
-- extra bits are folded into the entry when they fit, and one entry gives
-- up to three literals in a row.  Codes longer than that (rare: the least
-- frequent symbols) are decoded bit by bit the canonical way.  Output bytes
-- go into an array that also serves as the 32 KiB history for
-- back-references; it is turned into a string with string.char over
-- 4096-byte batches, and its last 32 KiB slide to the front now and then so
-- the array stays bounded.  The decoder itself is compiled from source text
-- at load time, with `//` for the shifting division on Lua 5.3+ (see
-- STREAM_SOURCE).  Reference: docs/bio/gzip.md.
--
-- Errors are raised as strings starting with "inflate: " (see M.TRUNCATED
-- for the one message meaning the input ended early).
local M = {}

local byte, char, sub, concat = string.byte, string.char, string.sub, table.concat
local floor = math.floor
local unpack = rawget(table, "unpack") or rawget(_G, "unpack")
local tmove = rawget(table, "move")

--- The error message (without the "inflate: " prefix) for input that ends
-- before the deflate stream does.
M.TRUNCATED = "unexpected end of compressed data"

local function fail(msg) error("inflate: " .. msg, 0) end

-- Powers of two, built by multiplication so they are integers on 5.3+.
local P = { [0] = 1 }
for i = 1, 60 do P[i] = P[i - 1] * 2 end

local WINDOW = 32768      -- the history back-references may reach
local OUT = 65536         -- default output per read()
local MAX_OUT = 262144    -- largest read(max) honoured (bounds the array)
local SLIDE_AT = WINDOW + 65536
local FAST = 10           -- bits of the primary lookup tables
local BATCH = 4096        -- bytes per string.char(unpack(...))

---------------------------------------------------------------------------
-- Length and distance codes (RFC 1951 3.2.5)
---------------------------------------------------------------------------

local LBASE, LEXT = {}, {}
do
  local base = 3
  for sym = 257, 284 do
    local e = sym < 265 and 0 or floor((sym - 261) / 4)
    LBASE[sym], LEXT[sym] = base, e
    base = base + P[e]
  end
  LBASE[285], LEXT[285] = 258, 0
end

local DBASE, DEXT = {}, {}
do
  local base = 1
  for sym = 0, 29 do
    local e = sym < 4 and 0 or floor((sym - 2) / 2)
    DBASE[sym], DEXT[sym] = base, e
    base = base + P[e]
  end
end

-- The order code-length code lengths are sent in.
local CLORDER = { 16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15 }

---------------------------------------------------------------------------
-- Huffman tables
---------------------------------------------------------------------------

-- A decoding table from code lengths lens[0..n-1] (0 = symbol unused).
-- The primary table is indexed by the next `bits` input bits, i:
--   len[i]     how many bits the entry consumes (0: the code is longer
--              than `bits`, or there is no such code: decode bit by bit)
--   div[i]     2^len[i], and rest[i] = floor(i / div[i]): once the entry
--              is used the bit buffer becomes (buf - i) / div[i] + rest[i]
--   sym[i]     what was decoded.  For kind "code length": the symbol.
--              For "literal/length": 0-255 a literal, 256 end of block,
--              256 + L a complete match length L (its extra bits were in
--              i too), -S a length symbol S whose extra bits follow.
--              For "distance": D > 0 a complete distance, -(S + 1) a
--              distance symbol S whose extra bits follow.
--   count[l], syms[k]: codes per length and the symbols in canonical order,
--              for the bit-by-bit decoder.
-- Folding the extra bits into the entry saves most matches a separate
-- read of them.  Validity follows zlib: an over-subscribed code set is an
-- error; an incomplete one is allowed only when it is a single 1-bit code
-- (never for the code-length code); a set with no codes at all is allowed,
-- and then decoding anything from it is an error.
-- Messages as zlib words them, for a bad code set and for a bad code.
local SET_ERROR = { ["code length"] = "invalid code lengths set",
  ["literal/length"] = "invalid literal/lengths set", distance = "invalid distances set" }
local CODE_ERROR = { ["code length"] = "invalid code lengths set",
  ["literal/length"] = "invalid literal/length code", distance = "invalid distance code" }

local function build(lens, n, kind)
  local count = {}
  for l = 0, 15 do count[l] = 0 end
  for s = 0, n - 1 do
    local l = lens[s]
    count[l] = count[l] + 1
  end
  local left, maxlen = 1, 0
  for l = 1, 15 do
    left = left * 2 - count[l]
    if left < 0 then fail(SET_ERROR[kind] .. " (over-subscribed)") end
    if count[l] > 0 then maxlen = l end
  end
  if maxlen > 0 and left > 0 and (kind == "code length" or maxlen ~= 1) then
    fail(SET_ERROR[kind] .. " (incomplete)")
  end
  local offs = { [1] = 0 }
  for l = 1, 14 do offs[l + 1] = offs[l] + count[l] end
  local syms = {}
  for s = 0, n - 1 do
    local l = lens[s]
    if l > 0 then
      syms[offs[l]] = s
      offs[l] = offs[l] + 1
    end
  end
  local lit, dist = kind == "literal/length", kind == "distance"
  local bits = FAST
  if not (lit or dist) then bits = maxlen < FAST and maxlen or FAST end
  if bits < 1 then bits = 1 end
  local size = P[bits]
  local tsym, tlen, tdiv, trest = {}, {}, {}, {}
  for i = 0, size - 1 do tsym[i], tlen[i], tdiv[i], trest[i] = 0, 0, 1, 0 end
  local code, k = 0, 0
  for l = 1, bits do
    local step = P[l]
    for _ = 1, count[l] do
      local sym = syms[k]
      k = k + 1
      -- the code's bits reversed: deflate sends Huffman codes MSB first
      local r, c = 0, code
      for _ = 1, l do
        local b = c % 2
        r = r * 2 + b
        c = floor(c / 2)
      end
      local base, e = sym, 0  -- what the entry decodes to, extra bits to fold in
      if lit and sym > 256 then
        base, e = LBASE[sym], LEXT[sym]
        if base == nil or l + e > bits then base, e = -sym, -1 else base = base + 256 end
      elseif dist then
        base, e = DBASE[sym], DEXT[sym]
        if base == nil or l + e > bits then base, e = -(sym + 1), -1 end
      end
      if e <= 0 then
        local m = 0 -- floor(i / step), as i = r + m * step
        for i = r, size - 1, step do
          tsym[i], tlen[i], tdiv[i], trest[i] = base, l, step, m
          m = m + 1
        end
      else
        local d, top = P[l + e], P[e] - 1
        local v, q = 0, 0 -- the extra bits' value and floor(i / d)
        for i = r, size - 1, step do
          tsym[i], tlen[i], tdiv[i], trest[i] = base + v, l + e, d, q
          if v == top then v, q = 0, q + 1 else v = v + 1 end
        end
      end
      code = code + 1
    end
    code = code * 2
  end
  local t = { size = size, sym = tsym, len = tlen, div = tdiv, rest = trest, count = count, syms = syms,
    err = CODE_ERROR[kind] }
  if lit then
    -- Runs of literals: where the index holds a literal's code followed by
    -- the whole code of a second (and a third) literal, the entry decodes
    -- them all at once: sym2[i] and sym3[i] (false when absent), and len,
    -- div, rest cover every code in the run.  Highly compressible text
    -- (DNA: ~2-bit literal codes) then takes one lookup per 2-3 bytes.
    -- The bits after an entry's code are rest[i] < i, so going down from
    -- the top reads only entries not yet extended.
    local sym2, sym3 = {}, {}
    for i = 0, size - 1 do sym2[i], sym3[i] = false, false end
    for i = size - 1, 0, -1 do
      local la, sa = tlen[i], tsym[i]
      if la > 0 and sa >= 0 and sa < 256 then
        local j = trest[i]
        local lb, sb = tlen[j], tsym[j]
        if lb > 0 and la + lb <= bits and sb >= 0 and sb < 256 then
          local used, k2 = la + lb, trest[j]
          sym2[i] = sb
          local lc, sc = tlen[k2], tsym[k2]
          if lc > 0 and used + lc <= bits and sc >= 0 and sc < 256 then
            sym3[i] = sc
            used = used + lc
            k2 = trest[k2]
          end
          tlen[i], tdiv[i], trest[i] = used, P[used], k2
        end
      end
    end
    t.sym2, t.sym3 = sym2, sym3
  end
  return t
end

local FIXED_L, FIXED_D
local function fixed_tables()
  if not FIXED_L then
    local l = {}
    for s = 0, 143 do l[s] = 8 end
    for s = 144, 255 do l[s] = 9 end
    for s = 256, 279 do l[s] = 7 end
    for s = 280, 287 do l[s] = 8 end
    local d = {}
    for s = 0, 31 do d[s] = 5 end
    FIXED_L, FIXED_D = build(l, 288, "literal/length"), build(d, 32, "distance")
  end
  return FIXED_L, FIXED_D
end

---------------------------------------------------------------------------
-- The streaming decoder
---------------------------------------------------------------------------

-- The decoder is kept as source text and compiled once, at load time, with
-- IDIV standing for the division that shifts the bit buffer right: `//`
-- on Lua 5.3+ (integer floor division, so the buffer stays an integer and
-- table indexes need no float conversion: about twice as fast there) and
-- `/` on Lua 5.1/5.2/LuaJIT (the division is always exact, so a double is
-- just as right).  Nothing else differs; no bitwise operator is used.
local STREAM_SOURCE = [==[
local D_ = ...
local byte, char, sub, concat, unpack, tmove = D_.byte, D_.char, D_.sub, D_.concat, D_.unpack, D_.tmove
local floor, fail, build, fixed_tables = D_.floor, D_.fail, D_.build, D_.fixed_tables
local P, LBASE, LEXT, DBASE, DEXT, CLORDER = D_.P, D_.LBASE, D_.LEXT, D_.DBASE, D_.DEXT, D_.CLORDER
local TRUNCATED, WINDOW, OUT, MAX_OUT, SLIDE_AT, BATCH =
  D_.TRUNCATED, D_.WINDOW, D_.OUT, D_.MAX_OUT, D_.SLIDE_AT, D_.BATCH

-- Bit-by-bit canonical decoding (after puff.c's idea): for codes longer
-- than the primary table, and to find codes that do not exist.  Returns
-- the raw symbol (nil for no such code) and the bit buffer after it.
local function slow_decode(bb, bc, t)
  local count, syms = t.count, t.syms
  local code, first, index = 0, 0, 0
  for l = 1, 15 do
    local b = bb % 2
    bb = (bb - b) IDIV 2
    code = code + b
    local c = count[l]
    if code - first < c then return syms[index + code - first], bb, bc - l end
    index = index + c
    first = (first + c) * 2
    code = code * 2
  end
  return nil, bb, bc - 15
end

return function(src, sink)
  local s, pos = src.s, src.pos
  local n = #s
  local bitbuf, bitcnt = 0, 0
  local pad = 0            -- zero bytes added past the end of the input
  local buf, w, emitted = {}, 0, 0
  local mode = 0           -- 0: block header next, 1: Huffman block, 2: stored block, 3: done
  local last = false       -- the current block is the final one
  local L, D               -- the current block's tables
  local stored_left = 0
  local more = src.more

  -- Refill the bit buffer to at least 29 bits (at most 52), a byte at a
  -- time, crossing into the next input string; past the end of the input,
  -- zero bytes are added (and counted in `pad`): an error only once they
  -- are used.
  local function fill(bb, bc, p, str, len)
    while bc < 29 do
      if p > len then
        local nx = more()
        if nx then
          str, len, p = nx, #nx, 1
        else
          if bc < pad * 8 then fail(TRUNCATED) end
          pad = pad + 1
          bc = bc + 8
        end
      else
        bb = bb + byte(str, p) * P[bc]
        p = p + 1
        bc = bc + 8
      end
    end
    return bb, bc, p, str, len
  end

  -- A data error, unless the bits that showed it were the zero padding
  -- past the end of the input (bc: the bits left in the buffer): then the
  -- input was just too short.
  local function bad(msg, bc)
    if pad > 0 and bc < pad * 8 then fail(TRUNCATED) end
    fail(msg)
  end

  local function need(k)
    if bitcnt < k then bitbuf, bitcnt, pos, s, n = fill(bitbuf, bitcnt, pos, s, n) end
  end

  local function bits(k)
    local v = bitbuf % P[k]
    bitbuf = (bitbuf - v) IDIV P[k]
    bitcnt = bitcnt - k
    return v
  end

  -- One symbol of a plain table (the code-length code).
  local function decode(t)
    need(15)
    local i = bitbuf % t.size
    local l = t.len[i]
    if l > 0 then
      bitbuf = (bitbuf - i) IDIV t.div[i] + t.rest[i]
      bitcnt = bitcnt - l
      return t.sym[i]
    end
    local sym
    sym, bitbuf, bitcnt = slow_decode(bitbuf, bitcnt, t)
    if sym == nil then bad(t.err, bitcnt) end
    return sym
  end

  -- Give the whole bytes still in the bit buffer back to the input (drop
  -- the partial byte first): at the end of the stream and before a stored
  -- block's data.
  local function unread()
    bits(bitcnt % 8)
    local k = floor(bitcnt / 8) - pad -- real bytes read ahead
    if k < 0 then fail(TRUNCATED) end
    if pos - k >= 1 then
      pos = pos - k
    else
      -- they came partly from the previous input string: rebuild them
      local t = {}
      for i = 1, k do
        local v = bitbuf % 256
        t[i] = v
        bitbuf = (bitbuf - v) IDIV 256
      end
      local rest = sub(s, pos)
      if src.base then src.base = src.base + (pos - 1) - k end
      s = char(unpack(t)) .. rest
      n, pos = #s, 1
      src.s = s
    end
    bitbuf, bitcnt, pad = 0, 0, 0
  end

  local function finish()
    unread()
    src.s, src.pos = s, pos
    mode = 3
  end

  local function dynamic()
    need(14)
    local hlit = bits(5) + 257
    local hdist = bits(5) + 1
    local hclen = bits(4) + 4
    if hlit > 286 or hdist > 30 then bad("too many length or distance symbols", bitcnt) end
    local cl = {}
    for i = 0, 18 do cl[i] = 0 end
    for i = 1, hclen do
      need(3)
      cl[CLORDER[i]] = bits(3)
    end
    if pad > 0 and bitcnt < pad * 8 then fail(TRUNCATED) end
    local CT = build(cl, 19, "code length")
    local lens, i, total = {}, 0, hlit + hdist
    while i < total do
      local sym = decode(CT)
      if sym < 16 then
        lens[i] = sym
        i = i + 1
      else
        local rep, val
        need(7)
        if sym == 16 then
          if i == 0 then bad("invalid bit length repeat", bitcnt) end
          val, rep = lens[i - 1], 3 + bits(2)
        elseif sym == 17 then
          val, rep = 0, 3 + bits(3)
        else
          val, rep = 0, 11 + bits(7)
        end
        if i + rep > total then bad("invalid bit length repeat", bitcnt) end
        for _ = 1, rep do
          lens[i] = val
          i = i + 1
        end
      end
    end
    if pad > 0 and bitcnt < pad * 8 then fail(TRUNCATED) end
    if lens[256] == 0 then fail("invalid code -- missing end-of-block") end
    local dl = {}
    for k = 0, hdist - 1 do dl[k] = lens[hlit + k] end
    L = build(lens, hlit, "literal/length")
    D = build(dl, hdist, "distance")
  end

  local function header()
    need(3)
    last = bits(1) == 1
    local btype = bits(2)
    if btype == 0 then
      bits(bitcnt % 8)
      need(16)
      local len = bits(16)
      need(16)
      local nlen = bits(16)
      if len + nlen ~= 65535 then bad("invalid stored block lengths", bitcnt) end
      unread()
      stored_left = len
      mode = 2
    elseif btype == 1 then
      L, D = fixed_tables()
      mode = 1
    elseif btype == 2 then
      dynamic()
      mode = 1
    else
      bad("invalid block type", bitcnt)
    end
  end

  local function block_done()
    if last then finish() else mode = 0 end
  end

  local function stored(wlimit)
    while stored_left > 0 and w < wlimit do
      if pos > n then
        local nx = more()
        if not nx then fail(TRUNCATED) end
        s, n, pos = nx, #nx, 1
      else
        local k = n - pos + 1
        if stored_left < k then k = stored_left end
        if wlimit - w < k then k = wlimit - w end
        if k > BATCH then k = BATCH end
        local t = { byte(s, pos, pos + k - 1) }
        for j = 1, k do buf[w + j] = t[j] end
        w, pos, stored_left = w + k, pos + k, stored_left - k
      end
    end
    if stored_left == 0 then block_done() end
  end

  -- The hot loop: decode symbols of a Huffman block until its end or until
  -- the output reaches wlimit.
  local function huff(wlimit)
    local bb, bc, p, str, len = bitbuf, bitcnt, pos, s, n
    local b, ww = buf, w
    local lsize, lsym, llen, ldiv, lrest, lsym2, lsym3 = L.size, L.sym, L.len, L.div, L.rest, L.sym2, L.sym3
    local dsize, dsym, dlen, ddiv, drest = D.size, D.sym, D.len, D.div, D.rest
    local ended = false
    while ww < wlimit do
      if bc < 29 then
        if p + 2 <= len then
          local x, y, z = byte(str, p, p + 2)
          bb = bb + (x + y * 256 + z * 65536) * P[bc]
          p, bc = p + 3, bc + 24
        else
          bb, bc, p, str, len = fill(bb, bc, p, str, len)
        end
      end
      local i = bb % lsize
      local l = llen[i]
      local sym
      if l > 0 then
        sym = lsym[i]
        bb = (bb - i) IDIV ldiv[i] + lrest[i]
        bc = bc - l
      else
        sym, bb, bc = slow_decode(bb, bc, L)
        if sym == nil then bad(L.err, bc) end
        if sym > 256 then sym = -sym end
      end
      if sym < 256 and sym >= 0 then
        ww = ww + 1
        b[ww] = sym
        local s2 = lsym2[i]
        if s2 then
          ww = ww + 1
          b[ww] = s2
          local s3 = lsym3[i]
          if s3 then
            ww = ww + 1
            b[ww] = s3
          end
        end
      elseif sym == 256 then
        ended = true
        break
      else
        local length
        if sym > 0 then
          length = sym - 256
        else
          sym = -sym
          length = LBASE[sym]
          if not length then bad("invalid literal/length code", bc) end
          local e = LEXT[sym]
          local v = bb % P[e]
          bb = (bb - v) IDIV P[e]
          bc = bc - e
          length = length + v
        end
        if bc < 29 then
          if p + 2 <= len then
            local x, y, z = byte(str, p, p + 2)
            bb = bb + (x + y * 256 + z * 65536) * P[bc]
            p, bc = p + 3, bc + 24
          else
            bb, bc, p, str, len = fill(bb, bc, p, str, len)
          end
        end
        i = bb % dsize
        l = dlen[i]
        local dist
        if l > 0 then
          dist = dsym[i]
          bb = (bb - i) IDIV ddiv[i] + drest[i]
          bc = bc - l
        else
          dist, bb, bc = slow_decode(bb, bc, D)
          if dist == nil then bad(D.err, bc) end
          dist = -(dist + 1)
        end
        if dist < 0 then
          local dsy = -dist - 1
          dist = DBASE[dsy]
          if not dist then bad("invalid distance code", bc) end
          local e = DEXT[dsy]
          local v = bb % P[e]
          bb = (bb - v) IDIV P[e]
          bc = bc - e
          dist = dist + v
        end
        if dist > ww then bad("invalid distance too far back", bc) end
        local from = ww - dist
        for k = 1, length do b[ww + k] = b[from + k] end
        ww = ww + length
      end
    end
    bitbuf, bitcnt, pos, s, n, w = bb, bc, p, str, len, ww
    if pad > 0 and bitcnt < pad * 8 then fail(TRUNCATED) end
    if ended then block_done() end
  end

  -- Hand out buf[emitted+1 .. w] as a string; slide the history down when
  -- the array has grown past SLIDE_AT.
  local function emit()
    local a, z = emitted + 1, w
    if sink then sink(buf, a, z) end
    local out
    if z - a < BATCH then
      out = char(unpack(buf, a, z))
    else
      local parts, np = {}, 0
      for i = a, z, BATCH do
        local j = i + BATCH - 1
        if j > z then j = z end
        np = np + 1
        parts[np] = char(unpack(buf, i, j))
      end
      out = concat(parts)
    end
    if w > SLIDE_AT then
      if tmove then
        tmove(buf, w - WINDOW + 1, w, 1)
      else
        local off = w - WINDOW
        for k = 1, WINDOW do buf[k] = buf[off + k] end
      end
      w = WINDOW
    end
    emitted = w
    return out
  end

  local d = {}
  function d.read(max)
    max = max or OUT
    if max > MAX_OUT then max = MAX_OUT elseif max < 1 then max = 1 end
    while true do
      if mode == 3 then
        if w > emitted then return emit() end
        return nil
      end
      if w - emitted >= max then return emit() end
      local lim = emitted + max
      if mode == 0 then header()
      elseif mode == 1 then huff(lim)
      else stored(lim) end
    end
  end
  --- True once the final block has been decoded.
  function d.done() return mode == 3 end
  return d
end
]==]

--- "//" or "/": what IDIV became on this runtime (for tests and :info).
M.IDIV = math.type and "//" or "/"

local compile = rawget(_G, "loadstring") or rawget(_G, "load")
if type(compile) ~= "function" then
  error("bio._inflate: needs load() or loadstring() to compile its decoder", 0)
end
local chunk, cerr = compile((STREAM_SOURCE:gsub("IDIV", M.IDIV)), "=bio._inflate(decoder)")
if not chunk then error("bio._inflate: cannot compile the decoder: " .. tostring(cerr), 0) end

--- A decoder for one raw deflate stream.
-- `src` is the input: a table with
--   s        the current input string,
--   pos      the 1-based position in s where the stream starts,
--   more     function() -> the next input string, or nil at the end of the
--            input (it must also store that string in src.s),
--   base     optional: the offset of s[1] in the whole input; kept right
--            when the decoder splices bytes it has read ahead back into s.
-- `sink`, optional, is called as sink(array, i, j) with each run of output
-- bytes (numbers) before they are returned: a place to compute a checksum.
-- Returns an object whose read(max) gives the next piece of output (about
-- `max` bytes, default 64 KiB; at most max + 257) or nil once the stream
-- has ended.  After that, src.s / src.pos point at the first byte after
-- the stream.
M.stream = chunk({
  byte = byte, char = char, sub = sub, concat = concat, unpack = unpack, tmove = tmove,
  floor = floor, fail = fail, build = build, fixed_tables = fixed_tables,
  P = P, LBASE = LBASE, LEXT = LEXT, DBASE = DBASE, DEXT = DEXT, CLORDER = CLORDER,
  TRUNCATED = M.TRUNCATED, WINDOW = WINDOW, OUT = OUT, MAX_OUT = MAX_OUT, SLIDE_AT = SLIDE_AT,
  BATCH = BATCH,
})

--- Decode the raw deflate stream that starts at data[pos] (pos default 1).
-- Returns the decompressed string and the position of the first byte after
-- the stream.
function M.inflate(data, pos)
  if type(data) ~= "string" then
    error("bio._inflate.inflate: bad argument #1 'data': expected a string, got " .. type(data), 2)
  end
  pos = pos or 1
  if type(pos) ~= "number" or pos < 1 or pos ~= floor(pos) then
    error("bio._inflate.inflate: bad argument #2 'pos': must be an integer from 1, got " .. tostring(pos), 2)
  end
  local src
  src = { s = data, pos = pos, more = function() return nil end }
  local d = M.stream(src)
  local parts, np = {}, 0
  while true do
    local piece = d.read(MAX_OUT)
    if piece == nil then break end
    np = np + 1
    parts[np] = piece
  end
  return concat(parts, "", 1, np), src.pos
end

return M
