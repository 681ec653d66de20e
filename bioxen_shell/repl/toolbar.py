"""The bottom toolbar: runtime, eval target, the extensions' status segments, and,
while the cursor is inside a call, that function's signature and first doc line
(as ptpython shows them), from the Lua-side help that ``:help`` uses."""
from __future__ import annotations

from typing import Callable

from prompt_toolkit.application import get_app_or_none
from prompt_toolkit.formatted_text import StyleAndTextTuples

__all__ = ["make_toolbar", "signature_parts"]

HINT = "  :help · Tab complete · Ctrl-R search · Ctrl-D exit"


def signature_parts(info: dict) -> StyleAndTextTuples:  # noqa: ANN001
    """``name(a, b)  first doc line`` with the argument being typed marked."""
    sig = info["signature"]
    parts: StyleAndTextTuples = [("class:toolbar.signature", " ")]
    open_at = len(info["name"]) + 1
    head, params = sig[:open_at], sig[open_at:-1] if sig.endswith(")") else ""
    names = [p for p in params.split(", ")] if params else []
    if not names or not sig.startswith(info["name"] + "("):
        parts.append(("class:toolbar.signature", sig))
    else:
        parts.append(("class:toolbar.signature", head))
        current = info["arg"] - 1
        if names and names[-1].endswith("...") and current >= len(names):
            current = len(names) - 1  # every later argument is the vararg
        for i, name in enumerate(names):
            if i:
                parts.append(("class:toolbar.signature", ", "))
            style = "class:toolbar.signature.current" if i == current else "class:toolbar.signature"
            parts.append((style, name))
        parts.append(("class:toolbar.signature", ")"))
    parts.append(("class:toolbar.signature", " "))
    if info.get("doc"):
        parts.append(("class:toolbar.doc", "  " + info["doc"]))
    return parts


def _current_call(engine) -> dict | None:  # noqa: ANN001
    app = get_app_or_none()
    if app is None:
        return None
    return engine.signature(app.current_buffer.document.text_before_cursor)


def make_toolbar(engine) -> Callable[[], StyleAndTextTuples]:  # noqa: ANN001
    def toolbar() -> StyleAndTextTuples:
        parts: StyleAndTextTuples = [("class:toolbar.runtime", f" {engine.runtime} ")]
        target = engine.prompt_name()
        if target:
            parts.append(("class:toolbar.target", f" attached: {target} "))
        for segment in engine.status_segments():
            parts.append(("class:toolbar", " │ " + segment))
        call = _current_call(engine)
        if call is not None:
            parts.append(("class:toolbar", " "))
            parts.extend(signature_parts(call))
        else:
            parts.append(("class:toolbar.hint", HINT))
        return parts

    return toolbar
