--- bio._fast: which kernels this runtime gets, decided once at load time.
--
-- Every hot kernel in bio.* exists twice: a LuaJIT fast path (FFI byte
-- buffers and lookup tables, which the JIT compiles to tight machine code)
-- and a portable path for Lua 5.1-5.4 that pushes per-byte work into C-level
-- string functions (string.gsub with a table, string.byte over chunks).
-- Modules read `F.ffi` when they load and bind one implementation; nothing
-- is decided per call.
--
-- The portable path can be forced, e.g. to test it under LuaJIT, by setting
-- the global BIOXEN_BIO_PORTABLE = true before the first require of a bio
-- module, or the environment variable BIOXEN_BIO_PORTABLE=1.
local F = {}

local function portable_forced()
  if rawget(_G, "BIOXEN_BIO_PORTABLE") then return true end
  local os_lib = rawget(_G, "os")
  local v = os_lib and os_lib.getenv and os_lib.getenv("BIOXEN_BIO_PORTABLE")
  return v ~= nil and v ~= "" and v ~= "0"
end

local jit_lib = rawget(_G, "jit")
-- JIT switched off (jit.off()) makes FFI loops slower than the portable path.
local jit_on = type(jit_lib) == "table" and jit_lib.status ~= nil and (jit_lib.status()) == true
local has_ffi, ffi = pcall(require, "ffi")
if not has_ffi or type(ffi) ~= "table" or portable_forced() or not jit_on then ffi = nil end

--- The FFI library when fast paths are in use, else nil.
F.ffi = ffi
--- "ffi" or "portable": the kernel family every bio module bound at load time.
F.kernels = ffi and "ffi" or "portable"
--- The runtime, e.g. "LuaJIT 2.1.0-beta3" or "Lua 5.4".
F.runtime = (type(jit_lib) == "table" and jit_lib.version) or _VERSION

-- Lua 5.3+ has 64-bit integers; 5.1/5.2 and LuaJIT have doubles (exact to 2^53).
F.int64 = math.type ~= nil

local unpack = rawget(table, "unpack") or rawget(_G, "unpack")
F.unpack = unpack

if ffi then
  -- One grow-only scratch buffer per purpose, so kernels called record after
  -- record do not allocate (and zero) a fresh buffer every time.  Buffers
  -- above SCRATCH_MAX are not kept: a VM with a memory budget must not carry
  -- a chromosome-sized buffer for ever after one call.
  -- Larger ones are only held weakly: reused by back-to-back calls, freed by
  -- the next garbage collection.
  local SCRATCH_MAX = 16 * 1048576
  local scratch, scratch_size = {}, {}
  local big = setmetatable({}, { __mode = "v" })
  function F.scratch(name, n)
    if n > SCRATCH_MAX then
      local entry = big[name]
      if not entry or entry.size < n then
        entry = { buf = ffi.new("uint8_t[?]", n), size = n }
        big[name] = entry
      end
      return entry.buf
    end
    if (scratch_size[name] or 0) < n then
      local size = math.max(n, 65536)
      scratch[name] = ffi.new("uint8_t[?]", size)
      scratch_size[name] = size
    end
    return scratch[name]
  end

  --- A 256-entry lookup array from a Lua table {byte -> value} (missing -> default).
  function F.lut(ctype, map, default)
    local t = ffi.new(ctype .. "[256]")
    for b = 0, 255 do t[b] = map[b] or default or 0 end
    return t
  end
end

-- libc through the FFI, declared once here for every module that uses it (a second
-- ffi.cdef of the same declaration is an error): memchr, a vectorised byte search, and
-- the stdio calls that read a file straight into a byte buffer.  nil where unavailable.
if ffi then
  local ok_memchr = pcall(ffi.cdef, "void *memchr(const void *s, int c, size_t n);")
  local found, fn = pcall(function() return ffi.C.memchr end)
  if ok_memchr and found and fn then F.memchr = fn end
  local ok_stdio = pcall(ffi.cdef, [[
    typedef struct bioxen_FILE bioxen_FILE;
    bioxen_FILE *fopen(const char *path, const char *mode);
    size_t fread(void *ptr, size_t size, size_t n, bioxen_FILE *f);
    int fclose(bioxen_FILE *f);
    int fseek(bioxen_FILE *f, long offset, int whence);
  ]])
  --- ffi.C with fopen, fread, fclose and fseek declared (the file type is bioxen_FILE).
  if ok_stdio then F.stdio = ffi.C end
end

--- F.fopen(path) -> fp, close: a FILE* opened for reading ("rb"), closed by close() (which
-- may be called again) or by the garbage collector if its reader is abandoned; nil when
-- the file cannot be opened or there is no stdio through the FFI (callers then fall back
-- to io.open, which names the error).
function F.fopen(path)
  local C = F.stdio
  if not C then return nil end
  local fp = C.fopen(path, "rb")
  if fp == nil then return nil end
  fp = ffi.gc(fp, C.fclose)
  local open = true
  return fp, function()
    if open then open = false; ffi.gc(fp, nil); C.fclose(fp) end
  end
end

--- What the library runs on, for bioxen's :info and for bug reports.
function F.describe()
  return { runtime = F.runtime, kernels = F.kernels }
end

return F
