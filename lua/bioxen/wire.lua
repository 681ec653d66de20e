--- bioxen.wire: the value codec and frame format of the agent protocol (docs/protocol.md).
--
-- The same file runs in the agent (every VM: lupa, stock lua5.1-5.4, LuaJIT) and in the
-- shell's Lua side, so it sticks to what all of them share: no string.pack, no goto, no
-- integer division operator, math.type only when present.
--
-- Speed matters more than elegance here (a 100 MB string must cross at >= 500 MB/s): no
-- per-character work anywhere.  Encoding appends pieces to one parts table that is joined
-- once; decoding walks the input with string.find/string.byte and cuts strings out with a
-- single string.sub.
--
--   wire.encode(v [, root [, blobs [, limit]]]) -> string (error names the path of a bad value)
--   wire.encode_list(n, ...)       -> string          (a value list: nils kept, count exact)
--   wire.encode_list_blobs(blobs, n, ...) -> string   (the same, big strings left out: below)
--   wire.encode_parts(parts, n, v [, root [, blobs [, blob_min [, limit]]]]) -> new n
--   wire.encode_list_parts_limited(parts, n, blobs, blob_min, limit, count, ...) -> new n
--   wire.list(n, ...)              -> table marked as a value list (for nesting in a reply)
--   wire.decode(s [, pos [, root [, blobs]]]) -> value, next_pos
--   wire.count(t)                  -> the array count of a decoded table (nils included)
--   wire.unpack(t)                 -> the values of a decoded value list
--   wire.read_frame(file)          -> kind, payload   (nil at end of input)
--   wire.write_frame(file, kind, payload [, n [, blobs]])
--
-- Blobs (docs/protocol.md): given a `blobs` array, the encoders leave every string of at least
-- wire.BLOB_THRESHOLD bytes out of the encoding, append it to `blobs` and write `S<i>;` (its
-- index there) in its place.  The strings go out as they
-- are, each in its own B frame before the frame that refers to them, and the decoder takes
-- them back from the `blobs` it is given: a big string is never copied into, or cut out of,
-- a payload.
--
-- Limits: a `limit` ({ bytes = N, text = "why" }) bounds the work of one encoding.  Every
-- value costs its bytes on the wire plus VALUE_COST (16) for each piece of the parts array
-- that holds it (one for a number, a boolean or nil, two for a string or a table), counted
-- each time the value is met -- a table or string held many times costs that many times --
-- and the encoding that would pass N stops with "cannot encode <path>: <text>".  Without it, the same table reached by two paths is
-- encoded twice, so `t = {t, t}` nested 40 times is 2^40 tables of work.

local type, tostring, tonumber, error, select = type, tostring, tonumber, error, select
local next, rawget, rawset, rawequal, getmetatable, setmetatable =
  next, rawget, rawset, rawequal, getmetatable, setmetatable
local byte, sub, find, format, match = string.byte, string.sub, string.find, string.format, string.match
local concat = table.concat
local floor, huge = math.floor, math.huge
local math_type = math.type            -- nil on 5.1 / 5.2 / LuaJIT
local unpack = table.unpack or unpack

local M = { VERSION = "1" }

--- Strings at least this long travel as blobs (B frames) where the encoder is given `blobs`.
M.BLOB_THRESHOLD = 1048576

local MAX_DEPTH = 200
local TWO53 = 2 ^ 53
local VALUE_COST = 16
M.VALUE_COST = VALUE_COST

-- Value lists (arguments, results) carry their own count so nils survive.  Tables made by
-- wire.list, and decoded tables whose array part holds nils, are recorded in `counts` (weak
-- keys): wire.count / wire.unpack recover the exact count and the encoder writes it.
local counts = setmetatable({}, { __mode = "k" })

---------------------------------------------------------------------------------------------
-- Paths for error messages: `value #2.seqs[3]`.  The codecs keep a stack of keys and only
-- build the text when something is wrong.

local function key_text(k)
  if type(k) == "string" then
    if find(k, "^[%a_][%w_]*$") then return "." .. k end
    return format("[%q]", k)
  end
  return "[" .. tostring(k) .. "]"
end

local function path_text(root, keys, depth)
  local parts = { root }
  for i = 1, depth do parts[#parts + 1] = key_text(keys[i]) end
  return concat(parts)
end

local function over_limit(state, depth)
  error(format("cannot encode %s: %s", path_text(state.root, state.keys, depth), state.limit_text), 0)
end

---------------------------------------------------------------------------------------------
-- Encoding

local function encode_float(v)
  if v ~= v then return "dnan;" end
  if v == huge then return "dinf;" end
  if v == -huge then return "d-inf;" end
  -- Shortest of two precisions that reads back exactly; keeps 0.1 readable as "0.1".
  local s = format("%.14g", v)
  if tonumber(s) ~= v then s = format("%.17g", v) end
  if not find(s, "[%.eEn]") then s = s .. ".0" end
  return "d" .. s .. ";"
end

local encode_number
if math_type then
  encode_number = function(v)
    if math_type(v) == "integer" then return "i" .. format("%d", v) .. ";" end
    return encode_float(v)
  end
else
  -- Lua 5.1 / LuaJIT have only doubles: integral values below 2^53 travel as integers
  -- (-0.0 stays a float so its sign survives).
  encode_number = function(v)
    if v == floor(v) and v > -TWO53 and v < TWO53 and (v ~= 0 or 1 / v > 0) then
      return "i" .. format("%.0f", v) .. ";"
    end
    return encode_float(v)
  end
end

-- Appends the encoding of v to parts (n pieces so far); returns the new piece count.
-- `state` holds the root name, the key stack, the set of tables on the current path and,
-- for blobs, `blobs` and `blob_min` (math.huge without blobs).
local function encode_value(v, parts, n, state, depth)
  local t = type(v)
  if t == "string" then
    local len = #v
    local left = state.left - len - 2 * VALUE_COST
    if left < 0 then over_limit(state, depth) end
    state.left = left
    if len >= state.blob_min then
      -- (No attempt to send the same string once: on Lua 5.4 looking a string up in a table
      -- hashes all of its bytes, which would cost as much as sending it.)
      local blobs = state.blobs
      local i = #blobs + 1
      blobs[i] = v
      parts[n + 1] = "S" .. i .. ";"
      return n + 1
    end
    parts[n + 1] = "s" .. len .. ":"
    parts[n + 2] = v
    return n + 2
  end
  local left = state.left - VALUE_COST
  if left < 0 then over_limit(state, depth) end
  state.left = left
  if t == "number" then
    local text = encode_number(v)
    parts[n + 1] = text
    state.left = left - #text
    return n + 1
  elseif t == "boolean" then
    parts[n + 1] = v and "t" or "f"
    return n + 1
  elseif v == nil then
    parts[n + 1] = "n"
    return n + 1
  elseif t ~= "table" then
    error(format("cannot encode a %s at %s", t, path_text(state.root, state.keys, depth)), 0)
  end
  local on_path = state.on_path
  if on_path[v] then
    error(format("cannot encode a cycle at %s (the table is its own ancestor)",
      path_text(state.root, state.keys, depth)), 0)
  end
  if depth >= MAX_DEPTH then
    error(format("cannot encode %s: nesting deeper than %d", path_text(state.root, state.keys, depth),
      MAX_DEPTH), 0)
  end
  on_path[v] = true
  state.left = left - VALUE_COST  -- a table is two pieces, "{N;" and "}"
  local keys = state.keys
  local count = counts[v]
  if not count then
    count = 0
    while rawget(v, count + 1) ~= nil do count = count + 1 end
  end
  parts[n + 1] = "{" .. count .. ";"
  n = n + 1
  for i = 1, count do
    keys[depth + 1] = i
    n = encode_value(rawget(v, i), parts, n, state, depth + 1)
  end
  for k, item in next, v do
    local kt = type(k)
    if kt == "number" then
      if not (k >= 1 and k <= count and k == floor(k)) then
        keys[depth + 1] = k
        local text = encode_number(k)
        parts[n + 1] = text
        state.left = state.left - #text - VALUE_COST
        n = encode_value(item, parts, n + 1, state, depth + 1)
      end
    elseif kt == "string" then
      keys[depth + 1] = k
      parts[n + 1] = "s" .. #k .. ":"
      parts[n + 2] = k
      state.left = state.left - #k - 2 * VALUE_COST
      n = encode_value(item, parts, n + 2, state, depth + 1)
    elseif kt == "boolean" then
      keys[depth + 1] = k
      parts[n + 1] = k and "t" or "f"
      state.left = state.left - 1 - VALUE_COST
      n = encode_value(item, parts, n + 1, state, depth + 1)
    else
      error(format("cannot encode a table with a %s as a key at %s", kt,
        path_text(state.root, keys, depth)), 0)
    end
  end
  parts[n + 1] = "}"
  on_path[v] = nil
  return n + 1
end

local function new_state(root, blobs, blob_min, limit)
  local state = { root = root, keys = {}, on_path = {}, blob_min = huge, left = huge }
  if blobs ~= nil then state.blobs, state.blob_min = blobs, blob_min or M.BLOB_THRESHOLD end
  if limit ~= nil then
    state.left = limit.bytes
    state.limit_text = limit.text or format("the encoding would take more than %d bytes", limit.bytes)
  end
  return state
end

--- Append the encoding of v to the array `parts` (holding n pieces); returns the new count.
-- With write_frame(f, kind, parts, n) a big string goes out without ever being copied into
-- one payload string.  With `blobs`, strings of `blob_min` bytes or more (default
-- BLOB_THRESHOLD) go to `blobs` instead (see Blobs above); `limit` bounds the work (Limits).
function M.encode_parts(parts, n, v, root, blobs, blob_min, limit)
  return encode_value(v, parts, n, new_state(root or "value", blobs, blob_min, limit), 0)
end

local function list_parts(parts, pn, state, n, ...)
  pn = pn + 1
  parts[pn] = "{" .. n .. ";"
  for i = 1, n do
    state.root = "value #" .. i
    pn = encode_value((select(i, ...)), parts, pn, state, 0)
  end
  parts[pn + 1] = "}"
  return pn + 1
end

--- Append the encoding of the value list `...` (count n, nils kept) to parts; errors name
-- the values `value #i`.
function M.encode_list_parts(parts, pn, n, ...)
  return list_parts(parts, pn, new_state("value"), n, ...)
end

--- encode_list_parts, with big strings going to `blobs` (strings of `blob_min` bytes or more;
-- nil blobs: none).
function M.encode_list_parts_blobs(parts, pn, blobs, blob_min, n, ...)
  return list_parts(parts, pn, new_state("value", blobs, blob_min), n, ...)
end

--- encode_list_parts_blobs within a `limit` (nil: none; see Limits above).
function M.encode_list_parts_limited(parts, pn, blobs, blob_min, limit, n, ...)
  return list_parts(parts, pn, new_state("value", blobs, blob_min, limit), n, ...)
end

--- Encode one value.  `root` names it in error messages (default "value").  With `blobs`,
-- big strings are appended there and referred to (see Blobs above); `limit` bounds the work.
function M.encode(v, root, blobs, limit)
  local parts = {}
  local n = encode_value(v, parts, 0, new_state(root or "value", blobs, nil, limit), 0)
  if n == 1 then return parts[1] end
  return concat(parts, "", 1, n)
end

--- A table that encodes as a value list of exactly n values (nils included).
function M.list(n, ...)
  local t = { ... }
  counts[t] = n
  return t
end

--- Encode the n values `...` as a value list; errors name them `value #i`.
function M.encode_list(n, ...)
  local parts = {}
  local pn = list_parts(parts, 0, new_state("value"), n, ...)
  return concat(parts, "", 1, pn)
end

--- encode_list with big strings left out: appended to the array `blobs` (see Blobs above).
function M.encode_list_blobs(blobs, n, ...)
  local parts = {}
  local pn = list_parts(parts, 0, new_state("value", blobs), n, ...)
  return concat(parts, "", 1, pn)
end

---------------------------------------------------------------------------------------------
-- Decoding

local B_n, B_t, B_f, B_i, B_d, B_s, B_open, B_close, B_S = byte("ntfids{}S", 1, 9)

local function fail(s, pos, state, depth, what)
  error(format("malformed wire data at byte %d (in %s): %s", pos,
    path_text(state.root, state.keys, depth), what), 0)
end

local function decode_value(s, pos, state, depth)
  local tag = byte(s, pos)
  if tag == B_s then
    local colon = find(s, ":", pos + 1, true)
    local len = colon and tonumber(sub(s, pos + 1, colon - 1))
    if not len or len < 0 or len ~= floor(len) then fail(s, pos, state, depth, "bad string length") end
    local last = colon + len
    if last > #s then fail(s, pos, state, depth, "string runs past the end of the data") end
    return sub(s, colon + 1, last), last + 1
  elseif tag == B_i then
    local semi = find(s, ";", pos + 1, true)
    local v = semi and tonumber(sub(s, pos + 1, semi - 1))
    if not v then fail(s, pos, state, depth, "bad integer") end
    return v, semi + 1
  elseif tag == B_t then
    return true, pos + 1
  elseif tag == B_f then
    return false, pos + 1
  elseif tag == B_n then
    return nil, pos + 1
  elseif tag == B_d then
    local semi = find(s, ";", pos + 1, true)
    if not semi then fail(s, pos, state, depth, "bad float") end
    local text = sub(s, pos + 1, semi - 1)
    local v = tonumber(text)
    if v == nil then
      if text == "inf" then v = huge
      elseif text == "-inf" then v = -huge
      elseif text == "nan" or text == "-nan" then v = 0 / 0 -- luacheck: ignore
      else fail(s, pos, state, depth, "bad float") end
    elseif math_type and math_type(v) == "integer" then
      v = v + 0.0
    end
    return v, semi + 1
  elseif tag == B_open then
    if depth >= MAX_DEPTH then fail(s, pos, state, depth, "nesting deeper than " .. MAX_DEPTH) end
    local semi = find(s, ";", pos + 1, true)
    local count = semi and tonumber(sub(s, pos + 1, semi - 1))
    if not count or count < 0 or count ~= floor(count) then
      fail(s, pos, state, depth, "bad array count")
    end
    local keys = state.keys
    local t = {}
    local has_nil = false
    pos = semi + 1
    local v
    for i = 1, count do
      keys[depth + 1] = i
      v, pos = decode_value(s, pos, state, depth + 1)
      if v == nil then has_nil = true else t[i] = v end
    end
    if has_nil then counts[t] = count end
    while true do
      local b = byte(s, pos)
      if b == B_close then return t, pos + 1 end
      if b == nil then fail(s, pos, state, depth, "table not closed with '}'") end
      local k
      keys[depth + 1] = "?"
      k, pos = decode_value(s, pos, state, depth + 1)
      local kt = type(k)
      if k == nil or k ~= k or kt == "table" then fail(s, pos, state, depth, "bad table key") end
      keys[depth + 1] = k
      v, pos = decode_value(s, pos, state, depth + 1)
      t[k] = v
    end
  elseif tag == B_S then
    -- S<i>; : the i-th blob (B frame) that came with this request
    local semi = find(s, ";", pos + 1, true)
    local index = semi and tonumber(sub(s, pos + 1, semi - 1))
    local blob = index and state.blobs and state.blobs[index]
    if not blob then fail(s, pos, state, depth, "reference to a blob that did not come") end
    return blob, semi + 1
  elseif tag == nil then
    fail(s, pos, state, depth, "unexpected end of data")
  end
  fail(s, pos, state, depth, format("unknown tag %q", sub(s, pos, pos)))
end

--- Decode one value starting at byte `pos` (default 1); returns it and the next position.
-- `blobs` holds the payloads of the B frames that came before this one (S<i>; refers to them).
function M.decode(s, pos, root, blobs)
  return decode_value(s, pos or 1, { root = root or "value", keys = {}, blobs = blobs }, 0)
end

--- The array count of a table (a decoded value list keeps its nils).
function M.count(t)
  local n = counts[t]
  if n then return n end
  n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  return n
end

--- The values of a value list.
function M.unpack(t)
  if t == nil then return end
  return unpack(t, 1, M.count(t))
end

---------------------------------------------------------------------------------------------
-- Frames: <kind byte><decimal length>\n<payload>

-- Reading a big payload.  One f:read(len) is the fast way everywhere except PUC Lua 5.1,
-- whose read loops over 8 KiB blocks in a luaL_Buffer that keeps re-concatenating (each
-- byte is copied ~log2(len/8K) times: 300 MB/s).  There, 8 KiB reads (one copy each), 128
-- per call, joined by one generated concatenation (one more copy) run twice as fast.
local read_payload
if _VERSION == "Lua 5.1" and type(rawget(_G, "jit")) ~= "table" then
  local BLOCK, PER_CALL = 8192, 128
  local blocks, names = {}, {}
  for i = 1, PER_CALL do blocks[i] = BLOCK; names[i] = "a[" .. i .. "]" end
  local join_group = loadstring("local a = ... return " .. concat(names, ".."))
  read_payload = function(f, len)
    if len <= 4 * BLOCK * PER_CALL then return f:read(len) end
    local groups, g, left = {}, 0, len
    while left > 0 do
      local count = floor(left / BLOCK)
      if count >= PER_CALL then count = PER_CALL end
      local sizes = blocks
      if count < PER_CALL then   -- the tail: whole blocks, then the remainder
        sizes = {}
        for i = 1, count do sizes[i] = BLOCK end
        if left - count * BLOCK > 0 then count = count + 1; sizes[count] = left - (count - 1) * BLOCK end
      end
      local pieces = { f:read(unpack(sizes, 1, count)) }
      local got = 0
      for i = 1, #pieces do got = got + #pieces[i] end
      g = g + 1
      groups[g] = (#pieces == PER_CALL and got == PER_CALL * BLOCK) and join_group(pieces) or concat(pieces)
      left = left - got
      if got < BLOCK and left > 0 then break end -- end of input: the caller reports it
    end
    return concat(groups, "", 1, g)
  end
else
  read_payload = function(f, len) return f:read(len) end
end

--- Read one frame; returns kind, payload, or nil at a clean end of input.
-- Raises on a malformed header or a payload cut short.
local EINTR = 4

-- f:read that retries a read a signal interrupted (lua5.4's lua.c installs its SIGINT
-- handler without SA_RESTART; each f:read starts with clearerr).
local function read_retrying(f, what)
  while true do
    local data, err, code = f:read(what)
    if data ~= nil or code ~= EINTR then return data, err end
  end
end

function M.read_frame(f)
  local header = read_retrying(f, "*l")
  if header == nil then return nil end
  local kind, len = match(header, "^(%u)(%d+)$")
  len = tonumber(len)
  if not kind or len > TWO53 then
    error(format("malformed frame header %q", sub(header, 1, 40)), 0)
  end
  if len == 0 then return kind, "" end
  local payload = read_payload(f, len)
  if payload ~= nil and #payload < len then
    -- A short read: interrupted by a signal (or the end of input, found below).
    local pieces = { payload }
    local have = #payload
    while have < len do
      local more = read_retrying(f, len - have)
      if more == nil or more == "" then break end
      pieces[#pieces + 1] = more
      have = have + #more
    end
    payload = concat(pieces)
  end
  if payload == nil or #payload ~= len then
    error(format("frame %s cut short: expected %d bytes, got %d", kind, len, payload and #payload or 0), 0)
  end
  return kind, payload
end

-- Pieces for one f:write call: runs of small pieces joined, big ones as they are, and never
-- more than MAX_ARGS of them (joining harder if needed).
local MAX_ARGS, BIG_PIECE = 200, 65536

local function write_args(parts, n)
  local args, na = {}, 0
  local run_start = nil
  for i = 1, n do
    local piece = parts[i]
    if #piece >= BIG_PIECE then
      if run_start then na = na + 1; args[na] = concat(parts, "", run_start, i - 1); run_start = nil end
      na = na + 1
      args[na] = piece
    elseif not run_start then
      run_start = i
    end
  end
  if run_start then na = na + 1; args[na] = concat(parts, "", run_start, n) end
  if na > MAX_ARGS then return { concat(args, "", 1, na) }, 1 end
  return args, na
end

--- Write one frame (not flushed).  The payload is a string, or an array of `n` pieces
-- (see encode_parts): big pieces are written as they are, so nothing big is copied.
-- `blobs` (an array of strings, optional) go first, each in a B frame of its own.
-- Every frame goes out in ONE f:write call, so no hook (lua.c's SIGINT hook among them) can
-- ever stop it half-written.
function M.write_frame(f, kind, payload, n, blobs)
  local ok, err
  if blobs then
    for i = 1, #blobs do
      local blob = blobs[i]
      ok, err = f:write("B", format("%d", #blob), "\n", blob)
      if not ok then error("cannot write B frame: " .. tostring(err), 0) end
    end
  end
  if type(payload) == "string" then
    ok, err = f:write(kind, format("%d", #payload), "\n", payload)
  else
    local size = 0
    for i = 1, n do size = size + #payload[i] end
    local args, na = write_args(payload, n)
    ok, err = f:write(kind, format("%d", size), "\n", unpack(args, 1, na))
  end
  if not ok then error("cannot write " .. kind .. " frame: " .. tostring(err), 0) end
end

return M
