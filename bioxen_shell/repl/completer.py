"""Tab completion: a prompt_toolkit Completer over the Lua engine's ``complete``.

The candidates are computed on the Lua side (``lua/bioxen/shell/complete.lua``),
which knows the live globals, table fields, ``__index`` chains, module names and
meta-commands.  It runs in microseconds, so no ThreadedCompleter is needed, and
the engine refuses to complete while user code is running.
"""
from __future__ import annotations

from typing import Iterable

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

__all__ = ["LuaCompleter"]


class LuaCompleter(Completer):
    def __init__(self, engine) -> None:  # noqa: ANN001
        self.engine = engine

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        for text, start, meta in self.engine.complete(document.text_before_cursor):
            yield Completion(text, start_position=start, display_meta=meta or None)
