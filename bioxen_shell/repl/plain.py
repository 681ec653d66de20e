"""A line-by-line REPL for when stdin or stdout is not a terminal (``bioxen -i`` in a pipe).

No prompt_toolkit, no prompts, no escape codes: lines are gathered until they
form a complete chunk, which is then evaluated and its values printed.
"""
from __future__ import annotations

import sys
from typing import IO

from ..engine import ShellExit
from ..files import MAX_SCRIPT_BYTES, too_large
from .printer import show_result

__all__ = ["run_repl"]


def run_repl(engine, stdin: IO[str] | None = None) -> int:  # noqa: ANN001
    """Read chunks from ``stdin`` until EOF; return the exit status."""
    stdin = stdin or sys.stdin
    pending: list[str] = []
    size = 0  # of the pending chunk, capped as a script is (bioxen -i < /dev/zero stops)
    while True:
        try:
            line = stdin.readline(MAX_SCRIPT_BYTES + 1 - size)
        except KeyboardInterrupt:
            pending, size = [], 0
            continue
        if not line:
            break
        size += len(line)
        if size > MAX_SCRIPT_BYTES:
            sys.stderr.write(f"bioxen: stdin: a chunk {too_large(MAX_SCRIPT_BYTES, 'a Lua script')}\n")
            return 2
        pending.append(line.rstrip("\n"))
        source = "\n".join(pending)
        if engine.is_complete(source)[0] == "incomplete":
            continue
        pending, size = [], 0
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
