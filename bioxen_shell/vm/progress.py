"""A one-line progress bar for ``vm.create{count=N}`` and ``vm.map``, shown on a terminal only.

When the stream is not a terminal (a script piped to a file, a test) nothing is written, so
output stays clean.  Updates are rate-limited (10 per second) and thread-safe: the bar is
advanced from the threads that create VMs or run map items.
"""
from __future__ import annotations

import sys
import threading
import time
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["Progress"]

_WIDTH = 30
_MIN_INTERVAL = 0.1


class Progress:
    """``with Progress(total, "map") as p: … p.advance()`` draws ``map [#####.....] 50/100``."""

    def __init__(self, total: int, label: str, *, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.total = max(0, int(total))
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = self.stream.isatty()
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = bool(enabled) and self.total > 1
        self.done = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._drawn = False

    def advance(self, n: int = 1, *, failed: bool = False) -> None:
        with self._lock:
            self.done += n
            if failed:
                self.failed += n
            now = time.monotonic()
            if self.enabled and (now - self._last_draw >= _MIN_INTERVAL or self.done >= self.total):
                self._last_draw = now
                self._draw()

    def set(self, done: int, total: int | None = None) -> None:
        """Callback shape ``progress(done, total)`` used by the manager."""
        with self._lock:
            if total is not None:
                self.total = total
            self.done = done - 1
        self.advance()

    def _draw(self) -> None:
        filled = int(_WIDTH * self.done / self.total) if self.total else _WIDTH
        bar = "#" * filled + "." * (_WIDTH - filled)
        extra = f", {self.failed} failed" if self.failed else ""
        try:
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}{extra}")
            self.stream.flush()
            self._drawn = True
        except (OSError, ValueError):
            self.enabled = False

    def close(self) -> None:
        """Erase the bar so the next output starts on a clean line."""
        with self._lock:
            if self._drawn:
                try:
                    self.stream.write("\r\x1b[K")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
                self._drawn = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
