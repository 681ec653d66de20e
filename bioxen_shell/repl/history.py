"""Persistent input history in the user's state directory (``BIOXEN_STATE_DIR`` overrides it)."""
from __future__ import annotations

from pathlib import Path

from prompt_toolkit.history import FileHistory, History

from .. import paths

__all__ = ["history_path", "open_history", "last_entries"]


def history_path() -> Path:
    return paths.state_dir() / "history"


def open_history(path: Path | None = None) -> FileHistory:
    """The REPL's history file (its directory is created on first use)."""
    path = path or history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileHistory(str(path))


def last_entries(history: History, n: int) -> list[str]:
    """The last ``n`` entries, oldest first (this session's included)."""
    if isinstance(history, FileHistory):
        newest_first = list(history.load_history_strings())
    else:
        newest_first = list(reversed(history.get_strings()))
    return list(reversed(newest_first[:n]))
