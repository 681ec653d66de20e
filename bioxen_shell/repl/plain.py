"""A line-by-line REPL for when stdin or stdout is not a terminal (``bioxen -i`` in a pipe).

No prompt_toolkit, no escape codes: lines are gathered until they form a
complete chunk, which is then evaluated and its values printed.  When stdin is
a terminal (``bioxen | tee log``) the banner and the prompts are written to
that terminal, never to stdout: the user sees where to type and the output
stays clean.
"""
from __future__ import annotations

import os
import sys
from typing import IO

from .. import __version__
from ..engine import ShellExit
from ..files import MAX_SCRIPT_BYTES, too_large
from .printer import show_result

__all__ = ["run_repl"]


class _Prompter:
    """Writes the banner and prompts on the terminal that stdin reads from, if it is one."""

    def __init__(self, stdin: IO[str]) -> None:
        self.fd: int | None = None
        try:
            if stdin.isatty():
                self.fd = os.open(os.ttyname(stdin.fileno()), os.O_WRONLY | os.O_NOCTTY)
        except (AttributeError, OSError, ValueError):
            self.fd = None  # a StringIO, or no terminal device to open: no prompts

    def write(self, text: str) -> None:
        if self.fd is None:
            return
        sys.stdout.flush()  # what was printed before the prompt goes first
        sys.stderr.flush()
        try:
            os.write(self.fd, text.encode(errors="replace"))
        except OSError:
            pass  # the terminal went away: reading stdin will say so

    def columns(self) -> int | None:
        if self.fd is None:
            return None
        try:
            return os.get_terminal_size(self.fd).columns
        except OSError:
            return None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _prompt(engine, pending: list[str]) -> str:  # noqa: ANN001
    """The prompt_toolkit REPL's prompts, plain: ``lua> `` (or the target's name), `` ... ``."""
    primary = (engine.prompt_name() or "lua") + "> "
    return "...".rjust(len(primary) - 1) + " " if pending else primary


def run_repl(engine, stdin: IO[str] | None = None) -> int:  # noqa: ANN001
    """Read chunks from ``stdin`` until EOF; return the exit status."""
    stdin = stdin or sys.stdin
    prompter = _Prompter(stdin)
    try:
        prompter.write(f"bioxen {__version__} on {engine.runtime}. Type :help for help, Ctrl-D to exit.\n")
        return _loop(engine, stdin, prompter)
    finally:
        prompter.close()


def _loop(engine, stdin: IO[str], prompter: _Prompter) -> int:  # noqa: ANN001
    pending: list[str] = []
    size = 0  # of the pending chunk, capped as a script is (bioxen -i < /dev/zero stops)
    while True:
        prompter.write(_prompt(engine, pending))
        try:
            line = stdin.readline(MAX_SCRIPT_BYTES + 1 - size)
        except KeyboardInterrupt:  # Ctrl-C at the prompt drops the input
            prompter.write("\n")
            pending, size = [], 0
            continue
        if not line:
            prompter.write("\n")  # Ctrl-D: the shell's own prompt starts on a fresh line
            if pending:
                break
            # Attached: Ctrl-D detaches (a terminal's next line is read; a pipe's end ends it).
            detached = engine.detach()
            if detached is None:
                break
            show_result(engine, detached)
            continue
        size += len(line)
        if size > MAX_SCRIPT_BYTES:
            sys.stderr.write(f"bioxen: stdin: a chunk {too_large(MAX_SCRIPT_BYTES, 'a Lua script')}\n")
            return 2
        pending.append(line.rstrip("\n"))
        source = "\n".join(pending)
        if engine.is_complete(source)[0] == "incomplete":
            continue
        pending, size = [], 0
        columns = prompter.columns()
        if columns:
            engine.set_option("width", max(20, columns))
        try:
            show_result(engine, engine.eval_line(source))
        except ShellExit as exc:
            return exc.code
        except KeyboardInterrupt:  # Ctrl-C outside Lua (Lua itself reports "interrupted!")
            sys.stderr.write("\ninterrupted\n")
    if pending:  # input ended inside an unfinished chunk: show Lua's error
        try:
            show_result(engine, engine.eval_line("\n".join(pending)))
        except ShellExit as exc:
            return exc.code
    return 0
