"""The progress bar: drawn on a terminal only, erased afterwards."""
from __future__ import annotations

import io

from bioxen_shell.vm.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_is_drawn_on_a_terminal_and_erased():
    out = Tty()
    with Progress(4, "vm.map", stream=out) as bar:
        for _ in range(3):
            bar.advance()
        bar.advance(failed=True)
    text = out.getvalue()
    assert "vm.map [" in text and "4/4, 1 failed" in text
    assert text.endswith("\r\x1b[K")


def test_nothing_is_written_when_not_a_terminal():
    out = io.StringIO()
    with Progress(100, "vm.create", stream=out) as bar:
        for i in range(1, 101):
            bar.set(i, 100)
    assert out.getvalue() == ""
