"""Showing evaluation results: values on stdout, errors on stderr."""
from __future__ import annotations

import sys

__all__ = ["show_result"]

_RED, _RESET = b"\x1b[31m", b"\x1b[0m"


def show_result(engine, result, *, color: bool = False) -> None:  # noqa: ANN001
    """Print a :class:`bioxen_shell.engine.Result` the way the REPL shows it.

    Values go through the engine's output (ordered with Lua's own prints);
    errors go to stderr, in red on a terminal.
    """
    if result.ok:
        if result.output:
            engine.write(_highlight(result.output) if color else result.output)
            engine.write(b"\n")
        engine.flush()
        return
    text = result.error_text()
    if color:
        text = _RED + text + _RESET
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stderr.buffer.write(text + b"\n")
    sys.stderr.buffer.flush()


def _highlight(output: bytes) -> bytes:
    """Colour a printed value as Lua source (only called on terminals)."""
    from pygments import highlight
    from pygments.formatters import TerminalFormatter
    from pygments.lexers.scripting import LuaLexer

    text = output.decode("utf-8", "replace")
    coloured = highlight(text, LuaLexer(), TerminalFormatter())
    return coloured.rstrip("\n").encode()
