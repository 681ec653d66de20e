"""The zygote process: lupa and the worker code loaded once, a ``fork()`` per local VM.

This module is what runs *in* the zygote (``python -m bioxen_shell.vm.zygote``); the shell's
side of it — starting it, asking for workers, learning their exit status — is
``forkserver.py``, which also explains the design and the message format.  It imports as
little as possible, because the zygote's start is part of the first VM's start: a shell
that is about to use VMs forks it while it starts itself (``fork_zygote``).
"""
from __future__ import annotations

import importlib
import marshal
import os
import resource
import select
import signal
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
import sys

from ..runtimes import LUPA_MODULES  # the lupa module of each runtime name: the one runtime table

__all__ = ["ZygoteError", "set_parent_death_signal", "set_process_name", "zygote_main",
           "fork_zygote", "take_forked", "LUPA_MODULES", "DEFAULT_TARGET"]

_PR_SET_PDEATHSIG = 1
_MAX_MSG = 64 * 1024
#: What a worker runs unless a spawn request names another target (tests use this).
DEFAULT_TARGET = "bioxen_shell.vm.worker:run_worker"
#: Workers of the default runtime kept forked ahead of need (one per core, at most 4): a new VM
#: takes one that is waiting, already past the fork and its own set-up, and the zygote forks
#: its replacement once nothing has asked for anything for SPARE_IDLE seconds, or for
#: SPARE_IDLE_BUSY seconds while any of its workers lives (so not while a map's VMs are
#: starting or working: a spare's set-up takes CPU from them).  They are called
#: ``bxvm:spare`` and end with the zygote.
SPARES = min(os.cpu_count() or 1, 4)
SPARE_IDLE = 0.1
SPARE_IDLE_BUSY = 1.0
SPARE_NAME = "bxvm:spare"


class ZygoteError(RuntimeError):
    """The zygote could not start or could not fork a worker."""


_PR_SET_NAME = 15


def _libc():  # noqa: ANN202 - ctypes is imported here: the shell imports this module at start
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def set_process_name(name: str) -> None:
    """Name this process for ``ps -o comm``/``top`` (Linux keeps 15 bytes): a worker otherwise
    shows the zygote's command line, which it inherited."""
    try:
        ctypes, libc = _libc()
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent (thread) exits (Linux)."""
    try:
        _, libc = _libc()
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        return False


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
        self.targets: dict[str, object] = {}
        self.prepared: dict[str, object] = {}  # runtime -> worker.PreparedAgent
        # Spare workers of spare_runtime (None: no spares), each with the zygote's end of the
        # socket its spawn request will come on.  Not in self.children until handed out.
        self.spare_runtime: str | None = None
        self.spares: dict[int, socket.socket] = {}

    def serve(self) -> None:
        import socket  # imported by zygote_main already (not at this module's top: see there)

        while True:
            short = self.spare_runtime is not None and len(self.spares) < SPARES
            idle = (SPARE_IDLE_BUSY if self.children else SPARE_IDLE) if short else None
            try:
                ready, _, _ = select.select([self.ctrl, self.wake_r], [], [], idle)
            except InterruptedError:
                continue
            if not ready:  # idle (SPARE_IDLE or SPARE_IDLE_BUSY s) with a spare missing
                self.add_spare()
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
        kind_b, _, rest = msg.partition(b" ")
        rid_b, _, payload = rest.partition(b" ")
        kind, rid = kind_b.decode(errors="replace"), rid_b.decode(errors="replace")
        try:
            if kind != "spawn" or len(fds) != 2:
                raise ZygoteError(f"bad request {kind!r} with {len(fds)} fds")
            request = marshal.loads(payload)
            if not isinstance(request, dict):
                raise ZygoteError("bad spawn request")
            target = self.load_target(request)
            pid = self.hand_to_spare(request, fds)
            if pid is None:
                pid = os.fork()
                if pid == 0:
                    self.become_worker(fds, request, target)  # never returns
                try:
                    os.setpgid(pid, pid)  # also done in the child: whichever runs first wins
                except OSError:  # the child got there first (EACCES once it runs), or died
                    pass
            self.children.add(pid)
            self.send(f"spawned {rid} {pid}")
        except Exception as exc:
            self.send(f"failed {rid} {type(exc).__name__}: {exc}")
        finally:
            for fd in fds:
                os.close(fd)

    def load_target(self, request: dict) -> object:
        """Import the worker function and the runtime's lupa module here, once, before fork.

        The default worker is forked from an agent already loaded here (prepared_agent), unless
        the VM's environment changes where Lua modules are found (BIOXEN_PATH): then its
        worker loads the agent itself, after its environment is set."""
        name = request["target"]
        runtime = request["runtime"]
        if _runs_the_prepared_agent(request):
            return self.prepared_target(runtime)
        fn = self.targets.get(name)
        if fn is None:
            mod_name, _, attr = name.partition(":")
            fn = getattr(importlib.import_module(mod_name), attr)
            self.targets[name] = fn
        if runtime not in LUPA_MODULES:
            raise ZygoteError(f"runtime {runtime!r} is not one of {', '.join(LUPA_MODULES)}")
        importlib.import_module(LUPA_MODULES[runtime])
        return fn

    def prepared_target(self, runtime: str) -> object:
        """The worker function that starts ``runtime``'s prepared agent (see load_target);
        its ``agent`` is that PreparedAgent."""
        return _PreparedTarget(self.prepared_agent(runtime))

    def prepared_agent(self, runtime: str) -> object:
        """The agent loaded in a ``runtime`` LuaRuntime of this process (made once): each
        worker forked afterwards starts with it ready (worker.PreparedAgent)."""
        agent = self.prepared.get(runtime)
        if agent is None:
            from .worker import PreparedAgent

            agent = self.prepared[runtime] = PreparedAgent(runtime)
        return agent

    # -- spares ------------------------------------------------------------------------

    def start_spares(self, runtime: str) -> None:
        """Keep SPARES workers of ``runtime`` (its agent prepared here already) forked ahead.
        These first ones do not copy their memory ahead (see _own_memory_now): they are made
        while the shell that forked the zygote is still starting, beside it on the CPU."""
        self.spare_runtime = runtime
        while len(self.spares) < SPARES:
            self.add_spare(own_memory=False)

    def add_spare(self, own_memory: bool = True) -> None:
        import socket

        target = self.prepared_target(self.spare_runtime)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Born with its name: a process that lists the zygote's children never sees a spare
        # under the zygote's own name, not even before the child has run.
        set_process_name(SPARE_NAME)
        try:
            pid = os.fork()
        except OSError:  # no process to spare now (EAGAIN): tried again when next idle
            set_process_name("bioxen-zygote")
            ours.close()
            theirs.close()
            return
        if pid == 0:
            ours.close()
            self.become_spare(theirs, target, own_memory)  # never returns
        set_process_name("bioxen-zygote")
        theirs.close()
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        self.spares[pid] = ours

    def hand_to_spare(self, request: dict, fds: list[int]) -> int | None:
        """Give the request to a waiting spare, if one fits it (a spare runs the prepared agent
        of spare_runtime); its pid, or None."""
        if request["runtime"] != self.spare_runtime or not _runs_the_prepared_agent(request):
            return None
        import socket

        while self.spares:
            pid, sock = self.spares.popitem()
            try:
                socket.send_fds(sock, [marshal.dumps(request)], fds)
                return pid
            except OSError:  # it died meanwhile (reap() collects it): try the next one
                continue
            finally:
                sock.close()
        return None

    def become_spare(self, sock: socket.socket, target: object, own_memory: bool) -> None:
        """A spare: set up as a worker is, then wait for its spawn request (or the zygote's end)."""
        import socket

        try:
            self.become_process()
            if own_memory:
                _own_memory_now(target)
            keep = sock.fileno()
            os.closerange(3, keep)  # the control socket, the other spares' sockets
            os.closerange(keep + 1, _max_fd())
            msg, fds, _, _ = socket.recv_fds(sock, _MAX_MSG, 2)
            sock.close()
            if not msg or len(fds) != 2:
                os._exit(0)  # the zygote went away
            request = marshal.loads(msg)
        except BaseException:
            os._exit(1)
        self.run_request(fds, request, target)

    # -- workers -------------------------------------------------------------------------

    def become_worker(self, fds: list[int], request: dict, target: object) -> None:
        self.become_process()
        self.run_request(fds, request, target)

    @staticmethod
    def become_process() -> None:
        """A forked child's set-up that does not depend on its request."""
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            # A process group of its own: whatever the VM starts (os.execute("sleep 999 &"))
            # stays in it, and the zygote kills the group when the worker ends (reap()).
            os.setpgid(0, 0)
            set_parent_death_signal(signal.SIGKILL)
            if os.getppid() == 1:  # the zygote died between fork and prctl
                os._exit(1)
        except BaseException:
            os._exit(1)

    @staticmethod
    def run_request(fds: list[int], request: dict, target: object) -> None:
        """Become the worker ``request`` asks for, on ``fds``; never returns."""
        status = 1
        try:
            set_process_name(f"bxvm:{request.get('name') or '?'}")
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
            import traceback

            traceback.print_exc()
        finally:
            try:
                sys.stderr.flush()
            finally:
                os._exit(status)

    def reap(self) -> None:
        """Collect workers that ended; end each one's process group first.

        The worker is looked at without being reaped (WNOWAIT): while it is a zombie its pid,
        which is also its group's id, cannot be given to a new process, so killing the group
        can only hit what the VM started (``os.execute("sleep 999 &")``, a pipeline…)."""
        while self.children or self.spares:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                self.children.clear()
                return
            if info is None or not info.si_pid:
                return
            pid = info.si_pid
            if pid in self.children:
                _kill_group(pid)
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 0
            if pid in self.children:
                self.children.discard(pid)
                self.send(f"exit {pid} {status}")
            elif pid in self.spares:  # a spare that died unused: replaced when the zygote is idle
                self.spares.pop(pid).close()

    def send(self, text: str) -> None:
        try:
            self.ctrl.send(text.encode())
        except OSError:
            self.shutdown(0)

    def shutdown(self, code: int) -> None:
        # Take every worker and whatever it started down with us: each worker leads a process
        # group of its own (not yet reaped ones keep their ids), and we lead ours.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            for pid in [*self.children, *self.spares]:
                _kill_group(pid)
            os.killpg(0, signal.SIGKILL)
        finally:
            os._exit(code)


class _PreparedTarget:
    """A worker function (as load_target returns) that starts a prepared agent."""

    def __init__(self, agent: object) -> None:
        self.agent = agent

    def __call__(self, _runtime: str, **kwargs: object) -> object:
        return self.agent.run(**kwargs)


def _own_memory_now(target: object) -> None:
    """Copy, while the spare waits, the pages of the zygote's memory its worker would copy at
    its start: a forked process shares the zygote's pages until it writes to them, and the
    first writes (Python's reference counts, Lua's collector marking the prepared agent) each
    cost a page fault and a copy, on the VM's start.  A full collection of both heaps writes to
    every live object once.  (~1.5 ms less to start a VM; the spare's own memory grows by the
    ~3 MB that its worker would have copied anyway.)"""
    import gc

    gc.collect()
    agent = getattr(target, "agent", None)
    if agent is not None:
        agent.collect_garbage()


def _runs_the_prepared_agent(request: dict) -> bool:
    """Whether a spawn request's worker starts the agent the zygote has loaded: the default
    target, a lupa runtime, and no BIOXEN_PATH in the VM's environment (which changes where
    the agent's own modules are found: such a worker loads the agent itself)."""
    return request["target"] == DEFAULT_TARGET and request["runtime"] in LUPA_MODULES and \
        "BIOXEN_PATH" not in (request.get("env") or {})


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:  # the group is already empty
        pass


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
    # SIGTERM, not SIGKILL, when the shell dies: the zygote's handler (shutdown) must run, to
    # end the workers' process groups; a SIGKILL would leave what the VMs started behind.
    # (The shell's death also closes the control socket, which ends the zygote the same way.)
    set_parent_death_signal(signal.SIGTERM)
    set_process_name("bioxen-zygote")
    import socket  # here, in the zygote: the shell forks it before it has imported socket

    ctrl = socket.socket(fileno=ctrl_fd)
    if os.getppid() != shell_pid:  # the shell died before prctl took effect
        os._exit(1)
    server = _ZygoteServer(ctrl)
    # Everything a worker imports is imported here, once: a fork then costs ~1 ms instead
    # of the ~20 ms these imports take in each child.
    for module in ("fcntl", "bioxen_shell.paths", "bioxen_shell.runtimes", "bioxen_shell.vm.worker"):
        try:
            importlib.import_module(module)
        except ImportError as exc:  # reported at spawn time, with the real target's error
            sys.stderr.write(f"bioxen zygote: cannot preload {module}: {exc}\n")
    # The runtimes to import before the first fork (the first also gets its agent loaded);
    # none named: the default one (lupa's LuaJIT, or Lua 5.4 where lupa has none).  Any other
    # runtime is imported by the first VM that asks for it.
    from ..runtimes import default_runtime

    spare_runtime = None
    for i, runtime in enumerate([r for r in preload.split(",") if r] or [default_runtime()]):
        try:
            importlib.import_module(LUPA_MODULES[runtime])
            if i == 0:  # the default runtime's agent, loaded before the first VM asks
                server.prepared_agent(runtime)
                spare_runtime = runtime
        except ImportError:  # a runtime lupa lacks: reported when a VM asks for it
            pass
        except Exception:  # noqa: BLE001 - the first VM that needs it reports the error
            pass
    try:
        ctrl.send(b"ready")
    except OSError:  # the shell went away (or gave up on us) while we started
        os._exit(0)
    if spare_runtime is not None:
        server.start_spares(spare_runtime)
    server.serve()


#: The zygote fork_zygote started (pid, the shell's end of the control socket as a file
#: descriptor), until the first ``forkserver.Zygote.instance()`` adopts it (take_forked).
_forked: "tuple[int, int] | None" = None


def take_forked() -> "tuple[int, int] | None":
    """The zygote fork_zygote started and nobody adopted yet (then None from now on)."""
    global _forked
    forked, _forked = _forked, None
    return forked


def fork_zygote(preload: str = "") -> None:
    """Start the zygote by forking the calling process: the first ``Zygote.instance()``
    adopts it (see take_forked).  ``preload``: the runtimes it imports at once, comma
    separated (empty: the default runtime; see zygote_main).

    Only for a process that has **one thread** (the CLI at start-up, before the engine):
    a fork copies the calling thread only, and a lock held by another one would stay held in
    the child for ever.  It costs ~2 ms, and the child already has Python running and much
    of what it imports, where a fresh interpreter (``Zygote()``) needs 30-50 ms to be ready.
    The child becomes exactly what ``python -m bioxen_shell.vm.zygote`` is: its own session,
    ``/`` as its directory, stdin from /dev/null, no descriptor but 0-2 and the socket."""
    shell_pid = os.getpid()
    # The C module, not socket.py: this runs on the shell's start-up path, and socket.py's
    # import costs ~3 ms there.  The ends are plain descriptors from here on.
    import _socket

    parent, child = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # the zygote: never returns into the shell's code
        status = 1
        try:
            parent.close()
            os.setsid()
            os.chdir("/")
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            keep = child.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, _max_fd())
            zygote_main([str(keep), str(shell_pid), preload])
            status = 0
        except BaseException:
            try:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(status)
        os._exit(status)
    child.close()
    global _forked
    if _forked is not None:  # forked twice without an adoption between: keep the new one
        os.close(_forked[1])
    _forked = (pid, parent.detach())



if __name__ == "__main__":
    zygote_main(sys.argv[1:])
