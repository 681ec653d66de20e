"""The shell extension that gives Lua the ``vm`` table, ``:vms``, ``:attach`` and ``:detach``.

``install(engine)`` (called by ``bioxen_shell.engine`` for every Lua state it starts) is
cheap — the VM machinery is imported on the first ``vm`` call — and:

* hands ``lua/bioxen/vm.lua`` a table of host functions (this module's :class:`Host`, behind a
  lazy proxy) and sets the global ``vm`` to the API it returns; the :class:`Host` owns a
  :class:`~bioxen_shell.vm.manager.Manager` whose VMs print through the shell's output and
  notice the shell's Ctrl-C (``engine.interrupted()``);
* registers the meta-commands (``lua/bioxen/vm_commands.lua``), a toolbar segment, and a close
  hook that destroys every VM when the shell closes, resets or switches runtime.

The host functions take and return Lua strings (``bytes``; the engine runs with
``encoding=None``).  Values travel encoded with ``bioxen.wire`` so Lua integers, floats and
byte strings keep their exact types; this side splices them into requests without decoding.
Every host function returns ``(true, …)`` or ``(false, kind, message, traceback)`` (the
engine unpacks tuples), so Lua raises clean errors with the VM-side ``chunk:line:`` message.
"""
from __future__ import annotations

import atexit
import itertools
import os
import threading
TYPE_CHECKING = False  # not `typing`: this module loads at every shell start (~2.5 ms saved)
if TYPE_CHECKING:  # the VM machinery is imported on first use, not at shell start
    from typing import Any, Callable

    from .handle import VMHandle
    from .manager import Manager

__all__ = ["install", "Host", "format_vms_table", "HOST_FUNCTIONS"]

_live_managers: "set[Manager]" = set()  # destroyed at exit; dropped when their shell closes

#: The host functions bioxen.vm and bioxen.vm_commands call (``Host.lua_<name>``).
HOST_FUNCTIONS = ("create", "eval", "call", "set", "get", "require", "info", "stop", "restart",
                  "destroy", "send", "recv", "pending", "list", "lookup", "destroy_all", "map", "cpus",
                  "complete", "interrupt", "vms_table", "summary", "status", "protocol_error",
                  "repl", "is_complete")


def _load_vm_machinery() -> None:
    """Import what :class:`Host` uses.  Done on the first ``vm`` call, not at shell start."""
    global protocol, VMError, run_map, split_list, status_summary
    from . import protocol
    from .errors import VMError
    from .manager import status_summary
    from .mapper import run_map, split_list


def warm_up() -> None:
    """Get VMs ready to start before the shell needs them (run in a background thread by a
    shell whose code mentions ``vm``, see cli.py): import the VM machinery, warm the
    user-directory lookups and read the default profile, then wait for the zygote that cli.py
    forked to be ready.  Everything here would otherwise happen on the first ``vm`` call;
    errors are left for that call."""
    try:
        _load_vm_machinery()
        from . import local, manager  # noqa: F401  (imported for their cost, not their names)
        from .. import paths

        paths.lua_search_path()
        paths.config_dir()
        # The default profile: the first vm.create reads it, and its TOML parser's imports
        # alone cost ~7 ms (a second read of the file costs 0.5 ms).
        from .profiles import load_profile

        load_profile(None)
        from .forkserver import Zygote

        Zygote.instance()
    except Exception:
        pass


def _text(b: Any) -> str:
    if isinstance(b, bytes):
        return b.decode("utf-8", "replace")
    return str(b)


def _failure(exc: BaseException) -> tuple:
    from .errors import VMError

    if isinstance(exc, VMError):
        return (False, exc.kind.encode(), exc.message.encode(), exc.traceback.encode())
    if isinstance(exc, KeyError):
        return (False, b"error", _text(exc.args[0] if exc.args else exc).encode(), b"")
    return (False, b"error", str(exc).encode(), b"")


class Host:
    """The functions ``bioxen.vm`` calls.  Handles are named by an integer id (``uid``) so a
    Lua handle never silently points at a different VM that got the same name later."""

    def __init__(self, manager: "Manager", write: Callable[[bytes], None],
                 table_from: Callable[[list], Any] | None = None) -> None:
        self.manager = manager
        self.write = write
        #: makes a Lua table of a list (the engine's ``lua.table_from``): reply blobs for Lua
        self.table_from = table_from
        self._uids: dict[int, VMHandle] = {}
        self._uid_of: dict[int, int] = {}  # id(handle) -> uid
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    # -- handles ---------------------------------------------------------------------

    def _uid(self, h: "VMHandle") -> int:
        with self._lock:
            uid = self._uid_of.get(id(h))
            if uid is None or self._uids.get(uid) is not h:
                uid = next(self._counter)
                self._uids[uid] = h
                self._uid_of[id(h)] = uid
            return uid

    def _handle(self, uid: int) -> "VMHandle":
        from .errors import VMError

        h = self._uids.get(uid)
        if h is None:
            raise VMError("this VM was destroyed", kind="state")
        if h.status == "destroyed":
            raise VMError(f"{h.name}: VM is destroyed", kind="state", vm=h.name)
        return h

    def _refs(self, handles: list["VMHandle"]) -> bytes:
        return protocol.encode([{"uid": self._uid(h), "name": h.name} for h in handles])

    # -- functions called from Lua ------------------------------------------------------


    def lua_create(self, opts: bytes) -> tuple:
        options = protocol.decode(opts) or {}
        if isinstance(options, list):
            raise VMError("vm.create: expected a table of options like {name='w1', profile='standard'}", kind="error")
        options = {str(k): v for k, v in options.items()}
        count = options.get("count")
        progress = None
        bar = None
        from .manager import check_count

        check_count(count)  # before anything is made for it (a progress bar of 1e9 steps…)
        if count is not None and isinstance(count, int) and count > 1:
            from .progress import Progress

            bar = Progress(count, "vm.create")
            progress = bar.set
        try:
            created = self.manager.create(progress=progress, **options)
        except TypeError as exc:
            from .manager import VMCreateError

            raise VMCreateError(str(exc)) from None
        finally:
            if bar is not None:
                bar.close()
        handles = created if isinstance(created, list) else [created]
        return (True, self._refs(handles), count is not None)

    # Values cross as bioxen.wire encodings plus their blobs (docs/protocol.md, "Blobs"): a
    # Lua table of big strings, each turned into bytes by lupa (one copy, the one a Lua
    # string -> Python crossing costs) and written as a B frame from that object.  Results go
    # back as (payload, where the values start, blobs): lupa makes a Lua string of each bytes
    # object (again one copy) and the Lua decoder takes them from there.

    def _results(self, res: Any) -> tuple:
        if res.reply is None:
            return (True, protocol.EMPTY_LIST)
        blobs = res.blobs
        if blobs:
            blobs = self.table_from(blobs) if self.table_from is not None else None
            if blobs is None:  # no Lua at hand to make the table: one piece instead
                return (True, protocol.inline_blobs(res.reply, res.start, len(res.reply) - 1, res.blobs))
        return (True, res.reply, res.start + 1, blobs, res.end + 1)

    def lua_eval(self, uid: int, code: bytes, args: bytes, chunkname: bytes | None, blobs: Any = None) -> tuple:
        h = self._handle(uid)
        fields = {"code": code, "chunkname": chunkname or b"=" + h.name.encode()}
        return self._results(h.request_lua("eval", fields, {"args": args}, _blob_list(blobs)))

    def lua_call(self, uid: int, fname: bytes, args: bytes, blobs: Any = None) -> tuple:
        return self._results(self._handle(uid).request_lua("call", {"fn": fname}, {"args": args}, _blob_list(blobs)))

    def lua_set(self, uid: int, name: bytes, value: bytes, blobs: Any = None) -> tuple:
        return self._results(self._handle(uid).request_lua("set", {"name": name}, {"value": value}, _blob_list(blobs)))

    def lua_get(self, uid: int, name: bytes) -> tuple:
        return self._results(self._handle(uid).request_lua("get", {"name": name}))

    def lua_require(self, uid: int, module: bytes) -> tuple:
        # (a module of functions: the agent answers true)
        return self._results(self._handle(uid).request_lua("require", {"module": module}))

    def lua_info(self, uid: int) -> tuple:
        return (True, protocol.encode(_lua_info(self._uids[uid].info() if uid in self._uids else {})))

    def lua_status(self, uid: int) -> tuple:
        h = self._uids.get(uid)
        return (True, (h.current_status() if h else "destroyed").encode())

    def lua_stop(self, uid: int) -> tuple:
        self._handle(uid).stop()
        return (True,)

    def lua_restart(self, uid: int) -> tuple:
        self._handle(uid).restart()
        return (True,)

    def lua_destroy(self, uid: int) -> tuple:
        h = self._uids.get(uid)
        if h is not None and h.status != "destroyed":
            try:
                self.manager.destroy(h.name) if self.manager.get(h.name) is h else h.destroy()
            finally:
                self.manager.forget(h)
        self._prune()
        return (True,)

    def _prune(self) -> None:
        """Forget destroyed handles (a Lua object left pointing at one gets "destroyed")."""
        with self._lock:
            for uid, h in list(self._uids.items()):
                if h.status == "destroyed":
                    del self._uids[uid]
                    self._uid_of.pop(id(h), None)

    def lua_send(self, uid: int, code: bytes, args: bytes, chunkname: bytes | None, blobs: Any = None) -> tuple:
        h = self._handle(uid)
        fields = {"code": code, "chunkname": chunkname or b"=" + h.name.encode()}
        return (True, h.send_request("eval", fields, {"args": args}, _blob_list(blobs)))

    def lua_recv(self, uid: int, timeout: float | None) -> tuple:
        # What the send printed goes to the shell's output as it arrives (and what came while
        # nobody waited, from where the handle kept it): never all of it in memory at once.
        res = self._handle(uid).recv(timeout, decode="lua", on_output=self.write)
        if res is None:
            return (True, None)
        return self._results(res)

    def lua_protocol_error(self, uid: int, message: bytes) -> tuple:
        """The Lua side could not decode a reply's values: the VM broke the protocol."""
        h = self._uids.get(uid)
        if h is None:
            return (False, b"protocol", b"protocol error: " + message, b"")
        err = h.protocol_error(f"the values of a reply cannot be decoded: {_text(message)}")
        return _failure(err)

    def lua_pending(self, uid: int) -> tuple:
        return (True, self._handle(uid).pending)

    def lua_list(self) -> tuple:
        return (True, self._refs(self.manager.list()))

    def lua_lookup(self, name: bytes) -> tuple:
        h = self.manager.get(_text(name))
        return (True, self._refs([h]) if h is not None else None)

    def lua_destroy_all(self) -> tuple:
        errors = self.manager.destroy_all()
        self._prune()
        if errors:
            raise VMError("vm.destroy_all: " + "; ".join(errors), kind="error")
        return (True,)

    def lua_map(self, source: bytes, chunkname: bytes, first_line: int, items: bytes, opts: bytes,
                on_result: Any = None, args: bytes | None = None) -> tuple:
        """``on_result``: a Lua function(i, encoded_value) called in order as results arrive
        (the streaming form); the results list is then not built.  ``args``: the encoded list
        of values passed after each item."""
        options = protocol.decode(opts) or {}
        if isinstance(options, list):
            options = {}
        vms_opt = options.pop("vms", None)
        pool_uids = options.pop("pool", None)
        progress = options.pop("progress", None)
        stage = options.pop("stage", True) is not False
        if pool_uids is not None:
            vms: Any = [self._handle(int(u)) for u in (pool_uids if isinstance(pool_uids, list) else [])]
        else:
            vms = vms_opt
        res = run_map(self.manager, _text(source), split_list(items), chunkname=_text(chunkname),
                      first_line=int(first_line or 1), vms=vms, create_options=options,
                      progress=progress, interrupted=self.manager.interrupted,
                      on_result=on_result, stage=stage,
                      extra_args=split_list(args, what="option 'args'") if args else None)
        return (True, None if on_result else res.encoded_results(),
                res.encoded_failures() if res.failures else None)

    def lua_cpus(self) -> tuple:
        return (True, os.cpu_count() or 1)

    def lua_complete(self, uid: int, text: bytes) -> tuple:
        return (True, protocol.encode(self._handle(uid).complete(_text(text))))

    # An attached shell (:attach, lua/bioxen/vm_commands.lua): its lines run in the VM's REPL
    # session (the agent's repl request, bioxen.runner.session), and the VM's own Lua judges
    # whether a line typed so far is complete.

    def lua_repl(self, uid: int, code: bytes, options: bytes) -> tuple:
        return self._results(self._handle(uid).request_lua("repl", {"code": code}, {"options": options}))

    def lua_is_complete(self, uid: int, code: bytes, indent: int) -> tuple:
        h = self._handle(uid)
        if h.status != "running":  # busy with a call sent earlier: the shell judges, never waits
            return (False, b"busy", f"VM {h.name} is {h.status}".encode(), b"")
        return self._results(self._handle(uid).request_lua("is_complete", {"code": code, "indent": int(indent)}))

    def lua_interrupt(self, uid: int) -> tuple:
        self._handle(uid).interrupt()
        return (True,)

    def lua_vms_table(self) -> tuple:
        return (True, format_vms_table(self.manager.list()).encode())

    def lua_summary(self) -> tuple:
        return (True, status_summary(self.manager.list()).encode())


def _blob_list(blobs: Any) -> list | None:
    """A Lua array of big strings (from bioxen.vm) as a list of buffers to write, or None.

    On LuaJIT, ``blobs.at`` says where each string's bytes are (address, size): each becomes a
    view of the Lua string's own memory, written to the VM without being copied (100 MB in:
    ~0.6 → ~1 GB/s).  The views hold only while the Lua call that passed them runs; the
    request is written before it returns, and nothing keeps them.  Elsewhere each string is
    copied into ``bytes``, as lupa converts any Lua string."""
    if blobs is None:
        return None
    at = blobs[b"at"]
    if at is None:
        return [blobs[i] for i in range(1, len(blobs) + 1)]
    import ctypes  # only for a string of at least protocol.BLOB_THRESHOLD, and only on LuaJIT

    return [memoryview((ctypes.c_char * int(at[2 * i])).from_address(int(at[2 * i - 1]))).cast("B")
            for i in range(1, len(blobs) + 1)]


def _lua_info(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# =========================================================================== :vms

_COLUMNS = ("NAME", "TYPE", "PROFILE", "RUNTIME", "STATUS", "CREATED", "UPTIME", "PID/HOST")


def format_vms_table(handles: list["VMHandle"]) -> str:
    """The ``:vms`` table plus its summary line."""
    from .manager import format_age, format_created, status_summary

    if not handles:
        return "no VMs (create one with vm.create{name='w1'})"
    rows = [_COLUMNS]
    for h in handles:
        d = h.describe()
        where = str(d.get("host") or d.get("pid") or "-")
        if d.get("host") and d.get("pid"):
            where = f"{d['host']} ({d['pid']})"
        if d.get("template"):
            where += f" [{d['template']}]"
        if d.get("job"):  # slurm: job.step, its state, node and the agent's pid there
            where = f"job {d['job']}" + (f".{d['step']}" if d.get("step") not in (None, "-") else "")
            where += f" {d['state']}" if d.get("state") else ""
            where += f" on {d['node']}" if d.get("node") else ""
            where += f" ({d['pid']})" if d.get("pid") else ""
        status = d["status"]
        if d.get("exit_reason") and status in ("crashed", "lost", "stopped"):
            status += f" ({d['exit_reason']})"
        runtime = d.get("interpreter") or d.get("runtime") or "-"  # remote: the binary found there
        rows.append((
            d["name"], d["type"], d.get("profile") or "-", str(runtime), status,
            format_created(d["created"]), format_age(d["uptime"]) if d["uptime"] else "-", where,
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(status_summary(handles))
    return "\n".join(lines)


# =========================================================================== install

class _LazyHost:
    """What ``install`` hands to Lua: the host functions, with the VM machinery (manager,
    handle, codec) imported and created on the first call, so a shell that never touches
    ``vm`` pays nothing for it."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.host: Host | None = None
        self._lock = threading.Lock()

    def get(self) -> Host:
        host = self.host
        if host is None:
            with self._lock:
                if self.host is None:
                    _load_vm_machinery()
                    from .manager import Manager

                    manager = Manager(on_output=self.engine.write, interrupted=self.engine.interrupted)
                    _live_managers.add(manager)
                    self.host = Host(manager, self.engine.write, self.engine.lua.table_from)
                host = self.host
        return host

    #: answers while no VM was ever created, without loading the VM machinery (or, for
    #: ``list``, only the codec, for the empty list)
    _IDLE_ANSWERS: dict[str, Callable[[], tuple]] = {
        "vms_table": lambda: (True, b"no VMs (create one with vm.create{name='w1'})"),
        "summary": lambda: (True, b"no VMs"),
        "list": lambda: (True, __import__("bioxen_shell.vm.protocol.codec", fromlist=["EMPTY_LIST"]).EMPTY_LIST),
        "destroy_all": lambda: (True,),
    }

    def function(self, name: str) -> Callable:
        method = "lua_" + name
        idle = self._IDLE_ANSWERS.get(name)

        def call(*args: Any) -> tuple:
            if idle is not None and self.host is None:
                return idle()
            try:
                return getattr(self.get(), method)(*args)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # every failure must reach Lua as a clean error
                return _failure(exc)

        call.__name__ = method
        return call

    def toolbar(self) -> str | None:
        if self.host is None:
            return None
        from .manager import status_summary

        handles = self.host.manager.list()
        return status_summary(handles) if handles else None

    def close(self) -> None:
        if self.host is not None:
            _close(self.host.manager)


def install(engine: Any) -> None:
    """Engine extension entry point (see docs/extending.md): cheap, nothing heavy imported."""
    lazy = _LazyHost(engine)
    host_table = engine.lua.table_from({n.encode(): lazy.function(n) for n in HOST_FUNCTIONS})
    api = engine.require("bioxen.vm")[b"bind"](host_table)
    engine.set_global("vm", api)
    engine.require("bioxen.vm_commands")[b"install"](api, host_table)
    engine.add_status(lazy.toolbar)
    engine.on_close(lazy.close)
    engine.vm_host = lazy  # for tests and the Python side of the REPL


def _close(manager: "Manager") -> None:
    errors = manager.destroy_all()
    _live_managers.discard(manager)
    if errors:
        raise RuntimeError("some VMs could not be destroyed: " + "; ".join(errors))


@atexit.register
def _destroy_everything_at_exit() -> None:
    # The zygote kills workers when the shell dies anyway; this is the orderly path that also
    # shuts remote VMs down.
    for manager in list(_live_managers):
        try:
            manager.destroy_all()
        except Exception:
            pass
