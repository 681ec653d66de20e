"""``vm.map``: run one Lua function over a list of items across several VMs.

The function travels as source text (``bioxen.funcsource`` recovers it from a function
without upvalues) and is defined once per VM; the items travel already encoded, so the values
reach the function exactly as the caller had them.  Items are often *shards* of a file
(``bio.fasta.shards``): small tables naming a byte range that each VM reads itself, so the data
never passes through the host (remote VMs get the file staged once per host, see staging.py).

Each VM is driven by its own thread taking the next item from a shared queue whenever it is
idle (a slow item or a slow VM does not hold up the others).  Results keep the order of the
items; with ``on_result`` they are handed over in order as they arrive, holding only the ones
that came early.  A failing item is reported with its index and error and the others are kept.
If a VM is lost, the item it ran is re-run once on another VM (then reported, with a shard's
first record id), and a VM the map created is restarted for the items still to come.  A Ctrl-C
stops every VM of the map.
"""
from __future__ import annotations

import os
import queue
import threading
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any, Callable

from . import protocol
from .errors import VMCrashed, VMError, VMInterrupted, VMRestarted, VMStateError
from .handle import VMHandle
from .manager import MAX_COUNT, Manager
from .progress import Progress

__all__ = ["MapResult", "run_map", "split_list", "MAP_FN"]

#: The global the function is stored under in each VM during a map.
MAP_FN = "__bioxen_map_fn"
#: How often one VM the map created is restarted after losing its agent, per map.
RESTARTS_PER_VM = 3
#: How often the calling thread looks at Ctrl-C while the map's threads work (seconds).
_POLL = 0.05
#: What a driver thread puts in the queue of arrived results when it returns.
_DRIVER_DONE = object()


class MapResult:
    """``results[i]`` is the encoded first value of item i+1 (``b"n"`` if it failed);
    ``failures`` lists ``(index, message)`` with 1-based indexes."""

    __slots__ = ("results", "failures")

    def __init__(self, results: list[bytes] | None = None) -> None:
        self.results: list[bytes] = [] if results is None else results
        self.failures: list[tuple[int, str]] = []

    def encoded_results(self) -> bytes:
        return protocol.join_list(self.results)

    def encoded_failures(self) -> bytes:
        return protocol.encode([{"index": i, "error": msg} for i, msg in self.failures])

    def values(self) -> list:
        return [protocol.decode(r) for r in self.results]


def split_list(encoded: bytes, what: str = "items") -> list[bytes]:
    """The array items of an encoded table, each still encoded (no decoding)."""
    try:
        return protocol.list_items(encoded, what)
    except ValueError as exc:
        raise ValueError(f"vm.map: {exc}") from None


def _definition(source: str, first_line: int) -> str:
    # Leading newlines put the function on its original line, so errors raised inside it
    # name the line the user wrote it on.
    return "\n" * max(0, first_line - 1) + f"{MAP_FN} = {source}"


def run_map(manager: Manager, source: str, items: list[bytes], *,
            chunkname: str = "=map", first_line: int = 1, vms: int | list[VMHandle] | None = None,
            create_options: dict[str, Any] | None = None, progress: bool | None = None,
            interrupted: Callable[[], bool] | None = None,
            on_result: Callable[[int, bytes], None] | None = None,
            stage: bool = True, extra_args: list[bytes] | None = None) -> MapResult:
    """Run ``source`` (a Lua function expression) over encoded ``items``; see module docs.

    ``vms``: how many VMs the map creates (default: one per core; never more than the items),
    or a list of VMs to use.  ``on_result(i, encoded_value)``
    (1-based ``i``, in order) receives each result as soon as it and every earlier one are
    in; ``MapResult.results`` then stays empty.  ``stage=False``: shard paths already exist
    on remote hosts (see staging.py).  ``extra_args``: encoded values passed to the function
    after each item (the same for every call)."""
    own = not isinstance(vms, list)
    n_items = len(items)
    result = MapResult(results=[] if on_result else [protocol.NIL] * n_items)
    if n_items == 0:
        return result
    if own:
        pool = manager.create(count=_pool_size(vms, n_items), **_create_options(manager, create_options))
        assert isinstance(pool, list)
    else:
        pool = list(vms)  # type: ignore[arg-type]
        if not pool:
            raise ValueError("vm.map: the pool of VMs is empty")
    definition = _definition(source, first_line)
    cleared: set[str] = set()  # the caller's VMs whose driver removed the function already

    def clear(h: VMHandle) -> None:
        _clear_function(h)
        cleared.add(h.name)

    try:
        _Run(pool, items, result, definition=definition, chunkname=chunkname, own=own,
             on_result=on_result, stage=stage, show_progress=progress, interrupted=interrupted,
             extra_args=extra_args or [], release=(lambda h: _release(manager, h)) if own else clear).run()
    finally:
        if own:  # killed, not waited for (a big heap takes the kernel ms to tear down)
            manager.destroy_many([h.name for h in pool], wait=False)
        else:  # what a stopped or failed map left defined
            for h in pool:
                if h.name not in cleared:
                    _clear_function(h)
    return result


def _clear_function(h: VMHandle) -> None:
    """Remove the map's function from one of the caller's VMs (a VM that went away keeps nothing)."""
    try:
        if h.status == "running":
            h.set(MAP_FN, None)
    except VMError:
        pass


def _pool_size(vms: Any, n_items: int) -> int:
    """How many VMs a map creates: ``vms``, or one per core; never more than the items."""
    count = vms if isinstance(vms, int) and not isinstance(vms, bool) else (os.cpu_count() or 1)
    if count < 1:
        raise ValueError(f"vm.map: vms must be a positive number or a list of VMs, got {vms!r}")
    count = min(count, n_items)
    if count > MAX_COUNT:
        raise ValueError(f"vm.map: vms must be at most {MAX_COUNT} (the most VMs one vm.create makes), got {vms!r}")
    return count


def _create_options(manager: Manager, create_options: dict[str, Any] | None) -> dict[str, Any]:
    opts = dict(create_options or {})
    opts.setdefault("name", _map_prefix(manager))
    return opts


def _release(manager: Manager, h: VMHandle) -> None:
    """Destroy one of the map's own VMs that has nothing left to do (the map's end destroys
    whatever is left, so a failure here changes nothing).  A local worker is killed and not
    waited for: the zygote reaps it while the map goes on or ends."""
    try:
        manager.destroy(h.name, wait=False)
    except (KeyError, VMError, OSError):
        pass


def _define(h: VMHandle, definition: str, chunkname: str) -> None:
    try:
        h.eval(definition, chunkname=chunkname)
    except VMError as exc:
        raise VMError(f"vm.map: the function could not be defined in VM {h.name}: {exc.message}",
                      kind=exc.kind, vm=h.name) from None


def _map_prefix(manager: Manager) -> str:
    i = 1
    while any(n.startswith(f"map{i}_") for n in manager.names()):
        i += 1
    return f"map{i}_"


def describe_item(item: bytes, index: int) -> str:
    """``item 3``, or ``shard 3 (first record chr2)`` for a shard (decoded only for messages)."""
    if item.startswith(b"{") and len(item) < 65536:
        try:
            value = protocol.decode(item)
        except Exception:  # a message must never fail
            value = None
        if isinstance(value, dict) and "offset" in value and "path" in value:
            first = value.get("first_id")
            where = f" (first record {first})" if first else ""
            return f"shard {index}{where} of {value.get('path')}"
    return f"item {index}"


class _Run:
    """One map in progress: the queue of items, the VMs' threads, results in order."""

    def __init__(self, pool: list[VMHandle], items: list[bytes], result: MapResult, *, definition: str,
                 chunkname: str, own: bool, on_result: Callable[[int, bytes], None] | None, stage: bool,
                 show_progress: bool | None, interrupted: Callable[[], bool] | None,
                 extra_args: list[bytes], release: Callable[[VMHandle], None] | None = None) -> None:
        self.pool, self.items, self.result = pool, items, result
        # What a driver does with its VM once nothing is left for it, while the others still
        # work: the map's own VM is destroyed (a few hundred MB after a big shard: ms to tear
        # down), a VM of the caller's pool has the function removed (a remote VM's round trip
        # each, at once rather than one after the other at the end).
        self.release = release
        self.extra_args = extra_args  # encoded: passed after each item
        self.definition, self.chunkname, self.own = definition, chunkname, own
        self.on_result, self.stage, self.interrupted = on_result, stage, interrupted
        self.bar = Progress(len(items), "vm.map", enabled=show_progress)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.abort: list[BaseException] = []
        # Each driver defines the function in its own VM, all at once (a remote VM's round
        # trip each, not one after the other), and no item runs until every VM has it: a VM
        # that cannot define it fails the whole map, before anything ran.
        self.all_defined = threading.Barrier(len(pool))
        self.define_errors: list[tuple[int, VMError]] = []   # (position in the pool, error)
        self.next_index = 0
        self.retry: list[tuple[int, str]] = []   # (item index, name of the VM that lost it)
        self.retried: set[int] = set()
        self.active: set[str] = set()             # VMs whose driver still takes items
        self.drivers_left = len(pool)             # drivers not yet returned (under lock)
        self.succeeded = 0
        # Streaming: results that came before an earlier one (index -> value), and the next
        # index to hand over.  Filled by the drivers, emptied by the calling thread; a driver
        # that returns puts _DRIVER_DONE there, so the calling thread wakes at once.
        self.arrived: queue.SimpleQueue = queue.SimpleQueue()
        self.early: dict[int, bytes] = {}
        self.next_out = 0

    # -- the shared queue ----------------------------------------------------------------

    def take(self, h: VMHandle) -> int | None:
        """The next item for ``h``: an item another VM lost first, then a fresh one.

        ``None`` also takes ``h`` out of the VMs that may run a lost item, in the same step:
        a VM that lost one waits for another active VM to run it, and a driver that has been
        told "nothing left" must not count as one while it winds down (destroying its VM
        takes milliseconds), or the lost item would be run by nobody."""
        with self.lock:
            if not self.stop.is_set():
                for j, (i, lost_on) in enumerate(self.retry):
                    if lost_on != h.name or not (self.active - {h.name}):
                        del self.retry[j]
                        return i
                if self.next_index < len(self.items):
                    i = self.next_index
                    self.next_index += 1
                    return i
            self.active.discard(h.name)
            return None

    def fail(self, i: int, message: str) -> None:
        with self.lock:
            self.result.failures.append((i + 1, message))
        self.bar.advance(failed=True)
        self.deliver(i, None)

    def deliver(self, i: int, value: bytes | None) -> None:
        """A finished item (``None``: it failed)."""
        if self.on_result is None:
            if value is not None:
                self.result.results[i] = value
            return
        self.arrived.put((i, value))

    # -- one VM's driver -------------------------------------------------------------------

    def define_first(self, h: VMHandle) -> bool:
        """Define the function in ``h``, then wait until every VM of the map has it (or has
        failed to).  False: the map does not go ahead."""
        try:
            _define(h, self.definition, self.chunkname)
        except VMError as exc:
            if exc.kind == "interrupted":  # Ctrl-C while defining: the map was interrupted
                self.halt(exc)
            else:
                with self.lock:
                    self.define_errors.append((self.pool.index(h), exc))
        except BaseException as exc:  # KeyboardInterrupt when the calling thread drives
            self.halt(exc)
        try:
            self.all_defined.wait()
        except threading.BrokenBarrierError:  # halted (Ctrl-C) while others still defined
            pass
        return not self.define_errors and not self.stop.is_set()

    def drive(self, h: VMHandle) -> None:
        with self.lock:
            self.active.add(h.name)
        restarts = 0
        try:
            if not self.define_first(h):
                return
            while True:
                i = self.take(h)
                if i is None:
                    if self.release is not None and not self.stop.is_set():
                        self.release(h)
                    return
                try:
                    values = h.request_encoded("call", {"fn": MAP_FN},
                                               {"args": protocol.list_parts([self.prepare(h, i), *self.extra_args])})
                    self.bar.advance()
                    with self.lock:
                        self.succeeded += 1
                    self.deliver(i, protocol.first_item(values))
                except VMInterrupted as exc:
                    self.halt(exc)
                    return
                except VMRestarted as exc:
                    # The item hit a limit its VM could not stop by itself; the VM was
                    # restarted, so it needs the function again.  The item's own fault: not re-run.
                    self.fail(i, exc.message)
                    try:
                        _define(h, self.definition, self.chunkname)
                    except VMError:
                        return
                except (VMCrashed, VMStateError) as exc:
                    self.lost(i, h, exc)
                    if not self.own or restarts >= RESTARTS_PER_VM or self.stop.is_set():
                        return
                    restarts += 1
                    try:
                        h.restart()
                        _define(h, self.definition, self.chunkname)
                    except VMError:
                        return
                except VMError as exc:
                    self.fail(i, exc.message)
                except BaseException as exc:  # KeyboardInterrupt in the calling thread
                    self.halt(exc)
                    return
        finally:
            with self.lock:
                self.active.discard(h.name)
                self.drivers_left -= 1
            self.arrived.put(_DRIVER_DONE)

    def prepare(self, h: VMHandle, i: int) -> bytes:
        """The item as VM ``h`` needs it: a shard's file staged on a remote host.  A staging
        failure (StageError: the local file is unreadable, the upload failed) stops the whole
        map with its message, as any error of the host side does."""
        item = self.items[i]
        if h.kind == "local" or not item.startswith(b"{"):
            return item
        from . import staging

        return staging.prepare_item(h, item, stage=self.stage)

    def lost(self, i: int, h: VMHandle, exc: VMError) -> None:
        """VM ``h`` lost item ``i``: run it again once elsewhere, then report it."""
        with self.lock:
            again = i not in self.retried
            if again:
                self.retried.add(i)
                self.retry.append((i, h.name))
        if not again:
            self.fail(i, f"{describe_item(self.items[i], i + 1)} was lost twice (the VM running it "
                         f"went away; last: {exc.message})")

    def halt(self, exc: BaseException) -> None:
        self.abort.append(exc)
        self.stop.set()
        self.all_defined.abort()  # drivers still waiting for the others' definitions: go

    # -- the calling thread ----------------------------------------------------------------

    def run(self) -> None:
        try:
            if len(self.pool) == 1 and self.on_result is None:
                self.drive(self.pool[0])  # no thread hand-off per item
            else:
                self.run_threads()
        finally:
            self.bar.close()
        self.finish()

    def run_threads(self) -> None:
        threads = [threading.Thread(target=self.drive, args=(h,), name=f"bioxen-map-{h.name}", daemon=True)
                   for h in self.pool]
        for t in threads:
            t.start()
        try:
            while self.drivers_left > 0:
                self.hand_over(timeout=_POLL)
                if self.interrupted is not None and self.interrupted() and not self.stop.is_set():
                    self.stop.set()
                    self.all_defined.abort()
                    for h in self.pool:
                        h.interrupt()
            for t in threads:
                t.join()  # each has put _DRIVER_DONE: returning now
            self.hand_over(timeout=None)
        except BaseException:  # Ctrl-C here, or an error from on_result
            self.stop.set()
            self.all_defined.abort()
            for h in self.pool:
                h.interrupt()
            for t in threads:
                t.join(5)
            raise

    def hand_over(self, timeout: float | None) -> None:
        """Give ``on_result`` every result that is next in order (streaming form); wait up to
        ``timeout`` s for something to arrive (a result, or a driver returning)."""
        try:
            got = self.arrived.get(timeout=timeout) if timeout else self.arrived.get_nowait()
            while True:
                if got is not _DRIVER_DONE:
                    i, value = got
                    self.early[i] = value
                    while self.next_out in self.early:
                        v = self.early.pop(self.next_out)
                        self.next_out += 1
                        if v is not None and self.on_result is not None:
                            self.on_result(self.next_out, v)
                got = self.arrived.get_nowait()  # drain what is there without waiting again
        except queue.Empty:
            pass

    def finish(self) -> None:
        result, items = self.result, self.items
        if self.define_errors and not self.abort:
            raise min(self.define_errors, key=lambda e: e[0])[1]  # the first VM's, as the pool lists them
        if self.abort:
            exc = self.abort[0]
            if isinstance(exc, VMError):
                raise VMInterrupted(f"vm.map interrupted ({self.succeeded} of {len(items)} items done)",
                                    kind="interrupted") from None
            raise exc
        # Items never run because every VM of the map was lost.
        with self.lock:
            failed = {i for i, _ in result.failures}
            left = [i for i, _ in self.retry] + list(range(self.next_index, len(items)))
        for i in left:
            if i + 1 not in failed:
                self.fail(i, f"{describe_item(items[i], i + 1)} not run: every VM of the map was lost")
        self.hand_over(timeout=None)
        result.failures.sort()
