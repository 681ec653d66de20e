"""What the VM session keeps per request: the :class:`Result` a request produced, the
bookkeeping of a request whose reply has not come (:class:`Pending`), and the output a
``send`` printed before its ``recv`` (:class:`Output`)."""
from __future__ import annotations

TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any, Callable

    from .errors import VMError

__all__ = ["Result", "Pending", "Output", "MAX_OUTPUT_IN_MEMORY"]

#: Output of a ``send`` kept in memory until ``recv``; more goes to a temporary file.
MAX_OUTPUT_IN_MEMORY = 1 << 20


class Result:
    """What one request produced: its values and the output printed while it ran."""

    __slots__ = ("values", "output", "encoded", "reply", "start", "end", "blobs")

    def __init__(self, values: list | None = None, output: bytes = b"") -> None:
        self.values: list = [] if values is None else values
        self.output = output
        #: for the ``*_encoded`` path: the reply's ``values`` as encoded bytes
        self.encoded: bytes | None = None
        #: for the Lua path (``decode="lua"``): the whole ``R`` payload, where its ``values``
        #: start and end in it, and the blobs (``B`` frames) they refer to, all as ``bytes``
        self.reply: bytes | None = None
        self.start = 0
        self.end = 0
        self.blobs: list | None = None

    def __repr__(self) -> str:
        return f"Result(values={self.values!r}, output={self.output!r})"


class Output:
    """What a ``send`` printed, kept until its ``recv``: in memory up to
    :data:`MAX_OUTPUT_IN_MEMORY`, then in an unlinked temporary file (``tempfile``'s directory,
    ``$TMPDIR``), so a VM that prints gigabytes into a send never fills the host's memory."""

    __slots__ = ("mem", "file", "size")

    def __init__(self) -> None:
        self.mem = bytearray()
        self.file: Any = None
        self.size = 0

    def append(self, data: bytes) -> None:
        self.size += len(data)
        if self.file is None:
            if len(self.mem) + len(data) <= MAX_OUTPUT_IN_MEMORY:
                self.mem += data
                return
            import tempfile

            self.file = tempfile.TemporaryFile(prefix="bioxen-output-")
            self.file.write(self.mem)
            self.mem = bytearray()
        self.file.write(data)

    def drain(self, write: Callable[[bytes], None]) -> None:
        """Hand everything over to ``write`` in pieces of at most 1 MiB, then forget it."""
        f, mem = self.file, self.mem
        self.file, self.mem, self.size = None, bytearray(), 0
        if f is None:
            if mem:
                write(bytes(mem))
            return
        try:
            f.seek(0)
            while True:
                piece = f.read(1 << 20)
                if not piece:
                    break
                write(piece)
        finally:
            f.close()

    def getvalue(self) -> bytes:
        """Everything, as one ``bytes`` (the Python API's ``Result.output``), then forget it."""
        if self.file is None:
            out = bytes(self.mem)
            self.mem, self.size = bytearray(), 0
            return out
        pieces: list = []
        self.drain(pieces.append)
        return b"".join(pieces)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.file, self.mem, self.size = None, bytearray(), 0


class Pending:
    """A request written to the agent whose reply has not been read yet."""

    __slots__ = ("id", "op", "sync", "output", "reply", "blobs", "blob_bytes", "error", "on_output",
                 "stream", "fields", "span")

    def __init__(self, id: int, op: str, sync: bool, on_output: Callable[[bytes], None] | None = None) -> None:
        self.id, self.op, self.sync = id, op, sync
        self.output: Output | None = None  # what a send printed (sync calls stream theirs)
        self.reply: Any = None  # the R payload (bytes, or a bytearray for big replies)
        self.blobs: list | None = None  # payloads of the B frames that came before the R
        self.blob_bytes = 0
        self.error: VMError | None = None
        self.on_output = on_output  # sync calls: where O frames go
        self.stream: Callable[[bytes], None] | None = None  # a recv waiting on this send
        self.fields: dict | None = None  # the reply's small fields and where its values are
        self.span: tuple[int, int] | None = None

    def take_output(self, write: Callable[[bytes], None] | None = None) -> bytes:
        """The output kept for this send: handed to ``write`` (then ``b""``) or returned."""
        out, self.output = self.output, None
        if out is None:
            return b""
        if write is not None:
            out.drain(write)
            return b""
        return out.getvalue()
