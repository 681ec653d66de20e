"""A real pseudo-terminal: type into `bioxen`, interrupt a runaway loop, keep going."""
from __future__ import annotations

import os
import shutil
import sys
import time

import pytest

from tests.waiting import PATIENCE

pexpect = pytest.importorskip("pexpect", reason="pexpect is a test dependency (pip install pexpect)")

PROMPT = "lua> "


def spawn(*options):
    """`bioxen *options` in a pseudo-terminal, at its first prompt."""
    env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", NO_COLOR="1", COLUMNS="100", LINES="30")
    # The installed `bioxen` command when it is there (it is in CI), else the module.
    command = shutil.which("bioxen")
    args = ([] if command else ["-m", "bioxen_shell"]) + list(options)
    child = pexpect.spawn(command or sys.executable, args, env=env, encoding="utf-8",
                          timeout=PATIENCE, dimensions=(30, 100))
    child.expect_exact(PROMPT)
    return child


@pytest.fixture
def shell():
    child = spawn()
    yield child
    if child.isalive():
        child.terminate(force=True)


def run(child, line):
    child.send(line + "\r")


def test_interrupt_runaway_loop_and_keep_state(shell):
    run(shell, "local kept = 'intact'")
    shell.expect_exact(PROMPT)
    # The loop announces itself (the echo of the line shows 'spin' .. 'ning', not the
    # word): Ctrl-C comes while it runs, not while the line is still being read.
    run(shell, "print('spin' .. 'ning') while true do end")
    shell.expect_exact("spinning")
    shell.sendintr()
    shell.expect_exact("interrupted!")  # latency itself: bench/interrupt.py
    shell.expect_exact(PROMPT)
    run(shell, "kept")
    shell.expect_exact('"intact"')
    shell.expect_exact(PROMPT)
    run(shell, "1 + 1")
    shell.expect_exact("2\r\n")


def test_tab_completion_ctrl_c_clears_and_ctrl_d_exits(shell):
    shell.send("string.rev")
    shell.send("\t")
    shell.expect_exact("string.reverse")  # the completion is in the line (it comes later than Tab)
    run(shell, "('abc')")
    shell.expect_exact('"cba"')
    shell.expect_exact(PROMPT)
    shell.send("broken((")
    shell.sendintr()  # Ctrl-C at the prompt (a key in raw mode, read in order): the line is dropped
    shell.expect_exact(PROMPT)
    run(shell, "'fresh'")
    shell.expect_exact('"fresh"')
    shell.expect_exact(PROMPT)
    shell.sendcontrol("d")
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 0


def test_multiline_input_in_a_terminal(shell):
    run(shell, "function fact(n)")
    run(shell, "if n <= 1 then return 1 end")
    run(shell, "return n * fact(n - 1)")
    run(shell, "end")
    shell.expect_exact(PROMPT)
    run(shell, "fact(10)")
    shell.expect_exact("3628800")


def test_stuck_c_call_third_ctrl_c_leaves(shell):
    # A pathological pattern keeps Lua inside string.find (C): no hook can fire.  The line
    # announces that it runs first, so every Ctrl-C reaches the running code.
    run(shell, "print('in' .. ' C') x = ('a'):rep(3000):find(('a*'):rep(10) .. 'b')")
    shell.expect_exact("in C")
    # Presses that come close together can reach the shell as one signal: press again until
    # the second one has been counted (the shell says so).
    deadline = time.monotonic() + PATIENCE
    shell.sendintr()
    while True:
        shell.sendintr()
        if shell.expect_exact(["press Ctrl-C again to quit bioxen", pexpect.TIMEOUT], timeout=5) == 0:
            break
        assert time.monotonic() < deadline, "the shell never counted a second Ctrl-C"
    shell.sendintr()
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 130


def test_sigterm_at_the_prompt(shell):
    import signal

    shell.kill(signal.SIGTERM)
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 128 + signal.SIGTERM
