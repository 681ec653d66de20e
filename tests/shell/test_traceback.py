"""Tracebacks of deep stacks in the shell: `bioxen -e`, the REPL in a terminal, attached VMs.

A runaway recursion ends in a traceback cut to its first 10 and last 11 levels (bioxen.traceback,
shared with the VM agent: tests/agent/test_traceback.py), on every runtime, and the session goes
on; Ctrl-C stops a deep recursion as it stops a loop.
"""
from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from bioxen_shell.engine import Engine
from bioxen_shell.runtimes import RUNTIMES
from tests.shell.test_pty import PROMPT, run as send, spawn
from tests.waiting import PATIENCE

BIOXEN = [sys.executable, "-m", "bioxen_shell"]
SKIP = re.compile(r"^\t\.\.\.\t\(skipping (\d+) levels\)$")
REC = "function rec(n) return 1 + rec(n + 1) end"
REC_LINE = "\t(command line):1: in function 'rec'"


def skip_counts(text: str) -> list[int]:
    return [int(m.group(1)) for line in text.splitlines() if (m := SKIP.match(line))]


def run(*args):
    # The timeout is the test: a traceback that walked every frame took minutes on lua54.
    proc = subprocess.run([*BIOXEN, *args], capture_output=True, timeout=PATIENCE)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_stack_overflow_traceback_is_cut(runtime):
    code, out, err = run("--runtime", runtime, "-e", REC + " rec(1)")
    lines = err.splitlines()
    assert code == 1 and out == ""
    assert lines[0].startswith("bioxen: ") and lines[0].endswith("stack overflow"), lines[0]
    assert lines[1] == "stack traceback:" and len(lines) <= 25, err
    [skipped] = skip_counts(err)
    assert skipped > 1000  # the smallest stack (Lua 5.1's) holds some 16,000 such frames
    assert lines[2:12] == [REC_LINE] * 10 and lines[13:23] == [REC_LINE] * 10
    assert lines[23:] == ["\t(command line):1: in main chunk"]


@pytest.mark.parametrize("runtime", list(RUNTIMES))
@pytest.mark.parametrize("depth", [5, 21, 22, 300])
def test_levels_shown_and_skipped_count(runtime, depth):
    # The levels: error's own C frame (the shell leaves it out), rec's `depth`, the main chunk.
    src = f"function rec(n) if n == {depth} then error('bottom') end return 1 + rec(n + 1) end rec(1)"
    code, _, err = run("--runtime", runtime, "-e", src)
    lines = err.splitlines()
    assert code == 1 and lines[0] == "bioxen: (command line):1: bottom"
    levels = ["[C] error"] + [REC_LINE] * depth + ["\t(command line):1: in main chunk"]
    if len(levels) <= 22:
        assert lines[2:] == levels[1:] and skip_counts(err) == []
    else:
        assert lines[2:11] == levels[1:10] and lines[12:] == levels[-11:]
        assert skip_counts(err) == [len(levels) - 21]


# ------------------------------------------------------------------ the REPL in a terminal

@pytest.fixture(params=["lua54", "luajit"])
def repl(request):
    child = spawn("--runtime", request.param)
    yield child
    if child.isalive():
        child.terminate(force=True)


def test_repl_stack_overflow_then_the_session_goes_on(repl):
    send(repl, "local kept = 'intact'")
    repl.expect_exact(PROMPT)
    send(repl, REC)
    repl.expect_exact(PROMPT)
    send(repl, "rec(1)")
    repl.expect_exact("stack overflow")
    repl.expect(r"\(skipping (\d+) levels\)")
    assert int(repl.match.group(1)) > 1000
    repl.expect_exact("in main chunk")
    repl.expect_exact(PROMPT)
    send(repl, "kept")
    repl.expect_exact('"intact"')
    repl.expect_exact(PROMPT)


def test_repl_ctrl_c_stops_a_deep_recursion(repl):
    # It announces depth 1000 (the echo shows 'dee' .. 'p', not the word); each level then
    # spins a while, so the stack overflows only long after the Ctrl-C.
    send(repl, "function slow(n) if n == 1000 then print('dee' .. 'p') end "
               "for i = 1, 20000 do end return 1 + slow(n + 1) end")
    repl.expect_exact(PROMPT)
    send(repl, "slow(1)")
    repl.expect_exact("deep")
    repl.sendintr()
    repl.expect_exact("interrupted!")
    repl.expect(r"\(skipping (\d+) levels\)")
    assert int(repl.match.group(1)) >= 1000 - 21
    repl.expect_exact("in main chunk")
    repl.expect_exact(PROMPT)
    send(repl, "1 + 1")
    repl.expect_exact("2\r\n")


# ------------------------------------------------------------------ VMs attached to the shell

class Shell(Engine):
    def __init__(self, runtime: str):
        super().__init__(runtime, stdout=io.BytesIO(), extensions=["bioxen_shell.vm.bindings"])

    def show(self, line: str) -> str:
        r = self.eval_line(line)
        assert r.ok, r.error_text().decode()
        return r.output.decode()


@pytest.mark.parametrize("runtime", ["lua54", "luajit"])
def test_stack_overflow_in_an_attached_vm(runtime):
    sh = Shell("lua54")
    try:
        sh.show(f"w = vm.create{{name = 'deep', runtime = '{runtime}'}}")
        assert "attached to deep" in sh.show(":attach deep")
        sh.show(REC)
        r = sh.eval_line("rec(1)")
        assert r.kind == "error" and r.message.endswith(b"stack overflow"), r
        tb = r.traceback.decode()
        lines = tb.splitlines()
        assert lines[0] == "stack traceback:" and len(lines) <= 25, tb
        [skipped] = skip_counts(tb)
        assert skipped > 1000
        assert re.fullmatch(r"\tdeep\[\d+\]:1: in main chunk", lines[-1]), tb
        assert sh.show("1 + 1") == "2"  # the VM lives on
        sh.show(":detach")
    finally:
        sh.close()
