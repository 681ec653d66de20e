"""Helpers for tests that need parts of the system (interpreters, daemons)."""
from __future__ import annotations

import ctypes
import shutil
import signal

import pytest

__all__ = ["require_binary", "STOCK_LUAS", "die_with_parent"]

#: Stock interpreters the agent and the sequence library must run under.
STOCK_LUAS = ["lua5.1", "lua5.2", "lua5.3", "lua5.4", "luajit"]


def require_binary(name: str, also_in: str | None = None) -> str:
    """Return the path of ``name`` or skip the test, saying which Debian package provides it.

    ``also_in``: directories to look in besides PATH (``os.pathsep``-separated), for programs
    such as sshd in /usr/sbin, which a normal user's PATH often lacks."""
    path = shutil.which(name) or (shutil.which(name, path=also_in) if also_in else None)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {_PACKAGE.get(name, name)})")
    return path


_PACKAGE = {"sshd": "openssh-server", "luajit": "luajit", "seqkit": "seqkit", "tmux": "tmux", "bgzip": "tabix"}


def die_with_parent() -> None:
    """A ``preexec_fn`` for daemons the tests start: they get SIGKILL when the test process dies.

    Without it a killed pytest run leaves its sshd listening.  (The parent-death signal is tied
    to the thread that forks, so use it only from the main thread, e.g. in session fixtures.)
    """
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
