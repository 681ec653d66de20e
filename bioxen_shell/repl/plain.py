"""A line-by-line REPL for when stdin or stdout is not a terminal (``bioxen -i`` in a pipe).

No prompt_toolkit, no prompts, no escape codes: lines are gathered until they
form a complete chunk, which is then evaluated and its values printed.
"""
from __future__ import annotations

import sys
from typing import IO

from ..engine import ShellExit
from .printer import show_result

__all__ = ["run_repl"]


def run_repl(engine, stdin: IO[str] | None = None) -> int:  # noqa: ANN001
    """Read chunks from ``stdin`` until EOF; return the exit status."""
    stdin = stdin or sys.stdin
    pending: list[str] = []
    while True:
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            pending = []
            continue
        if not line:
            break
        pending.append(line.rstrip("\n"))
        source = "\n".join(pending)
        if engine.is_complete(source)[0] == "incomplete":
            continue
        pending = []
        try:
            show_result(engine, engine.eval_line(source))
        except ShellExit as exc:
            return exc.code
    if pending:  # input ended inside an unfinished chunk: show Lua's error
        try:
            show_result(engine, engine.eval_line("\n".join(pending)))
        except ShellExit as exc:
            return exc.code
    return 0
