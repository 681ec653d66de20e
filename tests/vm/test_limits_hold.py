"""Limits that hold, through the VM handle: call_timeout for calls that never stop printing,
for __close handlers after an error, and for the modules a profile preloads."""
from __future__ import annotations

import threading
import time

import pytest

from bioxen_shell.vm.forkserver import Zygote
from bioxen_shell.vm.errors import VMError, VMTimeout
from bioxen_shell.vm.manager import Manager
from tests.vm.conftest import profile
from tests.vm.test_lifetime import children_of


@pytest.fixture
def quiet_manager():
    """A manager whose VMs' output goes nowhere (these calls print without end)."""
    m = Manager(on_output=lambda data: None)
    yield m
    assert m.destroy_all() == []


def _eval_in_thread(handle, code: str, deadline: float = 60.0):
    """Run handle.eval(code) in a thread; return the exception it raised (None if none).
    A call that does not end within `deadline` fails the test (the VM is destroyed)."""
    box: list = []
    done = threading.Event()

    def run():
        try:
            handle.eval(code)
            box.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    if not done.wait(deadline):
        handle.destroy()
        pytest.fail(f"the call was still running after {deadline:g} s")
    return box[0]


FLOOD = "while true do io.write(('x'):rep(65536)) end"


@pytest.mark.parametrize("code", [
    FLOOD,
    # The report's example: the __close handler runs while error('x') unwinds.
    "local x <close> = setmetatable({}, {__close = function() " + FLOOD + " end}) error('x')",
], ids=["output", "close handler"])
def test_call_timeout_stops_a_call_that_never_stops_printing(quiet_manager, code):
    h = quiet_manager.create("flood", profile=profile("sandboxed", cpu_limit=0, call_timeout=1), runtime="lua54")
    h.eval("kept = 42")
    t0 = time.monotonic()
    exc = _eval_in_thread(h, code)
    assert isinstance(exc, VMTimeout) and "timed out after 1 s and was stopped" in str(exc), exc
    assert time.monotonic() - t0 < 30
    assert h.eval("return kept") == [42]  # interrupted in the VM, not killed: state kept


def _worker_pids() -> set[int]:
    return {pid for pid, _ in children_of(Zygote.instance().pid)}


@pytest.mark.parametrize("limit, expected", [
    ({"cpu_limit": 0, "call_timeout": 1}, "timed out after 1 s (call_timeout)"),
    ({"cpu_limit": 0.5, "call_timeout": 0}, "CPU time limit exceeded (0.5 s)"),
])
@pytest.mark.parametrize("runtime", ["lua54", "luajit"])
def test_a_looping_preload_fails_vm_create_with_the_module_and_the_limit(manager, tmp_path, runtime, limit,
                                                                         expected):
    (tmp_path / "spin.lua").write_text("local n = 0 while true do n = n + 1 end")
    prof = profile("sandboxed", preload=("spin",), paths=(str(tmp_path),), **limit)
    manager.create("warm").destroy()  # the zygote runs; its workers are counted from here
    before = _worker_pids()
    t0 = time.monotonic()
    with pytest.raises(VMError) as info:
        manager.create("pre", profile=prof, runtime=runtime)
    assert time.monotonic() - t0 < 30  # not the 60 s start timeout
    message = str(info.value)
    assert "preloading module 'spin' failed: " + expected in message, message
    assert "profile 'sandboxed'" in message
    assert manager.get("pre") is None
    deadline = time.monotonic() + 5
    while _worker_pids() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _worker_pids() - before == set(), "the VM's worker was left behind"
