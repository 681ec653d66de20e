"""The zygote: a small process with lupa and the worker code loaded that forks local VMs.

Why a zygote of our own rather than ``multiprocessing``'s forkserver (both measured in
``bench/vm_create.py``): a worker has to start with its protocol pipes on fds 3/4, no other
descriptors, stdout folded into stderr, a parent-death signal and an address-space limit, and
the shell has to learn its exit status ("VM crashed (signal 9)") although it is not the
worker's parent.  multiprocessing's forkserver pickles a ``Process`` object per start, runs its
bootstrap in the child, keeps its own sentinel pipes, reports no wait status to anyone but the
forkserver, and does not tie the children's lifetime to the shell's.  This zygote does exactly
what we need in one ``fork()`` per VM and one small message each way.

Lifetime: no worker, and nothing a VM started, may outlive the shell or its VM.
  * Each worker leads a process group of its own, which holds what the VM starts.  When a
    worker ends, the zygote kills its group before it reaps it (zygote.py, ``reap``).
  * The shell holds one end of a SOCK_SEQPACKET control socket; the kernel closes it however the
    shell dies (exit, SIGTERM, SIGKILL).  On EOF the zygote SIGKILLs every worker's group and
    its own, and exits.
  * The zygote also has PR_SET_PDEATHSIG=SIGTERM towards the shell (its handler does the same
    as EOF), and every worker has SIGKILL towards the zygote, so killing the zygote alone takes
    its workers with it.
  * The zygote runs in its own session, so a Ctrl-C typed at the shell's terminal reaches only
    the shell; the shell forwards interrupts to the one VM that should get them.

Spares: the zygote keeps a few workers of the default runtime forked ahead (zygote.SPARES), set
up as far as they can be without a request; a spawn request that fits one is handed to it over
its own socket (the request and the two fds), and its pid is the one ``spawned`` reports.

Messages (each one datagram; text, space separated; the spawn request carries two fds):
  shell → zygote   ``spawn <id> <marshal>`` + SCM_RIGHTS [agent stdin read end, agent stdout write end]
  zygote → shell   ``spawned <id> <pid>`` | ``failed <id> <message>`` | ``exit <pid> <wait status>``
"""
from __future__ import annotations

import _socket  # the C module: socket.py's import costs ~2 ms of a VM-using shell's start
import marshal
import os
import struct
import sys
import threading
import time
from pathlib import Path
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any

    from _socket import socket as Socket

from .zygote import (
    _MAX_MSG,
    DEFAULT_TARGET,
    LUPA_MODULES,
    ZygoteError,
    set_parent_death_signal,
    set_process_name,
    take_forked,
    zygote_main,
)

__all__ = ["Zygote", "ZygoteError", "set_parent_death_signal", "set_process_name", "zygote_main",
           "LUPA_MODULES"]

# =========================================================================== shell side

class Zygote:
    """The shell's handle on its zygote process (one per shell process; see :meth:`instance`)."""

    _instance: "Zygote | None" = None
    _instance_lock = threading.Lock()
    _spawner: "_SpawnerThread | None" = None

    def __init__(self, preload: tuple[str, ...] | None = None, *,
                 adopt: tuple[int, Socket] | None = None) -> None:
        """Start a zygote (a fresh interpreter), or ``adopt`` one that ``zygote.fork_zygote``
        forked: ``(pid, control socket)``.  Returns once it is ready (or raises ZygoteError)."""
        self._lock = threading.Lock()
        self._next_id = 0
        self._pending: dict[int, _Waiter] = {}
        self._exits: dict[int, int] = {}
        # Workers whose handle is closed before their exit was reported: the report is dropped
        # when it comes (a closed handle asks for nothing more).
        self._forgotten: set[int] = set()
        self._exit_cond = threading.Condition()
        self._closed = False
        if adopt is not None:
            self._proc: Any = _ForkedChild(adopt[0])
            self._sock = adopt[1]
        else:
            if preload is None:  # the runtime local VMs run by default, imported before the first fork
                from ..runtimes import default_runtime

                preload = (default_runtime(),)
            parent, child = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
            self._sock = parent
            try:
                self._proc = Zygote._spawner_thread().run(lambda: self._popen(child, preload))
            finally:
                child.close()
        # The zygote says "ready" once lupa and the worker code are imported.
        self._sock.settimeout(60)
        try:
            msg = self._sock.recv(_MAX_MSG)
        except OSError:
            msg = b""
        self._sock.settimeout(None)
        if not msg.startswith(b"ready"):
            self._proc.kill()
            raise ZygoteError(f"the VM zygote failed to start: {msg.decode(errors='replace') or 'no answer'}")
        self.pid = self._proc.pid
        self._reader = threading.Thread(target=self._read_loop, name="bioxen-zygote-reader", daemon=True)
        self._reader.start()

    # -- process-wide instance ------------------------------------------------------------

    @classmethod
    def instance(cls) -> "Zygote":
        """The running zygote: the one the shell forked at start (``zygote.fork_zygote``),
        else one started on first use; restarted if it died."""
        with cls._instance_lock:
            z = cls._instance
            if z is None or not z.alive():
                forked = take_forked()
                z = None
                if forked is not None:
                    try:
                        z = cls(adopt=(forked[0], _socket.socket(fileno=forked[1])))
                    except ZygoteError:  # it failed to start: a fresh one below
                        pass
                cls._instance = z = z or cls()
            return z

    @classmethod
    def _spawner_thread(cls) -> "_SpawnerThread":
        # PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so the zygote
        # is started from a thread that lives as long as the shell, never from a passing
        # worker thread of the REPL engine.
        if cls._spawner is None:
            cls._spawner = _SpawnerThread()
        return cls._spawner

    @staticmethod
    def _popen(child: Socket, preload: tuple[str, ...]) -> Any:
        import subprocess  # only for a zygote started afresh (the shell forks its own: cli.py)

        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return subprocess.Popen(
            [sys.executable, "-m", "bioxen_shell.vm.zygote",
             str(child.fileno()), str(os.getpid()), ",".join(preload)],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd="/",
        )

    def alive(self) -> bool:
        return not self._closed and self._proc.poll() is None

    # -- requests -----------------------------------------------------------------------

    def spawn(self, agent_stdin: int, agent_stdout: int, *, runtime: str, max_memory: int = 0,
              env: dict[str, str] | None = None, name: str = "", target: str = DEFAULT_TARGET,
              timeout: float = 30.0) -> int:
        """Fork a worker with ``agent_stdin``/``agent_stdout`` as its fds 3/4; return its pid.

        The caller keeps (and later closes) its own copies of the two fds.
        """
        request = {"runtime": runtime, "max_memory": int(max_memory), "env": env or {},
                   "name": name, "target": target, "cwd": _cwd()}
        fut = _Waiter()
        with self._lock:
            if self._closed:
                raise ZygoteError("the VM zygote is shut down")
            self._next_id += 1
            rid = self._next_id
            self._pending[rid] = fut
            try:
                # What socket.send_fds does: the two descriptors ride along as SCM_RIGHTS.
                fds = struct.pack("2i", agent_stdin, agent_stdout)
                self._sock.sendmsg([b"spawn %d %s" % (rid, marshal.dumps(request))],
                                   [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
            except OSError as exc:
                self._pending.pop(rid, None)
                raise ZygoteError(f"the VM zygote is gone ({exc})") from None
        try:
            return fut.result(timeout)
        except TimeoutError:
            with self._lock:
                self._pending.pop(rid, None)
            raise ZygoteError(f"the VM zygote did not fork a worker within {timeout:g} s") from None

    def exit_status(self, pid: int) -> int | None:
        """The wait status of worker ``pid`` once the zygote reaped it, else ``None``."""
        with self._exit_cond:
            return self._exits.get(pid)

    def wait_exit(self, pid: int, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for the zygote to report worker ``pid``'s exit."""
        with self._exit_cond:
            self._exit_cond.wait_for(lambda: pid in self._exits or self._closed, timeout)
            return self._exits.get(pid)

    def forget(self, pid: int) -> None:
        """Drop the exit status of ``pid`` (its handle is closed): the recorded one, or the one
        still to come when it arrives."""
        with self._exit_cond:
            if self._exits.pop(pid, None) is None:
                self._forgotten.add(pid)

    def shutdown(self) -> None:
        """Close the control socket: the zygote kills every worker and exits."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            self._proc.wait(5)
        except Exception:  # subprocess.TimeoutExpired (a Popen) or TimeoutError (_ForkedChild)
            self._proc.kill()
            self._proc.wait()

    # -- reader thread --------------------------------------------------------------------

    def _read_loop(self) -> None:
        while True:
            try:
                msg = self._sock.recv(_MAX_MSG)
            except OSError:
                msg = b""
            if not msg:
                break
            kind, _, rest = msg.decode(errors="replace").partition(" ")
            if kind == "exit":
                pid, status = (int(x) for x in rest.split())
                with self._exit_cond:
                    if pid in self._forgotten:
                        self._forgotten.discard(pid)
                    else:
                        self._exits[pid] = status
                        self._exit_cond.notify_all()
            elif kind in ("spawned", "failed"):
                rid_text, _, value = rest.partition(" ")
                fut = self._pending.pop(int(rid_text), None)
                if fut is not None:
                    if kind == "spawned":
                        fut.set_result(int(value))
                    else:
                        fut.set_exception(ZygoteError(value))
        # The zygote is gone: fail whatever waits on it.
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            fut.set_exception(ZygoteError("the VM zygote exited"))
        with self._exit_cond:
            self._exit_cond.notify_all()


class _SpawnerThread:
    """A thread that lives as long as the process and runs the zygote's ``Popen``."""

    def __init__(self) -> None:
        import queue

        self._queue: "queue.Queue" = queue.Queue()
        t = threading.Thread(target=self._loop, name="bioxen-zygote-spawner", daemon=True)
        t.start()

    def _loop(self) -> None:
        while True:
            fn, fut = self._queue.get()
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)

    def run(self, fn):
        fut = _Waiter()
        self._queue.put((fn, fut))
        return fut.result(None)


class _Waiter:
    """A value (or an error) that another thread hands over once.  (Not
    concurrent.futures.Future: that module costs more start-up than a VM takes to create.)"""

    __slots__ = ("_done", "_value", "_error")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def set_result(self, value: Any) -> None:
        self._value = value
        self._done.set()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def result(self, timeout: float | None) -> Any:
        """The value; raises the error handed over, or TimeoutError after ``timeout`` s."""
        if not self._done.wait(timeout):
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value


class _ForkedChild:
    """What ``Zygote`` needs of a ``Popen``, for a zygote this process forked itself."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:  # the zygote exits right after its socket closes
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"zygote {self.pid} did not exit within {timeout:g} s")
            time.sleep(0.001)
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the shell's directory was removed
        return "/"


def _reset_after_fork_in_child() -> None:
    # A process forked from the shell (not via the zygote) must not share the shell's zygote,
    # nor keep its control socket open (the zygote watches that socket for the shell's death).
    z = Zygote._instance
    Zygote._instance = None
    Zygote._spawner = None
    if z is not None:
        try:
            z._sock.close()  # close, never shutdown: the parent still uses the socket
        except OSError:
            pass


os.register_at_fork(after_in_child=_reset_after_fork_in_child)


