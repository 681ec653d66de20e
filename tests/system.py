"""Helpers for tests that need parts of the system (interpreters, daemons)."""
from __future__ import annotations

import shutil

import pytest

__all__ = ["require_binary", "STOCK_LUAS"]

#: Stock interpreters the agent and the sequence library must run under.
STOCK_LUAS = ["lua5.1", "lua5.2", "lua5.3", "lua5.4", "luajit"]


def require_binary(name: str) -> str:
    """Return the path of ``name`` or skip the test, saying which Debian package provides it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {_PACKAGE.get(name, name)})")
    return path


_PACKAGE = {"sshd": "openssh-server", "luajit": "luajit", "seqkit": "seqkit", "tmux": "tmux"}
