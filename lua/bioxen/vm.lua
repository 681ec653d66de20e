--- bioxen.vm: the `vm` table of the shell (docs/vms.md).
--
--   local w = vm.create{name="w1", profile="standard"}   -- type="local" by default
--   w:eval("return 1 + 1")            --> 2
--   w:set("x", 42); w:get("x")        --> 42
--   vm.send(w, "return heavy()"); ... ; vm.recv(w [, timeout])
--   vm.map(function(s) return #s end, seqs, {vms = 2})
--
-- Arguments and results are encoded here with bioxen.wire, so integers, floats and byte
-- strings reach the VM exactly as they are; the Python side (bioxen_shell/vm/bindings.py)
-- only splices the encoded bytes into requests.  Errors from a VM are raised as Lua errors
-- carrying the VM-side `chunk:line: message` (level 0: no position of ours is added).
--
-- Big strings (wire.BLOB_THRESHOLD and up) are never copied into an encoding: the encoder
-- leaves them out (`S<i>;`) and hands them over in a table of their own, which Python sends
-- as B frames; a reply's big strings come back the same way, and the decoder takes them from
-- that table.  The reply's payload is decoded where its values start, not cut out first.
--
-- Runs on Lua 5.1-5.4 and LuaJIT.

local wire = require("bioxen.wire")

local type, tostring, select, error, setmetatable, getmetatable, pairs, ipairs, rawget =
  type, tostring, select, error, setmetatable, getmetatable, pairs, ipairs, rawget
local encode, decode, wire_unpack = wire.encode, wire.decode, wire.unpack
local encode_list_blobs = wire.encode_list_blobs

local M = {}

--- Build the `vm` API on top of the host functions Python passes in.
function M.bind(host)
  local h_create, h_eval, h_call, h_set, h_get, h_require = host.create, host.eval, host.call,
    host.set, host.get, host.require
  local h_info, h_stop, h_restart, h_destroy, h_send, h_recv = host.info, host.stop,
    host.restart, host.destroy, host.send, host.recv
  local h_list, h_lookup, h_destroy_all, h_map, h_status, h_pending = host.list, host.lookup,
    host.destroy_all, host.map, host.status, host.pending
  local h_cpus = host.cpus
  local h_protocol_error = host.protocol_error

  local api = {}
  local VM = {}
  VM.__index = VM
  VM.__tostring = function(self) return "vm " .. self.name end
  VM.__name = "bioxen.vm"

  -- One Lua object per VM, so vm.get("w1") == w1.
  local objects = setmetatable({}, { __mode = "v" })

  -- A VM call stopped by Ctrl-C: let the shell's own interrupt hook (the one that stops Lua
  -- loops) see the pending Ctrl-C, so the shell reports "interrupted!" exactly as for Lua
  -- code (and a script exits 130).  If the interrupt did not come from the shell (a call
  -- timeout, vm:interrupt() from elsewhere) the hook finds nothing and returns.
  local gethook = debug and debug.gethook
  local function shell_interrupt_point()
    if not gethook then return end
    local hook = gethook()
    if type(hook) == "function" then hook("count") end
  end

  -- Host functions return (true, ...) or (false, kind, message, traceback).
  local function check(ok, ...)
    if ok then return ... end
    local kind, message = ...
    if kind == "interrupted" then shell_interrupt_point() end
    error(tostring(message), 0)
  end

  -- A reply's values: the payload `s`, where they start in it, the blobs they refer to.
  -- Values that do not decode (the VM broke the protocol) crash the VM and raise its error.
  -- `stop`: where the values end (the host found the reply's envelope well formed).
  local function decode_values(s, pos, blobs, stop)
    local v, after = decode(s, pos, "value", blobs)
    if stop and after ~= stop then
      error("malformed wire data: the values end at byte " .. tostring(after) .. ", not " .. stop, 0)
    end
    if type(v) ~= "table" and v ~= nil then
      error("malformed wire data: the values are a " .. type(v) .. ", not a table", 0)
    end
    return v
  end

  local function values_of(uid, s, pos, blobs, stop)
    if s == nil then return end
    local ok, v = pcall(decode_values, s, pos, blobs, stop)
    if not ok then check(h_protocol_error(uid, tostring(v))) end
    return wire_unpack(v)
  end

  -- LuaJIT fast path (elsewhere nil, and the host copies each blob out of Lua, as lupa
  -- does for any string): blobs.at lists where each blob's bytes are and how many, so the
  -- host writes them to the VM straight from the Lua strings.  The addresses hold while the
  -- host function runs: the blobs table is its argument, and LuaJIT never moves a string.
  local address_blobs
  do
    local ok, ffi = pcall(require, "ffi")
    if ok and type(ffi) == "table" and jit then
      local char_ptr, uintptr = ffi.typeof("const char *"), ffi.typeof("uintptr_t")
      address_blobs = function(blobs)
        local at = {}
        for i, b in ipairs(blobs) do
          at[2 * i - 1], at[2 * i] = tonumber(ffi.cast(uintptr, ffi.cast(char_ptr, b))), #b
        end
        blobs.at = at
      end
    end
  end

  -- Arguments: the encoded value list and its blobs (nil when there are none).
  local function encode_args(n, ...)
    local blobs = {}
    local s = encode_list_blobs(blobs, n, ...)
    if blobs[1] == nil then return s, nil end
    if address_blobs then address_blobs(blobs) end
    return s, blobs
  end

  local function encode_value(v, name)
    local blobs = {}
    local s = encode(v, name, blobs)
    if blobs[1] == nil then return s, nil end
    if address_blobs then address_blobs(blobs) end
    return s, blobs
  end

  local function object(ref)
    local obj = objects[ref.uid]
    if obj == nil then
      obj = setmetatable({ name = ref.name, _uid = ref.uid }, VM)
      objects[ref.uid] = obj
    end
    return obj
  end

  local function objects_of(encoded)
    local refs = decode(encoded)
    local out = {}
    for i = 1, wire.count(refs) do out[i] = object(refs[i]) end
    return out
  end

  local function uid_of(v, fname)
    if getmetatable(v) ~= VM then
      error("bad argument #1 to '" .. fname .. "' (a VM expected, got " .. type(v) .. ")", 3)
    end
    return v._uid
  end

  -- The VM a method was called on; a call with '.' instead of ':' gets a hint.
  local function this(self, fname)
    if getmetatable(self) ~= VM then
      error("bad self for '" .. fname .. "' (call it as vm:" .. fname .. "(...), with a colon)", 3)
    end
    return self._uid
  end

  local function need_string(v, n, fname)
    if type(v) ~= "string" then
      error("bad argument #" .. n .. " to '" .. fname .. "' (string expected, got " .. type(v) .. ")", 3)
    end
  end

  ------------------------------------------------------------------------------------- api

  --- vm.create{name=, profile=, runtime=, type="local"|"ssh"|"xcpng", count=N, …}
  function api.create(opts)
    if opts == nil then opts = {} end
    if type(opts) == "string" then opts = { name = opts } end
    if type(opts) ~= "table" then
      error("bad argument #1 to 'create' (table of options expected, got " .. type(opts) .. ")", 2)
    end
    local refs, is_list = check(h_create(encode(opts, "options")))
    local list = objects_of(refs)
    if is_list then return list end
    return list[1]
  end

  function api.list()
    return objects_of(check(h_list()))
  end

  function api.get(name)
    need_string(name, 1, "get")
    local refs = check(h_lookup(name))
    if refs == nil then return nil end
    return objects_of(refs)[1]
  end

  function api.destroy_all()
    check(h_destroy_all())
  end

  function api.send(v, code, ...)
    local uid = uid_of(v, "send")
    need_string(code, 2, "send")
    local args, blobs = encode_args(select("#", ...), ...)
    return (check(h_send(uid, code, args, nil, blobs)))
  end

  --- Results of the oldest vm.send, in order; nil, "timeout" if not there in time.
  function api.recv(v, timeout)
    local uid = uid_of(v, "recv")
    if timeout ~= nil and type(timeout) ~= "number" then
      error("bad argument #2 to 'recv' (number of seconds expected, got " .. type(timeout) .. ")", 2)
    end
    local vals, pos, blobs, stop = check(h_recv(uid, timeout))
    if vals == nil then return nil, "timeout" end
    return values_of(uid, vals, pos, blobs, stop)
  end

  -- What a map sends, from its function and options (checked here: errors name the caller
  -- of vm.map / vm.map_file, three levels up).
  local function prepare_map(fn, opts)
    local source, chunkname, line
    if type(fn) == "function" then
      local funcsource = require("bioxen.funcsource")
      local ups = funcsource.upvalues(fn)
      if ups and #ups > 0 then
        error("vm.map: the function uses variables from outside it (" .. table.concat(ups, ", ") ..
          "); pass them in the items or make them globals in the VMs", 3)
      end
      local why
      source, why = funcsource.source_of(fn)
      if not source then error("vm.map: cannot send this function to a VM: " .. tostring(why), 3) end
      local locals = funcsource.session_locals(fn, source)
      if #locals > 0 then
        error("vm.map: the function uses the REPL's locals (" .. table.concat(locals, ", ") ..
          "), which stay in the shell; pass them in the items or opts.args, or make them globals in the VMs", 3)
      end
      local info = debug and debug.getinfo and debug.getinfo(fn, "S")
      chunkname = info and info.source or "=map"
      if chunkname:sub(1, 1) ~= "=" and chunkname:sub(1, 1) ~= "@" then chunkname = "=map" end
      line = info and info.linedefined or 1
    elseif type(fn) == "string" then
      source, chunkname, line = fn, "=map", 1
    else
      error("bad argument #1 to 'map' (function or source text expected, got " .. type(fn) .. ")", 3)
    end
    opts = opts or {}
    if type(opts) ~= "table" then
      error("bad argument #3 to 'map' (table of options expected, got " .. type(opts) .. ")", 3)
    end
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    local pool = o.pool
    if pool == nil and type(o.vms) == "table" then pool, o.vms = o.vms, nil end
    if pool ~= nil then
      local uids = {}
      for i, v in ipairs(pool) do uids[i] = uid_of(v, "map") end
      o.pool = uids
    end
    local each = o.on_result
    o.on_result = nil
    if each ~= nil and type(each) ~= "function" then
      error("bad option 'on_result' to 'map' (function expected, got " .. type(each) .. ")", 3)
    end
    -- opts.args travel encoded like the items (split, never decoded, on the host side).
    local args = o.args
    o.args = nil
    if args ~= nil and type(args) ~= "table" then
      error("bad option 'args' to 'map' (list of values expected, got " .. type(args) .. ")", 3)
    end
    return { source = source, chunkname = chunkname, line = line, options = encode(o, "options"),
      deliver = each and function(i, encoded) each(i, (decode(encoded))) end,
      args = args and encode(args, "args") }
  end

  -- Run a prepared map over `items`.
  local function run_map(m, items)
    local res, failures = check(h_map(m.source, m.chunkname, m.line, encode(items, "items"), m.options,
      m.deliver, m.args))
    local results = res and decode(res) or nil
    if failures ~= nil then failures = (decode(failures)) end
    return results, failures
  end

  --- vm.map(fn, items [, opts]) -> results, failures
  -- fn: a function without upvalues, or the source text of one ("function(x) ... end").
  -- opts: vms = N (VMs created for this map) or a list of VMs (a pool), profile=, runtime=,
  --       type=, progress = true|false (default: on a terminal),
  --       on_result = function(i, result) (streaming: called in input order as results
  --       arrive; vm.map then returns nil, failures), stage = false (remote VMs: shard paths
  --       exist there already, nothing is uploaded).
  -- failures: nil, or a list of {index = i, error = message}; results[i] is nil for those.
  function api.map(fn, items, opts)
    if type(items) ~= "table" then
      error("bad argument #2 to 'map' (list of items expected, got " .. type(items) .. ")", 2)
    end
    local m = prepare_map(fn, opts) -- not a tail call: its errors name our caller
    local results, failures = run_map(m, items)
    return results, failures
  end

  --- vm.map_file(fn, path [, opts]) -> results, failures: vm.map over record-aligned shards
  -- of a FASTA or FASTQ file (plain or BGZF; see bio.fasta.shards).  fn(shard) reads its own
  -- range (fasta.records(shard), fasta.gc_records(shard), fastq.records(shard)), so the data
  -- never passes through the shell.  opts: as vm.map, plus format = "fasta"|"fastq" (default:
  -- from the file's first record), shards = N (default 4 per VM: an idle VM takes the next;
  -- sized for the VMs, see bio.fasta.shards).
  function api.map_file(fn, path, opts)
    if type(path) ~= "string" then
      error("bad argument #2 to 'map_file' (file path expected, got " .. type(path) .. ")", 2)
    end
    opts = opts or {}
    if type(opts) ~= "table" then
      error("bad argument #3 to 'map_file' (table of options expected, got " .. type(opts) .. ")", 2)
    end
    local S = require "bio._shard"
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    local format, nshards = o.format, o.shards
    o.format, o.shards = nil, nil
    if nshards ~= nil and (type(nshards) ~= "number" or nshards < 1 or nshards ~= math.floor(nshards)) then
      error("bad option 'shards' to 'map_file' (whole number >= 1 expected, got " .. tostring(nshards) .. ")", 2)
    end
    if path == "-" then
      error("bad argument #2 to 'map_file' ('-' is standard input, which cannot be cut into shards: "
        .. "save it to a file first)", 2)
    end
    if format == nil then format = S.sniff(path, "vm.map_file") end
    if format ~= "fasta" and format ~= "fastq" then
      error("bad option 'format' to 'map_file' (\"fasta\" or \"fastq\" expected, got " .. tostring(format) .. ")", 2)
    end
    local nvms = math.max(1, type(o.vms) == "number" and o.vms or type(o.vms) == "table" and #o.vms
      or type(o.pool) == "table" and #o.pool or check(h_cpus()))
    if nshards == nil then nshards = 4 * nvms end
    local m = prepare_map(fn, o)
    -- The shards are found before the VMs are made: this is Lua, which runs while the VM
    -- layer's warm-up (Python) finishes importing (bindings.warm_up), and a file cut into
    -- fewer shards than there are VMs gets no more VMs than shards.  (Creating the VMs
    -- meanwhile instead was measured slower on 2 cores: both want the CPU.)  Sized for nvms
    -- VMs: smaller shards last (bio.fasta.shards).
    local ok, shards = pcall(S.shards, path, nshards, format, "vm.map_file", nvms)
    if not ok then error(shards, 2) end
    local results, failures = run_map(m, shards)
    return results, failures
  end

  api.VM = VM

  ------------------------------------------------------------------------------- methods

  function VM:eval(code, ...)
    local uid = this(self, "eval")
    need_string(code, 1, "eval")
    local args, blobs = encode_args(select("#", ...), ...)
    return values_of(uid, check(h_eval(uid, code, args, nil, blobs)))
  end

  function VM:call(fname, ...)
    local uid = this(self, "call")
    need_string(fname, 1, "call")
    local args, blobs = encode_args(select("#", ...), ...)
    return values_of(uid, check(h_call(uid, fname, args, blobs)))
  end

  function VM:set(name, value)
    local uid = this(self, "set")
    need_string(name, 1, "set")
    check(h_set(uid, name, encode_value(value, name)))
    return self
  end

  function VM:get(name)
    local uid = this(self, "get")
    need_string(name, 1, "get")
    return values_of(uid, check(h_get(uid, name)))
  end

  function VM:require(module)
    local uid = this(self, "require")
    need_string(module, 1, "require")
    return values_of(uid, check(h_require(uid, module)))
  end

  function VM:info()
    return (decode(check(h_info(this(self, "info")))))
  end

  function VM:status()
    return check(h_status(this(self, "status")))
  end

  function VM:stop() check(h_stop(this(self, "stop"))) return self end
  function VM:restart() check(h_restart(this(self, "restart"))) return self end
  function VM:destroy() check(h_destroy(this(self, "destroy"))) end

  function VM:send(code, ...) return api.send(self, code, ...) end
  --- The values of the oldest vm.send (w:wait is the same call): nil, "timeout" when not
  -- there in time; an error when no send is pending, rather than a silent nothing that
  -- looks like a send that returned no values.
  function VM:recv(timeout) return api.recv(self, timeout) end
  VM.wait = VM.recv
  function VM:pending() return (check(h_pending(self._uid))) end

  return api
end

return M
