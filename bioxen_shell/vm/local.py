"""Local VMs: worker processes on this machine, forked by the zygote (forkserver.py).

Each VM is one process running lupa and ``lua/bioxen/agent.lua`` with the protocol on two
pipes (its fds 3 and 4).  Being a process, it can be interrupted (SIGINT), killed, limited
(lupa ``max_memory`` plus an RLIMIT_AS backstop) and crash without taking the shell along.
"""
from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import threading
import time
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any

from .. import paths
from .forkserver import Zygote, ZygoteError
from .profiles import local_default_runtime
from .transport import (
    BackendError,
    TransportClosed,
    TransportTimeout,
    describe_exit_status,
)

#: How long a read polls before it blocks (see LocalAgentProcess._wait_readable).
_SPIN_SECONDS = 100e-6

__all__ = ["LocalBackend", "LocalAgentProcess"]

#: Clock ticks per second of the utime/stime fields of /proc/<pid>/stat.
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

#: How long to wait for the zygote's report on a worker that has certainly exited (its pidfd
#: says so).  While the zygote lives it reports every exit; a busy machine only delays that.
_EXITED_REPORT_WAIT = 60.0

_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20  # fewer wake-ups when 100 MB strings move


def _pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(w, _F_SETPIPE_SZ, _PIPE_SIZE)
    except OSError:
        pass  # pipe-max-size lower than 1 MiB: keep the default
    return r, w


class LocalAgentProcess:
    """The byte stream to one local worker (implements ``transport.AgentProcess``)."""

    def __init__(self, zygote: Zygote, *, runtime: str, max_memory: int, env: dict[str, str],
                 name: str, target: str | None = None) -> None:
        self._zygote = zygote
        in_r, self._to_agent = _pipe()
        self._from_agent, out_w = _pipe()
        try:
            kwargs = {"target": target} if target else {}
            self.pid = zygote.spawn(in_r, out_w, runtime=runtime, max_memory=max_memory,
                                    env=env, name=name, **kwargs)
        except BaseException:
            for fd in (self._to_agent, self._from_agent):
                os.close(fd)
            raise
        finally:
            os.close(in_r)
            os.close(out_w)
        # Writes must never block while the agent is itself blocked writing output to us (a
        # pipelined 100 MB request behind a 100 MB reply would deadlock); see send().
        os.set_blocking(self._to_agent, False)
        self._poll_in = select.poll()
        self._poll_in.register(self._from_agent, select.POLLIN)
        self._pending = bytearray()  # bytes read while a send() waited for room
        self._eof = False
        self._closed = False
        self._lock = threading.Lock()
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None  # already gone, or an old kernel: fall back to kill(pid)
        self._stat_fd: int | None = None  # /proc/<pid>/stat, opened by the first cpu_seconds()

    # -- byte stream -------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self._closed or self._eof:
            raise TransportClosed("the worker's stream is closed")
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
                    raise TransportClosed("the worker's stream is closed") from None
                raise
            # The pipe is full: wait for room, and drain what the agent writes meanwhile.
            p = select.poll()
            p.register(self._to_agent, select.POLLOUT)
            if not self._eof:
                p.register(self._from_agent, select.POLLIN)
            for fd, ev in p.poll():
                if fd == self._from_agent and not self._eof:
                    chunk = os.read(self._from_agent, _PIPE_SIZE)
                    if chunk:
                        self._pending += chunk
                    else:
                        self._eof = True
                elif fd == self._to_agent and ev & (select.POLLERR | select.POLLHUP):
                    raise TransportClosed("the worker's stream is closed")

    def _wait_readable(self, timeout: float | None) -> bool:
        """Wait until the agent's stream has data (or EOF); False on timeout.

        Most replies come back within tens of microseconds, so the first ``_SPIN_SECONDS`` are
        spent polling without sleeping: a blocking wait would add a scheduler wake-up, which on
        this kind of machine doubles the round trip (measured: 81 → 40 µs for a pipe ping-pong
        with 10 µs of work).  Longer calls then block as usual, so the spin costs at most that
        much CPU per call.
        """
        poll = self._poll_in.poll
        if poll(0):
            return True
        spin_until = time.perf_counter() + _SPIN_SECONDS
        while time.perf_counter() < spin_until:
            if poll(0):
                return True
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

    # -- controls -------------------------------------------------------------------------

    def _signal(self, sig: int) -> None:
        if self.exit_reason() is not None:
            return
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)
        except (ProcessLookupError, OSError):
            pass

    def interrupt(self) -> None:
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def exit_reason(self) -> str | None:
        status = self._zygote.exit_status(self.pid)
        if status is not None:
            return describe_exit_status(status)
        if not self._zygote.alive():
            return "signal 9"  # the zygote's death takes its workers along (PDEATHSIG)
        return None

    def wait_exit_reason(self, timeout: float) -> str | None:
        """Like ``exit_reason`` but waits up to ``timeout`` s for the zygote's report, and
        longer (up to ``_EXITED_REPORT_WAIT``) once the worker has certainly exited: then the
        report is on its way, and a zygote that a loaded machine leaves waiting for a core
        must not turn "signal 9" into a lost connection.  (A dead zygote ends the wait too.)"""
        status = self._zygote.wait_exit(self.pid, timeout)
        if status is None and self._has_exited():
            status = self._zygote.wait_exit(self.pid, _EXITED_REPORT_WAIT)
        return describe_exit_status(status) if status is not None else self.exit_reason()

    def _has_exited(self) -> bool:
        """Whether the worker has terminated (a pidfd polls readable once it has)."""
        if self._pidfd is None:
            return False
        p = select.poll()
        p.register(self._pidfd, select.POLLIN)
        return bool(p.poll(0))

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the worker has used, from ``/proc/<pid>/stat``; ``None``
        once it is gone or where there is no /proc.  The host compares it with the profile's
        ``cpu_limit`` to stop code the agent's count hook cannot see (JIT-compiled loops).

        The file stays open: an open ``/proc/<pid>/stat`` keeps naming this process, so a
        recycled pid can never be read by mistake (a dead one reads as an error → ``None``)."""
        if self._closed:
            return None
        try:
            fd = self._stat_fd
            if fd is None:
                if self.exit_reason() is not None:
                    return None
                fd = self._stat_fd = os.open(f"/proc/{self.pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            data = os.pread(fd, 4096, 0)
            # "pid (comm) state ppid …": comm may hold spaces and ')', so split after the last ')'.
            fields = data[data.rindex(b")") + 2:].split()
            return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # fields 14 and 15: utime, stime
        except (OSError, ValueError, IndexError):
            return None

    def describe(self) -> dict[str, Any]:
        return {"type": "local", "pid": self.pid}

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.exit_reason() is None:
            self.kill()
            self.wait_exit_reason(2.0)
        for fd in (self._to_agent, self._from_agent):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        stat_fd, self._stat_fd = self._stat_fd, None
        if stat_fd is not None:
            try:
                os.close(stat_fd)
            except OSError:
                pass
        self._zygote.forget(self.pid)


class LocalBackend:
    """``vm.create{type="local"}``: a worker process forked by the zygote."""

    kind = "local"
    #: vm.create options a local VM accepts (besides name/profile/type/count/runtime).
    OPTIONS: dict[str, str] = {"_target": "module:function a worker runs (tests only)"}

    def __init__(self, name: str, options: dict, profile: Any) -> None:
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise BackendError(
                f"vm.create: option {unknown[0]!r} is not known for type='local' "
                f"(local VMs take name, profile, runtime, type, count)"
            )
        self.name = name
        self.profile = profile
        self._target: str | None = options.get("_target")
        self.runtime: str = profile.runtime or local_default_runtime()

    def lua_path(self) -> str:
        """``package.path`` entries the agent gets in ``configure``."""
        return paths.lua_search_path(list(self.profile.paths))

    def start(self) -> LocalAgentProcess:
        try:
            zygote = Zygote.instance()
            return LocalAgentProcess(
                zygote, runtime=self.runtime, max_memory=self.profile.memory_limit,
                env=dict(self.profile.env), name=self.name, target=self._target,
            )
        except ZygoteError as exc:
            raise BackendError(f"local: cannot start a worker for VM {self.name!r}: {exc}") from None

    def stop(self) -> None:
        """Nothing to stop beyond the worker, which the handle already ended."""

    def destroy(self) -> None:
        """A local VM owns nothing beyond its worker process."""

    def describe(self) -> dict[str, Any]:
        return {"type": "local", "runtime": self.runtime}
