"""The bottom toolbar: runtime, eval target, and the extensions' status segments."""
from __future__ import annotations

from typing import Callable

from prompt_toolkit.formatted_text import StyleAndTextTuples

__all__ = ["make_toolbar"]


def make_toolbar(engine) -> Callable[[], StyleAndTextTuples]:  # noqa: ANN001
    def toolbar() -> StyleAndTextTuples:
        parts: StyleAndTextTuples = [("class:toolbar.runtime", f" {engine.runtime} ")]
        target = engine.prompt_name()
        if target:
            parts.append(("class:toolbar.target", f" attached: {target} "))
        for segment in engine.status_segments():
            parts.append(("class:toolbar", " │ " + segment))
        parts.append(("class:toolbar.hint", "  :help · Tab complete · Ctrl-R search · Ctrl-D exit"))
        return parts

    return toolbar
