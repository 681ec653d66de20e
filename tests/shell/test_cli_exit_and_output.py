"""The `bioxen` command's output buffering and its fast exit keep what users rely on.

Through real subprocesses (the console-script path, main() without argv, which ends the
process with os._exit after closing the engine).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bioxen_shell.engine import Engine
from tests.waiting import PATIENCE

BIOXEN = [sys.executable, "-m", "bioxen_shell"]


def run(*args, env=None, **kw):
    proc = subprocess.run([*BIOXEN, *args], capture_output=True, env=env, timeout=PATIENCE, **kw)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.mark.parametrize("runtime", ["luajit", "lua54"])
def test_files_lua_leaves_open_are_flushed_at_exit(tmp_path, runtime):
    out = tmp_path / "left-open.txt"
    code = f'f = io.open({str(out)!r}, "w") f:write("kept") g = io.open({str(out)!r} .. "2", "w") g:write("too")'
    assert run("--runtime", runtime, "-e", code)[0] == 0
    assert out.read_text() == "kept"
    assert (tmp_path / "left-open.txt2").read_text() == "too"


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_output_order_with_stderr_and_flush(unbuffered):
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    code, out, err = run("-e", 'io.write("a") print("b") io.stdout:write(1, 2, "\\n") io.flush() os.exit(4)', env=env)
    assert (code, out, err) == (4, "ab\n12\n", "")


def test_many_writes_arrive_complete_under_pythonunbuffered():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code, out, _ = run("-e", 'for i = 1, 20000 do io.write(i, "\\n") end', env=env)
    assert code == 0 and out.split() == [str(i) for i in range(1, 20001)]


def test_closed_pipe_ends_the_script_quietly_with_sigpipe_status():
    proc = subprocess.Popen([*BIOXEN, "-e", "for i = 1, 1e7 do print(i) end"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"1\n"
    proc.stdout.close()
    assert proc.wait(PATIENCE) == 141
    assert proc.stderr.read() == b""


def test_equals_prefix_prints_a_call_in_e():
    assert run("-e", '=string.rep("a", 3)')[1] == '"aaa"\n'
    assert run("-e", 'string.rep("a", 3)')[1] == ""  # a call is a statement, as in lua -e


def test_os_exit_in_a_run_script_ends_only_the_script(tmp_path):
    script = tmp_path / "exits.lua"
    script.write_text("print('ran', ...)\nos.exit(7)\n")
    engine = Engine("luajit")
    try:
        res = engine.eval_line(f":run {script} x")
        assert (res.ok, res.output) == (True, b"script exited with status 7")
        assert engine.eval_line("1 + 1").output == b"2"
    finally:
        engine.close()


def test_repl_keeps_const_checks_and_reads_labels_as_lua():
    engine = Engine("lua54")
    try:
        res = engine.eval_line("local k <const> = 5; k = 2")
        assert res.kind == "syntax" and b"attempt to assign to const variable 'k'" in res.message
        engine.eval_line("local j <const> = 3")
        assert engine.eval_line("j").output == b"3"  # top-level locals still live on
        res = engine.eval_line("::top:: x = 1")
        assert res.ok, res.message
        assert engine.is_complete("::top::") == ("complete", 0)
    finally:
        engine.close()
