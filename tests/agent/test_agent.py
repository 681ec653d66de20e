"""The agent's requests, errors and output, on every runtime (lupa worker and stock binaries)."""
from __future__ import annotations

import os

import pytest

from tests.agent.client import LUPA_RUNTIMES
from tests.waiting import PATIENCE

# ---------------------------------------------------------------------------------------------
# Requests


def test_hello_describes_the_runtime(agent):
    hello = agent.hello
    assert hello["protocol"] == 1
    assert hello["runtime"].startswith("Lua 5.")
    assert hello["embedded"] is (agent.runtime in LUPA_RUNTIMES)
    if "jit" in agent.runtime:
        assert hello["jit"].startswith("LuaJIT")


def test_eval_expression_or_statement_keeps_globals(agent):
    assert agent.eval("1 + 1") == [2]
    assert agent.eval("x_test = 41") == []
    assert agent.eval("x_test + 1") == [42]
    assert agent.eval("local a, b = ... return b, a", "first", "second") == ["second", "first"]
    assert agent.eval("return") == []


def test_set_get_call_with_dotted_names(agent):
    agent.values("set", name="cfg", value={"k": 3, "inner": {"v": "x"}})
    assert agent.values("get", name="cfg.inner.v") == ["x"]
    agent.values("set", name="cfg.inner.v", value="y")
    assert agent.eval("cfg.inner.v") == ["y"]
    agent.eval("lib = {util = {}} function lib.util.add(a, b) return a + b, 'sum' end")
    assert agent.values("call", fn="lib.util.add", args=[2, 3]) == [5, "sum"]
    assert agent.values("get", name="no_such_global") == [None]
    r = agent.request("call", fn="no.such.fn", args=[])
    assert r["ok"] is False and "no is not a table" in r["error"]
    r = agent.request("call", fn="cfg.k", args=[])
    assert r["ok"] is False and "attempt to call a number value" in r["error"]
    r = agent.request("get", name="bad name!")
    assert r["ok"] is False and "bad name" in r["error"]


def test_require_uses_the_module_path(agent, tmp_path):
    (tmp_path / "mymod_req.lua").write_text("return {answer = function() return 42 end, loaded_as = ...}\n")
    agent.eval("package.path = ... .. ';' .. package.path", str(tmp_path / "?.lua"))
    # A module table holding functions cannot travel: require answers true.
    assert agent.values("require", module="mymod_req") == [True]
    assert agent.eval("require('mymod_req').answer()") == [42]
    r = agent.request("require", module="no_such_module_xyz")
    assert r["ok"] is False and r["kind"] == "error" and "no_such_module_xyz" in r["error"]


def test_complete_offers_globals_fields_and_methods(agent):
    agent.eval("complete_me = {alpha = 1, alps = 2, beta = 3} function complete_me:method() end")
    # Each candidate replaces the trailing identifier path (the shell's completion contract).
    assert agent.values("complete", text="x = complete_m") == [["complete_me"]]
    assert agent.values("complete", text="complete_me.al") == [["complete_me.alpha", "complete_me.alps"]]
    assert agent.values("complete", text="print(complete_me:me") == [["complete_me:method"]]
    assert "string.format" in agent.values("complete", text="string.for")[0]
    assert "function" in agent.values("complete", text="fun")[0]
    assert agent.values("complete", text="no_such_table.x") == [{}]
    assert agent.values("complete", text="1 + ") == [{}]


def test_info_reports_runtime_and_counters(agent):
    before = agent.values("info")[0]
    agent.eval("1")
    info = agent.values("info")[0]
    assert info["runtime"] == agent.hello["runtime"]
    assert info["calls"] == before["calls"] + 1
    assert info["memory_kb"] > 0 and info["cpu_seconds"] >= 0
    assert info["name"] == f"test-{agent.runtime}"


def test_malformed_requests_get_protocol_errors(agent):
    r = agent.request("eval")  # no code
    assert r["ok"] is False and r["kind"] == "protocol"
    r = agent.request("frobnicate")
    assert r["kind"] == "protocol" and "unknown op" in r["error"]
    r = agent.request("configure")
    assert r["kind"] == "protocol" and "only once" in r["error"]
    assert agent.eval("1") == [1]


def test_exit_ends_the_agent_cleanly(start_agent):
    for runtime in ("lua54", "lua5.4"):
        a = start_agent(runtime)
        assert a.request("exit")["ok"] is True
        assert a.proc.wait(timeout=PATIENCE) == 0


def test_end_of_input_ends_the_agent(start_agent):
    a = start_agent("lua5.1")
    os.close(a.wfd)
    assert a.proc.wait(timeout=PATIENCE) == 0


# ---------------------------------------------------------------------------------------------
# Errors


def test_runtime_error_has_chunkname_line_and_user_frames_only(agent):
    code = "local function inner()\n  error('boom')\nend\nlocal function outer() inner() end\nouter()"
    r = agent.request("eval", code=code, chunkname="=cell7")
    assert r["ok"] is False and r["kind"] == "error"
    assert r["error"] == "cell7:2: boom"
    tb = r["traceback"]
    assert "cell7:2: in function 'inner'" in tb or "cell7:2: in upvalue 'inner'" in tb, tb
    assert "cell7:4:" in tb and "cell7:5: in main chunk" in tb
    assert "agent.lua" not in tb and "xpcall" not in tb and "wire.lua" not in tb


def test_error_inside_called_function_and_non_string_errors(agent):
    agent.eval("function fails(x) local y = x.field end")
    r = agent.request("call", fn="fails", args=[None])
    assert r["kind"] == "error" and r["error"].startswith("vm:1:") and "attempt to index" in r["error"]
    assert "agent.lua" not in r["traceback"]
    r = agent.request("eval", code="error({code = 42})")
    assert r["kind"] == "error" and r["error"] == "(error object is a table value)"
    r = agent.request("eval", code="error(setmetatable({}, {__tostring = function() return 'custom' end}))")
    assert r["error"] == "custom"


def test_syntax_errors(agent):
    r = agent.request("eval", code="x = = 1", chunkname="=input")
    assert r["ok"] is False and r["kind"] == "syntax"
    assert r["error"].startswith("input:1:")
    r = agent.request("eval", code="for i = 1, 2 do", chunkname="@script.lua")
    assert r["kind"] == "syntax" and "script.lua:1:" in r["error"] and "eof" in r["error"]


def test_user_code_cannot_break_the_agent_by_reassigning_globals(agent):
    agent.eval("saved = {string = string, table = table, pairs = pairs, type = type, tostring = tostring,"
               " select = select, error = error, pcall = pcall, setmetatable = setmetatable, io = io}")
    agent.eval("string = nil table = nil pairs = nil type = nil tostring = nil select = nil error = nil"
               " setmetatable = nil io = nil")
    assert agent.request("eval", code="1, 'two', {3}")["values"] == [1, "two", [3]]
    assert agent.request("eval", code="print('still printing')")["ok"] is True
    assert agent.last_output == b"still printing\n"
    agent.eval("for k, v in saved.pairs(saved) do _G[k] = v end")
    assert agent.eval("type(string.format)") == ["function"]


# ---------------------------------------------------------------------------------------------
# Output


def test_print_and_io_write_are_captured_in_order(agent):
    r = agent.request("eval", code="print('a', 1, nil, true) io.write('b', 2, '\\n') io.stdout:write('c\\n')"
                      " io.output():write('d\\n') return 'done'")
    assert r["values"] == ["done"]
    assert agent.last_output == b"a\t1\tnil\ttrue\nb2\nc\nd\n"
    # The next call's output is its own.
    agent.request("eval", code="print('next')")
    assert agent.last_output == b"next\n"


def test_output_comes_before_the_error_reply(agent):
    r = agent.request("eval", code="print('before') error('after print')")
    assert r["kind"] == "error" and agent.last_output == b"before\n"


def test_print_uses_tostring_metamethods(agent):
    agent.request("eval", code="print(setmetatable({}, {__tostring = function() return 'OBJ' end}))")
    assert agent.last_output == b"OBJ\n"


def test_io_write_rejects_tables_like_lua(agent):
    r = agent.request("eval", code="io.write({})")
    assert r["kind"] == "error" and "bad argument #1 to 'write'" in r["error"]


@pytest.mark.parametrize("runtime", ["lua54", "lua5.1", "luajit"])
def test_output_streams_while_a_call_runs(start_agent, runtime, tmp_path):
    a = start_agent(runtime)
    # Prints a line, then runs until the test has seen that line: it must arrive while the
    # call still runs (the call cannot end before the test makes the file).
    go = tmp_path / "go"
    a.send("eval", code=f"print('early') while not io.open({str(go)!r}) do end print('late')")
    assert a.wait_output() == b"early\n"
    go.write_text("")
    reply, out = a.recv()
    assert reply["ok"] and out == b"early\nlate\n"


def test_os_execute_children_cannot_corrupt_the_channel(start_agent):
    for runtime in ("lua5.4", "lua54"):
        a = start_agent(runtime)
        r = a.request("eval", code="return os.execute('echo child-writes-to-fd-1; echo child-stderr >&2')")
        assert r["ok"] is True
        assert a.eval("1 + 1") == [2]


def test_big_output_flushes_in_64k_frames(start_agent):
    a = start_agent("lua5.4")
    a.send("eval", code="for i = 1, 20000 do io.write(string.rep('x', 99), '\\n') end")
    sizes = []
    reply, out = a.recv(on_output=lambda b: sizes.append(len(b)))
    assert reply["ok"] and len(out) == 2_000_000
    assert len(sizes) >= 20 and max(sizes) < 70_000


# ---------------------------------------------------------------------------------------------
# Configure


def test_configure_globals_path_preload_and_name(start_agent, tmp_path):
    (tmp_path / "pre_mod.lua").write_text("local M = {} function M.twice(x) return 2 * x end return M\n")
    for runtime in ("lua53", "lua5.3"):
        a = start_agent(runtime)
        a.configure(name="vm-a", globals={"GREETING": "hi", "LIMITS": {"n": 3}},
                    path=str(tmp_path / "?.lua"), preload=["pre_mod"])
        assert a.eval("GREETING, LIMITS.n, pre_mod.twice(21)") == ["hi", 3, 42]
        assert a.values("info")[0]["name"] == "vm-a"


def test_configure_reports_a_failing_preload(start_agent):
    a = start_agent("lua5.4")
    r = a.request("configure", preload=["no_such_preload"])
    assert r["ok"] is False and "preloading module 'no_such_preload' failed" in r["error"]


def test_configure_rejects_bad_fields(start_agent):
    a = start_agent("lua5.4")
    r = a.request("configure", cpu_limit="fast")
    assert r["kind"] == "protocol" and "cpu_limit" in r["error"]


@pytest.mark.parametrize("runtime", ["lua54", "lua5.1", "luajit"])
def test_garbage_requests_get_protocol_errors_and_the_agent_carries_on(start_agent, runtime):
    import random

    from bioxen_shell.vm import protocol as wire

    a = start_agent(runtime)
    rng = random.Random(7)
    payloads = [rng.randbytes(rng.randrange(1, 60)) for _ in range(30)]
    payloads += [b"{0;s2:idi1;", b"{" * 500 + b"}" * 500, b"{0;s2:opi5;}", b"s3:abc", b"{0;s2:ops4:eval}"]
    for payload in payloads:
        os.write(a.wfd, wire.frame(b"Q", payload))
        reply, _ = a.recv()
        assert reply["ok"] is False and reply["kind"] == "protocol", (payload, reply)
    assert a.eval("1 + 1") == [2]


def test_a_malformed_frame_header_ends_the_agent_with_a_message(start_agent):
    a = start_agent("lua5.4")
    os.write(a.wfd, b"this is not a frame\n")
    assert a.proc.wait(timeout=PATIENCE) == 1
    assert b"malformed frame header" in a.proc.stderr.read()
