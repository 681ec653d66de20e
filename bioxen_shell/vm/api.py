"""The Python API: the same VMs the shell's ``vm`` table makes, for Python programs.

::

    from bioxen_shell import VMManager, create_vm

    with VMManager() as manager:                       # every VM is destroyed on exit
        vm = manager.create_vm("w1", config={"profile": "bioinformatics"})
        vm.eval("return 1 + 1")                        # [2]
        manager.execute_string("w1", "print('hi') return 42")
        # {'stdout': 'hi\\n', 'stderr': '', 'values': [42], 'success': True, 'return_code': 0, 'error': None}
        manager.send_input("w1", "x = 10")             # runs in the background; returns its request id
        manager.send_input("w1", "return x * 2")
        manager.read_output("w1", timeout=1.0)         # '20\\n'

The names follow the prior art (``pylua_bioxen_vm_lib``: ``create_vm``, ``VMManager``,
``execute_string``, ``send_input``/``read_output``, ``attach_to_vm``) so its users find their
way, but every call here does what it says: VMs are persistent processes, ``execute_string``
returns the chunk's values as well as its output, interactive input is framed (no PTY echo or
prompts), and errors carry the VM-side ``chunk:line:`` message.
"""
from __future__ import annotations

import atexit
import threading
import time
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any, Callable

from .errors import VMError
from .handle import VMHandle
from .pending import Result
from .manager import Manager
from .mapper import run_map, split_list
from . import protocol

__all__ = ["VMManager", "create_vm", "default_manager", "format_values"]

#: prior-art type names that mean a local VM
_TYPE_ALIASES = {"basic": "local", "lua": "local", "xcp-ng": "xcpng"}


def format_values(values: list) -> str:
    """Values as Lua's REPL prints them: tab separated, strings as they are."""
    def one(v: Any) -> str:
        if v is None:
            return "nil"
        if v is True:
            return "true"
        if v is False:
            return "false"
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
            return f"{v:.1f}"
        return str(v)

    return "\t".join(one(v) for v in values)


class VMManager(Manager):
    """A set of VMs with the prior art's method names.  Use it as a context manager."""

    def __init__(self, max_workers: int | None = None, *,
                 on_output: Callable[[bytes], None] | None = None, **_legacy: Any) -> None:
        # max_workers and the prior art's lua_executable/debug_mode are accepted and unused:
        # VMs are processes, not thread-pool jobs, and the interpreter comes from the profile.
        super().__init__(on_output=on_output)
        self._interactive: dict[str, list[str]] = {}
        #: attach_to_vm's callbacks (bytes in), by VM name: where send_input output goes too
        self._attached: dict[str, Callable[[bytes], None]] = {}

    # -- creation and lookup ------------------------------------------------------------

    def create_vm(self, vm_id: str | None = None, vm_type: str = "local",
                  config: dict[str, Any] | None = None, **options: Any) -> VMHandle:
        """Create and start a VM.  ``config`` holds ``profile``, ``runtime`` and backend options
        (``host``, ``user``… for ssh; pool and template for xcpng)."""
        opts = dict(config or {})
        opts.update(options)
        for legacy in ("networked", "persistent", "debug_mode", "lua_executable"):
            opts.pop(legacy, None)
        kind = _TYPE_ALIASES.get(vm_type, vm_type)
        handle = self.create(vm_id, type=kind, **opts)
        assert isinstance(handle, VMHandle)
        return handle

    def get_vm(self, vm_id: str) -> VMHandle:
        handle = self.get(vm_id)
        if handle is None:
            raise KeyError(f"no VM named {vm_id!r} (VMs: {', '.join(self.names()) or 'none'})")
        return handle

    def list_vms(self) -> list[str]:
        return self.names()

    def remove_vm(self, vm_id: str) -> None:
        """Destroy the VM and free its name (it can be created again)."""
        self.destroy(vm_id)
        self._interactive.pop(vm_id, None)
        self._attached.pop(vm_id, None)

    def get_vm_info(self, vm_id: str) -> dict[str, Any]:
        return self.get_vm(vm_id).info()

    # -- running code -------------------------------------------------------------------

    def execute_string(self, vm_id: str, code: str, timeout: float | None = None) -> dict[str, Any]:
        """Run ``code`` in VM ``vm_id``; see :meth:`VMHandle.execute_string`."""
        return self.get_vm(vm_id).execute_string(code, timeout=timeout)

    def map(self, function_source: str, items: list, *, vms: int | list[VMHandle] | None = None,
            args: tuple | list = (), on_result: Callable[[int, Any], None] | None = None,
            stage: bool = True, **create_options: Any) -> tuple[list, list[tuple[int, str]]]:
        """``vm.map`` for Python: run a Lua function (source text) over ``items``.
        Returns ``(results, failures)``; failures are ``(index, message)`` with 1-based indexes.
        ``args`` are passed to every call after the item; ``on_result(i, value)`` receives the
        results in order as they arrive (then ``results`` is empty); ``stage=False``: shard
        paths already exist on remote hosts (docs/vms.md)."""
        deliver = (lambda i, encoded: on_result(i, protocol.decode(encoded))) if on_result else None
        res = run_map(self, function_source, split_list(protocol.encode(list(items))), vms=vms,
                      create_options=create_options, progress=False, on_result=deliver, stage=stage,
                      extra_args=[protocol.encode(a) for a in args])
        return res.values(), res.failures

    # -- interactive sessions (prior art: send_input / read_output) -------------------

    def send_input(self, vm_id: str, text: str) -> int:
        """Start running ``text`` (one chunk) in the VM without waiting; returns the request id.
        Its output and values come back, in order, from :meth:`read_output`."""
        return self.get_vm(vm_id).send(text, chunkname=f"={vm_id}")

    def read_output(self, vm_id: str, timeout: float = 0.1) -> str:
        """Output and results of the inputs that finished, as a REPL shows them.

        Collects, in order, every input that finishes within ``timeout`` seconds (returning as
        soon as none is pending).  Errors appear as ``error: <message>`` lines.  While the VM
        is attached (:meth:`attach_to_vm`), what the inputs print goes to the callback instead,
        as it arrives, and the text returned holds their values and errors only.
        """
        handle = self.get_vm(vm_id)
        stream = self._attached.get(vm_id)
        parts: list[str] = []
        deadline = time.monotonic() + timeout
        while handle.pending:
            try:
                res = handle.recv(max(0.0, deadline - time.monotonic()), on_output=stream)
            except VMError as exc:
                parts.append(exc.output.decode("utf-8", "replace"))
                parts.append(f"error: {exc.message}\n")
                continue
            if res is None:
                break
            parts.append(res.output.decode("utf-8", "replace"))
            if res.values:
                parts.append(format_values(res.values) + "\n")
        return "".join(parts)

    def attach_to_vm(self, vm_id: str, output_callback: Callable[[str], None] | None = None) -> VMHandle:
        """Stream the VM's printed output to ``output_callback`` (text) as calls run: the calls
        made on the handle, and the inputs of :meth:`send_input` (as :meth:`read_output`
        collects them).  :meth:`execute_string` keeps its output in its ``stdout``."""
        handle = self.get_vm(vm_id)
        if output_callback is not None:
            import codecs

            # Output comes in pieces: a character cut between two stays whole.
            decoder = codecs.getincrementaldecoder("utf-8")("replace")

            def text(data: bytes) -> None:
                piece = decoder.decode(data)
                if piece:
                    output_callback(piece)

            handle.on_output = text
            self._attached[vm_id] = text
        return handle

    def detach_from_vm(self, vm_id: str) -> None:
        """Undo :meth:`attach_to_vm` (harmless when not attached)."""
        self._attached.pop(vm_id, None)
        handle = self.get(vm_id)
        if handle is not None:
            handle.on_output = self.on_output

    # -- teardown -------------------------------------------------------------------------

    def shutdown_all(self) -> None:
        """Destroy every VM; raises if one could not be released."""
        errors = self.destroy_all()
        if errors:
            raise VMError("some VMs could not be destroyed: " + "; ".join(errors), kind="state")

    def __enter__(self) -> "VMManager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown_all()


_default: VMManager | None = None
_default_lock = threading.Lock()


def default_manager() -> VMManager:
    """The process-wide manager behind :func:`create_vm` (its VMs are destroyed at exit)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = VMManager()
            atexit.register(_default.destroy_all)
        return _default


def create_vm(vm_id: str = "default", vm_type: str = "local", config: dict[str, Any] | None = None,
              **options: Any) -> VMHandle:
    """Create a VM in the process-wide manager (see :func:`default_manager`)."""
    return default_manager().create_vm(vm_id, vm_type, config, **options)


__all__ += ["Result"]
