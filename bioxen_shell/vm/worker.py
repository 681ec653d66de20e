"""The lupa worker: runs the bioxen agent (lua/bioxen/agent.lua) in a lupa LuaRuntime.

A local VM is a worker process.  The host side forks it (from a zygote) and calls
:func:`run_worker` in the child; by hand it is::

    python -m bioxen_shell.vm.worker --runtime lua54 --in-fd 3 --out-fd 4 [--max-memory BYTES]

The agent speaks the protocol itself, reading and writing the two descriptors with Lua's own
``io`` library (it opens ``/dev/fd/N``, so they must be pipes, FIFOs or files, not
sockets).  No request data ever crosses into Python, which keeps clear of lupa's
``max_memory`` hazards (pushing a big Python value into a limited runtime aborts the process).

Python is made unreachable from Lua: the runtime is created without ``python.eval`` and
``python.builtins``, every attribute access on a Python object is refused, and the
``python`` module is removed from the globals, ``package.loaded`` and the registry.  The
only Python object Lua ever holds is one function the agent captures into a local before
user code runs:

``BIOXEN_HOST_SET_MEMORY(x)``, which switches the user memory limit on and off around each
call (see :class:`_MemorySwitch`).  Interrupts need no Python at all: SIGINT makes the
file given to the agent as ``--interrupt-file`` grow (``signal.set_wakeup_fd``), and the
agent's count hook watches its size.
"""
from __future__ import annotations

import os
import signal
import sys

__all__ = ["run_worker", "PreparedAgent", "load_runtime_module", "agent_path", "main"]

# A runtime created without max_memory cannot get one later, so workers always have one;
# "no limit" is this (far above anything the machine has).
_UNLIMITED = 1 << 50


def load_runtime_module(name: str):
    """The lupa module of runtime ``name`` (any name or alias of :mod:`bioxen_shell.runtimes`)."""
    from bioxen_shell.runtimes import load_lupa

    return load_lupa(name)


def agent_path() -> str:
    """Where ``agent.lua`` is (a string: the zygote imports no pathlib, see paths.py)."""
    from bioxen_shell.paths import resource_path

    return os.path.join(resource_path("lua"), "bioxen", "agent.lua")


def _deny_attribute(obj, name, is_setting):
    raise AttributeError("Python objects are not accessible from a bioxen VM")


class _MemorySwitch:
    """``BIOXEN_HOST_SET_MEMORY``: the one Python function the agent holds.

    ``True``/``False`` switch the user limit on and off around each call, so the agent's own
    reading, decoding and encoding is never limited.  A number sets the limit (bytes), once:
    later numbers are refused.  ``"used"`` returns the bytes the runtime holds, as the limit
    counts them (on Lua 5.5 big strings are not in ``collectgarbage("count")``), ``"limit"``
    the limit (0: none, and then the agent stops switching it).

    Only the agent can reach it: it is handed over as a global the agent takes into a local
    and removes before any user code runs, and outside the sandbox the agent closes its own
    functions and frames to ``debug`` (docs/agent.md).
    """

    def __init__(self, runtime) -> None:
        self._runtime = runtime
        self._limit = 0        # 0: none (until fix() or configure sets one)
        self._fixed = False

    def fix(self, max_memory: int | None) -> None:
        """The limit the worker was started with (the profile's): configure cannot change it."""
        if max_memory:
            self._limit = int(max_memory)
            self._fixed = True

    def __call__(self, value) -> int | None:
        if value == "limit":
            return self._limit
        if value == "used":
            return self._runtime.get_memory_used() or 0
        if value is True:
            if self._limit:
                self._runtime.set_max_memory(self._limit)
        elif value is False:
            self._runtime.set_max_memory(_UNLIMITED)
        elif not self._fixed and isinstance(value, (int, float)) and value > 0:
            self._limit = int(value)
            self._fixed = True


def _interrupt_file() -> int:
    """An unlinked file that grows by one byte per SIGINT, for the agent's hook to watch.

    Python's C-level signal handler writes to the wakeup fd the moment the signal arrives,
    even while Lua runs and no Python code gets a chance to; the agent's count hook sees the
    file grow (a cheap ``seek``) and stops the call.
    """
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    try:  # born unlinked (Linux); tempfile is not imported where this works
        fd = os.open(shm or "/tmp", os.O_TMPFILE | os.O_RDWR, 0o600)
    except (AttributeError, OSError):
        import tempfile

        fd, path = tempfile.mkstemp(prefix="bioxen-interrupt-", dir=shm)
        os.unlink(path)
    os.set_blocking(fd, False)
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    signal.siginterrupt(signal.SIGINT, False)  # the agent's blocking reads must not see EINTR
    return fd


_BOOT = """
local agent_path, lua_path = ...
package.path = lua_path
-- Nothing of Python stays reachable by name: not the module, not through require or the
-- registry.
python = nil
package.loaded.python = nil
package.preload.python = nil
local reg = debug.getregistry()
for _, key in ipairs({"python", "eval", "builtins"}) do reg[key] = nil end
local chunk = assert(loadfile(agent_path))
return chunk(select(3, ...))
"""


class PreparedAgent:
    """A LuaRuntime with the agent loaded but not yet started.

    The zygote makes one per runtime and forks every local VM from it, so a new worker finds
    the agent's code compiled and its modules loaded (about 6 ms of work, paid once instead
    of once per VM); the worker then only starts it on its own descriptors (:meth:`run`).
    Nothing the agent loads depends on the process it will run in: its channel, interrupt
    file, limits and signal handlers are all set up by :meth:`run`, in the worker.
    """

    def __init__(self, runtime: str, lua_path: str | None = None) -> None:
        from bioxen_shell.paths import lua_search_path

        module = load_runtime_module(runtime)
        self.lua = module.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            attribute_filter=_deny_attribute,
            max_memory=_UNLIMITED,
        )
        boot = self.lua.execute("return function(...) " + _BOOT + " end")
        # A global, not an argument: no frame of the boot function holds it (the agent takes it
        # into a local and removes the global before user code runs).
        self._memory = _MemorySwitch(self.lua)
        self.lua.globals()["BIOXEN_HOST_SET_MEMORY"] = self._memory
        # "--defer": the agent returns its main function instead of running it.
        self._start = boot(str(agent_path()), lua_path or lua_search_path(), "--defer")
        # Lua 5.4+ seeds math.random once per state, from the clock and an address: every
        # fork of this state would draw the same numbers.  (5.1-5.3 use C's rand(), and
        # LuaJIT its own generator, both with a fixed seed in any fresh process, as before.)
        self._reseed = self.lua.eval("_VERSION") not in ("Lua 5.1", "Lua 5.2", "Lua 5.3") and \
            not self.lua.eval("jit ~= nil")

    def collect_garbage(self) -> None:
        """A full collection of the agent's Lua state (see zygote._own_memory_now)."""
        self.lua.execute("collectgarbage('collect')")

    def run(self, *, in_fd: int, out_fd: int, max_memory: int | None = None,
            interrupt_file: str | None = None) -> int:
        """Serve the protocol on ``in_fd``/``out_fd`` until ``exit`` or end of input (once)."""
        self._memory.fix(max_memory)
        if self._reseed:
            seed = int.from_bytes(os.urandom(12), "little")
            self.lua.execute("math.randomseed(...)", seed & (2**52 - 1), seed >> 52)
        args = [f"--in=/dev/fd/{in_fd}", f"--out=/dev/fd/{out_fd}"]
        if interrupt_file is None:
            args.append(f"--interrupt-file=/dev/fd/{_interrupt_file()}")
        else:
            args.append(f"--interrupt-file={interrupt_file}")
        return int(self._start(*args) or 0)


def run_worker(
    runtime: str,
    *,
    in_fd: int,
    out_fd: int,
    max_memory: int | None = None,
    lua_path: str | None = None,
    interrupt_file: str | None = None,
) -> int:
    """Run the agent on ``in_fd``/``out_fd`` until ``exit`` or end of input; returns the status.

    ``max_memory`` (bytes) is a hard limit on what user code may allocate; the agent's own
    work is not counted.  Without it, ``configure.memory_limit`` (KiB) sets the limit.
    """
    return PreparedAgent(runtime, lua_path).run(in_fd=in_fd, out_fd=out_fd, max_memory=max_memory,
                                               interrupt_file=interrupt_file)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bioxen_shell.vm.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--runtime", default="lua54", help="lua51 … lua55, luajit (default lua54)")
    parser.add_argument("--in-fd", type=int, default=0, help="descriptor the requests arrive on (default 0)")
    parser.add_argument("--out-fd", type=int, default=1, help="descriptor the frames go to (default 1)")
    parser.add_argument("--max-memory", type=int, default=None, help="memory limit for user code, bytes")
    parser.add_argument("--interrupt-file", default=None, help="a file whose growth means 'interrupt'")
    opts = parser.parse_args(argv)
    if opts.out_fd == 1:
        # Keep fd 1 for the protocol only; stray writes (os.execute children) go to stderr.
        out_fd = os.dup(1)
        os.dup2(2, 1)
    else:
        out_fd = opts.out_fd
    return run_worker(
        opts.runtime,
        in_fd=opts.in_fd,
        out_fd=out_fd,
        max_memory=opts.max_memory,
        interrupt_file=opts.interrupt_file,
    )


if __name__ == "__main__":
    sys.exit(main())
