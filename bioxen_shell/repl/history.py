"""Persistent input history in the user's state directory (``BIOXEN_STATE_DIR`` overrides it).

The file is prompt_toolkit's ``FileHistory`` format (``# time`` lines, each input line after a
``+``), written by :class:`StateHistory`, which never stops the REPL: when the directory is
read-only, the disk is full or the file is not a plain file, the REPL goes on without saving
history and says so once (:meth:`StateHistory.take_notices`, one line naming the path and the
reason).  A symbolic link at the history path is never followed (``O_NOFOLLOW``): someone who
planted one would otherwise have bioxen chmod and append to its target.
"""
from __future__ import annotations

import datetime
import errno
import os
import stat
import threading
from pathlib import Path
from typing import Iterable

from prompt_toolkit.history import FileHistory, History

from .. import paths

__all__ = ["history_path", "open_history", "last_entries", "StateHistory"]

_NOFOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO planted there must not block us


def history_path() -> Path:
    return paths.state_dir() / "history"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class StateHistory(History):
    """The REPL's history file; falls back to memory instead of raising.

    ``saving`` says whether new entries still go to the file.  ``readable``: whether the
    file's earlier entries can be read (it is not a symbolic link or some other refused kind
    of file).
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.saving = False
        self.readable = False
        self._unsaved: list[str] = []  # this session's entries that are not in the file
        self._notices: list[str] = []
        self._told = False  # one notice per session: after it, history is off or read-only
        self._lock = threading.Lock()  # prompt_toolkit loads the file in a thread
        self._start()

    # ----------------------------------------------------------------- state

    def _start(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            self._notice(f"history will not be saved: cannot create {self.path.parent}: {_reason(exc)}")
            return
        # History holds what the user typed (hostnames, sometimes tokens): private, as bash's is.
        # Create it 0600, and tighten an older, wider file.
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o600)
        except OSError as exc:
            if not self._refused(exc):
                self.readable = True  # e.g. a read-only directory: earlier entries still load
                self._notice(f"history will not be saved: {self.path}: {_reason(exc)}")
            return
        try:
            problem = _not_plain(fd)
            if problem:
                self._notice(f"history will not be saved: {self.path} {problem}")
                return
            self.readable = True
            try:
                os.fchmod(fd, 0o600)
            except OSError as exc:
                self._notice(f"history will not be saved: {self.path}: cannot make it private "
                             f"(chmod 600): {_reason(exc)}")
                return
            self.saving = True
        finally:
            os.close(fd)

    def _refused(self, exc: OSError) -> bool:
        """Report a history path bioxen will not touch at all; True if it was one."""
        if exc.errno == errno.ELOOP:
            self._notice(f"history will not be saved: {self.path} is a symbolic link, which bioxen "
                         f"does not follow (remove it to save history again)")
        elif exc.errno in (errno.EISDIR, errno.ENXIO):
            self._notice(f"history will not be saved: {self.path} is not a regular file")
        else:
            return False
        return True

    def _notice(self, text: str) -> None:
        with self._lock:
            if not self._told:
                self._told = True
                self._notices.append(f"bioxen: {text}")

    def take_notices(self) -> list[str]:
        """The message not shown yet: the first problem of the session, once."""
        with self._lock:
            notices, self._notices = self._notices, []
        return notices

    # ----------------------------------------------------- prompt_toolkit's side

    def load_history_strings(self) -> Iterable[str]:
        """The file's entries, newest first (prompt_toolkit loads them in a thread)."""
        return list(reversed(self._file_entries()))

    def store_string(self, string: str) -> None:
        if not self.saving:
            self._unsaved.append(string)
            return
        data = f"\n# {datetime.datetime.now()}\n" + "".join(f"+{line}\n" for line in string.split("\n"))
        try:
            problem = self._append(data.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            problem = None if self._refused(exc) else f": {_reason(exc)}"
        else:
            if problem is None:
                return
            problem = " " + problem
        self.saving = False
        self._unsaved.append(string)
        if problem is not None:
            self._notice(f"history is no longer saved: {self.path}{problem}")

    def _append(self, data: bytes) -> str | None:
        """Append one entry; the problem with the file if it is not a plain one any more."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o600)
        try:
            problem = _not_plain(fd)
            if problem:
                return problem
            size = os.fstat(fd).st_size
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(fd, view):]
            except OSError:
                # A full disk took part of the entry: cut it off, so the file keeps whole entries.
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
                raise
            return None
        finally:
            os.close(fd)

    # ------------------------------------------------------------- for :history

    def entries(self) -> list[str]:
        """Every entry, oldest first: the file's (read again: other sessions add to it), then
        this session's entries that could not be saved."""
        return self._file_entries() + self._unsaved

    def _file_entries(self) -> list[str]:
        if not self.readable:
            return []
        try:
            fd = os.open(self.path, os.O_RDONLY | _NOFOLLOW)
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.readable = False
            if not self._refused(exc):
                self._notice(f"history cannot be read: {self.path}: {_reason(exc)}")
            return []
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self.readable = self.saving = False
                self._notice(f"history will not be saved: {self.path} is not a regular file")
                return []
            with os.fdopen(os.dup(fd), "rb") as f:
                return _parse(f)
        except OSError as exc:
            self.readable = False
            self._notice(f"history cannot be read: {self.path}: {_reason(exc)}")
            return []
        finally:
            os.close(fd)


def _not_plain(fd: int) -> str | None:
    """Why bioxen will not write to this file, or None."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_nlink > 1:  # a hard link planted there: the same risk as a symbolic link
        return "has other hard links, which bioxen does not write through"
    return None


def _parse(lines: Iterable[bytes]) -> list[str]:
    """Entries of a FileHistory-format file, oldest first."""
    entries: list[str] = []
    current: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", errors="replace")
        if line.startswith("+"):
            current.append(line[1:])
        elif current:
            entries.append("".join(current)[:-1])
            current = []
    if current:
        entries.append("".join(current)[:-1])
    return entries


def open_history(path: Path | None = None) -> StateHistory:
    """The REPL's history (its directory is created on first use).  Never raises: see
    :meth:`StateHistory.take_notices` for what went wrong."""
    return StateHistory(path or history_path())


def last_entries(history: History, n: int) -> list[str]:
    """The last ``n`` entries, oldest first (this session's included)."""
    if n <= 0:
        return []
    if isinstance(history, StateHistory):
        return history.entries()[-n:]
    if isinstance(history, FileHistory):
        newest_first = list(history.load_history_strings())
    else:
        newest_first = list(reversed(history.get_strings()))
    return list(reversed(newest_first[:n]))
