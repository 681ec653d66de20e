"""Key bindings: Enter submits only a complete chunk, otherwise opens an indented line.

* Enter — complete (or hopelessly invalid) input runs; incomplete input gets a
  new line indented by the engine's hint.  A closing line (``end``, ``else``,
  ``until``, ``}``…) is dedented first.  With the cursor inside a multi-line
  input, Enter just breaks the line.
* Meta-Enter (Esc Enter) — always a new line.
* Tab on a blank line prefix — indents instead of completing.
Ctrl-C (clear the input), Ctrl-D (exit), Ctrl-R (history search) and bracketed
paste are prompt_toolkit's own.
"""
from __future__ import annotations

import re

from prompt_toolkit.enums import DEFAULT_BUFFER
from prompt_toolkit.filters import Condition, has_focus
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

__all__ = ["load_shell_bindings"]

INDENT = 2
_CLOSER = re.compile(r"^\s*(?:(?:end|else|elseif|until)\b|[})])")


def _dedent_closing_line(engine, buffer) -> None:  # noqa: ANN001
    lines = buffer.text.split("\n")
    if len(lines) < 2 or not _CLOSER.match(lines[-1]):
        return
    status, indent = engine.is_complete("\n".join(lines[:-1]))
    want = max(0, (indent if status == "incomplete" else 0) - INDENT)
    stripped = lines[-1].lstrip()
    if len(lines[-1]) - len(stripped) != want:
        lines[-1] = " " * want + stripped
        buffer.text = "\n".join(lines)
        buffer.cursor_position = len(buffer.text)


def load_shell_bindings(engine) -> KeyBindings:  # noqa: ANN001
    kb = KeyBindings()
    # Only in the input buffer: in Ctrl-R search, Enter must stay prompt_toolkit's.
    editing = has_focus(DEFAULT_BUFFER)

    @kb.add("enter", filter=editing)
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        state = buffer.complete_state
        if state and state.current_completion:
            buffer.apply_completion(state.current_completion)
            return
        document = buffer.document
        if "\n" in document.text and document.text_after_cursor.strip():
            buffer.insert_text("\n")
            return
        _dedent_closing_line(engine, buffer)
        status, indent = engine.is_complete(buffer.text)
        if status == "incomplete":
            buffer.insert_text("\n" + " " * indent)
        else:
            buffer.validate_and_handle()

    @kb.add("escape", "enter", filter=editing)
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    @Condition
    def blank_before_cursor() -> bool:
        from prompt_toolkit.application import get_app

        before = get_app().current_buffer.document.current_line_before_cursor
        return before == "" or before.isspace()

    @kb.add("tab", filter=editing & blank_before_cursor)
    def _indent(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text(" " * INDENT)

    return kb
