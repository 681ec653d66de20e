"""Key bindings: Enter submits only a complete chunk, otherwise opens an indented line.

* Enter — complete (or hopelessly invalid) input runs; incomplete input gets a
  new line indented by the engine's hint.  A closing line (``end``, ``else``,
  ``until``, ``}``…) is dedented first.  With the cursor inside a multi-line
  input, Enter just breaks the line.
* Meta-Enter (Esc Enter) — always a new line.
* Tab on a blank line prefix — indents instead of completing.
* Enter in a Ctrl-R search — runs the entry found (Esc leaves the search to edit it).
* Ctrl-X Ctrl-E — edits the input in $VISUAL / $EDITOR, then runs it when complete.
Ctrl-C (clear the input), Ctrl-D (exit), Ctrl-R (history search) and bracketed
paste are prompt_toolkit's own.
"""
from __future__ import annotations

import re

from prompt_toolkit import search
from prompt_toolkit.enums import DEFAULT_BUFFER
from prompt_toolkit.filters import Condition, has_focus, is_searching
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

__all__ = ["load_shell_bindings"]

INDENT = 2
_CLOSER = re.compile(r"^\s*(?:(?:end|else|elseif|until)\b|[})])")


def _dedent_closing_line(engine, buffer) -> None:  # noqa: ANN001
    lines = buffer.text.split("\n")
    if len(lines) < 2 or not _CLOSER.match(lines[-1]):
        return
    status, indent = engine.is_complete("\n".join(lines[:-1]))
    if status == "incomplete" and indent == 0:
        return  # nothing open to close: inside a long string or comment, the line is data
    want = max(0, (indent if status == "incomplete" else 0) - INDENT)
    stripped = lines[-1].lstrip()
    if len(lines[-1]) - len(stripped) != want:
        lines[-1] = " " * want + stripped
        buffer.text = "\n".join(lines)
        buffer.cursor_position = len(buffer.text)


def load_shell_bindings(engine) -> KeyBindings:  # noqa: ANN001
    kb = KeyBindings()
    # Only in the input buffer: in a Ctrl-R search, Enter is _run_found below.
    editing = has_focus(DEFAULT_BUFFER)

    def submit_or_indent(buffer) -> None:  # noqa: ANN001
        _dedent_closing_line(engine, buffer)
        status, indent = engine.is_complete(buffer.text)
        if status == "incomplete":
            buffer.insert_text("\n" + " " * indent)
        else:
            buffer.validate_and_handle()

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
        submit_or_indent(buffer)

    @kb.add("enter", filter=is_searching)
    def _run_found(event: KeyPressEvent) -> None:
        # As in bash: Enter runs what Ctrl-R found.  prompt_toolkit's own Enter
        # would leave the cursor on the match, where the next Enter breaks a
        # multi-line entry.  (Esc still leaves the search to edit the entry.)
        search.accept_search()
        buffer = event.app.current_buffer
        buffer.cursor_position = len(buffer.text)
        submit_or_indent(buffer)

    @kb.add("c-x", "c-e", filter=editing)
    def _edit_in_editor(event: KeyPressEvent) -> None:
        # As in bash: $VISUAL or $EDITOR edits the input, which then runs when it is
        # complete (else a new line opens, as with Enter).  prompt_toolkit puts the
        # cursor at the end only when the editor succeeded: the cursor starts at 0 so
        # that an aborted edit (vim's :cq) is told apart, and does not run.
        buffer = event.current_buffer
        where = buffer.cursor_position
        buffer.cursor_position = 0
        task = buffer.open_in_editor()

        def edited(_task) -> None:  # noqa: ANN001
            if task.cancelled() or task.exception() is not None:
                return
            if not buffer.document.is_cursor_at_the_end:
                buffer.cursor_position = where  # the editor failed: the input is as it was
            elif buffer.text.strip():
                submit_or_indent(buffer)

        task.add_done_callback(edited)

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
