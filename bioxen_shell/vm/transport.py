"""The backend interface: how the VM handle reaches an agent, wherever it runs.

A *backend* knows one kind of place (this machine, an SSH host, an XCP-ng guest).  It brings
the place up, starts ``lua/bioxen/agent.lua`` there and hands back an :class:`AgentProcess`:
a byte stream to that agent plus the few controls that differ between places (interrupt,
kill, why it ended).  Everything else (framing, the value codec, request ids, timeouts,
output streaming, crash reporting) is done once, for every backend, by
:class:`bioxen_shell.vm.handle.VMHandle`.  This is paramiko's split between a transport and
its channels, applied to VMs.

Lifecycle, as the handle drives it::

    backend = BackendClass(name, options, profile)   # cheap, no I/O
    proc = backend.start()          # place up + agent started; the agent's hello is NOT read yet
    ... proc.send(...) / proc.recv(...) ...          # the handle reads the hello, configures, runs requests
    proc.interrupt()                # Ctrl-C or call timeout: the agent answers kind="interrupted"
    proc.cpu_seconds()              # optional: the agent's CPU time, for the host's cpu_limit watch
    proc.kill(); proc.close()       # restart / stop / destroy / crash; also an agent that did not
                                    # answer an interrupt in time, after which the handle
                                    # calls backend.start() again (the VM is restarted)
    backend.stop()                  # the agent is gone; stop the place (xcpng: shut the guest down)
    proc = backend.start()          # :restart() after a crash or a stop
    backend.destroy()               # release everything (idempotent, never raises for "already gone")

Threading: a handle uses its ``AgentProcess`` from one thread at a time, except that
``interrupt()``, ``kill()`` and ``exit_reason()`` may be called from any thread while another
thread is blocked in ``recv`` (that is how Ctrl-C and call timeouts work).  ``kill()`` must make
a blocked ``recv`` return ``b""`` promptly.

Errors: ``send``/``recv`` raise :class:`TransportClosed` (or return ``b""`` from ``recv``) when
the agent is gone; the handle then asks ``exit_reason()`` and reports "VM crashed (signal 9)",
"VM exited (exit status 1)" or "VM lost (connection lost)".  ``start()`` raises
:class:`BackendError` with a message naming what failed (host, template, binary…).
"""
from __future__ import annotations

TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:  # pragma: no cover - typing only
    from typing import Any, Protocol

    from .profiles import Profile
else:  # the interfaces below are documentation at run time (nothing checks isinstance)
    Protocol = object

__all__ = [
    "AgentProcess",
    "Backend",
    "BackendError",
    "TransportError",
    "TransportClosed",
    "TransportTimeout",
    "describe_exit_status",
    "show_agent_stderr",
]


class TransportError(Exception):
    """Base class for failures of the byte stream to an agent."""


class TransportClosed(TransportError):
    """The agent's stream is closed (the agent exited, was killed, or the link dropped)."""


class TransportTimeout(TransportError):
    """``recv`` waited ``timeout`` seconds and no byte arrived.  The stream is still usable."""


class BackendError(Exception):
    """A backend could not bring its place up or start the agent there.

    The message is shown to the user as is: say what failed and where, e.g.
    ``"ssh: cannot connect to lab1:22 (Connection refused)"`` or
    ``"local: runtime 'lua99' is not one of lua51, lua52, lua53, lua54, lua55, luajit"``.
    Never include a secret (password, key material) in it.
    """


class AgentProcess(Protocol):
    """A running agent: a byte stream each way plus process controls.

    Frames, the codec and requests are the handle's business; an ``AgentProcess`` only
    moves bytes.  Implementations: ``bioxen_shell.vm.local.LocalAgentProcess`` (pipes to a
    forked worker), the SSH backend's channel wrapper, and Slurm steps (``remote.slurm``).
    """

    def send(self, data: bytes) -> None:
        """Write all of ``data`` to the agent's standard input (blocking until written).

        ``data`` may be large (a 100 MB string argument); write it in pieces as the stream
        allows.  Raise :class:`TransportClosed` if the agent is gone (EPIPE, channel closed).
        Never raise for a partial write: loop until everything is written.
        """
        ...

    def recv(self, max_bytes: int, timeout: float | None) -> bytes:
        """Return the next bytes the agent wrote to its standard output: 1..``max_bytes``.

        Return as soon as *some* bytes are available (do not wait to fill ``max_bytes``).
        ``timeout`` is in seconds; ``None`` waits forever, ``0`` polls.  Raise
        :class:`TransportTimeout` when nothing arrived in time.  Return ``b""`` at end of
        stream (the agent exited, was killed, or the connection dropped) — then and every
        time after.  The handle always passes a timeout (at most 50 ms: after each wait it
        looks at Ctrl-C, the call's deadline and a stall in the middle of a frame), so honour
        it exactly, also when a frame is half received.
        """
        ...

    def interrupt(self) -> None:
        """Deliver SIGINT to the agent (local: ``kill``; ssh: channel signal or ``kill -INT``).

        The agent answers the running request with ``kind="interrupted"`` and keeps serving.
        Harmless if no request is running.  Never raises for an agent that is already gone.
        """
        ...

    def kill(self) -> None:
        """Stop the agent hard (SIGKILL / close the channel).  Never raises.

        Afterwards ``recv`` returns ``b""`` promptly, also in a thread already blocked in it.
        """
        ...

    def exit_reason(self) -> str | None:
        """Why the agent ended, or ``None`` while it is (as far as known) still running.

        Exactly one of these forms, so messages read the same for every backend:
        ``"signal 9"``, ``"exit status 1"`` (``"exit status 0"`` for a clean exit),
        ``"connection lost"`` (remote link down, fate of the agent unknown).
        After ``recv`` returned ``b""`` the reason should be known within about a second;
        callers wait up to ``timeout`` seconds for it.
        """
        ...

    def describe(self) -> dict[str, Any]:
        """Facts for ``:vms`` and ``:info()``: at least ``{"type": …}``, plus ``"pid"`` (local)
        or ``"host"`` (remote, and ``"pid"`` when known).  No secrets."""
        ...

    def close(self) -> None:
        """Release the stream's resources (fds, channel).  Idempotent; kill first if alive."""
        ...

    # Optional: ``def recv_into(self, view: memoryview, timeout: float | None) -> int`` — like
    # ``recv`` but into ``view`` (at most its length; 0 at end of stream): the handle reads big
    # payloads straight into their buffer with it.  Local workers and SSH channels have it.

    # Optional: ``def cpu_seconds(self) -> float | None`` — the CPU time (user + system,
    # seconds) the agent's process has used so far, or ``None`` when it is not known (the
    # handle treats a missing method the same way).  Cheap (it is read every 50 ms while a
    # call with a ``cpu_limit`` waits), callable from the thread that waits on ``recv``, and
    # never raising.  With it, the handle enforces the profile's ``cpu_limit`` from the host
    # too: a call that used more than the limit (plus a small margin, so the agent's own count
    # hook, which keeps the VM, normally wins) is interrupted, and if the agent does not answer
    # within the grace period (a loop in JIT-compiled code the hook never sees) it is killed and
    # the VM restarted.  Local workers implement it from ``/proc/<pid>/stat``; remote backends
    # (ssh, xcpng) do not, and rely on the agent's hook.


class Backend(Protocol):
    """One kind of place where agents run.  Picked by ``vm.create{type=…}`` from
    ``bioxen_shell.vm.manager.BACKENDS`` (``"local"``, ``"ssh"``, ``"xcpng"``, ``"slurm"``).

    Constructor: ``Backend(name, options, profile)``

    * ``name`` — the VM's name (unique in the manager; use it to label remote resources).
    * ``options`` — the ``vm.create{…}`` table as a Python dict, **minus** the keys the
      manager consumes (``name``, ``profile``, ``type``, ``count``, ``runtime``), e.g.
      ``{"host": "lab1", "user": "me", "port": 22}``.  Reject an unknown key or a bad value with
      ``BackendError`` / ``ValueError`` naming the key and what was expected.
    * ``profile`` — the resolved :class:`bioxen_shell.vm.profiles.Profile`.  ``profile.runtime``
      is the *effective* runtime (``vm.create{runtime=…}`` already applied): one of ``"lua51"``,
      ``"lua52"``, ``"lua53"``, ``"lua54"``, ``"lua55"``, ``"luajit"``, or ``None`` when nobody
      asked for one (then: local → ``luajit``, or ``lua54`` where lupa lacks it; remote → the
      best interpreter found, luajit first).  Local
      workers use it as the lupa module; remote backends map it to an interpreter binary
      (``lua5.4``, ``luajit``) or raise ``BackendError`` if the place lacks it.  ``profile.memory_limit``
      (bytes, 0 = none) is applied inside the agent by the handle's ``configure``; a backend may
      add an OS backstop (local: RLIMIT_AS).

    The constructor must not do I/O; ``start()`` does.
    """

    kind: str  # "local" | "ssh" | "xcpng" | "slurm"

    def __init__(self, name: str, options: dict[str, Any], profile: "Profile") -> None: ...

    def start(self) -> AgentProcess:
        """Bring the place up if needed, start one agent there, return its stream.

        Do not read the agent's hello; the handle does.  Called again by ``:restart()``
        (after the previous ``AgentProcess`` was killed and closed).  Raise
        :class:`BackendError` on failure, leaving nothing behind that ``destroy()`` would not
        release.
        """
        ...

    def stop(self) -> None:
        """Called after the agent is gone (``:stop()``): stop the place but keep it for a later
        ``start()`` (local: nothing; xcpng: clean shutdown of the guest, hard fallback)."""
        ...

    def destroy(self) -> None:
        """Release everything this backend created (remote VMs, disks, sessions, uploaded
        files).  Idempotent; never raises for "already gone".  If something else cannot be
        released, raise ``BackendError`` naming what was left behind (never just log it)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Facts shown by ``:vms`` and ``:info()``: ``{"type": kind, "host": …, "template": …}``.
        No secrets.  Must work before ``start()`` and after ``destroy()``."""
        ...

    # Optional: ``def lost_detail(self) -> str | None`` — why bioxen ended the connection of the
    # agent that was lost ("the host did not answer 3 keepalives in 60 s …"), added to the
    # "VM lost (connection lost)" message; ``None`` when it just dropped.

    # Optional: ``def lua_path(self) -> str`` — ``package.path`` entries the agent's
    # ``configure`` puts before its own: where the profile's paths are at that place (local:
    # the directories themselves; SSH, XCP-ng, Slurm: "", their modules travel in the agent
    # bundle's lib/, already in the path).  Without it the handle sends the profile's
    # ``paths`` as they are (only right for a place that sees this machine's files).


def describe_exit_status(status: int) -> str:
    """Turn a ``waitpid`` status into the ``exit_reason`` wording ("signal 9", "exit status 1")."""
    import os

    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return f"status {status}"


def show_agent_stderr(data: bytes) -> None:
    """A remote agent's stderr — the VM's io.stderr, its stdout (moved there by the wrappers),
    and what os.execute children print — on this process's stderr, as a local VM's (which
    inherits the fd) is: the same output on every backend."""
    import os

    view = memoryview(data)
    try:
        while view:
            view = view[os.write(2, view):]
    except OSError:  # no stderr to write to: nothing to show it on
        pass
