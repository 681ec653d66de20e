"""A shell attached to a VM behaves as the REPL does, on the VM's own Lua (the REPL's own
behaviour tests also run attached: the ``repl`` fixture of tests/shell/conftest.py)."""
from __future__ import annotations

import io
import subprocess

import pytest

from bioxen_shell import paths
from bioxen_shell.repl.plain import run_repl
from tests.shell.conftest import AttachedEngine
from tests.shell.test_cli_tty_stdin import spawn
from tests.system import require_binary
from tests.waiting import PATIENCE, finishes, lua_touch, wait_for

pexpect = pytest.importorskip("pexpect", reason="pexpect is a test dependency (pip install pexpect)")


@pytest.fixture(params=["lua54", "luajit"])
def attached(request):
    eng = AttachedEngine(request.param)
    yield eng
    eng.close()


def vm_pid(engine) -> int:
    return engine.vm_host.get().manager.get("w").describe()["pid"]


def test_completeness_is_judged_by_the_vms_lua(make_engine):
    attached, own = make_engine("vm:lua54"), make_engine("luajit")
    half = "for i = 1, 3 do\n  local y <const> = i // 2"
    assert own.is_complete(half)[0] == "invalid"        # the shell's LuaJIT has no <const>, no //
    assert attached.is_complete(half) == ("incomplete", 2)
    attached.show(half + "\n  print(y)\nend")
    assert attached.take_output() == b"0\n1\n1\n"


def test_a_vm_busy_with_a_call_sent_earlier_leaves_completeness_to_the_shell(make_engine, tmp_path):
    engine = make_engine("luajit", extensions=["bioxen_shell.vm.bindings"])
    engine.show("w = vm.create{name = 'w'}")
    running = tmp_path / "running"
    engine.show(f"w:send([[{lua_touch(running)} while true do end]])")   # never ends by itself
    wait_for(running.exists, "the VM to run the call sent")
    engine.show(":attach w")
    assert finishes(lambda: engine.is_complete("for i = 1, 3 do"), "is_complete") == ("incomplete", 2)


def test_an_ssh_vm_attached_behaves_as_the_repl(ssh_vm_options):
    # the agent under the host's stock lua5.4, its runner uploaded with it (the bundle)
    attached = AttachedEngine("lua54", **ssh_vm_options)
    try:
        assert attached.vm_host.get().manager.get("w").describe()["type"] == "ssh"
        assert attached.show("_VERSION") == '"Lua 5.4"'
        attached.show("local x = 41")
        assert attached.show("x + 1") == "42"
        assert attached.show("_ * 2, {a = {1}}") == "84\t{a = {1}}"
        assert attached.is_complete("for i = 1, 3 do\n  local y <const> = i // 2") == ("incomplete", 2)
        assert "xpcall" in [text for text, _, _ in attached.complete("xp")]
    finally:
        attached.close()


def test_completion_of_a_huge_table_returns_part_of_it_and_the_vm_lives_on(attached):
    attached.show("local kept = 'state'")
    attached.show("big = {} for i = 1, 700000 do big['k' .. i] = i end")
    pid = vm_pid(attached)
    items = [text for text, _, _ in attached.complete("big.k")]
    # what the budget allowed: some of the keys, not all 700k, each a real one
    assert 0 < len(items) <= 1000
    assert all(text.startswith("big.k") and text[5:].isdigit() for text in items)
    assert vm_pid(attached) == pid                                 # never killed nor restarted
    assert attached.show("kept") == '"state"'


def test_completion_attached_completes_as_the_repl_does(attached):
    attached.show("t = {{name = 1, nap = 2}}")
    assert sorted(text for text, _, _ in attached.complete("t[1].na")) == ["name", "nap"]
    assert "format" in [text for text, _, _ in attached.complete("('x'):fo")]
    assert attached.complete("t[1].na")[0][1] == -2                # replaces the word typed


def test_ctrl_d_in_the_plain_repl_detaches_then_ends(make_engine):
    engine = make_engine("luajit", extensions=["bioxen_shell.vm.bindings"])
    stdin = io.StringIO("vm.create{name = 'w'}\n:attach w\nlocal x = 41\nx + 1\n_\n")
    assert run_repl(engine, stdin) == 0
    assert engine.take_output().endswith(b"attached to w; :detach returns to the shell\n42\n42\ndetached from w\n")


def test_ctrl_d_on_a_terminal_detaches_and_the_shell_goes_on(tmp_path):
    child = spawn("exec {bioxen} > out.txt", tmp_path)  # stdin a terminal: the line-by-line REPL
    child.expect_exact("lua> ")
    for line, prompt in (("vm.create{name = 'w'}", "lua> "), (":attach w", "w> "), ("local x = 41", "w> "),
                         ("x + 1", "w> ")):
        child.send(line + "\r")
        child.expect_exact(prompt)
    child.sendeof()                      # Ctrl-D: back to the shell, which is still running
    child.expect_exact("lua> ")
    child.send("x == nil\r")             # the VM's local, not the shell's
    child.expect_exact("lua> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (tmp_path / "out.txt").read_text().endswith("42\ndetached from w\ntrue\n")


# ------------------------------------------------------------------ one compile per line

COUNT_COMPILES = r"""
package.path = arg[1] .. "/?.lua;" .. package.path
local session = require("bioxen.runner.session")
local s = session.new(_G, "repl")
local load, loadstring, compiles = load, rawget(_G, "loadstring"), 0
debug.sethook(function()
  local f = debug.getinfo(2, "f").func
  if f == load or f == loadstring then compiles = compiles + 1 end
end, "c")
local counts = {}
for line in io.lines() do
  compiles = 0
  assert(s:is_complete(line) == "complete", line)
  local fn, is_expr = assert(s:compile(line))
  session.run(fn, is_expr)
  counts[#counts + 1] = compiles
end
debug.sethook()
print(table.concat(counts, " "))
"""

ONE_COMPILE_LINES = ["local x = 41", "x + 1", "x = x + 1", "print(x)", "=x", "y = 5; y",
                     "function f(a) return a end", "for i = 1, 2 do x = x + i end"]


@pytest.mark.parametrize("binary", ["lua5.1", "lua5.4", "luajit"])
def test_a_line_is_compiled_once_for_its_check_and_its_run(binary, tmp_path):
    require_binary(binary)
    script = tmp_path / "count.lua"
    script.write_text(COUNT_COMPILES)
    out = subprocess.run([binary, str(script), str(paths.lua_dir())], input="\n".join(ONE_COMPILE_LINES) + "\n",
                         capture_output=True, text=True, timeout=PATIENCE, check=True).stdout
    counts = dict(zip(ONE_COMPILE_LINES, out.splitlines()[-1].split()))
    assert counts == {line: "1" for line in ONE_COMPILE_LINES}
