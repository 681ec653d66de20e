"""Reading the files a user hands to bioxen: Lua scripts and TOML files.

One reader, :func:`read_capped`, takes every such file in whole, up to a cap a real user never
reaches, so a slip such as ``bioxen run /dev/zero`` or ``profile = "/dev/zero"`` fails at once
instead of reading until memory runs out.  One loader, :func:`load_toml`, serves every TOML
file bioxen reads (VM profiles and ``config.toml``): the cap, UTF-8 decoding, TOML syntax and
absurd nesting all fail with an :class:`InputFileError` that names the file (and the line).

Light on purpose: the shell reads ``config.toml`` at every start, so this module imports only
``os`` and ``stat`` (tomllib and difflib are imported when they are needed).
"""
from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Callable

__all__ = [
    "MAX_SCRIPT_BYTES",
    "MAX_TOML_BYTES",
    "InputFileError",
    "read_capped",
    "read_stream",
    "too_large",
    "load_toml",
    "format_bytes",
    "did_you_mean",
]

#: The largest Lua script bioxen runs (``bioxen run``, ``:run``, ``-i FILE``, init.lua, stdin).
MAX_SCRIPT_BYTES = 64 * 1024 * 1024
#: The largest TOML file bioxen reads (a profile, config.toml).
MAX_TOML_BYTES = 1024 * 1024
#: In the message for TOML nested so deeply that the parser gives up: where it got that deep.
_NESTING_REPORTED = 100


class InputFileError(ValueError):
    """A file bioxen was given cannot be used; ``str()`` is ``"FILE: problem"``."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def format_bytes(n: int) -> str:
    """``64 MiB``, ``1 MiB``, ``512 KiB``: a cap as the messages and docs spell it."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


def read_capped(path: str | os.PathLike[str], limit: int, what: str, *, wait_for_writer: bool = True) -> bytes:
    """The whole content of ``path``, refusing more than ``limit`` bytes.

    ``what`` names the kind of file in the messages (``"a Lua script"``).  Raises
    :class:`InputFileError` for a directory, a file over the cap (also a device such as
    ``/dev/zero`` that never ends) and an unreadable file; :class:`FileNotFoundError` passes
    through, for the caller to decide what a missing file means.  ``wait_for_writer=False``
    opens a FIFO without waiting for a writer (it then reads as empty): for files that are
    looked at in passing, such as the profiles ``bioxen profiles`` lists.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if wait_for_writer else os.O_NONBLOCK)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise InputFileError(path, f"is a directory, expected {what}") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read the file ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputFileError(path, f"is a directory, expected {what}")
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise InputFileError(path, too_large(limit, what))
        os.set_blocking(fd, True)

        def read(n: int) -> bytes:
            try:
                return os.read(fd, n)
            except OSError as exc:
                raise InputFileError(path, f"cannot read the file ({exc.strerror})") from None

        return _read_all(read, path, limit, what, info.st_size)
    finally:
        os.close(fd)


def read_stream(stream, name: str, limit: int, what: str) -> bytes:  # noqa: ANN001 - a binary stream
    """Like :func:`read_capped` for an open binary stream (stdin); ``name`` is used in messages."""
    return _read_all(stream.read, name, limit, what, 0)


def too_large(limit: int, what: str) -> str:
    """The problem text for input over a cap."""
    return f"larger than {format_bytes(limit)}, the limit for {what}"


def _read_all(read, name, limit: int, what: str, size_hint: int) -> bytes:  # noqa: ANN001
    chunks: list[bytes] = []
    total = 0
    block = max(size_hint + 1, 1 << 16)  # a regular file in one read; devices and pipes in blocks
    while True:
        chunk = read(min(limit + 1 - total, block))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise InputFileError(name, too_large(limit, what))


def load_toml(path: str | os.PathLike[str], known: Callable[[bytes], dict | None] | None = None) -> dict:
    """Read and parse one TOML file (a profile, ``config.toml``).

    ``known(raw)``: a parse of the file's bytes made earlier, or None (then tomllib parses
    them); the shipped profiles have one (``vm/shipped_profiles.py``), which spares a shell
    that starts VMs the import of tomllib.

    Raises :class:`InputFileError` naming the file: over :data:`MAX_TOML_BYTES`, a directory,
    not UTF-8 (with the line and column of the first bad byte), not valid TOML (the parser's
    message, with line and column), nested too deeply for the parser.  A missing file raises
    :class:`FileNotFoundError`.
    """
    raw = read_capped(path, MAX_TOML_BYTES, "a TOML file (profiles, config.toml)", wait_for_writer=False)
    data = known(raw) if known is not None else None
    if data is not None:
        return data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_column(raw, exc.start)
        raise InputFileError(
            path, f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line}, column {column} "
                  f"(save the file as UTF-8)") from None
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputFileError(path, f"not valid TOML: {exc}") from None
    except RecursionError:
        line = _deep_line(text, _NESTING_REPORTED)
        where = f" (more than {_NESTING_REPORTED} levels at line {line})" if line else ""
        raise InputFileError(path, f"not valid TOML: arrays or tables nested too deeply{where}") from None


def _line_column(raw: bytes, offset: int) -> tuple[int, int]:
    line_start = raw.rfind(b"\n", 0, offset) + 1
    return raw.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _deep_line(text: str, limit: int) -> int | None:
    """The line where ``[``/``{`` first nest deeper than ``limit`` (strings and comments
    skipped), for the message; a rough scan, used only after the parser gave up."""
    depth, line, i, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            end = text.find("\n", i)
            if end < 0:
                return None
            i = end
            continue
        elif c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(quote)
            while j < n and not text.startswith(quote, j) and (len(quote) == 3 or text[j] != "\n"):
                j += 2 if c == '"' and text[j] == "\\" else 1
            line += text.count("\n", i, j)
            i = j + len(quote)
            continue
        elif c in "[{":
            depth += 1
            if depth > limit:
                return line
        elif c in "]}":
            depth -= 1
        i += 1
    return None


def did_you_mean(word: str, choices) -> str:  # noqa: ANN001 - any iterable of str
    """``"did you mean 'runtime'?"`` for the closest of ``choices``, or ``""``."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""
