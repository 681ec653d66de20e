"""The zygote: a small process with lupa and the worker code loaded that forks local VMs.

Why a zygote of our own rather than ``multiprocessing``'s forkserver (both measured in
``bench/vm_create.py``): a worker has to start with its protocol pipes on fds 3/4, no other
descriptors, stdout folded into stderr, a parent-death signal and an address-space limit, and
the shell has to learn its exit status ("VM crashed (signal 9)") although it is not the
worker's parent.  multiprocessing's forkserver pickles a ``Process`` object per start, runs its
bootstrap in the child, keeps its own sentinel pipes, reports no wait status to anyone but the
forkserver, and does not tie the children's lifetime to the shell's.  This zygote does exactly
what we need in one ``fork()`` per VM and one small message each way.

Lifetime: no worker may outlive the shell.
  * The shell holds one end of a SOCK_SEQPACKET control socket; the kernel closes it however the
    shell dies (exit, SIGTERM, SIGKILL).  On EOF the zygote SIGKILLs its whole process group
    (every worker and anything they forked) and exits.
  * The zygote also has PR_SET_PDEATHSIG=SIGKILL towards the shell, and every worker has it
    towards the zygote, so killing the zygote alone takes its workers with it.
  * The zygote runs in its own session, so a Ctrl-C typed at the shell's terminal reaches only
    the shell; the shell forwards interrupts to the one VM that should get them.

Messages (each one datagram; text, space separated; the spawn request carries two fds):
  shell → zygote   ``spawn <id> <json>`` + SCM_RIGHTS [agent stdin read end, agent stdout write end]
  zygote → shell   ``spawned <id> <pid>`` | ``failed <id> <message>`` | ``exit <pid> <wait status>``
"""
from __future__ import annotations

import ctypes
import importlib
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback
from concurrent.futures import Future
from pathlib import Path
from typing import Any

__all__ = ["Zygote", "ZygoteError", "set_parent_death_signal", "zygote_main"]

_PR_SET_PDEATHSIG = 1
_MAX_MSG = 64 * 1024
#: What a worker runs unless a spawn request names another target (tests use this).
DEFAULT_TARGET = "bioxen_shell.vm.worker:run_worker"
#: lupa modules behind the runtime names of profiles.
LUPA_MODULES = {
    "lua51": "lupa.lua51", "lua52": "lupa.lua52", "lua53": "lupa.lua53",
    "lua54": "lupa.lua54", "lua55": "lupa.lua55", "luajit": "lupa.luajit21",
}


class ZygoteError(RuntimeError):
    """The zygote could not start or could not fork a worker."""


_PR_SET_NAME = 15


def set_process_name(name: str) -> None:
    """Name this process for ``ps -o comm``/``top`` (Linux keeps 15 bytes): a worker otherwise
    shows the zygote's command line, which it inherited."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent (thread) exits (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        return False


# =========================================================================== shell side

class Zygote:
    """The shell's handle on its zygote process (one per shell process; see :meth:`instance`)."""

    _instance: "Zygote | None" = None
    _instance_lock = threading.Lock()
    _spawner: "_SpawnerThread | None" = None

    def __init__(self, preload: tuple[str, ...] = ("lua54",)) -> None:
        self._lock = threading.Lock()
        self._next_id = 0
        self._pending: dict[int, Future] = {}
        self._exits: dict[int, int] = {}
        self._exit_cond = threading.Condition()
        self._closed = False
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
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
        """The running zygote, started on first use and restarted if it died."""
        with cls._instance_lock:
            z = cls._instance
            if z is None or not z.alive():
                cls._instance = z = cls()
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
    def _popen(child: socket.socket, preload: tuple[str, ...]) -> subprocess.Popen:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return subprocess.Popen(
            [sys.executable, "-m", "bioxen_shell.vm.forkserver",
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
        fut: Future = Future()
        with self._lock:
            if self._closed:
                raise ZygoteError("the VM zygote is shut down")
            self._next_id += 1
            rid = self._next_id
            self._pending[rid] = fut
            try:
                socket.send_fds(self._sock, [f"spawn {rid} {json.dumps(request)}".encode()],
                                [agent_stdin, agent_stdout])
            except OSError as exc:
                self._pending.pop(rid, None)
                raise ZygoteError(f"the VM zygote is gone ({exc})") from None
        try:
            return fut.result(timeout)
        except TimeoutError:
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
        """Drop the recorded exit status of ``pid`` (its handle is closed)."""
        with self._exit_cond:
            self._exits.pop(pid, None)

    def shutdown(self) -> None:
        """Close the control socket: the zygote kills every worker and exits."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
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
        fut: Future = Future()
        self._queue.put((fn, fut))
        return fut.result()


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


# =========================================================================== zygote side

class _ZygoteServer:
    def __init__(self, ctrl: socket.socket) -> None:
        self.ctrl = ctrl
        self.children: set[int] = set()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: self.shutdown(0))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.targets: dict[str, Any] = {}

    def serve(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.ctrl, self.wake_r], [], [])
            except InterruptedError:
                continue
            if self.wake_r in ready:
                try:
                    while os.read(self.wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                self.reap()
            if self.ctrl in ready:
                try:
                    msg, fds, _, _ = socket.recv_fds(self.ctrl, _MAX_MSG, 4)
                except OSError:
                    msg, fds = b"", []
                if not msg:
                    self.shutdown(0)
                self.handle(msg, fds)

    def handle(self, msg: bytes, fds: list[int]) -> None:
        kind, _, rest = msg.decode().partition(" ")
        rid, _, payload = rest.partition(" ")
        try:
            if kind != "spawn" or len(fds) != 2:
                raise ZygoteError(f"bad request {kind!r} with {len(fds)} fds")
            request = json.loads(payload)
            target = self.load_target(request)
            pid = os.fork()
            if pid == 0:
                self.become_worker(fds, request, target)  # never returns
            self.children.add(pid)
            self.send(f"spawned {rid} {pid}")
        except Exception as exc:
            self.send(f"failed {rid} {type(exc).__name__}: {exc}")
        finally:
            for fd in fds:
                os.close(fd)

    def load_target(self, request: dict) -> Any:
        """Import the worker function and the runtime's lupa module here, once, before fork."""
        name = request["target"]
        fn = self.targets.get(name)
        if fn is None:
            mod_name, _, attr = name.partition(":")
            fn = getattr(importlib.import_module(mod_name), attr)
            self.targets[name] = fn
        runtime = request["runtime"]
        if runtime not in LUPA_MODULES:
            raise ZygoteError(f"runtime {runtime!r} is not one of {', '.join(LUPA_MODULES)}")
        importlib.import_module(LUPA_MODULES[runtime])
        return fn

    def become_worker(self, fds: list[int], request: dict, target: Any) -> None:
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            set_parent_death_signal(signal.SIGKILL)
            set_process_name(f"bxvm:{request.get('name') or '?'}")
            if os.getppid() == 1:  # the zygote died between fork and prctl
                os._exit(1)
            _install_worker_fds(fds)
            os.environ.update(request.get("env") or {})
            try:
                os.chdir(request.get("cwd") or "/")  # the shell's directory when the VM was made
            except OSError:
                os.chdir("/")
            _limit_address_space(request.get("max_memory", 0))
            result = target(request["runtime"], in_fd=3, out_fd=4,
                            max_memory=request.get("max_memory", 0) or None)
            status = result if isinstance(result, int) else 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stderr.flush()
            finally:
                os._exit(status)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send(f"exit {pid} {status}")

    def send(self, text: str) -> None:
        try:
            self.ctrl.send(text.encode())
        except OSError:
            self.shutdown(0)

    def shutdown(self, code: int) -> None:
        # Take every worker (and whatever they started) down with us: we lead the group.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            os.killpg(0, signal.SIGKILL)
        finally:
            os._exit(code)


def _install_worker_fds(fds: list[int]) -> None:
    """Agent stdin on fd 3, agent stdout on fd 4, stdin from /dev/null, stdout → stderr, nothing else."""
    import fcntl

    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # anything written to stdout lands on stderr, never in the protocol stream
    os.dup2(high[0], 3)
    os.dup2(high[1], 4)
    os.closerange(5, _max_fd())
    # Not inherited by programs the VM runs (os.execute, io.popen): when the worker dies the
    # shell sees end-of-stream at once, even if such a program lives on.
    os.set_inheritable(3, False)
    os.set_inheritable(4, False)


def _max_fd() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 65536


def _limit_address_space(max_memory: int) -> None:
    """RLIMIT_AS backstop behind lupa's ``max_memory``: what the worker maps now, plus room
    for the Lua heap, the copies a protocol frame needs, and the allocator's slack."""
    if not max_memory:
        return
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[0]) * resource.getpagesize()
    limit = current + 3 * max_memory + 512 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def zygote_main(argv: list[str]) -> None:
    ctrl_fd, shell_pid, preload = int(argv[0]), int(argv[1]), argv[2] if len(argv) > 2 else ""
    set_parent_death_signal(signal.SIGKILL)
    set_process_name("bioxen-zygote")
    ctrl = socket.socket(fileno=ctrl_fd)
    if os.getppid() != shell_pid:  # the shell died before prctl took effect
        os._exit(1)
    server = _ZygoteServer(ctrl)
    # Everything a worker imports is imported here, once: a fork then costs ~1 ms instead
    # of the ~20 ms these imports take in each child.
    for module in ("bioxen_shell.paths", "bioxen_shell.runtimes", "bioxen_shell.vm.worker"):
        try:
            importlib.import_module(module)
        except ImportError as exc:  # reported at spawn time, with the real target's error
            sys.stderr.write(f"bioxen zygote: cannot preload {module}: {exc}\n")
    try:
        from bioxen_shell import paths

        paths.lua_search_path()  # warms platformdirs' lazy imports
    except Exception:
        pass
    for runtime in filter(None, preload.split(",")):
        importlib.import_module(LUPA_MODULES[runtime])
    ctrl.send(b"ready")
    server.serve()


if __name__ == "__main__":
    zygote_main(sys.argv[1:])
