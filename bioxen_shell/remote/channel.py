"""A byte stream to an agent over an SSH channel: what SSH agents and Slurm steps started on a
login host have in common.

``send`` walks the data with a memoryview, one packet per call (``Channel.sendall`` re-slices
the rest after every packet: quadratic for a 100 MB argument); ``recv`` takes everything
paramiko holds at once, and ``recv_into`` puts it straight into a frame's buffer.

A reader waits on a ``threading.Event`` that paramiko's stdout buffer sets and clears
(``BufferedPipe.set_event``), never on ``Channel.fileno()``: that pipe is shared with the
stderr buffer through paramiko's ``OrPipe``, whose flags are not thread-safe, and the thread
draining stderr then races the reader into a second ``os.read`` of a one-byte pipe, which
blocks for ever (seen: a call hung when its agent wrote to stderr).  ``kill`` (the
subclass's) sets the same event to wake a waiting reader.
"""
from __future__ import annotations

import threading

import paramiko

from ..vm.transport import TransportClosed, TransportTimeout

__all__ = ["ChannelStream", "WINDOW", "MAX_PACKET"]

#: The receive window of every channel bioxen opens: large enough that a 100 MB transfer is
#: not a stream of window adjusts.
WINDOW = 16 * 1024 * 1024
#: The largest data packet bioxen accepts on its channels (what the server may send in one).
#: paramiko spends a fixed cost per packet in Python: 128 KiB packets move 100 MiB out of a
#: host about 30% faster than the 32 KiB of SSH's minimum (0.17–0.21 s against 0.23–0.29 s
#: for `cat` of a file on loopback, same run).  OpenSSH's own packets go up to 256 KiB.
MAX_PACKET = 128 * 1024

#: Fallback packet size when the server stated none.
_SEND_CHUNK = 32 * 1024
#: "Everything paramiko holds": larger than any window.
_RECV_ALL = 1 << 30


class ChannelStream:
    """``send``/``recv``/``recv_into`` of ``transport.AgentProcess`` over a paramiko channel.

    Subclasses set ``_killed`` in ``kill`` (then call :meth:`_wake`), may override
    :meth:`_lost_text`, and call :meth:`_close_channel` in ``close``.
    """

    def _init_channel(self, chan: paramiko.Channel, where: str) -> None:
        self._chan = chan
        self._where = where                    # "user@host:port", for messages
        self._eof = False
        self._pending, self._pending_at = b"", 0   # bytes read from paramiko, not yet returned
        self._killed = False
        self._closed = False
        self._lock = threading.Lock()
        # set while paramiko holds stdout bytes (or the channel is closed), and by _wake
        self._readable = threading.Event()
        chan.in_buffer.set_event(self._readable)

    def _lost_text(self, e: BaseException) -> str:
        return f"the agent's channel is closed ({e or type(e).__name__})"

    def _wake(self) -> None:
        """Wake a waiting ``recv`` (after ``_killed`` was set)."""
        self._readable.set()

    def send(self, data: bytes) -> None:
        if self._killed or self._closed:
            raise TransportClosed("the agent was stopped")
        # Not Channel.sendall: it re-slices the remaining bytes after every packet, which is
        # quadratic for a 100 MB argument.  A memoryview walks the data without copying it.
        view = memoryview(data).cast("B")
        chan = self._chan
        chunk = max(4096, chan.out_max_packet_size or _SEND_CHUNK)  # one packet per call
        try:
            while view:
                sent = chan.send(view[:chunk])  # paramiko takes any buffer: no copy per packet
                if sent == 0:
                    raise OSError("channel closed")
                view = view[sent:]
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise TransportClosed(f"ssh: {self._where}: {self._lost_text(e)}") from None

    def recv(self, max_bytes: int, timeout: float | None) -> bytes:
        if self._killed or self._closed:
            return b""
        if self._pending_at < len(self._pending):
            return self._take(max_bytes)
        data = self._recv_all(timeout)
        if len(data) <= max_bytes:
            return data
        self._pending, self._pending_at = data, 0
        return self._take(max_bytes)

    def recv_into(self, view: memoryview, timeout: float | None) -> int:
        """Like ``recv`` but into ``view``: a big frame's bytes go from paramiko's buffer
        straight into the frame's own buffer (no join, no decode at the end)."""
        if self._killed or self._closed:
            return 0
        if self._pending_at < len(self._pending):
            data = self._take(len(view))
        else:
            data = self._recv_all(timeout)
            if len(data) > len(view):
                self._pending, self._pending_at = data, len(view)
                data = memoryview(data)[:len(view)]
        n = len(data)
        view[:n] = data
        return n

    def _recv_all(self, timeout: float | None) -> bytes:
        """Everything paramiko holds (waiting up to ``timeout`` for something), ``b""`` at the end.

        All of it, not a given size: paramiko's buffer drops a partial read with
        ``del buffer[:n]``, a memmove of the rest (up to the 16 MiB window) per call."""
        if self._eof or self._killed or self._closed:
            return b""
        chan = self._chan
        if not chan.recv_ready():
            ready = self._readable.wait(timeout)
            if self._killed or self._closed:
                return b""
            if not ready:
                raise TransportTimeout(f"no data from the agent on {self._where} within {timeout:g} s")
        try:
            data = chan.recv(_RECV_ALL)
        except (OSError, EOFError, paramiko.SSHException):
            data = b""
        if not data:
            self._eof = True
        return data

    def _take(self, max_bytes: int) -> bytes:
        start = self._pending_at
        out = self._pending[start:start + max_bytes]
        self._pending_at = start + len(out)
        if self._pending_at >= len(self._pending):
            self._pending, self._pending_at = b"", 0
        return out

    def _close_channel(self) -> None:
        with self._lock:
            self._closed = True
        try:
            self._chan.close()
        except Exception:
            pass
        self._readable.set()  # a reader still waiting sees the stream closed
