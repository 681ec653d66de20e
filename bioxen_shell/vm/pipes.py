"""A byte stream to an agent over two pipes: what local workers and locally started Slurm
steps (``srun``'s stdin and stdout) have in common.

``send`` never blocks while the agent is itself blocked writing to us (a pipelined 100 MB
request behind a 100 MB reply would deadlock): the write end is non-blocking, and while it is
full the reader drains what the agent writes into a side buffer.  ``recv`` spins briefly before
it blocks, which halves the round trip of short calls (see :meth:`PipeStream._wait_readable`).
"""
from __future__ import annotations

import errno
import fcntl
import os
from os import sched_yield as _yield
import select
import time
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Callable, TypeVar

    T = TypeVar("T")

from .transport import TransportClosed, TransportTimeout

__all__ = ["PipeStream", "make_pipe", "PIPE_SIZE"]

#: How long a read polls before it blocks (see PipeStream._wait_readable).
_SPIN_SECONDS = 100e-6
_F_SETPIPE_SZ = 1031
#: Pipe capacity asked for: fewer wake-ups when 100 MB strings move.
PIPE_SIZE = 1 << 20


def make_pipe() -> tuple[int, int]:
    """A close-on-exec pipe of :data:`PIPE_SIZE` (or the system's most, if lower)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    _enlarge(w)
    return r, w


def _enlarge(fd: int) -> None:
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # pipe-max-size lower than 1 MiB: keep the default


class PipeStream:
    """``send``/``recv``/``recv_into`` of ``transport.AgentProcess`` over two pipe fds.

    Subclasses add the controls (interrupt, kill, exit_reason…) and call :meth:`_close_pipes`.
    """

    def _start_on_pipes(self, start: Callable[[int, int], T]) -> T:
        """``start(stdin_fd, stdout_fd)`` starts the agent's process on two new pipes (and
        returns what it returns); this end of them becomes the stream."""
        in_r, to_agent = make_pipe()
        from_agent, out_w = make_pipe()
        try:
            started = start(in_r, out_w)
        except BaseException:
            for fd in (to_agent, from_agent):
                os.close(fd)
            raise
        finally:
            os.close(in_r)
            os.close(out_w)
        self._init_pipes(to_agent, from_agent)
        return started

    def _init_pipes(self, to_agent: int, from_agent: int) -> None:
        self._to_agent = to_agent
        self._from_agent = from_agent
        os.set_blocking(self._to_agent, False)
        self._poll_in = select.poll()
        self._poll_in.register(self._from_agent, select.POLLIN)
        self._pending = bytearray()  # bytes read while a send() waited for room
        self._eof = False
        self._closed = False

    def send(self, data: bytes) -> None:
        if self._closed or self._eof:
            raise TransportClosed("the agent's stream is closed")
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._to_agent, view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            except (BrokenPipeError, OSError) as exc:
                if isinstance(exc, BrokenPipeError) or exc.errno in (errno.EPIPE, errno.EBADF):
                    raise TransportClosed("the agent's stream is closed") from None
                raise
            # The pipe is full: wait for room, and drain what the agent writes meanwhile.
            p = select.poll()
            p.register(self._to_agent, select.POLLOUT)
            if not self._eof:
                p.register(self._from_agent, select.POLLIN)
            for fd, ev in p.poll():
                if fd == self._from_agent and not self._eof:
                    chunk = os.read(self._from_agent, PIPE_SIZE)
                    if chunk:
                        self._pending += chunk
                    else:
                        self._eof = True
                elif fd == self._to_agent and ev & (select.POLLERR | select.POLLHUP):
                    raise TransportClosed("the agent's stream is closed")

    def _wait_readable(self, timeout: float | None) -> bool:
        """Wait until the agent's stream has data (or EOF); False on timeout.

        Most replies come back within tens of microseconds, so the first ``_SPIN_SECONDS`` are
        spent polling without sleeping: a blocking wait would add a scheduler wake-up, which on
        an idle virtual machine costs several round trips (measured: 78 → 12 µs for a pipe
        ping-pong with 10 µs of work when both ends spin).  The spin yields the core between
        polls: on a busy machine the agent may be waiting for this very core, and a spin that
        does not yield holds it off until the spin ends (measured: 72 µs instead of 15).
        Longer calls then block as usual, so the spin costs at most that much CPU per call.
        """
        poll = self._poll_in.poll
        if poll(0):
            return True
        spin_until = time.perf_counter() + _SPIN_SECONDS
        while time.perf_counter() < spin_until:
            if poll(0):
                return True
            _yield()  # a busy machine: let the agent run on this core (bench/vm_roundtrip.py)
        if timeout is not None:
            timeout = max(0.0, timeout - _SPIN_SECONDS)
        return bool(poll(None if timeout is None else int(timeout * 1000 + 0.999)))

    def recv(self, max_bytes: int, timeout: float | None) -> bytes:
        if self._pending:
            out = bytes(self._pending[:max_bytes])
            del self._pending[:max_bytes]
            return out
        if self._eof or self._closed:
            return b""
        if not self._wait_readable(timeout):
            raise TransportTimeout(f"no data within {timeout} s")
        try:
            data = os.read(self._from_agent, max_bytes)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                return b""
            raise
        if not data:
            self._eof = True
        return data

    def recv_into(self, view: memoryview, timeout: float | None) -> int:
        """Like ``recv`` but into ``view`` (big frames are read without an extra copy)."""
        if self._pending:
            n = min(len(self._pending), view.nbytes)
            view[:n] = self._pending[:n]
            del self._pending[:n]
            return n
        if self._eof or self._closed:
            return 0
        if not self._wait_readable(timeout):
            raise TransportTimeout(f"no data within {timeout} s")
        n = os.readv(self._from_agent, [view])
        if n == 0:
            self._eof = True
        return n

    def _close_pipes(self) -> None:
        for fd in (self._to_agent, self._from_agent):
            try:
                os.close(fd)
            except OSError:
                pass
