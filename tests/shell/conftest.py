"""Fixtures for the shell tests: an Engine on each lupa runtime, output captured; and
``repl``: the same REPL behaviour, also attached (``:attach``) to a real local VM."""
from __future__ import annotations

import io
import tempfile
import threading
from pathlib import Path

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


    #: the stem of the REPL's chunk names ("repl[1]:1: oops")
    chunk_stem = "repl"

    def started_signal(self):
        """A global ``started()`` for the code to call; returns the test that it was."""
        started = threading.Event()
        self.set_global("started", started.set)
        return started.is_set


def lua_literal(value) -> str:
    """A string or boolean as Lua source."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "[==[" + str(value) + "]==]"


class AttachedEngine(CapturedEngine):
    """A shell attached to a fresh local VM of ``vm_runtime``: every line runs in the VM."""

    chunk_stem = "w"

    def __init__(self, vm_runtime: str, **create_options):
        super().__init__("luajit", extensions=["bioxen_shell.vm.bindings"])
        self.marks = Path(tempfile.mkdtemp(prefix="bx-attached-"))
        options = {"name": "w", "runtime": vm_runtime, **create_options}
        self.show("vm.create{" + ", ".join(f"{k} = {lua_literal(v)}" for k, v in options.items()) + "}")
        assert "attached to w" in self.show(":attach w")
        self.take_output()

    def started_signal(self):
        """``started()`` in the VM marks a file (the VM cannot call into the test)."""
        mark = self.marks / "started"
        self.show(f"function started() assert(io.open({str(mark)!r}, 'w')):close() end")
        return mark.exists


#: where the REPL's behaviour tests run: the shell's own Lua, and attached VMs
REPL_TARGETS = ALL_RUNTIMES + ["vm:lua54", "vm:luajit"]


def make_repl(target: str) -> CapturedEngine:
    if target.startswith("vm:"):
        return AttachedEngine(target[3:])
    return CapturedEngine(target)


@pytest.fixture(params=REPL_TARGETS)
def repl(request):
    """The REPL on each lupa runtime, and attached to a local lua54 and luajit VM."""
    eng = make_repl(request.param)
    yield eng
    eng.close()


@pytest.fixture(params=ALL_RUNTIMES)
def engine(request):
    eng = CapturedEngine(request.param)
    yield eng
    eng.close()


@pytest.fixture
def make_engine():
    made = []

    def make(runtime: str = "lua54", **kwargs):
        eng = make_repl(runtime) if runtime.startswith("vm:") else CapturedEngine(runtime, **kwargs)
        made.append(eng)
        return eng

    yield make
    for eng in made:
        eng.close()
