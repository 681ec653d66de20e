"""`bioxen | tee log`, `bioxen > out`: stdin is a terminal, stdout is not.

The line-by-line REPL runs (no prompt_toolkit, nothing but values on stdout) and its banner
and prompts go to the terminal, so the user sees where to type and the output stays clean.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys

import pytest

from tests.waiting import PATIENCE

pexpect = pytest.importorskip("pexpect", reason="pexpect is a test dependency (pip install pexpect)")

PROMPT = "lua> "


def spawn(shell_command: str, cwd):
    """`sh -c` with bioxen's stdout sent where shell_command says (the terminal is stdin)."""
    command = shutil.which("bioxen")
    bioxen = shlex.quote(command) if command else f"{shlex.quote(sys.executable)} -m bioxen_shell"
    env = dict(os.environ, TERM="xterm", NO_COLOR="1", XDG_CONFIG_HOME=str(cwd))  # no user init.lua
    return pexpect.spawn("sh", ["-c", shell_command.format(bioxen=bioxen)], env=env, cwd=str(cwd),
                         encoding="utf-8", timeout=PATIENCE, dimensions=(30, 100))


def line(child, text):
    child.send(text + "\r")


def test_prompts_on_the_terminal_and_only_values_on_stdout(tmp_path):
    child = spawn("exec {bioxen} > out.txt", tmp_path)  # exec: Ctrl-C reaches bioxen alone
    child.expect_exact("Type :help for help, Ctrl-D to exit.")
    child.expect_exact(PROMPT)
    line(child, "x = 6 * 7")
    child.expect_exact(PROMPT)
    line(child, "x")
    child.expect_exact(PROMPT)
    line(child, "for i = 1, 2 do")
    child.expect_exact(" ... ")  # continuation, as the full REPL draws it
    line(child, "print(i) end")
    child.expect_exact(PROMPT)
    line(child, "error('oops')")
    child.expect_exact("oops")  # errors: on stderr, the terminal here
    child.expect_exact(PROMPT)
    line(child, "io.stderr:write('spin' .. 'ning\\n') while true do end")
    child.expect_exact("spinning")  # running (the echo of the line shows 'spin' .. 'ning')
    child.sendintr()  # Ctrl-C stops the code, the session goes on
    child.expect_exact("interrupted!")
    child.expect_exact(PROMPT)
    child.send("broken((")
    child.sendintr()  # Ctrl-C at the prompt drops the line
    child.expect_exact(PROMPT)
    line(child, "'fresh'")
    child.expect_exact(PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (tmp_path / "out.txt").read_text() == '42\n1\n2\n"fresh"\n'


def test_tee_shows_prompt_and_values_and_logs_only_values(tmp_path):
    child = spawn("{bioxen} | tee log.txt", tmp_path)
    child.expect_exact(PROMPT)
    line(child, "2 ^ 10")
    child.expect_exact("1024")  # through tee, whenever tee writes it
    line(child, "os.exit(3)")
    child.expect(pexpect.EOF)
    child.close()
    assert (tmp_path / "log.txt").read_text() == "1024\n"


def test_no_prompt_when_stdin_is_not_a_terminal(tmp_path):
    # The terminal is stdout here (the full REPL needs both): the plain loop, silent.
    child = spawn("printf '1 + 1\\n' | {bioxen} -i", tmp_path)
    child.expect(pexpect.EOF)
    assert child.before.replace("\r\n", "\n") == "2\n"
