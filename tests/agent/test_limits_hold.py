"""Limits that hold: every piece of user code runs under the call's limits, whatever reaches it.

User code here is not only the chunk of an eval: the __close handlers Lua 5.4 runs while an
error unwinds, finalizers, the __tostring of an error object, the __index metamethods a
`call` meets on the way to its function, the modules a configure preloads.  Each test makes
one limit the only one that can fire, and checks that it does and that the VM carries on.
"""
from __future__ import annotations

import os

import pytest

from tests.agent.client import LUPA_RUNTIMES, STOCK_BINARIES, Agent
from tests.agent.conftest import require_runtime

ALL = LUPA_RUNTIMES + STOCK_BINARIES
#: runtimes with to-be-closed variables (`local x <close>`)
CLOSE_RUNTIMES = ["lua54", "lua55", "lua5.4"]
LUAJITS = ["luajit21", "luajit"]

MIB = 1024  # KiB


def close_after_error(handler_body: str) -> str:
    """A chunk whose to-be-closed variable's handler runs while error('boom') unwinds."""
    return ("local x <close> = setmetatable({}, {__close = function() " + handler_body + " end}) "
            "error('boom')")


#: About 200 MB of strings (bounded, so that a limit that does not hold fails the test
#: instead of taking the machine's memory).
ALLOCATE = "local t = {} for i = 1, 2e6 do t[i] = ('x'):rep(64) .. i end"


# ---------------------------------------------------------------------------------------------
# __close handlers after an error


@pytest.mark.parametrize("runtime", CLOSE_RUNTIMES)
def test_close_handler_after_an_error_runs_under_the_cpu_limit(start_agent, runtime):
    a = start_agent(runtime)
    a.configure(sandbox=True, cpu_limit=0.5)
    r = a.request("eval", code=close_after_error("while true do end"))
    assert r["ok"] is False and r["kind"] == "cpu_limit", r
    assert a.eval("1 + 1") == [2]


@pytest.mark.parametrize("runtime", CLOSE_RUNTIMES)
def test_close_handler_after_an_error_runs_under_the_memory_limit(start_agent, runtime):
    a = start_agent(runtime)
    a.configure(sandbox=True, memory_limit=32 * MIB)
    r = a.request("eval", code=close_after_error(ALLOCATE))
    assert r["ok"] is False and r["kind"] == "memory", r
    assert a.eval("#('y'):rep(1024 * 1024)") == [1024 * 1024]


@pytest.mark.parametrize("runtime", CLOSE_RUNTIMES)
def test_close_handler_after_an_error_can_be_interrupted(start_agent, runtime, tmp_path):
    """The example of the report: output streams from the __close handler until interrupted."""
    flag = tmp_path / "interrupt"
    flag.write_bytes(b"")
    a = start_agent(runtime, extra_args=[f"--interrupt-file={flag}"])
    a.configure(sandbox=True)
    a.send("eval", code=close_after_error("while true do io.write(('x'):rep(65536)) end"))
    kind, payload = a.read_frame()
    while kind != b"O" or not payload:  # the handler is running once its output arrives
        kind, payload = a.read_frame()
    with open(flag, "ab") as f:
        f.write(b"x")
    reply, _ = a.recv()
    assert reply["kind"] == "interrupted", reply
    assert a.eval("1 + 1") == [2]


# ---------------------------------------------------------------------------------------------
# Error objects, name lookups, finalizers


@pytest.mark.parametrize("runtime", LUPA_RUNTIMES)
def test_an_error_objects_tostring_runs_under_the_memory_limit(start_agent, runtime):
    a = start_agent(runtime)
    a.configure(memory_limit=32 * MIB)
    r = a.request("eval", code="error(setmetatable({}, {__tostring = function() " + ALLOCATE
                               + " return 'allocated' end}))")
    assert r["ok"] is False and r["kind"] == "error", r
    assert r["error"] == "(error object is a table value)"
    assert a.eval("1 + 1") == [2]


@pytest.mark.parametrize("runtime", ALL)
def test_call_resolves_its_name_through_index_under_the_limits(start_agent, runtime):
    a = start_agent(runtime)
    a.configure(sandbox=True, cpu_limit=0.3)
    a.eval("do setmetatable(_G, {__index = function(t, k) while true do end end}) end")
    r = a.request("call", fn="nowhere.fn", args=[])
    assert r["ok"] is False and r["kind"] == "cpu_limit", r
    # A lookup that works calls what it found.
    a.eval("do setmetatable(_G, {__index = function(t, k)"
           " if k == 'lib' then return {twice = function(x) return 2 * x end} end end}) end")
    assert a.values("call", fn="lib.twice", args=[21]) == [42]
    r = a.request("call", fn="nothing", args=[])
    assert r["kind"] == "error" and "attempt to call a nil value (global 'nothing')" in r["error"]


#: A finalizer that records how far it got.  Lua 5.1 and LuaJIT run __gc on userdata only.
FINALIZER = """
gc_started, gc_done = false, false
local function fin() gc_started = true {alloc} gc_done = true end
if newproxy then
  local p = newproxy(true)
  getmetatable(p).__gc = fin
else
  setmetatable({{}}, {{__gc = fin}})
end
""".format(alloc=ALLOCATE)


# Not Lua 5.5: its lauxlib runs a collection step (finalizers included) whenever it builds a
# big string, collector stopped or not, so there the agent's reading of a big request can run
# one (docs/agent.md, "Limits and interrupts").
@pytest.mark.parametrize("runtime", [rt for rt in LUPA_RUNTIMES if rt != "lua55"])
def test_finalizers_run_inside_calls_under_the_memory_limit(start_agent, runtime):
    a = start_agent(runtime)
    a.configure(memory_limit=32 * MIB)
    a.eval(FINALIZER)  # the object is garbage as soon as the chunk returns
    # The agent's own work allocates (reading these values) without running the finalizer.
    for i in range(5):
        a.values("set", name="v", value=b"z" * (4 << 20))
    a.request("eval", code="v = nil collectgarbage() collectgarbage()")  # may fail: the finalizer's error
    assert a.eval("gc_started, gc_done") == [True, False]
    assert a.eval("1 + 1") == [2]


# ---------------------------------------------------------------------------------------------
# Replies: shared references


@pytest.mark.parametrize("runtime", ALL)
def test_shared_references_are_encoded_within_the_memory_limit(start_agent, runtime):
    a = start_agent(runtime)
    a.configure(memory_limit=64 * MIB)
    # 200 references to one 1 MiB string: a 200 MB reply from a 64 MiB VM.
    r = a.request("eval", code="local s = ('x'):rep(1048576) local t = {} for i = 1, 200 do t[i] = s end"
                               " return t")
    assert r["ok"] is False and r["kind"] == "encode", r
    assert "memory_limit (65536 KiB)" in r["error"] and r["error"].startswith("cannot encode value #1[")
    # A DAG: 2^40 tables when encoded.
    r = a.request("eval", code="local t = {} for i = 1, 40 do t = {t, t} end return t")
    assert r["ok"] is False and r["kind"] == "encode" and "memory_limit" in r["error"], r
    # Shared references within the limit travel as before; the VM carries on.
    assert a.eval("local s = ('y'):rep(1000) local t = {s} return {s, s, t, t}") == [
        ["y" * 1000, "y" * 1000, ["y" * 1000], ["y" * 1000]]]


def test_shared_references_without_blobs(start_agent):
    a = start_agent("lua5.4", blobs=False)
    a.configure(memory_limit=64 * MIB)
    r = a.request("eval", code="local s = ('x'):rep(1048576) local t = {} for i = 1, 200 do t[i] = s end"
                               " return t")
    assert r["kind"] == "encode" and "memory_limit" in r["error"], r
    assert a.eval("'still in sync'") == ["still in sync"]


# ---------------------------------------------------------------------------------------------
# The sandbox's require


@pytest.mark.parametrize("runtime", ALL)
def test_sandbox_require_refuses_what_is_not_a_module_name(start_agent, runtime, tmp_path):
    (tmp_path / "secret").write_text("return 'a file that is not a module ran'")
    (tmp_path / "good_mod.lua").write_text("return 'good'")
    a = start_agent(runtime)
    a.configure(sandbox=True, path=f"{tmp_path}/?.lua")
    for name in ("secret\\0", "secret\\0.txt", "../" + tmp_path.name + "/secret", "a/b", "", "a..b", ".a",
                 "a.", "a b", "%s"):
        r = a.request("eval", code=f"return require('{name}')")
        assert r["ok"] is False and "is not a module name" in r["error"], (name, r)
    assert a.eval("require('good_mod')") == ["good"]


# ---------------------------------------------------------------------------------------------
# Outside the sandbox: the memory switch (lupa) is out of reach of `debug`

SWITCH_HUNT = """
local seen, found = {}, {}
local function scan(v, path, depth)
  local t = type(v)
  if depth > 12 or (t ~= "table" and t ~= "function" and t ~= "userdata" and t ~= "thread") or seen[v] then
    return
  end
  seen[v] = true
  if t == "userdata" then
    local ok, s = pcall(tostring, v)
    if ok and s:find("MemorySwitch") then found[#found + 1] = v end
  elseif t == "table" then
    for k, x in next, v do scan(k, path, depth + 1) scan(x, path, depth + 1) end
  elseif t == "function" then
    for i = 1, 255 do
      local name, up = debug.getupvalue(v, i)
      if not name then break end
      scan(up, path, depth + 1)
    end
  else
    for level = 0, 100 do
      local info = debug.getinfo(v, level, "f")
      if not info then break end
      scan(info.func, path, depth + 1)
      for i = 1, 255 do
        local name, x = debug.getlocal(v, level, i)
        if not name then break end
        scan(x, path, depth + 1)
      end
    end
  end
  local mt = debug.getmetatable(v)
  if mt then scan(mt, path, depth + 1) end
end
scan(debug.getregistry(), "registry", 0)
scan(_G, "_G", 0)
for level = 1, 100 do
  local info = debug.getinfo(level, "f")
  if not info then break end
  scan(info.func, "stack", 1)
  for i = 1, 255 do
    local name, x = debug.getlocal(level, i)
    if not name then break end
    scan(x, "stack", 1)
  end
end
for _, switch in ipairs(found) do pcall(switch, false) end
"""


@pytest.mark.parametrize("runtime", LUPA_RUNTIMES)
def test_debug_cannot_reach_the_memory_switch(start_agent, runtime):
    a = start_agent(runtime)
    a.configure(memory_limit=32 * MIB)
    r = a.request("eval", code=SWITCH_HUNT + " return #found")
    assert r["ok"] and r["values"] == [0], r
    # The limit holds for code that hunted for the switch in the same call.
    r = a.request("eval", code=SWITCH_HUNT + " local s = ('x'):rep(64 * 1024 * 1024) return #s")
    assert r["ok"] is False and r["kind"] == "memory", r
    # debug still works on the user's own functions and frames.
    assert a.eval("local x = 42 local function f() return x end"
                  " return debug.getupvalue(f, 1), select(2, debug.getupvalue(f, 1)), debug.getlocal(1, 1)") == [
        "x", 42, "x", 42]


# ---------------------------------------------------------------------------------------------
# Preloading under call_timeout (the host does not time configure)


@pytest.mark.parametrize("runtime", ["lua51", "lua54", "luajit21", "lua5.1", "lua5.4", "luajit"])
def test_preload_stops_at_call_timeout(start_agent, runtime, tmp_path):
    (tmp_path / "spin.lua").write_text("while true do end")
    a = start_agent(runtime)
    r = a.request("configure", sandbox=True, path=f"{tmp_path}/?.lua", preload=["spin"], call_timeout=1,
                  blobs=True)
    assert r["ok"] is False and r["kind"] == "timeout", r
    assert r["error"] == "preloading module 'spin' failed: timed out after 1 s (call_timeout)"
    assert a.eval("1 + 1") == [2]


# ---------------------------------------------------------------------------------------------
# C stack: recursion through C functions that call Lua is an error, never a crash

C_RECURSION = {
    "gsub function": "local function f(s) return (s:gsub('.', function(c) return f(c) end)) end return f('ab')",
    "gsub table": "local t t = setmetatable({}, {__index = function(_, c) return (c:gsub('.', t)) end})"
                  " return (('ab'):gsub('.', t))",
    "coroutine.wrap": "local function f() return coroutine.wrap(f)() end return f()",
    "coroutine.resume": "local function f() local ok, e = coroutine.resume(coroutine.create(f))"
                        " if not ok then error(e, 0) end end return f()",
    "gsub in sort": "local function f() table.sort({3, 2, 1}, function(a, b) ('x'):gsub('.', f) return a < b end) end"
                    " return f()",
    "format and __tostring": "local mt = {} mt.__tostring = function() return string.format('%s', setmetatable({}, mt)) end"
                             " return string.format('%s', setmetatable({}, mt))",
}


# Lua 5.1's string.format does not call __tostring, so that case cannot recurse there.
C_RECURSION_CASES = [
    (runtime, case)
    for runtime in LUAJITS + ["lua54", "lua5.1"]
    for case in C_RECURSION
    if not (case == "format and __tostring" and runtime == "lua5.1")
]


@pytest.mark.parametrize(("runtime", "case"), C_RECURSION_CASES)
@pytest.mark.parametrize("sandbox", [True, False], ids=["sandbox", "plain"])
def test_recursion_through_c_functions_is_an_error_not_a_crash(start_agent, runtime, case, sandbox):
    a = start_agent(runtime)
    a.configure(sandbox=sandbox)
    r = a.request("eval", code=C_RECURSION[case])
    assert r["ok"] is False and r["kind"] == "error", r
    assert "stack overflow" in r["error"], r  # PUC Lua: "C stack overflow" or "stack overflow"
    assert a.eval("1 + 1") == [2] and a.proc.poll() is None


@pytest.mark.parametrize("runtime", LUAJITS)
def test_the_c_stack_count_survives_caught_errors(start_agent, runtime):
    """Errors caught by pcall unwind counted levels: the count goes back, no false overflow."""
    a = start_agent(runtime)
    a.configure(sandbox=True)
    assert a.eval("local n = 0 for i = 1, 1000 do"
                  " if not pcall(function() ('ab'):gsub('.', function() error('x') end) end) then n = n + 1 end"
                  " local co = coroutine.wrap(function() ('a'):gsub('.', function() error('y') end) end)"
                  " if not pcall(co) then n = n + 1 end"
                  " end return n") == [2000]
    # 150 levels are fine (the limit is 200, as in PUC Lua).
    assert a.eval("local function f(s, d) if d == 0 then return s end"
                  " return (s:gsub('.', function(c) return f(c, d - 1) end)) end return f('a', 150)") == ["a"]
