"""The bottom toolbar: runtime, eval target, the extensions' status segments, and,
while the cursor is inside a call, that function's signature and first doc line
(as ptpython shows them), from the Lua-side help that ``:help`` uses."""
from __future__ import annotations

from typing import Callable

from prompt_toolkit.application import get_app_or_none
from prompt_toolkit.formatted_text import StyleAndTextTuples

__all__ = ["make_toolbar", "signature_parts"]

HINT = "  :help · Tab complete · Ctrl-R search · Ctrl-D exit"


def param_spans(params: str) -> list[tuple[int, int]]:
    """Where each argument position is in ``params``: ``"s, n [, sep]"`` gives the spans
    of ``s``, ``n`` and ``[, sep]`` (an optional group, nested ones included, is one)."""
    spans, depth, start, i = [], 0, 0, 0
    while i < len(params):
        c = params[i]
        depth += (c == "[") - (c == "]")
        if depth == 0 and params.startswith(", ", i):
            spans.append((start, i))
            start = i = i + 2
            continue
        if depth == 0 and c == " " and (params[i + 1:i + 2] == "[" or params[i - 1:i] == "]"):
            spans.append((start, i))
            start = i + 1
        i += 1
    spans.append((start, len(params)))
    return [(a, b) for a, b in spans if b > a]


def signature_parts(info: dict) -> StyleAndTextTuples:  # noqa: ANN001
    """``name(a, b)  first doc line``, the argument being typed marked."""
    sig, plain = info["signature"], "class:toolbar.signature"
    parts: StyleAndTextTuples = [(plain, " ")]
    head = info["name"] + "("
    if not (sig.startswith(head) and sig.endswith(")")):
        parts.append((plain, sig))
    else:
        params = sig[len(head):-1]
        spans = param_spans(params)
        current = info["arg"] - 1
        if spans and params[spans[-1][0]:].endswith("...") and current >= len(spans):
            current = len(spans) - 1  # every later argument is the vararg
        parts.append((plain, head))
        done = 0
        for i, (a, b) in enumerate(spans):
            parts.append((plain, params[done:a]))
            parts.append((plain + ".current" if i == current else plain, params[a:b]))
            done = b
        parts.append((plain, params[done:] + ")"))
    parts.append((plain, " "))
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
