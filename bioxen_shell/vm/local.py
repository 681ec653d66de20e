"""Local VMs: worker processes on this machine, forked by the zygote (forkserver.py).

Each VM is one process running lupa and ``lua/bioxen/agent.lua`` with the protocol on two
pipes (its fds 3 and 4).  Being a process, it can be interrupted (SIGINT), killed, limited
(lupa ``max_memory`` plus an RLIMIT_AS backstop) and crash without taking the shell along.
"""
from __future__ import annotations

import os
import select
import signal
import threading
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any

from .. import paths
from ..runtimes import default_runtime
from ..schema import VM_CREATE, SchemaError, unknown_key
from .forkserver import Zygote, ZygoteError
from .pipes import PipeStream
from .transport import BackendError, describe_exit_status

__all__ = ["LocalBackend", "LocalAgentProcess"]

#: Clock ticks per second of the utime/stime fields of /proc/<pid>/stat.
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

#: How long to wait for the zygote's report on a worker that has certainly exited (its pidfd
#: says so).  While the zygote lives it reports every exit; a busy machine only delays that.
_EXITED_REPORT_WAIT = 60.0


class LocalAgentProcess(PipeStream):
    """The byte stream to one local worker (implements ``transport.AgentProcess``)."""

    def __init__(self, zygote: Zygote, *, runtime: str, max_memory: int, env: dict[str, str],
                 name: str, target: str | None = None) -> None:
        self._zygote = zygote
        kwargs = {"target": target} if target else {}
        self.pid = self._start_on_pipes(lambda stdin, stdout: zygote.spawn(
            stdin, stdout, runtime=runtime, max_memory=max_memory, env=env, name=name, **kwargs))
        self._lock = threading.Lock()
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None  # already gone, or an old kernel: fall back to kill(pid)
        self._stat_fd: int | None = None  # /proc/<pid>/stat, opened by the first cpu_seconds()

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
        self._release(wait=True)

    def abandon(self) -> None:
        """Like close(), but the worker is killed and not waited for: the zygote reaps it, ends
        its process group and reports its exit, which forget() drops.  A worker holding a big
        heap takes the kernel milliseconds to tear down (~15 ms at 130 MB): a map's own VMs are
        let go this way, so that the last of them does not hold up the map's end."""
        self._release(wait=False)

    def _release(self, wait: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.exit_reason() is None:
            self.kill()
            if wait:
                self.wait_exit_reason(2.0)
        self._close_pipes()
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
        if unknown:  # in the one schema's format, naming what a local VM takes
            from .manager import MANAGER_KEYS

            raise BackendError(str(SchemaError(VM_CREATE, unknown[0],
                                               unknown_key(unknown[0], MANAGER_KEYS, "for type='local'"))))
        self.name = name
        self.profile = profile
        self._target: str | None = options.get("_target")
        self.runtime: str = profile.runtime or default_runtime()

    def lua_path(self) -> str:
        """``package.path`` entries the agent gets in ``configure`` (put before its own): the
        profile's directories.  The worker starts with :func:`paths.lua_search_path` (BIOXEN_PATH,
        bio.*, bioxen's Lua), so those are not sent again: each entry is in the path once."""
        base = set(paths.lua_search_dirs())
        return paths.lua_patterns([d for d in dict.fromkeys(self.profile.paths) if d not in base])

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
