--- The sandbox of the agent (configure{sandbox = true}; docs/agent.md has the exact
--- whitelist): the user environment a sandboxed VM runs in, its `require` (module files
--- only, by module name) and its text-only `load`.
---
---   local sandbox = require("bioxen.agent.sandbox").bind(agent)  -- what it needs of the agent
---   local env = sandbox.new(allow_ffi, module_path)
---   sandbox.protect_string_metatable(env.string)
---
--- Part of the agent (its frames are the agent's), loaded before user code runs, so
--- everything it uses is captured in locals here.  Runs on Lua 5.1-5.4 and LuaJIT.

local type, tostring, pairs, error, select, rawget, rawset, getmetatable, require =
  type, tostring, pairs, error, select, rawget, rawset, getmetatable, require
local s_find, s_format, s_gsub, s_gmatch = string.find, string.format, string.gsub, string.gmatch
local t_concat = table.concat
local io_open = io.open
local collectgarbage = collectgarbage
local _G = _G

local IS_LUAJIT = type(rawget(_G, "jit")) == "table"

-- agent: { output =, compile =, prepare =, pcall =, xpcall =, resume =, create =, wrap =, has_ffi = }
-- (user_pcall and friends: what user code's pcall, xpcall, coroutine.* are; docs/agent.md).
local function bind(agent)
local M = {}
local output, compile, prepare = agent.output, agent.compile, agent.prepare
local user_pcall, user_xpcall, user_resume = agent.pcall, agent.xpcall, agent.resume
local hooked_create, hooked_wrap, HAS_FFI = agent.create, agent.wrap, agent.has_ffi

local SAFE_GLOBALS = { "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber",
  "tostring", "type", "unpack", "xpcall", "rawequal", "rawlen", "rawget", "rawset", "getmetatable",
  "setmetatable", "_VERSION" }
local SAFE_LIBS = {
  string = { "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower", "match", "rep",
    "reverse", "sub", "upper", "pack", "packsize", "unpack" },
  table = { "concat", "insert", "maxn", "remove", "sort", "unpack", "pack", "move" },
  math = { "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "cosh", "deg", "exp", "floor", "fmod",
    "frexp", "huge", "ldexp", "log", "log10", "max", "maxinteger", "min", "mininteger", "modf", "pi",
    "pow", "rad", "random", "randomseed", "sin", "sinh", "sqrt", "tan", "tanh", "tointeger", "type", "ult" },
  os = { "clock", "time", "date", "difftime" },
  coroutine = { "create", "isyieldable", "resume", "running", "status", "wrap", "yield", "close" },
  utf8 = { "char", "charpattern", "codes", "codepoint", "len", "offset" },
  bit32 = { "arshift", "band", "bnot", "bor", "btest", "bxor", "extract", "lrotate", "lshift",
    "replace", "rrotate", "rshift" },
  bit = { "tobit", "tohex", "bnot", "band", "bor", "bxor", "lshift", "rshift", "arshift", "rol", "ror", "bswap" },
}

local function copy_fields(src, names)
  local t = {}
  if type(src) ~= "table" then return nil end
  for i = 1, #names do t[names[i]] = rawget(src, names[i]) end
  return t
end


local function sandbox_require_factory(env, loaded, module_path)
  return function(name)
    if type(name) ~= "string" then error("bad argument #1 to 'require' (string expected)", 2) end
    -- A module name is words (letters, digits, '_', '-') joined by single dots.  Nothing
    -- else reaches io.open: no NUL (which would end the path there, dropping the '.lua' of
    -- the template), no '/', no '..', no '%'.
    if not s_find(name, "^[%w_%-]+$") and not (s_find(name, "^[%w_%-][%w_%-%.]*[%w_%-]$")
        and not s_find(name, "%.%.")) then
      error(s_format("bad argument #1 to 'require' (%q is not a module name: expected words of "
        .. "letters, digits, '_' and '-' joined by dots)", name), 2)
    end
    local have = loaded[name]
    if have ~= nil then return have end
    local fname = s_gsub(name, "%.", "/")
    local tried = {}
    for template in s_gmatch(module_path, "[^;]+") do
      local path = s_gsub(template, "%?", fname)
      local fh = io_open(path, "rb")
      if fh then
        local src = fh:read("*a")
        fh:close()
        local f, err = compile(src, "@" .. path, env)
        if not f then error(s_format("error loading module '%s' from file '%s':\n\t%s", name, path, err), 2) end
        prepare(f)
        local r = f(name, path)
        if r == nil then r = loaded[name]; if r == nil then r = true end end
        loaded[name] = r
        return r
      end
      tried[#tried + 1] = "\n\tno file '" .. path .. "'"
    end
    error(s_format("module '%s' not found:%s", name, t_concat(tried)), 2)
  end
end

function M.new(allow_ffi, module_path)
  local env = {}
  for i = 1, #SAFE_GLOBALS do env[SAFE_GLOBALS[i]] = rawget(_G, SAFE_GLOBALS[i]) end
  for lib, names in pairs(SAFE_LIBS) do env[lib] = copy_fields(rawget(_G, lib), names) end
  env._G = env
  env.print = output.print
  env.unpack = env.unpack or env.table.unpack
  local gc = collectgarbage
  env.collectgarbage = function(opt, arg)
    if opt == nil or opt == "collect" or opt == "count" or opt == "step" or opt == "isrunning" then
      return gc(opt or "collect", arg)
    end
    error("collectgarbage('" .. tostring(opt) .. "') is not available in the sandbox", 2)
  end
  env.io = {}
  output.install(env.io)
  -- io.lines/io.input with a file name would open files: not in the sandbox.
  env.io.lines = function(name, ...)
    if name ~= nil then error("io.lines on files is not available in the sandbox", 2) end
    return output.stdin:lines()
  end
  env.io.input = function(f)
    if f ~= nil then error("io.input is not available in the sandbox", 2) end
    return output.stdin
  end
  env.io.output = function(f)
    if f ~= nil and f ~= output.stdout then error("io.output is not available in the sandbox", 2) end
    return output.stdout
  end
  local write_values, stdout = output.write_values, output.stdout
  env.io.write = function(...) write_values(select("#", ...), ...); return stdout end
  env.io.stderr = stdout
  env.pcall = user_pcall
  env.xpcall = user_xpcall
  env.coroutine.resume = user_resume
  if not IS_LUAJIT then
    env.coroutine.create = hooked_create
    env.coroutine.wrap = hooked_wrap
  end
  -- load: text only, in the sandbox environment (unless the caller passes its own table).
  env.load = function(chunk, chunkname, mode, fenv)
    if type(chunk) == "function" then
      local pieces = {}
      while true do
        local piece = chunk()
        if piece == nil or piece == "" then break end
        if type(piece) ~= "string" then error("reader function must return a string", 2) end
        pieces[#pieces + 1] = piece
      end
      chunk = t_concat(pieces)
    end
    if type(chunk) ~= "string" then return nil, "bad argument #1 to 'load' (string expected)" end
    if mode ~= nil and mode ~= "t" and mode ~= "bt" and mode ~= "tb" then
      return nil, "attempt to load a binary chunk (mode is '" .. tostring(mode) .. "')"
    end
    local f, err = compile(chunk, chunkname or chunk, type(fenv) == "table" and fenv or env)
    if f then prepare(f) end
    return f, err
  end
  env.loadstring = function(s, chunkname) return env.load(s, chunkname) end
  local loaded = {}
  for name, lib in pairs({ string = env.string, table = env.table, math = env.math, os = env.os,
    coroutine = env.coroutine, utf8 = env.utf8, bit32 = env.bit32, bit = env.bit, io = env.io }) do
    loaded[name] = lib
  end
  loaded._G = env
  if allow_ffi and HAS_FFI then
    loaded.ffi = require("ffi")
    env.jit = rawget(_G, "jit")
    loaded.jit = env.jit
  end
  env.require = sandbox_require_factory(env, loaded, module_path)
  env.package = { loaded = loaded, path = module_path }
  return env
end

-- Every string shares one metatable: in the sandbox its __index becomes the sandbox's own
-- string table (so ("").dump is gone too) and getmetatable("") returns false, so nobody
-- can change how all strings behave.
function M.protect_string_metatable(safe_string)
  local mt = getmetatable("")
  if type(mt) == "table" then
    rawset(mt, "__index", safe_string)
    rawset(mt, "__metatable", false)
  end
end

return M
end

return { bind = bind }
