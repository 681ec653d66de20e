--- bio._io: sources and sinks shared by bio.fasta and bio.fastq.
--
-- A source is a file path, an open file handle, or (through the
-- *_from_string entry points) a string holding the file's text.  Readers pull
-- fixed-size chunks, so memory stays bounded by the largest record, never the
-- file.
local A = require "bio.alphabet"

local M = {}

-- Bytes per read (opts.chunk_size overrides; tests shrink it to exercise
-- chunk edges).  LuaJIT's allocator maps every block of 128 KiB or more
-- straight from the kernel and unmaps it when freed, so each 1 MiB chunk
-- string would cost 256 fresh page faults; 64 KiB chunks reuse heap memory
-- and read 2x faster there.  PUC Lua (glibc malloc) prefers 1 MiB.
M.CHUNK = rawget(_G, "jit") and 65536 or 1048576

local stdin, open_stream -- defined below

local function io_lib(fname, level)
  local lib = rawget(_G, "io")
  if type(lib) ~= "table" or type(lib.open) ~= "function" then
    A.raise(fname .. ": cannot open files here (io.open is disabled, e.g. in a sandboxed VM); "
      .. "pass the text to the *_from_string functions instead", (level or 2) + 1)
  end
  return lib
end

--- Open `path` for reading (binary), or raise the one error every reader
-- gives, naming fname and the path, at `level` (as error() counts it, from
-- the caller of open_file).
function M.open_file(path, fname, level)
  level = (level or 1) + 1
  local f, err = io_lib(fname, level).open(path, "rb")
  if not f then A.raise(string.format("%s: cannot open '%s': %s", fname, path, tostring(err)), level) end
  return f
end

-- io.type(v) == "file", tolerating a sandbox that removed io or io.type.
local function is_file(v)
  local lib = rawget(_G, "io")
  return type(lib) == "table" and type(lib.type) == "function" and lib.type(v) == "file"
end

-- Chunks of an open plain file from byte `offset`, at most `length` bytes
-- in all (nil: to the end).
local function file_chunks(f, chunk_size, offset, length)
  assert(f:seek("set", offset))
  if length == nil then return function() return f:read(chunk_size) end end
  local left = length
  return function()
    if left <= 0 then return nil end
    local s = f:read(left < chunk_size and left or chunk_size)
    if s == nil then left = 0; return nil end
    left = left - #s
    return s
  end
end

-- How many lines come before byte `offset` of a source's text: what a shard
-- reader adds to its own line numbers, so errors name the line of the whole
-- file.  Counted only when an error needs it.
local function lines_before(open_text, offset)
  local read, close = open_text(0, offset)
  local n = 0
  local ok, err = pcall(function()
    while true do
      local s = read()
      if s == nil then break end
      local pos = 1
      while true do
        local nl = string.find(s, "\n", pos, true)
        if not nl then break end
        n, pos = n + 1, nl + 1
      end
    end
  end)
  close()
  if not ok then error(err, 0) end
  return n
end

-- open_text(offset, length) -> read, close over the decompressed text of a
-- gzip file (BGZF included): a BGZF shard starts decoding at its own block.
local function gzip_text(path, shard, fname, chunk_size, extra)
  local G = require "bio._gzip"
  if shard and shard.offset > 0 and not shard.bgzf then
    A.raise(string.format("%s: '%s' is gzip-compressed, so this shard (offset %d) cannot be read: "
      .. "only BGZF files can be entered in the middle", fname, path, shard.offset), 5 + extra)
  end
  return function(offset, length)
    local opts = { limit = length ~= -1 and length or nil, chunk_size = chunk_size, fname = fname }
    if offset > 0 then
      if shard and shard.bgzf and offset == shard.offset then
        opts.start, opts.skip = shard.block, shard.skip
      else
        opts.skip = offset
      end
    end
    return G.chunks(path, opts)
  end
end

-- open_text(offset, length) -> read, close over a plain file; the first
-- reader from offset 0 reuses `f` (already open), any other opens its own.
local function plain_text(path, f, fname, chunk_size)
  return function(offset, length)
    local g = f
    if offset ~= 0 or g == nil then
      g = assert(io_lib(fname).open(path, "rb"))
    else
      f = nil
    end
    local open = true
    return file_chunks(g, chunk_size, offset, length ~= -1 and length or nil),
      function() if open then open = false; g:close() end end
  end
end

-- A path (or a shard of it): read, close, name, line_base (see open_source).
local function open_path(path, shard, fname, chunk_size, extra)
  local f = M.open_file(path, fname, 4 + extra) -- 4: the caller of the reader (open_source, reader, caller)
  local open_text
  if f:read(2) == "\31\139" then
    f:close()
    open_text = gzip_text(path, shard, fname, chunk_size, extra)
  elseif shard then
    f:close() -- the shard's reader seeks a file of its own
    open_text = plain_text(path, nil, fname, chunk_size)
  else
    open_text = plain_text(path, f, fname, chunk_size)
  end
  local read, close = open_text(shard and shard.offset or 0, shard and shard.length or nil)
  local base
  local function line_base()
    if not shard or shard.offset == 0 then return 0 end
    if base == nil then base = lines_before(open_text, shard.offset) end
    return base
  end
  return read, close, path, line_base
end

--- The path that means standard input (sources) or standard output (destinations).
M.STDIN = "-"

-- io.stdin or io.stdout (`which`), or an error at `level` when a sandbox
-- took them away.
function stdin(fname, which, level)
  local lib = rawget(_G, "io")
  local key = which == "io.stdout" and "stdout" or "stdin"
  local f = type(lib) == "table" and lib[key]
  if not f then
    A.raise(string.format("%s: '-' means %s, which is not available here (%s is missing)", fname,
      key == "stdin" and "standard input" or "standard output", which), level + 1)
  end
  return f
end

-- A stream that cannot seek (standard input, an open file, anything with
-- read(n)), not closed by us: gzip (BGZF included) is recognised by its
-- magic bytes and decompressed as it arrives; otherwise the chunks as read.
function open_stream(f, name, fname, chunk_size)
  local none = function() return 0 end
  local head = f:read(2)
  if head == "\31\139" then
    local read, close = require("bio._gzip").stream(f, head,
      { chunk_size = chunk_size, fname = fname, name = name, close = false })
    return read, close, name, none
  end
  local function read()
    if head then -- the sniffed bytes go out with the first chunk
      local first = head
      head = nil
      if #first < chunk_size then first = first .. (f:read(chunk_size - #first) or "") end
      return first
    end
    return f:read(chunk_size)
  end
  return read, function() end, name, none
end

--- Refuse "-" where a reader needs a file it can seek (shards: a pipe
-- cannot be cut into ranges read independently).
function M.refuse_stdin(path, fname)
  if path == M.STDIN then
    A.arg_error(fname, 1, "path", "'-' (standard input) cannot be sharded: a pipe can only be read once, "
      .. "from the start; read it with records() instead, or save it to a file first", 3)
  end
end

--- Open a source for reading.  Returns a chunk reader read() -> string|nil,
-- a close() function, a display name for error messages, and line_base() ->
-- the number of lines of the file before the text this reader starts at (0
-- except for shards).  A source is a path, an open file, anything with
-- read(n), "-" for standard input, or a shard table (bio._shard; of
-- `format`, if given).  Gzip (BGZF included) is decompressed on the fly
-- (bio._gzip), from a path or a stream alike (recognised by its magic bytes).
--
-- Errors about the source itself (no such file, a bad argument) are raised
-- at the line that called the reader calling open_source; `extra` (default
-- 0) adds levels for a reader called through wrappers of its own (read()).
function M.open_source(src, fname, chunk_size, format, extra)
  chunk_size = chunk_size or M.CHUNK
  extra = extra or 0
  -- Not tail calls: Lua 5.1 would count a "(tail call)" level and blame the wrong line.
  local read, close, name, line_base
  if type(src) == "table" and require("bio._shard").check(src, fname, format, 4 + extra) then
    read, close, name, line_base = open_path(src.path, src, fname, chunk_size, extra)
    return read, close, name, line_base
  end
  if src == M.STDIN then
    read, close, name, line_base = open_stream(stdin(fname, "io.stdin", 3 + extra), "<stdin>", fname, chunk_size)
    return read, close, name, line_base
  end
  if type(src) == "string" then
    read, close, name, line_base = open_path(src, nil, fname, chunk_size, extra)
    return read, close, name, line_base
  end
  if is_file(src) then
    read, close, name, line_base = open_stream(src, "<file>", fname, chunk_size)
    return read, close, name, line_base
  end
  if type(src) == "table" and type(src.read) == "function" then
    -- anything file-like with read(n)
    read, close, name, line_base = open_stream(src, "<stream>", fname, chunk_size)
    return read, close, name, line_base
  end
  A.arg_error(fname, 1, "source", "expected a file path, \"-\" (standard input), an open file or a shard, got "
    .. type(src), 3 + extra)
end

--- The iterator triple for a generic `for`, plus a closing value: Lua 5.4
-- closes it when the loop ends early (break, error, return), so a file we
-- opened is closed at once; older runtimes ignore the fourth value and the
-- file is closed at EOF or by the garbage collector.
function M.iterator(next_fn, close)
  local closer = setmetatable({}, { __close = function() close() end })
  return next_fn, nil, nil, closer
end

--- A chunk reader over a string's text (in chunk_size slices).
function M.string_source(text, fname, chunk_size)
  A.check_string(text, fname, 1, "text")
  chunk_size = chunk_size or M.CHUNK
  local pos, n = 1, #text
  return function()
    if pos > n then return nil end
    local piece
    if pos == 1 and n <= chunk_size then piece = text
    else piece = text:sub(pos, pos + chunk_size - 1) end
    pos = pos + chunk_size
    return piece
  end, function() end, "<string>", function() return 0 end
end

--- A line reader over a chunk reader: returns next() -> line (without the
-- "\n"; a trailing "\r" is kept for the caller to strip) or nil at EOF, and
-- keeps the 1-based number of the last line returned in state.lineno.
function M.line_reader(read)
  local buf, pos, eof = "", 1, false
  local state = { lineno = 0 }
  local find, sub = string.find, string.sub
  function state.next()
    while true do
      local nl = find(buf, "\n", pos, true)
      if nl then
        local line = sub(buf, pos, nl - 1)
        pos = nl + 1
        state.lineno = state.lineno + 1
        return line
      end
      if eof then
        if pos <= #buf then
          local line = sub(buf, pos)
          pos = #buf + 1
          state.lineno = state.lineno + 1
          return line
        end
        return nil
      end
      local chunk = read()
      if chunk == nil then eof = true
      else
        buf = (pos <= #buf) and (sub(buf, pos) .. chunk) or chunk
        pos = 1
      end
    end
  end
  return state
end

--- Python's whitespace in ASCII, as str.split() and str.rstrip() see it:
-- space, \t \n \v \f \r, and the separators \28-\31 (FS, GS, RS, US).
-- A Lua pattern set body (use as "[" .. IO.SPACE .. "]").
M.SPACE = " \t\n\v\f\r\28\29\30\31"
local WS = {}
for i = 1, #M.SPACE do WS[M.SPACE:byte(i)] = true end
local TRAILING, LEADING_WORD = "[" .. M.SPACE .. "]+$", "^[" .. M.SPACE .. "]*([^" .. M.SPACE .. "]+)"

--- Python's str.strip() and str.lstrip() (whitespace as M.SPACE).
local STRIP, LSTRIP = "^[" .. M.SPACE .. "]*(.-)[" .. M.SPACE .. "]*$", "^[" .. M.SPACE .. "]*(.*)$"
function M.strip(s) return (s:match(STRIP)) end
function M.lstrip(s) return (s:match(LSTRIP)) end

--- Python's str.split() with no argument: the words, as a list.
local WORD = "[^" .. M.SPACE .. "]+"
function M.words(s)
  local out = {}
  for w in s:gmatch(WORD) do out[#out + 1] = w end
  return out
end

--- Python's str.rstrip(): drop trailing whitespace.
function M.rstrip(s)
  if not WS[s:byte(-1)] then return s end -- the common case, without a pattern
  local last = s:find(TRAILING)
  if last then return s:sub(1, last - 1) end
  return s
end

--- The first word of a title, as Python's str.split()[0] gives it ("" if
-- none).  Plain finds (memchr, compiled by LuaJIT) in the common case; a
-- pattern only for a title that starts with whitespace.
local SEPARATORS = {}
for i = 1, #M.SPACE do SEPARATORS[i] = M.SPACE:sub(i, i) end
function M.first_word(title)
  if title == "" then return "" end
  if WS[title:byte(1)] then
    return title:match(LEADING_WORD) or ""
  end
  local cut = #title + 1
  for i = 1, #SEPARATORS do
    local at = title:find(SEPARATORS[i], 1, true)
    if at and at < cut then cut = at end
  end
  if cut <= #title then return title:sub(1, cut - 1) end
  return title
end

--- Open a destination for writing: returns write(str), close().
function M.open_dest(dest, fname)
  if dest == M.STDIN then
    local out = stdin(fname, "io.stdout", 3)
    return function(s) assert(out:write(s)) end, function() out:flush() end
  end
  if type(dest) == "string" then
    local f, err = io_lib(fname).open(dest, "wb")
    if not f then A.raise(string.format("%s: cannot open '%s' for writing: %s", fname, dest, tostring(err)), 3) end
    return function(s) assert(f:write(s)) end, function() f:close() end
  end
  if is_file(dest) or (type(dest) == "table" and type(dest.write) == "function") then
    return function(s) dest:write(s) end, function() end
  end
  A.arg_error(fname, 1, "dest", "expected a file path or an open file, got " .. type(dest), 2)
end

--- Iterate over `records`: a list of records, or an iterator function.
-- A bad argument is an error at the line that called each()'s caller.
function M.each(records, fname, pos)
  if type(records) == "function" then return records end
  if type(records) ~= "table" then
    A.arg_error(fname, pos or 2, "records", "expected a list of records or an iterator, got " .. type(records), 3)
  end
  if records.seq ~= nil then records = { records } end -- a single record
  local i = 0
  return function() i = i + 1; return records[i] end
end

--- Every record a reader yields, as a list (the `read`/`parse` functions of fasta and fastq).
-- Takes the reader's whole for-loop triple (and its to-be-closed value), so an early error
-- still closes the file at once on 5.4+.
function M.collect(...)
  local out = {}
  for rec in ... do out[#out + 1] = rec end
  return out
end

return M
