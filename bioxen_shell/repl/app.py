"""The interactive REPL on a terminal: a prompt_toolkit PromptSession around an Engine.

The loop is small on purpose: read a complete chunk (the key bindings decide
when input is complete), hand it to ``engine.eval_line``, show the result.
Running code is interrupted by Ctrl-C inside ``Engine`` itself.
"""
from __future__ import annotations

import os
import sys

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import History
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from prompt_toolkit.styles import DynamicStyle

from .. import __version__
from ..engine import ShellExit
from .completer import LuaCompleter
from .history import last_entries, open_history
from .key_bindings import load_shell_bindings
from .lexer import ShellLexer
from .printer import show_result
from .styles import DEFAULT_STYLE, prompt_style, style_names
from .toolbar import make_toolbar

__all__ = ["run_repl", "make_session", "ColourStyle"]


class ColourStyle:
    """The colour style of a session (input and printed values): config.toml's
    ``[shell] style``, changed by ``:set style NAME`` (a setting registered in Lua)."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or DEFAULT_STYLE
        self.prompt_toolkit = prompt_style(self.name)  # ValueError for an unknown name
        self._registered_in = None  # the Lua shell object it was registered in

    def set(self, name: str) -> str | None:
        """Switch to the style ``name``; returns what was wrong, or None."""
        try:
            self.prompt_toolkit = prompt_style(name)
        except ValueError as exc:
            return f"{exc}, got \"{name}\""
        self.name = name
        return None

    def _lua_set(self, value: bytes) -> bytes | None:
        problem = self.set(value.decode("utf-8", "replace"))
        return problem.encode() if problem else None

    def register(self, engine) -> None:  # noqa: ANN001
        """Make ``:set style`` known to the engine's Lua state; again after :reset and
        :runtime, which build a fresh one."""
        if self._registered_in is engine.shell:
            return
        engine.require("bioxen.shell.commands")[b"setting"](engine.to_lua({
            "name": "style",
            "get": lambda: self.name.encode(),
            "set": self._lua_set,
            "values": lambda: engine.to_lua(style_names()),
        }))
        self._registered_in = engine.shell


def _show_notices(history: History) -> None:
    """What the history has to say (it could not be saved, …), on stderr between prompts,
    never while prompt_toolkit draws."""
    take = getattr(history, "take_notices", None)
    notices = take() if take is not None else []
    if notices:
        sys.stdout.flush()
        sys.stderr.write("".join(f"{line}\n" for line in notices))
        sys.stderr.flush()


def make_session(
    engine,  # noqa: ANN001
    *,
    input: Input | None = None,  # noqa: A002 - prompt_toolkit's own name
    output: Output | None = None,
    history: History | None = None,
    toolbar: bool = True,
    style: ColourStyle | None = None,
) -> PromptSession:
    """Build the PromptSession: highlighting, Lua-side completion, history, bindings."""
    style = style or ColourStyle()

    def message() -> StyleAndTextTuples:
        name = engine.prompt_name()
        if name:
            return [("class:prompt.target", name + "> ")]
        return [("class:prompt", "lua> ")]

    def continuation(width: int, line_number: int, wrap_count: int) -> StyleAndTextTuples:
        return [("class:continuation", "...".rjust(width - 1) + " ")]

    return PromptSession(
        message=message,
        multiline=True,
        prompt_continuation=continuation,
        lexer=ShellLexer(),
        completer=LuaCompleter(engine),
        complete_while_typing=False,
        auto_suggest=AutoSuggestFromHistory(),
        history=history if history is not None else open_history(),
        key_bindings=load_shell_bindings(engine),
        bottom_toolbar=make_toolbar(engine) if toolbar else None,
        style=DynamicStyle(lambda: style.prompt_toolkit),
        include_default_pygments_style=False,  # its identifiers are #19177c: unreadable on black
        tempfile_suffix=".lua",
        input=input,
        output=output,
    )


def _prompt_on_a_fresh_line(session: PromptSession, engine) -> str:  # noqa: ANN001
    """``session.prompt()``, drawn from the start of a line of its own.

    prompt_toolkit draws the prompt as if the cursor were in column 0.  It may not be: the
    last output may not end in a newline (``io.write("abc")``), and what the user typed
    while the line ran was echoed by the terminal (type-ahead, which the prompt then reads
    and shows again).  Drawn from the middle of a line, the prompt and every later redraw
    of it land in the wrong columns.  The fix is zsh's (PROMPT_SP): a full line of spaces
    and a carriage return.  From column 0 the spaces end in the last column, where the
    terminal holds the wrap until the next character, and the carriage return goes back to
    column 0 of the same line; from any other column they wrap onto a new line, and the
    carriage return goes to its start.  Either way nothing written is overwritten.

    The terminal is put in raw mode first, so that no type-ahead is echoed after the spaces;
    prompt_toolkit's own raw mode then nests inside this one."""
    with session.input.raw_mode():
        engine.write(b" " * max(1, session.output.get_size().columns) + b"\r")
        engine.flush()
        return session.prompt()


def run_repl(
    engine,  # noqa: ANN001
    *,
    input: Input | None = None,  # noqa: A002
    output: Output | None = None,
    history: History | None = None,
    banner: bool = True,
    color: bool | None = None,
    style: str | None = None,
) -> int:
    """Run the REPL until Ctrl-D, ``:quit`` or ``os.exit``; return the exit status.

    ``style``: the colour style's name (config.toml's ``[shell] style``; None: the default)."""
    colours = ColourStyle(style)
    session = make_session(engine, input=input, output=output, history=history, toolbar=input is None,
                           style=colours)
    engine.history_provider = lambda n: last_entries(session.history, n)
    on_terminal = output is None and sys.stdout.isatty()  # the user's own terminal
    if color is None:  # NO_COLOR: https://no-color.org
        color = on_terminal and not os.environ.get("NO_COLOR")
    if banner:
        engine.write(
            f"bioxen {__version__} on {engine.runtime}. Type :help for help, Ctrl-D to exit.\n".encode()
        )
        engine.flush()
    while True:
        colours.register(engine)
        _show_notices(session.history)
        try:
            text = _prompt_on_a_fresh_line(session, engine) if on_terminal else session.prompt()
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the input
        except EOFError:  # Ctrl-D: detaches from a VM, else ends the REPL
            detached = engine.detach()
            if detached is None:
                return 0
            show_result(engine, detached, color=color, style=colours.name, depth=session.app.color_depth.name)
            continue
        finally:
            _show_notices(session.history)  # e.g. saving this input failed: said once, here
        if not text.strip():
            continue
        try:
            engine.set_option("width", max(20, session.output.get_size().columns))
            show_result(engine, engine.eval_line(text), color=color, style=colours.name,
                        depth=session.app.color_depth.name)
        except ShellExit as exc:
            return exc.code
        except KeyboardInterrupt:
            sys.stderr.write("\ninterrupted\n")
