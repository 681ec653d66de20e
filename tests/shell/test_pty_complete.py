"""The REPL in a real terminal: bioxen under tmux, whose screen (capture-pane) is what a
user sees, the bottom toolbar included.  Completion, the signature line, and where the
prompt is drawn after output that does not end a line or after type-ahead."""
from __future__ import annotations

import itertools
import os
import shlex
import shutil
import subprocess
import sys
import termios

import pytest

from tests.system import require_binary
from tests.waiting import wait_for


class Screen:
    """bioxen in a tmux session of its own (a private server socket)."""

    def __init__(self, tmux: str, socket: str) -> None:
        self.tmux, self.socket = tmux, socket
        command = shutil.which("bioxen")
        argv = [command] if command else [sys.executable, "-m", "bioxen_shell"]
        env = ["env", "TERM=xterm", "NO_COLOR=1", f"HOME={os.environ.get('HOME', '/tmp')}"]
        self.cmd("new-session", "-d", "-s", "main", "-x", "160", "-y", "20",
                 shlex.join(env + argv))
        self.wait_for("lua>")  # (capture-pane drops trailing blanks)

    def cmd(self, *args: str) -> str:
        return subprocess.run([self.tmux, "-L", self.socket, *args], check=True,
                              capture_output=True, text=True).stdout

    def text(self) -> str:
        return self.cmd("capture-pane", "-p", "-t", "main")

    def toolbar(self) -> str:
        lines = [line for line in self.text().splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def send(self, *keys: str) -> None:
        self.cmd("send-keys", "-t", "main", *keys)

    def type(self, text: str) -> None:
        self.cmd("send-keys", "-t", "main", "-l", text)

    def wait_for(self, text: str, where=None) -> None:  # noqa: ANN001
        where = where or self.text
        try:
            wait_for(lambda: text in where(), f"{text!r} on the screen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{self.text()}") from None

    def wait_until_running(self) -> None:
        """Until the terminal is back in line mode with echo: the prompt has handed over the
        line and the line runs (prompt_toolkit reads keys in raw mode, without echo)."""
        tty = self.cmd("display-message", "-p", "-t", "main", "#{pane_tty}").strip()
        fd = os.open(tty, os.O_RDONLY | os.O_NOCTTY)
        try:
            wait_for(lambda: termios.tcgetattr(fd)[3] & termios.ECHO, "the terminal's echo (a line running)")
        finally:
            os.close(fd)

    def close(self) -> None:
        subprocess.run([self.tmux, "-L", self.socket, "kill-server"], capture_output=True)


_SCREENS = itertools.count(1)


@pytest.fixture
def screen():
    # A tmux server of its own per test: kill-server returns before the old server is gone,
    # and a new session on the same socket could meet it while it exits.
    s = Screen(require_binary("tmux"), f"bioxen-test-{os.getpid()}-{next(_SCREENS)}")
    yield s
    s.close()


def enter(screen, line: str) -> None:
    screen.type(line)
    screen.send("Enter")


def signature_shown(screen, signature: str, doc: str) -> None:
    """The toolbar shows the call's signature and then its first doc sentence."""
    screen.wait_for(signature, screen.toolbar)
    line = screen.toolbar()
    assert doc in line and line.index(doc) > line.index(signature)


def test_lazy_submodules_complete_and_the_call_shows_its_signature(screen):
    enter(screen, 'local bio = require "bio"')
    screen.type("bio.seq.gc_fr")
    screen.send("Tab")
    screen.wait_for("lua> bio.seq.gc_fraction")   # completed inside a lazily loaded submodule
    screen.type("(")
    signature_shown(screen, "bio.seq.gc_fraction(s, ambiguous)",
                    "GC fraction in [0, 1], exactly as Bio.SeqUtils.gc_fraction(seq, ambiguous).")
    enter(screen, '"GGCC") == 1')
    screen.wait_for("true")
    screen.wait_for(":help", screen.toolbar)  # no call: the hint is back
    screen.type('string.rep("ab", ')
    signature_shown(screen, "string.rep(s, n [, sep])", "Returns n copies of s, separated by sep.")
    screen.send("C-c")
    enter(screen, ":help bio.seq")
    screen.wait_for("bio.seq: nucleotide sequence operations on plain Lua strings.")


def lines(screen) -> list[str]:
    return screen.text().splitlines()


def _after(screen_lines: list[str], first: str, then: str) -> bool:
    """A line that is ``first`` and, below it, a line that is ``then`` (trailing blanks aside)."""
    stripped = [line.rstrip() for line in screen_lines]
    return first in stripped and then in stripped[stripped.index(first) + 1:]


def test_the_prompt_starts_a_line_of_its_own_after_output_without_a_newline(screen):
    enter(screen, "do io.write('abc') end")
    # Typed only once the next prompt is up: keys typed while the line still runs are echoed
    # by the terminal wherever the cursor is (the type-ahead test below).
    wait_for(lambda: _after(lines(screen), "abc", "lua>"), "'abc' and then an empty prompt on a line of its own")
    screen.type("x = 1")
    wait_for(lambda: any(line.startswith("lua> x = 1") for line in lines(screen)),
             "the prompt with what was typed, at the start of a line")
    assert "abc" in [line.rstrip() for line in lines(screen)]  # the output is kept, on its own line


def test_type_ahead_while_a_line_runs_is_shown_in_the_next_prompt(screen, tmp_path):
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    enter(screen, f"local line = io.open('{fifo}'):read('*l')")  # runs until the test writes
    screen.wait_until_running()
    screen.type("x = 1")
    screen.wait_for("x = 1")  # echoed by the terminal while the line still runs
    with open(fifo, "w") as f:
        f.write("go\n")
    wait_for(lambda: any(line.startswith("lua> x = 1") for line in lines(screen)),
             "the type-ahead in the next prompt, at the start of a line")
    screen.send("Enter")
    enter(screen, "x + 1")
    wait_for(lambda: "2" in [line.strip() for line in lines(screen)], "the value of x + 1")
