-- What the shell knows about a value without running it: a function's
-- signature and doc, a module's doc.  :help and the signature line shown while
-- typing a call (api.signature) both read it, so they always agree.
--
--   doc.signature(fn, name)  -> "name(a, b [, c])" or nil
--   doc.function_doc(fn)     -> its doc text (comment block above a Lua function,
--                               the reference text of a standard function) or nil
--   doc.module_doc(t)        -> the leading comment paragraph of a loaded module's file
--   doc.first_sentence(text) -> the first sentence of a doc text
--
-- Runs on Lua 5.1-5.5 and LuaJIT.

local funcsource = require("bioxen.funcsource")

local M = {}

-- The standard library has no source to read: its signatures and a line from
-- the reference manual each.  Names missing in a runtime are skipped.
local BUILTIN_TEXT = {
  { "print", "...", "Writes its arguments to standard output, separated by tabs." },
  { "type", "v", "Returns the type of its only argument, as a string." },
  { "tostring", "v", "Converts any value to a string (through __tostring if it has one)." },
  { "tonumber", "e [, base]", "Converts its argument to a number, or returns nil." },
  { "pairs", "t", "Iterates over all key-value pairs of table t." },
  { "ipairs", "t", "Iterates over t[1], t[2], ... up to the first nil." },
  { "next", "t [, k]", "Returns the next key of t after k, and its value." },
  { "select", "n, ...", "Returns the arguments after number n, or their count for '#'." },
  { "error", "message [, level]", "Raises an error; level 2 blames the caller's line." },
  { "assert", "v [, message]", "Raises an error if v is false or nil; otherwise returns all its arguments." },
  { "pcall", "f, ...", "Calls f in protected mode: true and its results, or false and the error." },
  { "xpcall", "f, handler, ...", "Calls f in protected mode, with handler called on error." },
  { "require", "modname", "Loads the module modname (once) and returns its value." },
  { "load", "chunk [, chunkname [, mode [, env]]]", "Compiles a chunk (a string or a function) into a function." },
  { "loadstring", "string [, chunkname]", "Compiles a string into a function." },
  { "dofile", "[filename]", "Runs a Lua file and returns its results." },
  { "loadfile", "[filename [, mode [, env]]]", "Compiles a Lua file into a function." },
  { "setmetatable", "t, mt", "Sets the metatable of t and returns t." },
  { "getmetatable", "v", "Returns the metatable of v (or its __metatable field)." },
  { "rawget", "t, k", "t[k] without invoking __index." },
  { "rawset", "t, k, v", "t[k] = v without invoking __newindex." },
  { "rawequal", "a, b", "a == b without invoking __eq." },
  { "rawlen", "v", "The length of v without invoking __len." },
  { "unpack", "list [, i [, j]]", "Returns list[i], ..., list[j]." },
  { "collectgarbage", "[opt [, arg]]", "Controls the garbage collector ('collect', 'count', ...)." },
  { "string.byte", "s [, i [, j]]", "Returns the byte values of s:sub(i, j)." },
  { "string.char", "...", "Returns the string of the given byte values." },
  { "string.find", "s, pattern [, init [, plain]]", "Finds the first match of pattern in s: its start and end." },
  { "string.format", "fmt, ...", "Formats its arguments as printf would." },
  { "string.gmatch", "s, pattern", "Iterates over the matches of pattern in s." },
  { "string.gsub", "s, pattern, repl [, n]", "Replaces the matches of pattern in s; returns the string and the count." },
  { "string.len", "s", "Returns the length of s in bytes." },
  { "string.lower", "s", "Returns s with upper-case letters made lower case." },
  { "string.upper", "s", "Returns s with lower-case letters made upper case." },
  { "string.match", "s, pattern [, init]", "Returns the captures of the first match of pattern in s." },
  { "string.rep", "s, n [, sep]", "Returns n copies of s, separated by sep." },
  { "string.reverse", "s", "Returns s reversed." },
  { "string.sub", "s, i [, j]", "Returns the substring of s from i to j (negative: from the end)." },
  { "string.pack", "fmt, v1, ...", "Packs values into a binary string." },
  { "string.unpack", "fmt, s [, pos]", "Unpacks values from a binary string." },
  { "table.concat", "list [, sep [, i [, j]]]", "Returns list[i] .. sep .. ... .. list[j]." },
  { "table.insert", "list, [pos,] value", "Inserts value at pos (default: the end)." },
  { "table.remove", "list [, pos]", "Removes and returns list[pos] (default: the last element)." },
  { "table.sort", "list [, comp]", "Sorts list in place, with comp(a, b) as 'a < b'." },
  { "table.unpack", "list [, i [, j]]", "Returns list[i], ..., list[j]." },
  { "table.pack", "...", "Returns its arguments in a table, with n their count." },
  { "table.move", "a1, f, e, t [, a2]", "Moves a1[f..e] to a2[t..] and returns a2." },
  { "math.abs", "x", "Returns the absolute value of x." },
  { "math.ceil", "x", "Returns the smallest integral value >= x." },
  { "math.floor", "x", "Returns the largest integral value <= x." },
  { "math.max", "x, ...", "Returns the largest of its arguments." },
  { "math.min", "x, ...", "Returns the smallest of its arguments." },
  { "math.sqrt", "x", "Returns the square root of x." },
  { "math.exp", "x", "Returns e^x." },
  { "math.log", "x [, base]", "Returns the logarithm of x (natural by default)." },
  { "math.fmod", "x, y", "Returns the remainder of x / y, rounded towards zero." },
  { "math.modf", "x", "Returns the integral and the fractional part of x." },
  { "math.random", "[m [, n]]", "A pseudo-random number: in [0, 1), [1, m] or [m, n]." },
  { "math.randomseed", "[x]", "Seeds the pseudo-random generator." },
  { "math.tointeger", "x", "Converts x to an integer if it is representable, else nil." },
  { "io.open", "filename [, mode]", "Opens a file; returns a file handle, or nil and an error message." },
  { "io.read", "...", "Reads from standard input ('l', 'n', 'a' or a count)." },
  { "io.write", "...", "Writes its arguments to standard output." },
  { "io.lines", "[filename, ...]", "Iterates over the lines of a file (standard input by default)." },
  { "io.popen", "prog [, mode]", "Runs prog and returns a handle on its output (or input)." },
  { "os.time", "[t]", "Returns the current time, or the time of date table t." },
  { "os.clock", "", "Returns the CPU time used by the program, in seconds." },
  { "os.date", "[format [, time]]", "Formats a date as a string or a table ('*t')." },
  { "os.getenv", "name", "Returns the value of environment variable name, or nil." },
  { "os.execute", "[command]", "Runs a shell command." },
  { "os.remove", "filename", "Deletes a file." },
  { "os.rename", "old, new", "Renames a file." },
  { "os.exit", "[code [, close]]", "Ends the program with the given status." },
}

local builtin -- function value -> {name, params, doc}, built on first use

local function builtins()
  if builtin then return builtin end
  builtin = {}
  for _, entry in ipairs(BUILTIN_TEXT) do
    local v = _G
    for part in entry[1]:gmatch("[^%.]+") do
      v = type(v) == "table" and rawget(v, part) or nil
    end
    if type(v) == "function" and not builtin[v] then
      builtin[v] = { name = entry[1], params = entry[2], doc = entry[3] }
    end
  end
  return builtin
end

-- A Lua function's parameter list: debug.getlocal names them where it can
-- (5.2+, LuaJIT); Lua 5.1 needs the source text.
local params_cache = setmetatable({}, { __mode = "k" })

local function lua_params(fn)
  local cached = params_cache[fn]
  if cached ~= nil then return cached or nil end
  local info = debug.getinfo(fn, "u")
  local text
  if info.nparams then
    local names = {}
    for i = 1, info.nparams do names[i] = debug.getlocal(fn, i) or ("arg" .. i) end
    if info.isvararg then names[#names + 1] = "..." end
    text = table.concat(names, ", ")
  else
    local src = funcsource.source_of(fn)
    text = src and src:match("^function%s*(%b())")
    text = text and text:sub(2, -2):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  end
  params_cache[fn] = text or false
  return text
end

-- The parameters without the first (self, for obj:name(...)).
local function drop_self(params)
  return (params:gsub("^[%w_]+%s*,?%s*", "", 1):gsub("^%[,%s*", "["))
end

-- "name(params)"; method: called as obj:name(...), so without the first parameter.
function M.signature(fn, name, method)
  if type(fn) ~= "function" then return nil end
  local entry = builtins()[fn]
  local params = entry and entry.params
  if not params and debug.getinfo(fn, "S").what == "Lua" then params = lua_params(fn) end
  if not params then return nil end
  if method then params = drop_self(params) end
  return (name or (entry and entry.name) or "function") .. "(" .. params .. ")"
end

-- The text of a doc comment without its comment markers.
local function strip_comment(text)
  local lines = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    lines[#lines + 1] = (line:gsub("^%s*%-%-+%s?", ""))
  end
  return table.concat(lines, "\n")
end

function M.function_doc(fn)
  if type(fn) ~= "function" then return nil end
  local entry = builtins()[fn]
  if entry then return entry.doc end
  local ok, comment = pcall(funcsource.doc_comment, fn)
  if not ok or not comment then return nil end
  return strip_comment(comment)
end

-- The first sentence of a doc text (its lines joined), at most ~160 bytes.
function M.first_sentence(text)
  if not text then return nil end
  local para = text:match("^%s*(.-)\n%s*\n") or text
  para = para:gsub("%s+", " "):gsub("^ ", "")
  local sentence = para:match("^(.-[%.!?])%s") or para:match("^(.-[%.!?])$") or para
  if #sentence > 160 then sentence = sentence:sub(1, 157) .. "..." end
  return sentence
end

-- The name under which t is in package.loaded, or nil.
M.module_name = require("bioxen.runner.complete").module_name

-- The file a module name loads from, as require would find it (package.path).
local function module_file(name)
  local stem = name:gsub("%.", "/")
  for template in package.path:gmatch("[^;]+") do
    local path = template:gsub("%?", stem)
    local f = io.open(path, "rb")
    if f then return f end
  end
  return nil
end

-- The leading comment paragraph of the module file of t (a loaded module).
function M.module_doc(t)
  local name = M.module_name(t)
  local f = name and module_file(name)
  if not f then return nil end
  local lines = {}
  for line in f:lines() do
    local body = line:match("^%-%-+%s?(.*)$")
    if not body or (body:find("^%s*$") and #lines > 0) then break end
    if not body:find("^%s*$") then lines[#lines + 1] = body end
    if #lines >= 8 then break end
  end
  f:close()
  if #lines == 0 then return nil end
  return table.concat(lines, "\n")
end

return M
