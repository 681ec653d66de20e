"""Ctrl-C in the main thread while it waits on a VM.

A KeyboardInterrupt can land at any bytecode, also between a read returning its bytes and the
frame reader taking them: those bytes would be lost and the stream out of step for good.  So
while the main thread waits on a VM, Python's default SIGINT handler is replaced by one that
only takes note (the way asyncio.run does), and the session's wait loop treats the note like
the shell's Ctrl-C: it interrupts the VM's call, reads the reply to its end, and only then
raises KeyboardInterrupt.  The handler is installed the first time a VM wait runs in the main
thread under Python's default handler, and stays; outside VM waits it raises
KeyboardInterrupt as the default one does.  Under any other handler (the shell's own sets a
flag) nothing changes.
"""
from __future__ import annotations

import signal
import threading
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Gate", "gate_enter", "gate_exit", "gate_take", "deferring", "undeferred"]


class Gate:
    depth = 0          # VM waits the main thread is in
    pending = False    # a SIGINT came during one of them and was not acted on yet


_MAIN_THREAD = threading.main_thread().ident
# signal.getsignal without its conversion to an enum (a few µs of every request)
try:
    from _signal import getsignal as _getsignal
except ImportError:
    _getsignal = signal.getsignal
_SIGINT = int(signal.SIGINT)


def _sigint_handler(signum: int, frame: Any) -> None:
    if Gate.depth:
        Gate.pending = True
    else:
        raise KeyboardInterrupt


def gate_enter() -> bool:
    """Defer SIGINT while the main thread waits on a VM; False when nothing is deferred."""
    if threading.get_ident() != _MAIN_THREAD:
        return False
    if not Gate.depth:  # (nested: the outer wait installed the handler)
        current = _getsignal(_SIGINT)
        if current is not _sigint_handler:
            if current is not signal.default_int_handler:
                return False
            signal.signal(signal.SIGINT, _sigint_handler)
    Gate.depth += 1
    return True


def gate_exit() -> None:
    Gate.depth -= 1
    if not Gate.depth and Gate.pending:
        Gate.pending = False
        raise KeyboardInterrupt


def gate_take() -> bool:
    """A deferred Ctrl-C, taken (the caller acts on it)."""
    if Gate.pending:
        Gate.pending = False
        return True
    return False


def deferring() -> bool:
    """Whether this thread's Ctrl-C is being deferred now (the main thread, inside a VM wait)."""
    return bool(Gate.depth) and threading.get_ident() == _MAIN_THREAD


class undeferred:
    """``with undeferred():`` lets Ctrl-C through at once for a while (a long write)."""

    def __enter__(self) -> None:
        self.depth, Gate.depth = Gate.depth, 0

    def __exit__(self, *exc: object) -> None:
        Gate.depth = self.depth
