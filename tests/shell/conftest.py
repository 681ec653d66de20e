"""Fixtures for the shell tests: an Engine on each lupa runtime, output captured."""
from __future__ import annotations

import io

import pytest

from bioxen_shell.engine import Engine
from bioxen_shell.runtimes import RUNTIMES

ALL_RUNTIMES = list(RUNTIMES)


class CapturedEngine(Engine):
    """An Engine whose Lua output goes to an in-memory buffer (``engine.out``)."""

    def __init__(self, runtime: str, **kwargs):
        self.out = io.BytesIO()
        kwargs.setdefault("extensions", [])
        super().__init__(runtime, stdout=self.out, **kwargs)

    def take_output(self) -> bytes:
        data = self.out.getvalue()
        self.out.seek(0)
        self.out.truncate()
        return data

    def show(self, src: str) -> str:
        """Evaluate like the REPL; return the printed values, failing on errors."""
        result = self.eval_line(src)
        assert result.ok, result.error_text().decode()
        return result.output.decode()


@pytest.fixture(params=ALL_RUNTIMES)
def engine(request):
    eng = CapturedEngine(request.param)
    yield eng
    eng.close()


@pytest.fixture
def make_engine():
    made = []

    def make(runtime: str = "lua54", **kwargs):
        eng = CapturedEngine(runtime, **kwargs)
        made.append(eng)
        return eng

    yield make
    for eng in made:
        eng.close()
