"""``vm.map``: run one Lua function over a list of items across several VMs.

The function travels as source text (``bioxen.funcsource`` recovers it from a function
without upvalues) and is defined once per VM; the items travel already encoded, so the values
reach the function exactly as the caller had them.  Each VM is driven by its own thread taking
items from a shared queue (a slow item does not hold up the others); results keep the order of
the items; a failing item is reported with its index and error and the others are kept.  If a
VM crashes, the items it was running fail with the crash message and the rest go on in the
other VMs.  A Ctrl-C stops the whole map.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from . import wire
from .handle import VMCrashed, VMError, VMHandle, VMInterrupted, VMStateError, _skip_value
from .manager import Manager
from .progress import Progress

__all__ = ["MapResult", "run_map", "split_list", "MAP_FN"]

#: The global the function is stored under in each VM during a map.
MAP_FN = "__bioxen_map_fn"


@dataclass
class MapResult:
    """``results[i]`` is the encoded first value of item i+1 (``b"n"`` if it failed);
    ``failures`` lists ``(index, message)`` with 1-based indexes."""

    results: list[bytes] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)

    def encoded_results(self) -> bytes:
        return b"{%d;" % len(self.results) + b"".join(self.results) + b"}"

    def encoded_failures(self) -> bytes:
        return wire.encode([{"index": i, "error": msg} for i, msg in self.failures])

    def values(self) -> list:
        return [wire.decode(r) for r in self.results]


def split_list(encoded: bytes) -> list[bytes]:
    """The array items of an encoded table, each still encoded (no decoding)."""
    if not encoded.startswith(b"{"):
        raise ValueError("vm.map: items must be a list (a table with items 1..n)")
    semi = encoded.index(b";")
    n = int(encoded[1:semi])
    pos = semi + 1
    items = []
    for _ in range(n):
        end = _skip_value(encoded, pos)
        items.append(encoded[pos:end])
        pos = end
    if encoded[pos:pos + 1] != b"}":
        raise ValueError("vm.map: items must be a list (a table with only keys 1..n)")
    return items


def _first_value(values: bytes | None) -> bytes:
    """The first value of an encoded value list (``n`` for none)."""
    if not values or not values.startswith(b"{"):
        return b"n"
    semi = values.index(b";")
    if int(values[1:semi]) == 0:
        return b"n"
    end = _skip_value(values, semi + 1)
    return values[semi + 1:end]


def _definition(source: str, first_line: int) -> str:
    # Leading newlines put the function on its original line, so errors raised inside it
    # name the line the user wrote it on.
    return "\n" * max(0, first_line - 1) + f"{MAP_FN} = {source}"


def run_map(manager: Manager, source: str, items: list[bytes], *, chunkname: str = "=map",
            first_line: int = 1, vms: int | list[VMHandle] | None = None,
            create_options: dict[str, Any] | None = None, progress: bool | None = None,
            interrupted: Callable[[], bool] | None = None) -> MapResult:
    """Run ``source`` (a Lua function expression) over encoded ``items``; see module docs."""
    n_items = len(items)
    result = MapResult(results=[b"n"] * n_items)
    if n_items == 0:
        return result
    own = not isinstance(vms, list)
    if own:
        count = vms if isinstance(vms, int) and not isinstance(vms, bool) else min(os.cpu_count() or 1, n_items)
        if count < 1:
            raise ValueError(f"vm.map: vms must be a positive number or a list of VMs, got {vms!r}")
        count = min(count, n_items)
        opts = dict(create_options or {})
        opts.setdefault("name", _map_prefix(manager))
        pool = manager.create(count=count, **opts)
        assert isinstance(pool, list)
    else:
        pool = list(vms)  # type: ignore[arg-type]
        if not pool:
            raise ValueError("vm.map: the pool of VMs is empty")
    try:
        for h in pool:
            try:
                h.eval(_definition(source, first_line), chunkname=chunkname)
            except VMError as exc:
                raise VMError(f"vm.map: the function could not be defined in VM {h.name}: {exc.message}",
                              kind=exc.kind, vm=h.name) from None
        _run(pool, items, result, progress, interrupted)
    finally:
        if own:
            for h in pool:
                try:
                    manager.destroy(h.name)
                except (KeyError, VMError):
                    pass
        else:
            for h in pool:
                try:
                    if h.status == "running":
                        h.set(MAP_FN, None)
                except VMError:
                    pass
    return result


def _map_prefix(manager: Manager) -> str:
    i = 1
    while any(n.startswith(f"map{i}_") for n in manager.names()):
        i += 1
    return f"map{i}_"


def _run(pool: list[VMHandle], items: list[bytes], result: MapResult, show_progress: bool | None,
         interrupted: Callable[[], bool] | None) -> None:
    next_index = 0
    lock = threading.Lock()
    stop = threading.Event()
    abort: list[BaseException] = []
    bar = Progress(len(items), "vm.map", enabled=show_progress)

    def take() -> int | None:
        nonlocal next_index
        with lock:
            if stop.is_set() or next_index >= len(items):
                return None
            i = next_index
            next_index += 1
            return i

    def drive(h: VMHandle) -> None:
        while True:
            i = take()
            if i is None:
                return
            try:
                values = h.request_encoded("call", {"fn": MAP_FN}, {"args": b"{1;" + items[i] + b"}"})
                result.results[i] = _first_value(values)
                bar.advance()
            except VMInterrupted as exc:
                abort.append(exc)
                stop.set()
                return
            except (VMCrashed, VMStateError) as exc:
                with lock:
                    result.failures.append((i + 1, exc.message))
                bar.advance(failed=True)
                return  # this VM is gone; the others take the remaining items
            except VMError as exc:
                with lock:
                    result.failures.append((i + 1, exc.message))
                bar.advance(failed=True)
            except BaseException as exc:  # KeyboardInterrupt in the calling thread
                abort.append(exc)
                stop.set()
                return

    try:
        if len(pool) == 1:
            drive(pool[0])
        else:
            threads = [threading.Thread(target=drive, args=(h,), name=f"bioxen-map-{h.name}", daemon=True)
                       for h in pool]
            for t in threads:
                t.start()
            try:
                for t in threads:
                    while t.is_alive():
                        t.join(0.05)
                        if interrupted is not None and interrupted() and not stop.is_set():
                            stop.set()
                            for h in pool:
                                h.interrupt()
            except KeyboardInterrupt:
                stop.set()
                for h in pool:
                    h.interrupt()
                for t in threads:
                    t.join(5)
                raise
    finally:
        bar.close()
    if abort:
        exc = abort[0]
        if isinstance(exc, VMError):
            raise VMInterrupted(f"vm.map interrupted ({sum(1 for r in result.results if r != b'n')} of "
                                f"{len(items)} items done)", kind="interrupted") from None
        raise exc
    # Items never run because every VM crashed.
    with lock:
        done = {i for i, _ in result.failures}
        for i in range(next_index, len(items)):
            if i + 1 not in done:
                result.failures.append((i + 1, "not run: every VM of the map crashed"))
    result.failures.sort()
