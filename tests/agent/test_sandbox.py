"""Escape attempts: sandboxed agents (configure sandbox=true) and Python's reachability.

Each attempt is made by real Lua code in a real agent; the test asserts the attempt fails
AND that the thing it tried to do did not happen (no file created, no value leaked).
"""
from __future__ import annotations

import pytest

from tests.agent.client import LUPA_RUNTIMES, STOCK_BINARIES, Agent
from tests.agent.conftest import require_runtime

ALL = LUPA_RUNTIMES + STOCK_BINARIES


@pytest.fixture(scope="module")
def sandboxed_agents():
    agents: dict = {}
    yield agents
    for agent in agents.values():
        agent.close()


@pytest.fixture(params=ALL)
def sandboxed(request, sandboxed_agents):
    """A sandboxed agent per runtime, shared by this module's tests (they leave no state)."""
    runtime = request.param
    require_runtime(runtime)
    a = sandboxed_agents.get(runtime)
    if a is None or a.proc.poll() is not None:
        a = Agent(runtime)
        a.configure(sandbox=True, allow_ffi=False, name="jail")
        sandboxed_agents[runtime] = a
    return a


def _fails(agent, code, *expected_fragments):
    r = agent.request("eval", code=code)
    assert r["ok"] is False, f"escape worked: {code!r} -> {r}"
    for fragment in expected_fragments:
        assert fragment in r["error"], (code, r["error"])
    return r


def test_sandbox_still_runs_ordinary_code(sandboxed):
    assert sandboxed.eval("string.format('%d-%s', 42, ('x'):upper()), math.floor(2.5), #table.concat({'a','b'})") == [
        "42-X", 2, 2]
    r = sandboxed.request("eval", code="print('visible') io.write('too\\n') return os.time() > 0, type(os.clock())")
    assert r["values"] == [True, "number"] and sandboxed.last_output == b"visible\ntoo\n"
    assert sandboxed.eval("local co = coroutine.wrap(function(a) coroutine.yield(a + 1) end) return co(1)") == [2]
    assert sandboxed.eval("select(2, pcall(error, 'caught'))") == ["caught"]
    assert sandboxed.eval("load('return 1 + ...')(41)") == [42]


@pytest.mark.parametrize(
    "name",
    ["debug", "package.loadlib", "io.open", "io.popen", "os.execute", "os.remove", "os.rename", "os.exit",
     "os.getenv", "os.tmpname", "string.dump", "dofile", "loadfile", "getfenv", "setfenv", "newproxy",
     "python", "ffi", "jit", "module", "package.cpath", "package.searchers", "package.loaders"],
)
def test_dangerous_names_are_absent(sandboxed, name):
    path = name.split(".")
    code = "local v = _G " + " ".join(f"v = v and v[{p!r}]" for p in path) + " return v == nil"
    assert sandboxed.eval(code) == [True], name


def test_no_debug_registry(sandboxed):
    _fails(sandboxed, "return debug.getregistry()", "debug")
    _fails(sandboxed, "return require('debug')", "module 'debug' not found")


def test_no_python(sandboxed):
    assert sandboxed.eval("python == nil, package.loaded.python == nil") == [True, True]
    _fails(sandboxed, "return require('python')", "module 'python' not found")


def _sandbox_with_path(start_agent, runtime, tmp_path):
    a = start_agent(runtime)
    a.configure(sandbox=True, allow_ffi=False, path=f"{tmp_path}/?.lua;{tmp_path}/?.so")
    return a


def test_no_package_loadlib_or_c_modules(sandboxed, start_agent, tmp_path):
    _fails(sandboxed, "return package.loadlib('/lib/x86_64-linux-gnu/libc.so.6', 'system')")
    # A C module on the configured path: require only ever compiles Lua source text.
    (tmp_path / "cmod.so").write_bytes(b"\x7fELF not really")
    a = _sandbox_with_path(start_agent, sandboxed.runtime, tmp_path)
    _fails(a, "return require('cmod')", "error loading module 'cmod'")


def test_no_bytecode(sandboxed):
    _fails(sandboxed, "return string.dump(print)")
    _fails(sandboxed, "return ('').dump(function() end)")
    # Bytecode made outside (here: a literal header) is refused by load and loadstring.
    r = sandboxed.eval("load('\\27Lua fake bytecode')")
    assert r[0] is None
    r = sandboxed.eval("select(2, load('\\27Lua', 'x', 'b'))")
    assert "binary" in r[0]
    r = sandboxed.eval("local done = false\n"
                       "return select(2, load(function() if done then return nil end done = true return '\\27Lua' end))")
    assert "binary" in r[0]


def test_load_runs_in_the_sandbox_env(sandboxed):
    assert sandboxed.eval("load('return io.open == nil and os.execute == nil')()") == [True]
    assert sandboxed.eval("load('return x', 'chunk', 't', {x = 5})()") == [5]


def test_string_metatable_is_protected(sandboxed):
    assert sandboxed.eval("getmetatable('')") == [False]
    _fails(sandboxed, "rawset(getmetatable(''), '__index', {upper = function() return 'pwned' end})")
    _fails(sandboxed, "rawget(getmetatable(''), '__index')")
    _fails(sandboxed, "setmetatable('', {})")
    assert sandboxed.eval("('abc'):upper()") == ["ABC"]


def test_no_process_or_file_access(sandboxed, tmp_path):
    target = tmp_path / "created-by-escape"
    for code in (
        f"io.popen('touch {target}')",
        f"os.execute('touch {target}')",
        f"io.open('{target}', 'w'):write('x')",
        f"io.output('{target}') io.write('x')",
        f"io.lines('/etc/passwd')()",
        f"io.input('/etc/passwd') return io.read('*a')",
    ):
        _fails(sandboxed, code)
    assert not target.exists()
    assert sandboxed.eval("io.read('*l')") == [None]  # stdin is empty, never the channel


def test_rawget_and_environment_tricks(sandboxed):
    assert sandboxed.eval("rawget(_G, 'debug') == nil, rawget(_G, 'io').open == nil") == [True, True]
    assert sandboxed.eval("getmetatable(io.stdout)") == [False]
    # The real globals table is not reachable through functions' environments or _ENV.
    assert sandboxed.eval("_G.print == print, _G == _G._G") == [True, True]
    _fails(sandboxed, "return getfenv(0).io.open")
    # Lua 5.2+: _ENV is the sandbox's environment, without os.execute; Lua 5.1 and LuaJIT have
    # no _ENV at all (indexing the nil global fails).
    has_env = sandboxed.runtime not in ("lua51", "luajit21", "lua5.1", "luajit")
    assert sandboxed.eval("local ok, v = pcall(function() return _ENV.os.execute end) "
                          "return ok, v == nil") == [has_env, has_env]
    assert sandboxed.eval("(_ENV == nil) or (_ENV.os.execute == nil)") == [True]
    _fails(sandboxed, "collectgarbage('stop')", "not available in the sandbox")
    assert sandboxed.eval("type(collectgarbage('count'))") == ["number"]


def test_require_sees_only_lua_modules_and_sandbox_libs(sandboxed, start_agent, tmp_path):
    (tmp_path / "helper_mod.lua").write_text("return {has_io_open = io.open ~= nil, twice = function(x) return 2 * x end}")
    sandboxed = _sandbox_with_path(start_agent, sandboxed.runtime, tmp_path)
    assert sandboxed.eval("local m = require('helper_mod') return m.has_io_open, m.twice(4)") == [False, 8]
    assert sandboxed.eval("require('string') == string, require('os').execute == nil") == [True, True]
    _fails(sandboxed, "return require('ffi')", "module 'ffi' not found")
    _fails(sandboxed, "return require('io').popen('id')")
    # The module path is fixed by configure: pointing it elsewhere reads no files.
    sandboxed.eval("package.path = '/etc/?'")
    _fails(sandboxed, "return require('passwd')", "module 'passwd' not found")


def test_interrupts_and_limits_cannot_be_caught(start_agent):
    a = start_agent("lua54")
    a.configure(sandbox=True, cpu_limit=0.2)
    r = a.request("eval", code="local n = 0 while true do local ok = pcall(function() while true do end end)"
                               " n = n + 1 end")
    assert r["kind"] == "cpu_limit"
    r = a.request("eval", code="while true do xpcall(function() while true do end end, function(e) return e end) end")
    assert r["kind"] == "cpu_limit"
    r = a.request("eval", code="local co = coroutine.create(function() while true do end end)"
                               " while true do coroutine.resume(co) end")
    assert r["kind"] == "cpu_limit"


@pytest.mark.parametrize("runtime", ["luajit21", "luajit"])
def test_ffi_only_when_allowed(start_agent, runtime):
    denied = start_agent(runtime)
    denied.configure(sandbox=True, allow_ffi=False)
    _fails(denied, "return require('ffi').C")
    allowed = start_agent(runtime)
    allowed.configure(sandbox=True, allow_ffi=True)
    assert allowed.eval("local ffi = require('ffi') ffi.cdef('int getpid(void);') return ffi.C.getpid() > 0") == [True]
    # Outside the sandbox, allow_ffi=false removes it as well.
    plain = start_agent(runtime)
    plain.configure(allow_ffi=False)
    _fails(plain, "return require('ffi').C")


# ---------------------------------------------------------------------------------------------
# Python stays unreachable from lupa workers, sandbox or not (debug is available here).

SCAN_REGISTRY = """
local seen, found, queue = {}, {}, {}
local probes = {"__class__", "__globals__", "__self__", "__dict__", "__builtins__", "eval", "builtins",
                "__subclasses__", "__import__", "gi_frame", "f_globals"}
-- Breadth first, so every value within six steps of the registry or _G is looked at, whatever
-- order `next` takes.  A table's entries are copied out before anything is probed: a failed
-- probe of a Python object hands Lua a new Python exception object, which lupa keeps in
-- LUPA_PYTHON_REFERENCES_TABLE, a table this walk goes through.  (Adding keys to a table while
-- `next` walks it is undefined in Lua: that walk went on for minutes on some runs.)
local function push(v, path, depth)
  if v ~= nil and depth <= 6 and not seen[v] then
    seen[v] = true
    queue[#queue + 1] = {v, path, depth}
  end
end
push(debug.getregistry(), "registry", 0)
push(_G, "_G", 0)
local i = 1
while queue[i] do
  local v, path, depth = queue[i][1], queue[i][2], queue[i][3]
  i = i + 1
  local t = type(v)
  if t == "userdata" then
    for _, name in ipairs(probes) do
      local ok, got = pcall(function() return v[name] end)
      if ok and got ~= nil then found[#found + 1] = path .. "." .. name end
    end
    local ok, res = pcall(v)  -- calling: only the agent's own host function may answer
    if ok and res ~= nil then found[#found + 1] = path .. "()" end
  elseif t == "table" then
    local keys, values, n = {}, {}, 0
    for k, x in next, v do n = n + 1 keys[n], values[n] = k, x end
    for j = 1, n do push(values[j], path .. "[" .. tostring(keys[j]) .. "]", depth + 1) end
    local mt = debug.getmetatable(v)
    if mt then push(mt, path .. "<mt>", depth + 1) end
  elseif t == "function" then
    for j = 1, 60 do
      local name, up = debug.getupvalue(v, j)
      if not name then break end
      push(up, path .. "^" .. name, depth + 1)
    end
  end
end
return found
"""


@pytest.mark.parametrize("runtime", LUPA_RUNTIMES)
def test_python_is_unreachable_from_a_lupa_worker(start_agent, runtime):
    a = start_agent(runtime)
    a.configure()
    assert a.eval("python == nil, package.loaded.python == nil, (pcall(require, 'python'))") == [True, True, False]
    assert a.eval("debug.getregistry().python == nil, debug.getregistry().eval == nil") == [True, True]
    found = a.eval(SCAN_REGISTRY)[0]
    assert found == {}, f"Python reachable through: {found}"


@pytest.mark.parametrize("runtime", ["lua54", "lua5.1", "luajit"])
def test_real_bytecode_is_refused(start_agent, sandboxed_agents, runtime):
    """Bytecode made by the same runtime (outside the sandbox) cannot be loaded inside it."""
    maker = start_agent(runtime)
    bytecode = maker.eval("string.dump(function() return 'from bytecode' end)")[0]
    raw = bytecode.encode() if isinstance(bytecode, str) else bytecode  # LuaJIT's may be valid UTF-8
    assert raw[:1] == b"\x1b"
    assert maker.eval("(loadstring or load)(...)()", bytecode) == ["from bytecode"]  # the plain VM can
    jail = start_agent(runtime)
    jail.configure(sandbox=True)
    r = jail.eval("local f, err = load(...) return f == nil, err", bytecode)
    assert r[0] is True and "binary" in r[1]
    r = jail.eval("local f, err = load(..., 'x', 'b') return f == nil, err", bytecode)
    assert r[0] is True
    r = jail.request("eval", code=raw)
    assert r["ok"] is False
