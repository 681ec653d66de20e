"""Waiting for events, never for durations.

A test that needs something to have happened first (a loop in a VM has started, a process is
gone, a file is there) polls for that condition.  Its deadline, :data:`PATIENCE`, only matters
when the thing never happens: it is generous so that a machine busy with other work (two CPU
hogs on two cores, say) cannot fail a correct run, and a broken one still fails instead of
hanging.  Durations in a test are never expectations: what a test checks is the event.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["PATIENCE", "wait_for", "eventually", "when", "finishes", "pid_gone", "lua_touch"]

#: Seconds to wait for something that should happen (a reply, an exit, a marker file).
PATIENCE = 120.0


def wait_for(condition: Callable[[], Any], what: str, timeout: float = PATIENCE,
             interval: float = 0.01) -> Any:
    """Poll ``condition()`` until it returns something true, and return that.

    Fails the test (AssertionError naming ``what``) if it is still false after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}, and it never happened")
        time.sleep(interval)


def eventually(condition: Callable[[], Any], timeout: float = PATIENCE, interval: float = 0.01) -> bool:
    """Whether ``condition()`` became true within ``timeout`` (polled; returns at once when it is)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


class when:
    """``with when(condition, action, what): ...`` -- run ``action()`` in a thread as soon as
    ``condition()`` is true, while the body runs (typically a call that ``action`` stops).

    If the condition never comes true, ``action`` still runs after ``timeout`` (so the body
    cannot hang) and leaving the block fails the test, naming ``what``."""

    def __init__(self, condition: Callable[[], Any], action: Callable[[], Any], what: str,
                 timeout: float = PATIENCE) -> None:
        self.condition, self.action, self.what, self.timeout = condition, action, what, timeout
        self.happened = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="when", daemon=True)

    def _run(self) -> None:
        try:
            self.happened = eventually(self.condition, self.timeout)
            self.action()
        except BaseException as exc:  # noqa: BLE001 - reported when the block ends
            self.error = exc

    def __enter__(self) -> "when":
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._thread.join(self.timeout + PATIENCE)
        if exc_type is not None:
            return
        assert not self._thread.is_alive(), f"the action after {self.what} never ended"
        if self.error is not None:
            raise self.error
        assert self.happened, f"waited {self.timeout:g} s for {self.what}, and it never happened"


def finishes(fn: Callable[[], Any], what: str, timeout: float = PATIENCE) -> Any:
    """``fn()`` in a thread: its value, or its exception.  Fails the test, rather than hanging
    the run, when ``fn`` has not returned after ``timeout`` (as when it waits for something
    that never ends by itself)."""
    box: list = []

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box.append((False, exc))

    t = threading.Thread(target=run, name="finishes", daemon=True)
    t.start()
    t.join(timeout)
    assert box, f"{what} had not returned after {timeout:g} s"
    ok, value = box[0]
    if not ok:
        raise value
    return value


def pid_gone(pid: int) -> bool:
    """True once process ``pid`` has exited (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:  # ENOENT, or ESRCH while reading
        return True


def lua_touch(path: os.PathLike | str) -> str:
    """Lua code that creates the file ``path``: a marker a test waits for."""
    return f"assert(io.open({str(Path(path))!r}, 'w')):close() "
