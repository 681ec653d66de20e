"""Frames: the one frame reader and the one frame writer (docs/protocol.md, "Frames").

``<kind><length>\\n<payload>``.  :class:`FrameReader` is the one reader, for every stream
(the VM session over local pipes and SSH channels, the test clients): it never trusts a
declared length -- the header is checked byte by byte as it arrives (a bad kind, a sign, an
underscore, a 17th digit fail at once, without waiting for more), the length against a limit
per kind -- and it reads a big payload into a buffer that grows as the bytes arrive and
becomes the value without a copy.  :func:`frame_pieces` is the one writer: the ``B`` frames
of a request's blobs, then the frame, as pieces to write in order (small runs joined into one
write, big payloads as they are: a 100 MB string is never copied into a frame).
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any, Iterator

from .codec import WireError

__all__ = [
    "HELLO", "REQUEST", "OUTPUT", "REPLY", "BLOB", "AGENT_KINDS", "MAX_HELLO", "MAX_REPLY", "MAX_BLOB",
    "DEFAULT_LIMITS", "BIG_PAYLOAD", "FrameError", "FrameReader", "check_header", "read_frame",
    "iter_frames", "frame", "frame_pieces", "write_parts", "big_buffer",
]

#: Frame kinds.  BLOB frames carry a big string of the next request or reply (protocol.md, "Blobs").
HELLO, REQUEST, OUTPUT, REPLY, BLOB = b"H", b"Q", b"O", b"R", b"B"

_MAX_FRAME = 2**53

# ------------------------------------------------------------------------------------------
# Frames


def frame_pieces(kind: bytes, parts: list, blobs: list | None = None) -> list:
    """The one frame writer: a ``B`` frame for each of ``blobs``, then one ``kind`` frame of
    the payload ``parts``, as pieces to write in order.  Runs of small pieces are joined into
    one (a small request is one write: header and payload together), big ones are left as
    they are (never copied into a frame)."""
    if not blobs:
        total = sum(map(len, parts))  # (the codec's views are of bytes: len is their size)
        if total < _BIG_PIECE:  # the common case: header and payload in one write
            return [b"".join([kind + b"%d\n" % total, *parts])]
    pieces: list = []
    for blob in blobs or ():
        pieces += (b"B%d\n" % _nbytes(blob), blob)
    total = 0
    for part in parts:
        total += _nbytes(part)
    pieces.append(kind + b"%d\n" % total)
    pieces += parts
    out: list = []
    small: list = []
    for part in pieces:
        if _nbytes(part) < _BIG_PIECE:
            small.append(part)
            continue
        if small:
            out.append(b"".join(small))
            small = []
        out.append(part.cast("B") if isinstance(part, memoryview) else part)
    if small:
        out.append(b"".join(small))
    return out


#: Pieces at least this big are written as they are, smaller ones joined.
_BIG_PIECE = 65536


def _nbytes(part: Any) -> int:
    return len(part) if type(part) is bytes else (part.nbytes if isinstance(part, memoryview) else len(part))


def frame(kind: bytes, payload: bytes | bytearray) -> bytes:
    """One frame as bytes: ``<kind><length>\\n<payload>``."""
    return b"".join((kind, b"%d\n" % len(payload), payload))


def write_parts(fd: int, pieces: list) -> None:
    """Write the pieces of :func:`frame_pieces` to ``fd`` (``os.writev``, partial writes resumed)."""
    views = [memoryview(p).cast("B") for p in pieces if _nbytes(p)]
    i = 0
    while i < len(views):
        n = os.writev(fd, views[i : i + 512])
        while n:
            if n >= len(views[i]):
                n -= len(views[i])
                i += 1
            else:
                views[i] = views[i][n:]
                n = 0


# ------------------------------------------------------------------------------------------
# Buffers for big payloads

_BYTES_DATA_OFFSET: int | None = None  # where a bytes object's data starts; 0: not usable


def _bytes_data_offset() -> int:
    global _BYTES_DATA_OFFSET
    if _BYTES_DATA_OFFSET is None:
        offset = 0
        try:
            import ctypes
            import sys

            if sys.implementation.name == "cpython":
                candidate = bytes.__basicsize__ - 1  # offsetof(PyBytesObject, ob_sval)
                probe = bytes(64)
                cells = (ctypes.c_char * 64).from_address(id(probe) + candidate)
                cells[0], cells[63] = b"\x01", b"\x02"
                if probe[0] == 1 and probe[63] == 2 and probe[1:63] == bytes(62) and len(probe) == 64:
                    offset = candidate
        except Exception:  # any doubt: plain bytearrays
            offset = 0
        _BYTES_DATA_OFFSET = offset
    return _BYTES_DATA_OFFSET


def big_buffer(size: int) -> tuple[bytes | bytearray, memoryview]:
    """A buffer for a payload of ``size`` bytes, and a writable view of it to read into.

    On CPython the buffer is a new ``bytes`` object, filled in place before anything else can
    see it: a blob read into it *is* the final value (a Python ``bytes``, or what lupa turns
    into a Lua string), with no copy after the read.  Its pages are also left untouched until
    the read fills them (``bytes(n)`` comes from calloc, while ``bytearray(n)`` writes zeros
    first, one more pass over 100 MB).  Elsewhere, a ``bytearray``.
    """
    offset = _bytes_data_offset() if size > 1 else 0
    if offset:
        import ctypes

        buf = bytes(size)  # size > 1: a new object only this function holds
        address = id(buf) + offset
        if size >= _HUGE_BUFFER:
            _advise_huge_pages(address, size)
        cells = (ctypes.c_char * size).from_address(address)
        return buf, memoryview(cells).cast("B")
    buf = bytearray(size)
    return buf, memoryview(buf)


_HUGE_BUFFER = 8 << 20
_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14
_madvise: Any = None


def _advise_huge_pages(address: int, size: int) -> None:
    """Ask for transparent huge pages in a buffer's still untouched pages (Linux, where THP is
    "madvise"): the read that fills it then takes one page fault per 2 MiB instead of one per
    4 KiB, which on a virtual machine is most of the cost of receiving 100 MB.  Best effort."""
    global _madvise
    if _madvise is None:
        _madvise = False
        try:
            import ctypes
            import sys

            if sys.platform.startswith("linux"):
                fn = ctypes.CDLL(None, use_errno=True).madvise
                fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                fn.restype = ctypes.c_int
                _madvise = fn
        except Exception:
            _madvise = False
    if _madvise:
        start = (address + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
        end = (address + size) & ~(_HUGE_PAGE - 1)
        if end > start:
            _madvise(start, end - start, _MADV_HUGEPAGE)


# ------------------------------------------------------------------------------------------
# Reading frames
#
# One reader for every stream (local pipes, SSH channels, the test clients): FrameReader.
# It never trusts a declared length: the header is checked byte by byte as it arrives (a bad
# kind, a sign, an underscore, a 17th digit fail at once, without waiting for more), the
# length against a limit per kind, and a big payload goes into a buffer that grows as its
# bytes arrive (_GrowingBuffer), so a header that lies costs nothing.

#: Agent -> host frame kinds (what the VM handle accepts).
AGENT_KINDS = b"HOBR"
#: Default limits of declared payload lengths, per kind (docs/protocol.md, "Limits").  ``O``
#: frames have none: readers that stream them (the VM handle) hand them over in pieces.
MAX_HELLO = 1 << 20
MAX_REPLY = 1 << 30
MAX_BLOB = 4 << 30
DEFAULT_LIMITS = {b"H": MAX_HELLO, b"R": MAX_REPLY, b"Q": MAX_REPLY, b"B": MAX_BLOB, b"O": None}
#: A header is the kind, at most 16 digits (2**53 has 16) and "\n".
_MAX_DIGITS = 16
_MAX_HEADER = 1 + _MAX_DIGITS + 1
#: Payloads at least this long are read into a buffer of their own (_GrowingBuffer).
BIG_PAYLOAD = 1 << 20


class FrameError(WireError):
    """A malformed frame: bad header, a length over its limit, a frame that cannot be taken."""


def _kind_text(kinds: bytes) -> str:
    names = [chr(k) for k in kinds]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _a(kind: bytes) -> str:
    """ "an R frame", "a B frame" """
    return ("an " if kind in b"HOR" else "a ") + kind.decode()


def _size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.3g} {unit}"
    return f"{n} bytes"


def check_header(head: bytes | bytearray, kinds: bytes = b"HBQOR") -> tuple[bytes, int, int] | None:
    """Parse the frame header at the start of ``head``: ``(kind, length, header size)``, or
    ``None`` while what is there is a valid beginning of a header.  Raises :class:`FrameError`
    as soon as the bytes cannot start a valid header."""
    if not head:
        return None
    end = min(len(head), _MAX_HEADER)
    nl = head.find(b"\n", 1, end)
    kind = head[0]
    digits = bytes(head[1:nl if nl > 0 else end])
    if nl > 0 and kind in kinds and digits.isdigit():  # the common case: a whole, good header
        size = int(digits)
        if size <= _MAX_FRAME:
            return _KIND_BYTES[kind], size, nl + 1
    shown = bytes(head[:nl + 1 if nl > 0 else end])
    if kind not in kinds:
        raise FrameError(f"malformed frame header {shown!r}: bad kind {bytes(head[:1])!r} "
                         f"(expected {_kind_text(kinds)})")
    if not digits.isdigit() and digits:
        raise FrameError(f"malformed frame header {shown!r}: bad length {digits!r} "
                         f"(decimal digits only: no sign, spaces or '_')")
    if nl < 0:
        if len(digits) > _MAX_DIGITS:
            raise FrameError(f"malformed frame header {shown!r}: more than {_MAX_DIGITS} length digits")
        return None
    if not digits:
        raise FrameError(f"malformed frame header {shown!r}: no length")
    raise FrameError(f"malformed frame header {shown!r}: length over 2^53")


_KIND_BYTES = [bytes((i,)) for i in range(256)]


def _mem_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where unknown)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


#: A growing buffer's first capacity (never more than the declared length) and growth factor.
_GROW_START = 128 << 20
_GROW_FACTOR = 4


class _GrowingBuffer:
    """The payload of one big frame, in a buffer that grows as its bytes arrive.

    The declared length decides how far the buffer may grow, never what is allocated before
    the bytes come: it starts at ``min(size, 128 MiB)`` and, each time it is full, is replaced
    by one four times as big (never past ``size``) into which what arrived is copied (a copy
    of at most a third of the payload in all; moving the pages with ``mremap`` instead would
    split the huge pages that make the reads fast).  Each buffer is a :func:`big_buffer`, so
    the last one, exactly ``size`` bytes, *is* the value (a Python ``bytes``, or what lupa
    turns into a Lua string): no copy after the read, and 100 MB strings need no growth."""

    __slots__ = ("size", "filled", "buf", "view")

    def __init__(self, size: int) -> None:
        self.size = size
        self.filled = 0
        self.buf, self.view = big_buffer(min(size, _GROW_START))

    def room(self) -> memoryview:
        """A writable view of the free space (grown first if full); valid until the next call."""
        if self.filled == len(self.view):
            buf, view = big_buffer(min(self.size, len(self.view) * _GROW_FACTOR))
            view[:self.filled] = self.view[:self.filled]
            self.view.release()
            self.buf, self.view = buf, view
        return self.view[self.filled:]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (at most the bytes still missing)."""
        mv = memoryview(data).cast("B")
        while len(mv):
            room = self.room()
            n = min(len(room), len(mv))
            room[:n] = mv[:n]
            self.filled += n
            mv = mv[n:]

    def take(self) -> bytes | bytearray:
        """The complete payload (the buffer is handed over, not copied)."""
        self.view.release()
        buf, self.buf = self.buf, None
        return buf


class FrameReader:
    """Incremental frame reader: bytes in, whole frames (or pieces of streamed frames) out.

    Feed it with :meth:`add` (or read straight into :meth:`room` and :meth:`advance`), take
    frames out with :meth:`next`; :meth:`feed` does both.  ``kinds``: the frame kinds
    accepted; ``limits``: the longest payload per kind (``None``: no limit); ``stream``: kinds
    whose payload is handed over in pieces as it arrives (the VM handle streams ``O``), so
    they need no limit.  Anything malformed raises :class:`FrameError` as soon as it is seen.
    """

    def __init__(self, kinds: bytes = b"HBQOR", limits: dict | None = None, stream: bytes = b"",
                 max_header: int | None = None, limit_names: dict | None = None) -> None:
        self.kinds = kinds
        self.limits = dict(DEFAULT_LIMITS)
        if limits:
            self.limits.update(limits)
        #: how a limit is called in messages (``{b"B": "max_blob"}``)
        self.limit_names = limit_names or {}
        self.stream = stream
        self._buf = bytearray()
        self._kind: bytes | None = None   # the frame in progress (big or streamed)
        self._big: _GrowingBuffer | None = None
        self._left = 0                    # bytes still to come of a streamed frame

    # -- bytes in ------------------------------------------------------------------------

    def room(self) -> memoryview | None:
        """Where to read the next bytes when a big payload is in progress (read straight into
        its buffer, then :meth:`advance`); ``None``: read anything and :meth:`add` it."""
        big = self._big
        if big is None:
            return None
        view = big.room()
        return view

    def advance(self, n: int) -> None:
        """``n`` bytes were read into the view :meth:`room` returned."""
        self._big.filled += n

    def add(self, data: bytes | bytearray | memoryview) -> None:
        big = self._big
        if big is not None:
            mv = memoryview(data)
            take = min(len(mv), big.size - big.filled)
            big.write(mv[:take])
            if take < len(mv):
                self._buf += mv[take:]
        else:
            self._buf += data

    def want(self) -> int:
        """How many bytes the frame in progress still needs (a hint for reads)."""
        if self._big is not None:
            return self._big.size - self._big.filled
        if self._left:
            return self._left
        return 65536

    # -- frames out ------------------------------------------------------------------------

    def next(self) -> tuple[bytes, bytes | bytearray] | None:
        """The next frame ``(kind, payload)`` from what was added, or ``None`` (need more).
        For a streamed kind, each call hands over the piece of its payload that is there."""
        big = self._big
        if big is not None:
            if big.filled < big.size:
                return None
            kind, self._kind, self._big = self._kind, None, None
            return kind, big.take()
        buf = self._buf
        if self._left:
            if not buf:
                return None
            piece = bytes(buf[:self._left])
            del buf[:len(piece)]
            self._left -= len(piece)
            kind = self._kind
            if not self._left:
                self._kind = None
            return kind, piece
        if not buf:
            return None
        parsed = check_header(buf[:_MAX_HEADER], self.kinds)
        if parsed is None:
            return None
        kind, size, start = parsed
        limit = self.limits.get(kind)
        if kind in self.stream:
            del buf[:start]
            if size == 0:
                return kind, b""
            self._kind, self._left = kind, size
            return self.next() if buf else None
        if limit is not None and size > limit:
            name = self.limit_names.get(kind)
            raise FrameError(f"{kind.decode()} frame of {size} bytes ({_size_text(size)}) is over the "
                             f"limit of {_size_text(limit)} for {kind.decode()} frames"
                             + (f" ({name})" if name else ""))
        if len(buf) - start >= size:
            payload = bytes(buf[start:start + size])
            del buf[:start + size]
            return kind, payload
        if size >= BIG_PAYLOAD:
            if size >= 256 << 20:
                avail = _mem_available()
                if avail is not None and size > avail:
                    raise FrameError(f"{kind.decode()} frame of {size} bytes ({_size_text(size)}): the "
                                     f"host has only {_size_text(avail)} of memory available")
            self._big = _GrowingBuffer(size)
            self._kind = kind
            rest = memoryview(buf)[start:]
            self._big.write(rest)
            rest.release()
            del buf[:]
            return self.next()
        return None

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[bytes, bytes | bytearray]]:
        """Add bytes; return the frames (pieces, for streamed kinds) they complete."""
        self.add(data)
        frames = []
        while True:
            frame = self.next()
            if frame is None:
                return frames
            frames.append(frame)

    def read_from(self, fd: int, max_bytes: int = 1 << 20) -> list[tuple[bytes, bytes | bytearray]] | None:
        """One ``read`` from ``fd`` (a big payload in progress is read straight into its
        buffer); the frames that completes, or ``None`` at end of input."""
        view = self.room()
        if view is not None:
            n = os.readv(fd, [view])
            if n == 0:
                return None
            self.advance(n)
            return self.feed(b"")
        data = os.read(fd, max_bytes)
        if not data:
            return None
        return self.feed(data)

    def pending(self) -> bool:
        """True while a frame is partly received (a header, a payload, a streamed frame)."""
        return self._big is not None or self._left > 0 or bool(self._buf)

    def progress(self) -> str:
        """What of the frame in progress is here, for messages ("1048576 of 67108864 bytes of
        a B frame", "the header b'R12'")."""
        if self._big is not None:
            return f"{self._big.filled} of {self._big.size} bytes of {_a(self._kind)} frame"
        if self._left:
            return f"{_a(self._kind)} frame with {self._left} bytes still to come"
        head = bytes(self._buf[:_MAX_HEADER])
        parsed = None
        try:
            parsed = check_header(head, self.kinds)
        except FrameError:
            pass
        if parsed is not None:
            kind, size, start = parsed
            return f"{len(self._buf) - start} of {size} bytes of {_a(kind)} frame"
        return f"the frame header {head!r}" if head else "nothing"


def read_frame(fd: int, kinds: bytes = b"HBQOR", limits: dict | None = None) -> tuple[bytes, bytes | bytearray] | None:
    """Blocking read of one whole frame from a file descriptor; ``None`` at a clean EOF.

    Reads the header byte by byte (it is short) so that nothing past the frame is consumed,
    then the payload through a :class:`FrameReader` (same checks and limits)."""
    header = bytearray()
    while True:
        b = os.read(fd, 1)
        if not b:
            if header:
                raise FrameError(f"end of input inside a frame header {bytes(header)!r}")
            return None
        header += b
        if check_header(header, kinds) is not None:
            break
    reader = FrameReader(kinds, limits)
    reader.add(header)
    while True:
        frame = reader.next()
        if frame is not None:
            return frame
        view = reader.room()
        if view is not None:
            n = os.readv(fd, [view])
            if n:
                reader.advance(n)
        else:
            data = os.read(fd, reader.want())
            n = len(data)
            reader.add(data)
        if n == 0:
            raise FrameError(f"end of input inside a frame: {reader.progress()}")


def iter_frames(chunks: Iterator[bytes]) -> Iterator[tuple[bytes, bytes | bytearray]]:
    """Frames from an iterator of byte chunks (tests, tools)."""
    reader = FrameReader()
    for chunk in chunks:
        yield from reader.feed(chunk)
