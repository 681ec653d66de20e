"""Showing evaluation results: values on stdout, errors on stderr."""
from __future__ import annotations

import sys
from functools import lru_cache

from ..settings import DEFAULT_STYLE

__all__ = ["show_result"]

_RED, _RESET = b"\x1b[31m", b"\x1b[0m"


def show_result(engine, result, *, color: bool = False, style: str = DEFAULT_STYLE,  # noqa: ANN001
                depth: str = "DEPTH_8_BIT") -> None:
    """Print a :class:`bioxen_shell.engine.Result` the way the REPL shows it.

    Values go through the engine's output (ordered with Lua's own prints), coloured
    on a terminal with the colour ``style`` at the terminal's colour ``depth`` (a name
    of prompt_toolkit's ColorDepth); errors go to stderr, in red on a terminal.
    """
    if result.ok:
        if result.output:
            engine.write(_highlight(result.output, style, depth) if color else result.output)
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


def _highlight(output: bytes, style: str, depth: str) -> bytes:
    """Colour a printed value (only called on terminals)."""
    from pygments import highlight

    from .lexer import ValueLexer

    formatter = _formatter(style, depth)
    if formatter is None:
        return output
    coloured = highlight(output.decode("utf-8", "replace"), ValueLexer(), formatter)
    return coloured.rstrip("\n").encode()


@lru_cache(maxsize=8)
def _formatter(style: str, depth: str):  # noqa: ANN202 - a Pygments formatter or None
    """The formatter that draws ``style`` as the input line is drawn (same colours, same depth)."""
    from .styles import pygments_style

    if depth == "DEPTH_1_BIT":
        return None
    if depth == "DEPTH_4_BIT":
        from pygments.formatters import TerminalFormatter

        return TerminalFormatter()  # 16 colours: the terminal's own palette
    if depth == "DEPTH_24_BIT":
        from pygments.formatters import TerminalTrueColorFormatter

        return TerminalTrueColorFormatter(style=pygments_style(style))
    from pygments.formatters import Terminal256Formatter

    return Terminal256Formatter(style=pygments_style(style))
