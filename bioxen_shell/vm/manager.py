"""The VM manager: creates VMs from a type and a profile, names them, keeps the list.

One manager serves the shell (``vm`` table, ``:vms``) and the Python API.  ``count=N`` is done
here, once, for every backend: N VMs start in parallel with a progress display, and if any
fails the others are destroyed again, so a failed ``vm.create`` leaves nothing behind.
"""
from __future__ import annotations

import importlib
import re
import threading
import time
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any, Callable

from .. import schema
from ..schema import VM_CREATE
from .handle import VMError, VMHandle
from .profiles import Profile, ProfileError, load_profile

__all__ = ["BACKENDS", "MAX_COUNT", "Manager", "VMCreateError", "check_count", "resolve_backend", "status_summary"]

#: ``vm.create{type=…}`` → "module:Class" of the backend.
BACKENDS: dict[str, str] = {
    "local": "bioxen_shell.vm.local:LocalBackend",
    "ssh": "bioxen_shell.remote.ssh:SSHBackend",
    "xcpng": "bioxen_shell.remote.xcpng:XCPngBackend",
    "slurm": "bioxen_shell.remote.slurm:SlurmBackend",
}

#: keys of vm.create{} the manager consumes; everything else goes to the backend
MANAGER_KEYS = ("name", "profile", "type", "count", "runtime")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")
#: the most VMs one ``vm.create{count = N}`` makes (docs/vms.md)
MAX_COUNT = 1024
#: how many VMs of one kind start at once for count=N (remote ones wait on the network)
_PARALLEL = {"local": 8}
_DEFAULT_PARALLEL = 16


#: what every vm.create error starts with (once; a bad option's says vm.create{…}: KEY: …)
PREFIX = "vm.create: "


class VMCreateError(VMError):
    """``vm.create`` failed (bad arguments, unknown type, backend failure)."""

    def __init__(self, message: str) -> None:
        # One place for the prefix: a backend's or a profile's message may carry it already.
        if not message.startswith((PREFIX, VM_CREATE)):
            message = PREFIX + message
        super().__init__(message, kind="create")
        self.left_behind = False  # something the create made could not be removed


_COUNT = schema.integer(1, MAX_COUNT, "a number of VMs")


def check_count(count: Any) -> int | None:
    """``vm.create{count = N}``: a whole number from 1 to :data:`MAX_COUNT` (or None), checked
    by the one schema; returned as an int (Lua 5.3+ may send ``4.0``)."""
    if count is None:
        return None
    try:
        return schema.check_value(_COUNT, count, VM_CREATE, "count")
    except schema.SchemaError as e:
        raise VMCreateError(str(e)) from None


def resolve_backend(kind: str) -> type:
    """The backend class for ``vm.create{type=kind}``."""
    if not isinstance(kind, str) or kind not in BACKENDS:
        raise VMCreateError(f"vm.create: type {kind!r} is not known (expected one of: {', '.join(BACKENDS)})")
    mod_name, _, cls_name = BACKENDS[kind].partition(":")
    try:
        return getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise VMCreateError(f"vm.create: VMs of type {kind!r} are not available here ({exc})") from None


def status_summary(handles: list[VMHandle]) -> str:
    """``"3 VMs: 2 running, 1 crashed"`` (``"no VMs"`` when empty)."""
    if not handles:
        return "no VMs"
    counts: dict[str, int] = {}
    for h in handles:
        status = h.current_status()
        counts[status] = counts.get(status, 0) + 1
    order = ["running", "busy", "starting", "stopped", "crashed", "lost"]
    parts = [f"{counts.pop(s)} {s}" for s in order if s in counts]
    parts += [f"{n} {s}" for s, n in sorted(counts.items())]
    n = len(handles)
    return f"{n} VM{'s' if n != 1 else ''}: " + ", ".join(parts)


def in_parallel(fn: Callable[[Any], Any], items: list, workers: int, name: str,
                on_stop: Callable[[], None] | None = None) -> list[tuple[Any, BaseException | None]]:
    """``fn`` over ``items`` on up to ``workers`` threads: ``(value, None)`` or ``(None, error)``
    per item, in order.  One item runs on the calling thread; ``on_stop`` is called when Ctrl-C
    stops it, so items that wait can give up.  (Plain threads, not
    concurrent.futures: that module costs more start-up than a VM takes to create.)"""
    outcomes: list[tuple[Any, BaseException | None]] = [(None, None)] * len(items)
    todo = iter(range(len(items)))
    lock = threading.Lock()
    stopped = False

    def work() -> None:
        while True:
            with lock:
                i = None if stopped else next(todo, None)
            if i is None:
                return
            try:
                outcomes[i] = (fn(items[i]), None)
            except Exception as exc:  # noqa: BLE001 - handed back to the caller
                outcomes[i] = (None, exc)

    threads = [threading.Thread(target=work, name=f"{name}-{k + 1}", daemon=True)
               for k in range(min(workers, len(items)) - 1)]
    for t in threads:
        t.start()
    try:
        work()
        for t in threads:
            t.join()
    except BaseException:  # Ctrl-C on the calling thread: let the started items finish, no new ones
        stopped = True
        if on_stop is not None:
            on_stop()
        for t in threads:
            t.join()
        raise
    return outcomes


class Manager:
    """The set of VMs of one shell or one Python program."""

    def __init__(self, *, on_output: Callable[[bytes], None] | None = None,
                 interrupted: Callable[[], bool] | None = None) -> None:
        self.on_output = on_output
        self.interrupted = interrupted
        self._vms: dict[str, VMHandle] = {}
        self._lock = threading.Lock()
        self._counter = 0

    # ------------------------------------------------------------------ creation

    def create(self, name: str | None = None, *, profile: str | Profile | None = None,
               runtime: str | None = None, type: str = "local", count: int | None = None,
               progress: Callable[[int, int], None] | None = None,
               **options: Any) -> VMHandle | list[VMHandle]:
        """Create and start one VM (or ``count`` of them, in parallel, returned as a list)."""
        count = check_count(count)
        backend_cls = resolve_backend(type)
        prof = self._profile(profile, runtime)
        if count is None:
            (handle,) = self._create_many([self._reserve(name)], backend_cls, prof, options, None)
            return handle
        names = [self._reserve(f"{name}{i}" if name else None) for i in range(1, count + 1)]
        return self._create_many(names, backend_cls, prof, options, progress)

    def _profile(self, profile: str | Profile | None, runtime: str | None) -> Profile:
        try:
            prof = profile if isinstance(profile, Profile) else load_profile(profile)
            return prof.with_runtime(runtime)
        except ProfileError as exc:
            raise VMCreateError(str(exc)) from None

    def _reserve(self, name: str | None) -> str:
        """Claim a name (or invent ``vm1``, ``vm2``…) so parallel creates cannot collide."""
        with self._lock:
            if name is None:
                while True:
                    self._counter += 1
                    name = f"vm{self._counter}"
                    if name not in self._vms:
                        break
            elif not isinstance(name, str) or not _NAME_RE.match(name):
                raise VMCreateError(
                    f"vm.create: name {name!r} is not valid (letters, digits, '_', '.', '-'; "
                    f"starting with a letter or '_')")
            elif name in self._vms:
                raise VMCreateError(f"vm.create: a VM named {name!r} exists already (vm.get({name!r}))")
            self._vms[name] = None  # type: ignore[assignment]  # reserved
            return name

    def _create_many(self, names: list[str], backend_cls: type, prof: Profile, options: dict,
                     progress: Callable[[int, int], None] | None) -> list[VMHandle]:
        total = len(names)
        done = 0
        done_lock = threading.Lock()
        # A backend that waits (a Slurm queue) stops at Ctrl-C, or when a sibling failed: the
        # whole create fails then, and the VMs already made are destroyed again.
        given_up = threading.Event()
        # What the VMs of this create share, if the backend shares anything (Slurm: one job).
        share = getattr(backend_cls, "shared_for_create", None)
        shared = share(total) if share is not None else None

        def cancelled() -> bool:
            return given_up.is_set() or bool(self.interrupted is not None and self.interrupted())

        def one(name: str) -> VMHandle:
            nonlocal done
            try:
                handle = self._start_one(name, backend_cls, prof, options, cancelled, shared)
            except BaseException:
                given_up.set()
                raise
            with done_lock:
                done += 1
                if progress is not None:
                    progress(done, total)
            return handle

        if total == 1:
            try:
                return [one(names[0])]
            except BaseException:
                self._release(names[0])
                raise
        workers = min(total, _PARALLEL.get(getattr(backend_cls, "kind", ""), _DEFAULT_PARALLEL))
        results: list[VMHandle | None] = [None] * total
        errors: list[tuple[str, BaseException]] = []
        for i, (value, exc) in enumerate(in_parallel(one, names, workers, "bioxen-create",
                                                     on_stop=given_up.set)):
            if exc is not None:
                errors.append((names[i], exc))  # collected, reported together below
            else:
                results[i] = value
        if errors:
            for h in results:
                if h is not None:
                    self.destroy(h.name)
            for n in names:
                self._release(n)
            left = [(n, e) for n, e in errors if getattr(e, "left_behind", False)]
            first_name, first = (left or errors)[0]
            detail = str(first)
            if detail.startswith(PREFIX):  # said once, at the start of the whole message
                detail = detail[len(PREFIX):]
            if not detail.startswith(first_name):
                detail = f"{first_name}: {detail}"
            removed = (f"all {total} were removed" if not left else
                       f"{len(left)} could not be removed completely")
            raise VMCreateError(
                f"vm.create: {len(errors)} of {total} VMs failed to start ({removed}); "
                f"{'first' if not left else 'what is left'}: {detail}")
        return results  # type: ignore[return-value]

    def _start_one(self, name: str, backend_cls: type, prof: Profile, options: dict,
                   cancelled: Callable[[], bool], shared: Any = None) -> VMHandle:
        try:
            backend = backend_cls(name, dict(options), prof)
        except VMError:
            raise
        except Exception as exc:  # BackendError, ValueError for a bad option: shown as is
            raise VMCreateError(str(exc)) from None
        set_cancel_check = getattr(backend, "set_cancel_check", None)  # optional (slurm)
        if set_cancel_check is not None:
            set_cancel_check(cancelled)
        if shared is not None:
            backend.set_shared(shared)
        handle = VMHandle(name, backend, prof, on_output=self.on_output, interrupted=self.interrupted)
        try:
            handle.start()
        except BaseException as exc:
            try:
                backend.destroy()
            except Exception as cleanup_exc:
                error = VMCreateError(
                    f"vm.create: {name}: {exc}; cleaning up also failed: {cleanup_exc}")
                error.left_behind = True
                raise error from None
            if getattr(exc, "left_on_pool", False):  # the backend's own rollback had failed
                raise VMCreateError(f"vm.create: {name}: {exc}; removing it once more worked: "
                                    f"nothing is left") from None
            if isinstance(exc, VMError):
                raise
            if isinstance(exc, Exception):
                raise VMCreateError(f"vm.create: {name}: {exc}") from None
            raise
        with self._lock:
            self._vms[name] = handle
        return handle

    def _release(self, name: str) -> None:
        with self._lock:
            if self._vms.get(name) is None:
                self._vms.pop(name, None)

    # ------------------------------------------------------------------ lookup and teardown

    def get(self, name: str) -> VMHandle | None:
        with self._lock:
            return self._vms.get(name)

    def list(self) -> list[VMHandle]:
        """The VMs in creation order (reserved-but-starting ones are left out)."""
        with self._lock:
            return [h for h in self._vms.values() if h is not None]

    def names(self) -> list[str]:
        return [h.name for h in self.list()]

    def destroy(self, name: str, *, wait: bool = True) -> None:
        """Destroy one VM and forget it.  Unknown names raise ``KeyError``.  ``wait=False``: see
        VMHandle.destroy."""
        with self._lock:
            handle = self._vms.get(name)
            if handle is None:
                raise KeyError(f"no VM named {name!r}")
        try:
            handle.destroy(wait=wait)
        finally:
            with self._lock:
                if self._vms.get(name) is handle:
                    del self._vms[name]

    def forget(self, handle: VMHandle) -> None:
        """Drop a handle that was destroyed directly (``vm:destroy()``)."""
        with self._lock:
            if self._vms.get(handle.name) is handle:
                del self._vms[handle.name]

    def destroy_all(self) -> list[str]:
        """Destroy every VM (in parallel); return the errors as messages (empty = all gone)."""
        return self.destroy_many([h.name for h in self.list()])

    def destroy_many(self, names: list[str], *, wait: bool = True) -> list[str]:
        """Destroy these VMs in parallel (a VM already gone is skipped); return the errors."""
        def one(name: str) -> None:
            try:
                self.destroy(name, wait=wait)
            except KeyError:
                pass

        outcomes = in_parallel(one, names, 16, "bioxen-destroy")
        return [f"{name}: {exc}" for name, (_, exc) in zip(names, outcomes) if exc is not None]

    def summary(self) -> str:
        return status_summary(self.list())

    def table(self) -> list[dict[str, Any]]:
        """One row per VM for ``:vms`` (no request is sent to any VM)."""
        return [h.describe() for h in self.list()]

    def __len__(self) -> int:
        return len(self.list())

    def __iter__(self):
        return iter(self.list())

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None


def format_age(seconds: float) -> str:
    """``3s`` / ``4m12s`` / ``2h05m`` / ``3d04h``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_created(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))
