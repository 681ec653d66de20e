"""Persistent input history in the user's state directory (``BIOXEN_STATE_DIR`` overrides it)."""
from __future__ import annotations

import os
from pathlib import Path

from prompt_toolkit.history import FileHistory, History

from .. import paths

__all__ = ["history_path", "open_history", "last_entries"]


def history_path() -> Path:
    return paths.state_dir() / "history"


def open_history(path: Path | None = None) -> FileHistory:
    """The REPL's history file (its directory is created on first use)."""
    path = path or history_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # History holds what the user typed (hostnames, sometimes tokens): private, as bash's is.
    # Create it 0600 before prompt_toolkit appends to it, and tighten an older, wider file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return FileHistory(str(path))


def last_entries(history: History, n: int) -> list[str]:
    """The last ``n`` entries, oldest first (this session's included)."""
    if isinstance(history, FileHistory):
        newest_first = list(history.load_history_strings())
    else:
        newest_first = list(reversed(history.get_strings()))
    return list(reversed(newest_first[:n]))
