"""The VM session: one class that runs the agent protocol for every kind of VM.

It writes and reads nothing of the wire itself: requests are built and replies parsed by the
protocol layer (``protocol/``: envelope, codec, frames), errors come from ``errors.py``.

A :class:`VMHandle` owns one backend (local / ssh / xcpng) and, while the VM runs, one
``AgentProcess`` (the byte stream to the agent, see transport.py).  It reads the agent's
hello, sends ``configure`` from the profile and then runs requests: synchronous ones
(:meth:`eval`, :meth:`call`, :meth:`set`, :meth:`get`, :meth:`require`, :meth:`info`,
:meth:`complete`) and pipelined ones (:meth:`send` / :meth:`recv`).  It streams the output
frames of a call to a callback, enforces the call timeout and (where the backend reports the
agent's CPU time) the CPU limit: it interrupts the call, and an agent that does not answer
within a grace period (a loop in JIT-compiled code, one long C call) is killed and restarted.
It forwards Ctrl-C (``interrupted()`` is polled while waiting), and turns the end of the
stream into "VM crashed (signal 9)".

Fast path: a synchronous request is written and its reply read in the calling thread (no
thread hand-off), so a round trip costs two pipe writes, two reads and the codec.

Values cross in two forms.  The Python API passes Python values (``protocol.codec`` encodes them).
The shell's Lua side encodes values itself with ``bioxen.wire`` (so Lua integers, floats and
byte strings keep their exact types) and uses :meth:`VMHandle.request_lua`, which splices the
encoded bytes into the request and hands back the reply untouched for the Lua decoder.

Big strings (``protocol.BLOB_THRESHOLD`` and up) travel as ``B`` frames both ways
(docs/protocol.md, "Blobs"): written straight from the objects the caller has, and read each
into a buffer of its own, which becomes the value without a copy.

Frames are read by ``protocol.FrameReader`` (the one reader, for every backend), fed here with a
deadline on every read; whatever the agent sends that breaks the protocol (a malformed header,
a length over its limit, a reply that does not decode, a frame left half-sent for
``stall_limit``) kills the agent and crashes the VM with a :class:`VMProtocolError`
(docs/protocol.md, "Limits and malformed frames").
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any, Callable

from . import protocol
from .errors import (InterruptRestarted, TimeoutRestarted, VMCrashed, VMError, VMInterrupted, VMProtocolError,
                     VMRestarted, VMStateError, VMTimeout)
from .pending import MAX_OUTPUT_IN_MEMORY, Output, Pending, Result
from .sigint import deferring, gate_enter, gate_exit, gate_take, undeferred
from .transport import TransportClosed, TransportTimeout

__all__ = [
    "VMHandle",
    "VMError",
    "VMCrashed",
    "VMTimeout",
    "VMInterrupted",
    "VMRestarted",
    "VMStateError",
    "VMProtocolError",
    "Result",
    "MAX_OUTPUT_IN_MEMORY",
]

PROTOCOL_VERSION = 1
_RECV_CHUNK = 1 << 20
#: How often a waiting call looks at Ctrl-C and its deadline (seconds).
_POLL_SLICE = 0.05
#: An interrupt not answered after this long is sent again (see VMHandle.interrupt).
_REINTERRUPT = 0.5


def _cpu_margin(limit: float) -> float:
    """How far past ``cpu_limit`` the host lets a call go before it steps in.  The agent's
    own count hook checks the limit every 10,000 instructions and answers with a clean
    ``cpu_limit`` error (the VM keeps its state), so the host, which looks every 50 ms, only
    acts on code that hook cannot see."""
    return 0.25 + 0.05 * limit


class _Held:
    """``with _Held(lock):`` releases a lock that was acquired beforehand."""

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


class VMHandle:
    """One VM, whatever the backend.  Thread-safe: requests are serialised per VM."""

    def __init__(self, name: str, backend: Any, profile: Any, *,
                 on_output: Callable[[bytes], None] | None = None,
                 interrupted: Callable[[], bool] | None = None,
                 start_timeout: float = 60.0, kill_grace: float = 2.0) -> None:
        self.name = name
        self.backend = backend
        self.profile = profile
        self.kind: str = getattr(backend, "kind", "local")
        self.on_output = on_output
        self.interrupted = interrupted
        self.start_timeout = start_timeout
        self.kill_grace = kill_grace
        self.created = time.time()
        self.started: float | None = None
        self.status = "new"
        self.exit_reason: str | None = None
        self.hello: dict[str, Any] = {}
        self.calls = 0
        self._proc: Any = None
        self._lock = threading.RLock()
        self._next_id = 0
        self._inflight: deque[Pending] = deque()
        self._async_done: deque[Pending] = deque()
        self._reader = self._new_reader()
        #: seconds a read waited in the middle of a frame without a byte (see stall_limit)
        self._starved = 0.0
        self._in_read = False  # a transport read is under way (KeyboardInterrupt: bytes lost?)
        self._cpu_next = 0.0  # when the host next reads the worker's CPU time
        self._ending: str | None = None  # set while stop/restart/destroy kills a busy VM
        self._interrupt_sent: float | None = None  # last interrupt of the call in progress
        self._starting = False  # start() is running: a stuck agent is not restarted from within
        # The host's watch of cpu_limit (see _cpu_exceeded): the request being watched, the
        # worker's CPU seconds when watching began, when the host interrupted it for the limit.
        self._cpu_head: Pending | None = None
        self._cpu_base = 0.0
        self._cpu_stopped_at: float | None = None
        #: how often the handle restarted an agent that did not answer an interrupt, and why
        self.restarts = 0
        self.last_restart: str | None = None

    def __repr__(self) -> str:
        where = f"pid {self.pid}" if self.pid else self.kind
        return f"<VMHandle {self.name!r} {self.kind} {self.status} ({where})>"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "VMHandle":
        """Start the agent, check its hello, configure it from the profile."""
        with self._lock:
            if self.status == "destroyed":
                raise VMStateError(f"{self.name}: VM is destroyed", kind="state", vm=self.name)
            self.status = "starting"
            self.exit_reason = None
            self._ending = None
            self._interrupt_sent = None
            self._cpu_head, self._cpu_stopped_at = None, None
            self._starting = True
            self._reader = self._new_reader()
            self._starved = 0.0
            self._inflight.clear()
            self._async_done.clear()
            try:
                self._proc = self.backend.start()
                # configure goes out before the hello is read: one round trip less at start.
                configure_id = self._write_request("configure", self._configure_fields(), sync=True)
                kind, payload = self._read_hello(time.monotonic() + self.start_timeout)
                try:
                    hello = protocol.decode(payload, "hello") if kind == b"H" else None
                except (ValueError, IndexError, RecursionError, OverflowError) as exc:
                    raise self._protocol_failure(f"bad hello: {exc}") from None
                if not isinstance(hello, dict):
                    raise self._protocol_failure(
                        f"the agent did not say hello (its first frame: {kind.decode()} "
                        f"{bytes(payload[:40])!r})" if kind != b"H" else
                        f"bad hello: {bytes(payload[:40])!r} is not a table")
                self.hello = hello
                if self.hello.get("protocol") != PROTOCOL_VERSION:
                    raise VMError(
                        f"{self.name}: agent speaks protocol {self.hello.get('protocol')!r}, "
                        f"this bioxen speaks {PROTOCOL_VERSION}", vm=self.name)
                self.status = "running"
                self.started = time.time()
                try:
                    self._finish(self._wait(configure_id, timeout=self.start_timeout), True)
                except VMError as exc:
                    raise VMError(
                        f"{self.name}: profile {self.profile.name!r} ({self.profile.source}) could not be "
                        f"applied: {exc.message}", kind=exc.kind, traceback=exc.traceback, vm=self.name
                    ) from None
            except BaseException:
                self._discard_proc()
                self.status = "crashed"
                raise
            finally:
                self._starting = False
            return self

    def _configure_fields(self) -> dict[str, Any]:
        lua_path_fn = getattr(self.backend, "lua_path", None)
        if lua_path_fn is not None:
            lua_path = lua_path_fn()
        else:
            lua_path = ";".join(f"{d}/?.lua;{d}/?/init.lua" for d in self.profile.paths)
        fields = self.profile.configure_fields(self.name, lua_path)
        # Big strings of replies may come as B frames (the agent's threshold: 1 MiB).
        fields["blobs"] = True
        # configure is not timed as calls are: the agent stops each preloaded module itself.
        fields["call_timeout"] = self.profile.call_timeout
        return fields

    def _take_over(self, why: str) -> None:
        """Get the request lock for stop/restart/destroy.  If another thread is waiting on a
        call (an endless loop, the shell closing), kill the agent so that call ends at once
        with a message saying why, instead of waiting for it forever."""
        if self._lock.acquire(timeout=0.2):
            return
        self._ending = why
        self.kill()
        self._lock.acquire()

    def stop(self) -> None:
        """Ask the agent to exit (kill it if it does not within the grace period)."""
        self._take_over("stopped")
        with _Held(self._lock):
            if self._proc is not None and self.status in ("running", "busy"):
                try:
                    rid = self._write_request("exit", {}, sync=True)
                    self._wait(rid, timeout=self.kill_grace, interruptible=False)
                except VMError:
                    pass
            self._discard_proc()
            try:
                self.backend.stop()
            except BaseException as exc:
                # The agent is gone but the place may still run (an XCP-ng guest the pool
                # shows Running): "stopped" would be a claim nobody confirmed.
                if self.status != "destroyed":
                    self.status = "lost"
                    self.exit_reason = f"stop failed: {exc}"
                raise
            if self.status != "destroyed":
                self.status = "stopped"

    def restart(self) -> "VMHandle":
        """Kill the agent if it runs, start a fresh one (globals are lost)."""
        self._take_over("restarted")
        with _Held(self._lock):
            self._discard_proc()
            return self.start()

    def destroy(self, *, wait: bool = True) -> None:
        """Stop the VM and release everything its backend created.  Idempotent.

        ``wait=False``: an agent process that can be let go without waiting for its end (a
        local worker, see LocalAgentProcess.abandon) is killed and not waited for."""
        self._take_over("destroyed")
        with _Held(self._lock):
            if self.status == "destroyed":
                return
            self._discard_proc(wait=wait)
            try:
                self.backend.destroy()
            finally:
                self.status = "destroyed"

    def kill(self) -> None:
        """Hard stop without asking (used when shutting down in a hurry)."""
        proc = self._proc
        if proc is not None:
            proc.kill()

    def interrupt(self) -> None:
        """Interrupt the running call (SIGINT to the agent); safe from any thread.

        The agent forgets interrupts that arrive between calls (they belonged to an earlier
        one), so one sent while the request is still on its way would be lost: until the
        call answers, a waiting thread repeats it every ``_REINTERRUPT`` seconds."""
        proc = self._proc
        if proc is not None:
            if self._inflight:
                self._interrupt_sent = time.monotonic()
            proc.interrupt()

    def _discard_proc(self, wait: bool = True) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.kill()
            finally:
                abandon = None if wait else getattr(proc, "abandon", None)  # optional
                (abandon or proc.close)()
        err = VMCrashed(f"{self.name}: VM stopped while the request was pending", kind="crashed", vm=self.name)
        for p in self._inflight:
            if not p.sync:
                p.error = err
                self._async_done.append(p)
        self._inflight.clear()

    # ------------------------------------------------------------------ state

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return getattr(proc, "pid", None) if proc is not None else None

    @property
    def uptime(self) -> float:
        if self.started is None or self.status not in ("running", "busy"):
            return 0.0
        return time.time() - self.started

    def current_status(self) -> str:
        """``status``, noticing an agent that died while nobody was waiting on it (a ``kill -9``
        between calls), so ``:vms`` and the toolbar do not show a dead VM as running."""
        proc = self._proc
        if proc is not None and self.status in ("running", "busy"):
            try:
                reason = proc.exit_reason()
            except Exception:  # a transport's bookkeeping must never break :vms
                reason = None
            if reason is not None and self._proc is proc and self.status in ("running", "busy"):
                self.exit_reason = reason
                self.status = "lost" if reason == "connection lost" else "crashed"
        return self.status

    def describe(self) -> dict[str, Any]:
        """name, type, profile, status, created, uptime, pid/host… (no request to the VM)."""
        self.current_status()
        d: dict[str, Any] = {"name": self.name, "type": self.kind, "profile": self.profile.name}
        try:
            d.update(self.backend.describe())
        except Exception:  # describe must never break :vms
            pass
        if self._proc is not None:
            try:
                d.update(self._proc.describe())
            except Exception:
                pass
        d["type"] = self.kind
        d.update(status=self.status, created=self.created, uptime=self.uptime, calls=self.calls)
        if self.exit_reason:
            d["exit_reason"] = self.exit_reason
        if self.restarts:
            d["restarts"] = self.restarts
            d["last_restart"] = self.last_restart
        if self.hello:
            d["lua_version"] = self.hello.get("runtime")  # the agent's _VERSION, e.g. "Lua 5.4"
        return d

    def info(self) -> dict[str, Any]:
        """``describe()`` plus the agent's own numbers (memory, CPU) when the VM is idle."""
        d = self.describe()
        if self.status == "running" and self._lock.acquire(timeout=0.2):
            try:
                vals = self._request("info", {}, timeout=5.0).values
                if vals and isinstance(vals[0], dict):
                    agent = vals[0]
                    d["memory"] = int((agent.get("memory_kb") or 0) * 1024)
                    d["memory_kb"] = agent.get("memory_kb")
                    d["cpu_seconds"] = agent.get("cpu_seconds")
                    if agent.get("jit"):
                        d["jit"] = agent.get("jit")
            except VMError:
                pass
            finally:
                self._lock.release()
        return d

    # ------------------------------------------------------------------ Python-value requests

    def eval(self, code: str, *args: Any, chunkname: str = "=vm", timeout: float | None = None,
             on_output: Callable[[bytes], None] | None = None) -> list:
        """Run Lua source (an expression is accepted) and return its values as a list."""
        blobs: list = []
        return self._request("eval", {"code": code, "chunkname": chunkname},
                             raw={"args": protocol.encode_list_parts(args, blobs)}, blobs=blobs,
                             timeout=timeout, on_output=on_output).values

    def call(self, fname: str, *args: Any, timeout: float | None = None,
             on_output: Callable[[bytes], None] | None = None) -> list:
        """Call the global function ``fname`` (dots allowed: ``bio.seq.gc``)."""
        blobs: list = []
        return self._request("call", {"fn": fname}, raw={"args": protocol.encode_list_parts(args, blobs)}, blobs=blobs,
                             timeout=timeout, on_output=on_output).values

    def set(self, name: str, value: Any) -> None:
        blobs: list = []
        self._request("set", {"name": name}, raw={"value": protocol.encode_parts(value, name, blobs)}, blobs=blobs)

    def get(self, name: str) -> Any:
        vals = self._request("get", {"name": name}).values
        return vals[0] if vals else None

    def require(self, module: str) -> Any:
        """Load ``module`` in the VM.  Returns what ``require`` returned when that value can
        travel (data), else ``True`` (the agent's answer for a module of functions)."""
        vals = self._request("require", {"module": module}).values
        return vals[0] if vals else None

    def complete(self, text: str) -> list[str]:
        """Completion candidates from the VM (for ``:attach``).  Never waits behind a running
        call (completion runs in the UI thread): a busy VM offers nothing."""
        if not self._lock.acquire(timeout=0.05):
            return []
        try:
            if self._inflight or self.status != "running":
                return []
            vals = self._request("complete", {"text": text}, timeout=2.0, interruptible=False).values
        except VMError:
            return []
        finally:
            self._lock.release()
        cands = vals[0] if vals else []
        return [c for c in protocol.as_list(cands) if isinstance(c, str)]

    def execute(self, code: str, *args: Any, timeout: float | None = None) -> Result:
        """Run code and return values *and* the output it printed (the Python API's base)."""
        out = bytearray()
        blobs: list = []
        res = self._request("eval", {"code": code, "chunkname": "=vm"}, raw={"args": protocol.encode_list_parts(args, blobs)},
                            blobs=blobs, timeout=timeout, on_output=out.extend)
        res.output = bytes(out)
        return res

    def execute_string(self, code: str, timeout: float | None = None) -> dict[str, Any]:
        """The prior art's call shape: ``{stdout, stderr, values, success, return_code, error}``.

        Unlike :meth:`eval` it does not raise for an error in the code: ``success`` is False,
        ``error`` holds the VM-side message and ``return_code`` is 1.  A crashed VM still raises.
        """
        try:
            res = self.execute(code, timeout=timeout)
        except (VMCrashed, VMStateError) as exc:
            if not isinstance(exc, VMRestarted):  # a restarted VM runs: only this code failed
                raise
            return {"stdout": "", "stderr": "", "values": [], "success": False, "return_code": 1,
                    "error": exc.message, "kind": exc.kind, "traceback": exc.traceback}
        except VMError as exc:
            return {"stdout": "", "stderr": "", "values": [], "success": False, "return_code": 1,
                    "error": exc.message, "kind": exc.kind, "traceback": exc.traceback}
        return {"stdout": res.output.decode("utf-8", "replace"), "stderr": "", "values": res.values,
                "success": True, "return_code": 0, "error": None}

    # ------------------------------------------------------------------ encoded requests (Lua side)

    def request_encoded(self, op: str, fields: dict[str, Any], raw: dict[str, bytes] | None = None, *,
                        blobs: list | None = None, timeout: float | None = None,
                        on_output: Callable[[bytes], None] | None = None) -> bytes:
        """Run one request with pre-encoded fields; return the reply's encoded value list, in
        one piece (big strings that came as blobs are put back in)."""
        res = self._request(op, fields, raw=raw, blobs=blobs, timeout=timeout, on_output=on_output,
                            decode=False)
        return res.encoded if res.encoded is not None else protocol.EMPTY_LIST

    def request_lua(self, op: str, fields: dict[str, Any], raw: dict[str, bytes] | None = None,
                    blobs: list | None = None, *, timeout: float | None = None,
                    on_output: Callable[[bytes], None] | None = None) -> Result:
        """The Lua side's request: ``raw`` fields encoded by ``bioxen.wire`` may refer to
        ``blobs`` (big strings, sent as ``B`` frames straight from these objects).  The
        :class:`Result` holds the reply as it came (``reply``, ``start``, ``blobs``, all
        ``bytes``) for the Lua decoder: no big string is copied or cut out on this side."""
        return self._request(op, fields, raw=raw, blobs=blobs, timeout=timeout, on_output=on_output,
                             decode="lua")

    # ------------------------------------------------------------------ pipelining

    def send(self, code: str, *args: Any, chunkname: str = "=vm", encoded_args: bytes | None = None) -> int:
        """Start ``code`` without waiting; :meth:`recv` collects the result.  Returns the request id."""
        blobs: list = []
        raw = {"args": encoded_args if encoded_args is not None else protocol.encode_list_parts(args, blobs)}
        return self.send_request("eval", {"code": code, "chunkname": chunkname}, raw=raw, blobs=blobs)

    def send_request(self, op: str, fields: dict[str, Any], raw: dict[str, bytes] | None = None,
                     blobs: list | None = None) -> int:
        """Write any request without waiting for its reply (see :meth:`recv`); ``raw`` may
        refer to ``blobs`` as in :meth:`request_lua`."""
        with self._lock:
            self._check_usable()
            gated = gate_enter()  # Ctrl-C in the main thread: not in the middle of a small write
            try:
                return self._write_request(op, fields, raw=raw, blobs=blobs, sync=False)
            finally:
                if gated:
                    gate_exit()

    @property
    def pending(self) -> int:
        """Requests started with :meth:`send` whose results were not collected yet."""
        return sum(1 for p in self._inflight if not p.sync) + len(self._async_done)

    def recv(self, timeout: float | None = None, *, decode: bool | str = True,
             on_output: Callable[[bytes], None] | None = None) -> Result | None:
        """The next result of :meth:`send`, in order; ``None`` if it is not there within
        ``timeout`` seconds (``None`` = wait).  Raises the request's error.  ``decode``: True
        (Python values), False (``encoded``), ``"lua"`` (as :meth:`request_lua`).

        What the send printed is in ``Result.output`` (or the error's ``output``); with
        ``on_output`` it goes there instead, in pieces, and while this call waits on a send
        that is still running, its output is handed over as it arrives (the shell does this,
        so its memory stays bounded whatever the VM prints)."""
        with self._lock:
            if not self._async_done:
                target = next((p for p in self._inflight if not p.sync), None)
                if target is None:
                    raise VMStateError(f"{self.name}: nothing to receive (no vm.send pending)",
                                       kind="state", vm=self.name)
                target.stream = on_output
                try:
                    self._pump_until(target, timeout)
                except VMTimeout:
                    return None
                finally:
                    target.stream = None
            p = self._async_done.popleft()
            return self._finish(p, decode, on_output)

    def wait(self, timeout: float | None = None, *, decode: bool | str = True,
             on_output: Callable[[bytes], None] | None = None) -> Result | None:
        """Same as :meth:`recv`."""
        return self.recv(timeout, decode=decode, on_output=on_output)

    # ------------------------------------------------------------------ request machinery

    def _check_usable(self) -> None:
        # An agent that died since the last call is found by the request itself (its write
        # fails or the stream ends, and the reason is read then): no look at the process here,
        # it would cost a system call per request.
        if self._proc is not None and self.status in ("running", "busy"):
            return
        self.current_status()
        if self.status in ("crashed", "lost"):
            raise VMCrashed(self._crash_message(), kind="crashed", vm=self.name)
        raise VMStateError(f"{self.name}: VM is {self.status}" +
                           ("; start it with :restart()" if self.status == "stopped" else ""),
                           kind="state", vm=self.name)

    def _crash_message(self) -> str:
        if self._ending:
            return f"{self.name}: the VM was {self._ending} while this call was running"
        reason = self.exit_reason or "unknown reason"
        if reason == "connection lost":
            why = self._lost_detail()
            return f"{self.name}: VM lost (connection lost){'; ' + why if why else ''}; :restart() reconnects"
        return f"{self.name}: VM crashed ({reason}); :restart() starts it again"

    def _lost_detail(self) -> str | None:
        """What the backend knows of why the connection went (optional ``lost_detail``)."""
        detail = getattr(self.backend, "lost_detail", None)
        try:
            return detail() if detail is not None else None
        except Exception:  # a message must never fail for want of a detail
            return None

    def _request(self, op: str, fields: dict[str, Any], *, raw: dict[str, bytes] | None = None,
                 blobs: list | None = None,
                 timeout: float | None = None, on_output: Callable[[bytes], None] | None = None,
                 decode: bool | str = True, interruptible: bool = True) -> Result:
        with self._lock:
            self._check_usable()
            gated = gate_enter()  # Ctrl-C in the main thread waits for a point where the stream is in step
            try:
                rid = self._write_request(op, fields, raw=raw, blobs=blobs, sync=True, on_output=on_output)
                if timeout is None:
                    timeout = self.profile.call_timeout or None
                p = self._wait(rid, timeout=timeout, interruptible=interruptible)
                self.calls += 1
                return self._finish(p, decode)
            finally:
                if gated:
                    gate_exit()

    def _finish(self, p: Pending, decode: bool | str, on_output: Callable[[bytes], None] | None = None) -> Result:
        """The result of an answered request: Python values (``decode=True``), the encoded
        values in one piece (``False``), or the reply as it came for the Lua decoder (``"lua"``).
        What a ``send`` printed goes to ``on_output`` when given, else into ``Result.output``
        (or the error's ``output``).  A reply whose values cannot be decoded is a protocol error."""
        if p.error is not None:
            if p.output is not None:
                if on_output is not None:
                    p.take_output(on_output)
                elif not p.error.output:
                    p.error.output = p.take_output()
                else:
                    p.take_output(lambda _: None)
            raise p.error
        payload = p.reply or protocol.EXIT_REPLY
        blobs, p.blobs = p.blobs, None
        fields, span = (p.fields, p.span) if p.fields is not None else protocol.reply_span(payload)
        if not fields.get("ok"):
            err = self._reply_error(fields)
            err.output = p.take_output(on_output)
            raise err
        res = Result(output=p.take_output(on_output))
        if span is None:
            return res
        try:
            if decode == "lua":
                # lupa turns bytes (only bytes) into Lua strings: big frames already are bytes
                # (protocol._GrowingBuffer), so nothing is copied here.  The Lua side decodes (and
                # reports a malformed one through protocol_error).
                res.reply = payload if type(payload) is bytes else bytes(payload)
                res.start, res.end = span
                if blobs:
                    res.blobs = [b if type(b) is bytes else bytes(b) for b in blobs]
            elif decode:
                res.values = protocol.reply_values(payload, span, blobs)
            else:
                res.encoded = protocol.encoded_values(payload, span, blobs)
        except (ValueError, IndexError, RecursionError, OverflowError, MemoryError) as exc:
            raise self._protocol_failure(
                f"the values of the reply to request {p.id} ({p.op}) cannot be decoded: "
                f"{exc or type(exc).__name__}") from None
        return res

    def _reply_error(self, fields: dict[str, Any]) -> VMError:
        kind = fields.get("kind") or "error"
        msg = fields.get("error")
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        msg = str(msg) if msg is not None else "(no message)"
        cls = {"interrupted": VMInterrupted}.get(kind, VMError)
        tb = fields.get("traceback") or ""
        if isinstance(tb, bytes):
            tb = tb.decode("utf-8", "replace")
        return cls(msg, kind=kind, traceback=tb, vm=self.name)

    def _write_request(self, op: str, fields: dict[str, Any], *, raw: dict[str, bytes] | None = None,
                       blobs: list | None = None, sync: bool,
                       on_output: Callable[[bytes], None] | None = None) -> int:
        """Write one request: its blobs (``raw`` refers to ``blobs[i-1]`` as ``S<i>;``; big
        string fields are added after them), each in a ``B`` frame, then the ``Q`` frame."""
        self._next_id += 1
        rid = self._next_id
        pieces = protocol.request_frames(rid, op, fields, raw, blobs)
        p = Pending(rid, op, sync, on_output=on_output)
        self._inflight.append(p)
        try:
            self._send(pieces)
        except KeyboardInterrupt:
            # Part of the request may be written: the agent's input is out of step.
            self._stream_cut("landed in the middle of writing a request")
            raise
        except TransportClosed:
            self._on_stream_end()
            if p in self._async_done:
                self._async_done.remove(p)
            if p.error is not None:
                raise p.error from None
            return rid
        if self.status == "running":
            self.status = "busy"
        return rid

    def _send(self, pieces: list) -> None:
        """Write a request's pieces (``protocol.request_frames``: one piece for a small one)."""
        send = self._proc.send
        if len(pieces) == 1 or not deferring():
            for piece in pieces:
                send(piece)
            return
        # A big request is not written under the main thread's Ctrl-C deferral (a full pipe
        # could hold it long): a Ctrl-C during it restarts the VM (see _stream_cut).
        with undeferred():
            for piece in pieces:
                send(piece)

    def _wait(self, rid: int, *, timeout: float | None, interruptible: bool = True) -> Pending:
        """Read frames until the reply to ``rid``; replies to earlier ``send``s are queued."""
        target = next(p for p in self._inflight if p.id == rid)
        try:
            self._pump_until(target, None, call_timeout=timeout, interruptible=interruptible)
        finally:
            if not self._inflight and self.status == "busy":
                self.status = "running"
        if target.error is not None:
            raise target.error
        return target

    def _pump_until(self, target: Pending, recv_timeout: float | None, *,
                    call_timeout: float | None = None, interruptible: bool = True) -> None:
        """Process frames until ``target`` has its reply.

        ``recv_timeout``: give up (VMTimeout, request stays pending) after that long.
        ``call_timeout``: interrupt the call after that long.
        The profile's ``cpu_limit`` is watched here too, where the backend reports the agent's
        CPU time (``AgentProcess.cpu_seconds``): the agent's count hook normally stops such a
        call itself, but it never fires inside JIT-compiled code.
        Whatever interrupted a call, an agent that does not answer within ``kill_grace`` is
        killed and restarted (:meth:`_kill_stuck`).

        Every read waits at most one slice (50 ms), and Ctrl-C, the deadlines and the CPU limit
        are looked at after every frame as well as after every slice, so neither a VM that
        prints without pause nor one that stops in the middle of a frame can hold the wait.
        A frame left half-sent for ``stall_limit`` seconds of waiting is a protocol error.
        """
        start = time.monotonic()
        recv_deadline = None if recv_timeout is None else start + recv_timeout
        call_deadline = None if not call_timeout else start + call_timeout
        interrupted_at: float | None = None
        why: str | None = None
        stopped: Pending | None = None  # the request that was running when the interrupt went out
        keyboard = False  # a deferred Ctrl-C (main thread) is being acted on: raise it at the end
        gated = gate_enter()
        try:
            while target in self._inflight:
                now = time.monotonic()
                slice_end = now + _POLL_SLICE
                if recv_deadline is not None and recv_deadline < slice_end:
                    slice_end = recv_deadline
                frame = self._next_frame(slice_end)
                if frame is not None:
                    self._dispatch(*frame)
                    if target not in self._inflight:
                        break
                    now = time.monotonic()
                else:
                    if target not in self._inflight:
                        break  # the stream ended, or broke the protocol
                    self._check_stall()
                    if target not in self._inflight:
                        break
                    now = time.monotonic()
                if stopped is not None and stopped not in self._inflight:
                    # The request that was interrupted has answered.
                    if why == "cpu":
                        self._report_cpu_limit(stopped)
                        why = interrupted_at = stopped = None  # the next request has its own budget
                    elif self._inflight:
                        # Ctrl-C or the timeout stops the request that ran behind it too (this
                        # call, or earlier vm.send work ahead of it), with a grace period of its own.
                        stopped, interrupted_at = self._inflight[0], now
                        self.interrupt()
                if why is None:
                    if interruptible and gated and gate_take():
                        why, keyboard = "interrupt", True
                    elif interruptible and self.interrupted is not None and self.interrupted():
                        why = "interrupt"
                    elif call_deadline is not None and now >= call_deadline:
                        why = "timeout"
                    elif interruptible and now >= self._cpu_next:
                        self._cpu_next = now + _POLL_SLICE  # /proc is read at most every 50 ms
                        if self._cpu_exceeded():
                            why = "cpu"
                    if why is not None:
                        # (a CPU stop begun in an earlier recv() keeps its start, so short recv()
                        # polls still reach the end of its grace period)
                        interrupted_at = self._cpu_stopped_at if why == "cpu" else now
                        stopped = self._inflight[0] if self._inflight else None
                        self.interrupt()
                if why is not None and now - interrupted_at >= self.kill_grace:
                    self._kill_stuck(why, call_timeout if why == "timeout" else self.profile.cpu_limit)
                    break
                if self._interrupt_sent is not None and now - self._interrupt_sent >= _REINTERRUPT:
                    self.interrupt()
                if recv_deadline is not None and now >= recv_deadline:
                    raise VMTimeout(f"{self.name}: no result within {recv_timeout:g} s",
                                    kind="timeout", vm=self.name)
        except KeyboardInterrupt:
            # Ctrl-C raised by a SIGINT handler that is not ours (or outside the main thread's
            # deferral): interrupt the VM, wait for its answer so the stream stays in step, then
            # let Ctrl-C go on.  If it landed inside a read, bytes may be lost: start afresh.
            if self._in_read:
                self._in_read = False
                self._stream_cut("landed in the middle of a read of the VM's stream")
            else:
                self._stop_for_keyboard_interrupt(target)
            raise
        finally:
            if gated:
                gate_exit()  # a Ctrl-C that came while not interruptible is raised now
        if why == "cpu" and stopped is not None:
            self._report_cpu_limit(stopped)
        elif why == "timeout" and target.error is None and target.fields is not None:
            if target.fields.get("kind") == "interrupted":
                target.error = VMTimeout(
                    f"{self.name}: call timed out after {call_timeout:g} s and was stopped",
                    kind="timeout", vm=self.name)
        elif why == "interrupt" and target.error is None and target.sync:
            # Ctrl-C while this call waited: it stopped whatever ran (maybe earlier vm.send
            # work ahead of this call); this call reports the interrupt too, whatever it
            # returned, so one Ctrl-C stops the caller once.
            if target.fields is None or target.fields.get("ok"):
                target.error = VMInterrupted("interrupted", kind="interrupted", vm=self.name)
        if keyboard:
            raise KeyboardInterrupt

    def _stop_for_keyboard_interrupt(self, target: Pending) -> None:
        """After a KeyboardInterrupt in the waiting thread: stop the call (kill and restart the
        VM if it does not answer within the grace period).  The frame reader keeps its place,
        so a reply that was half read when Ctrl-C came is read to its end."""
        if target not in self._inflight or self._proc is None:
            return
        self.interrupt()
        try:
            self._pump_until(target, self.kill_grace, interruptible=False)
        except VMTimeout:
            self._kill_stuck("interrupt", None)
        except VMError:
            pass

    def _cpu_exceeded(self) -> bool:
        """Whether the running request has used more CPU than the profile's ``cpu_limit``
        (plus :func:`_cpu_margin`), measured by the host.  Only where the backend reports CPU
        time (``cpu_seconds()``; local workers do, remote agents rely on their own hook).  The
        count starts when the host first looks at the request (within 50 ms of its start for
        a synchronous call), so it never runs ahead of the agent's own count."""
        limit = self.profile.cpu_limit
        proc = self._proc
        if not limit or proc is None or not self._inflight or self._starting:
            return False
        reader = getattr(proc, "cpu_seconds", None)
        if reader is None:
            return False
        try:
            cpu = reader()
        except Exception:  # a backend's bookkeeping must never break a call
            cpu = None
        if cpu is None:
            return False
        head = self._inflight[0]
        if self._cpu_head is not head:
            self._cpu_head, self._cpu_base, self._cpu_stopped_at = head, cpu, None
            return False
        if cpu - self._cpu_base <= limit + _cpu_margin(limit):
            return False
        if self._cpu_stopped_at is None:
            self._cpu_stopped_at = time.monotonic()
        return True

    def _report_cpu_limit(self, p: Pending) -> None:
        """``p`` was interrupted by the host for its CPU limit and answered: report the limit
        (the agent answers ``interrupted`` when the host's interrupt came before its own check)."""
        if p.error is not None or p.fields is None:
            return
        if p.fields.get("kind") == "interrupted":
            p.error = VMError(f"CPU time limit exceeded ({self.profile.cpu_limit:g} s)",
                              kind="cpu_limit", vm=self.name)

    def _kill_stuck(self, why: str | None, limit: float | None) -> None:
        """The agent did not answer an interrupt within the grace period: it runs code the
        interrupt cannot reach (a loop in JIT-compiled code, one long C call).  Kill it and
        start a fresh agent through the restart machinery (same name, profile and backend), so
        the VM runs again but without its globals; every pending request fails with an error
        naming the limit.  If the restart fails too, the VM is crashed with both reasons."""
        grace = self.kill_grace
        if why == "timeout":
            label = "call_timeout" if limit == self.profile.call_timeout else "timeout"
            what, short = f"call timed out after {limit:g} s ({label} {limit:g} s)", f"{label} {limit:g} s"
            restarted_cls, crashed_cls, kind = TimeoutRestarted, VMTimeout, "timeout"
        elif why == "cpu":
            what, short = f"call used more than {limit:g} s of CPU (cpu_limit {limit:g} s)", f"cpu_limit {limit:g} s"
            restarted_cls, crashed_cls, kind = VMRestarted, VMError, "cpu_limit"
        else:
            what, short = "call was interrupted", "interrupted"
            restarted_cls, crashed_cls, kind = InterruptRestarted, VMInterrupted, "interrupted"
        what = (f"{self.name}: {what} and the VM did not answer the interrupt within {grace:g} s "
                f"(it was running code the interrupt cannot reach: JIT-compiled code or one long C call)")
        reason = f"killed by bioxen: {short}, no answer to the interrupt within {grace:g} s"
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.close()
        self.exit_reason = reason
        self.status = "crashed"
        pending = list(self._inflight)
        self._inflight.clear()
        failure: str | None = None
        stop_now: BaseException | None = None  # a KeyboardInterrupt during the restart
        if self._starting or self._ending or any(p.op == "exit" for p in pending):
            # start() waits on this agent (configure, preload), or stop/restart/destroy is
            # taking the VM over (or stop() waits for it to exit): no restart from in here.
            failure = "not restarted"
        else:
            done = list(self._async_done)  # start() forgets them; they are still to be collected
            try:
                self._discard_proc()
                self.start()
            except BaseException as exc:
                failure = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                if not isinstance(exc, Exception):
                    stop_now = exc
            finally:
                self._async_done.extendleft(reversed(done))
        if failure is None:
            self.restarts += 1
            self.last_restart = reason
            err: VMError = restarted_cls(
                f"{what}; the VM was killed and restarted, and its state (globals) was lost",
                kind=kind, vm=self.name)
        else:
            if self.status != "destroyed":
                self.status = "crashed"
            if failure != "not restarted":
                self.exit_reason = f"{reason}; restart failed: {failure}"
                msg = f"{what}; the VM was killed, and restarting it failed ({failure}); :restart() starts it again"
            else:
                msg = f"{what}; the VM was killed (:restart() starts it again)"
            err = crashed_cls(msg, kind=kind, vm=self.name)
        for p in pending:
            p.error = err
            if not p.sync:
                self._async_done.append(p)
        if stop_now is not None:
            raise stop_now

    def _fail_inflight(self, err: VMError) -> None:
        while self._inflight:
            p = self._inflight.popleft()
            p.error = err
            if not p.sync:
                self._async_done.append(p)

    def _dispatch(self, kind: bytes, payload: Any) -> None:
        if not self._inflight:
            if kind == b"O" and not payload:
                return  # a liveness probe that crossed the reply
            self._protocol_failure(f"{kind.decode()} frame while no request was pending")
            return
        head = self._inflight[0]
        if kind == b"O":
            if not payload:
                return  # liveness probe (protocol.md)
            if head.sync:
                (head.on_output or self.on_output or _default_output)(payload)
            elif head.stream is not None:
                if head.output is not None:
                    head.take_output(head.stream)
                head.stream(payload)
            else:
                if head.output is None:
                    head.output = Output()
                head.output.append(payload)
        elif kind == b"B":
            # A big string of the reply that comes next (protocol.md, "Blobs").
            head.blob_bytes += len(payload)
            limit = getattr(self.profile, "max_blob", protocol.MAX_BLOB)
            if limit and head.blob_bytes > limit:
                self._protocol_failure(f"the blobs of one reply add up to more than max_blob "
                                       f"({head.blob_bytes} bytes > {limit})")
                return
            if head.blobs is None:
                head.blobs = [payload]
            else:
                head.blobs.append(payload)
        elif kind == b"R":
            try:
                fields, span = protocol.reply_span(payload)
                problem = protocol.reply_problem(head.id, fields, payload, span)
            except (ValueError, IndexError, RecursionError, OverflowError) as exc:
                problem = str(exc)
            if problem is not None:
                self._protocol_failure(f"malformed reply to request {head.id} ({head.op}): {problem}")
                return
            self._inflight.popleft()
            self._interrupt_sent = None  # an interrupt is for the call that just answered
            head.reply, head.fields, head.span = payload, fields, span
            if not head.sync:
                self._async_done.append(head)
            if not self._inflight and self.status == "busy":
                self.status = "running"
        else:
            self._protocol_failure(f"{kind.decode()} frame in the middle of request {head.id} ({head.op})")

    def _on_stream_end(self) -> None:
        """The agent's stream ended: find out why, fail every pending request."""
        proc = self._proc
        reason = None
        if proc is not None:
            waiter = getattr(proc, "wait_exit_reason", None)
            if waiter is not None:
                reason = waiter(1.0)
            else:
                deadline = time.monotonic() + 1.0
                while reason is None and time.monotonic() < deadline:
                    reason = proc.exit_reason()
                    if reason is None:
                        time.sleep(0.01)
        self.exit_reason = reason or "connection lost"
        expected_exit = bool(self._inflight) and self._inflight[0].op == "exit"
        if expected_exit:
            for p in list(self._inflight):
                p.reply, p.fields, p.span = protocol.EXIT_REPLY, {"ok": True}, None
            self._inflight.clear()
            self.status = "stopped"
        else:
            self.status = "lost" if self.exit_reason == "connection lost" else "crashed"
            self._fail_inflight(VMCrashed(self._crash_message(), kind="crashed", vm=self.name))
        self._proc = None
        if proc is not None:
            proc.close()

    # ------------------------------------------------------------------ framing
    # One reader for every backend (protocol.FrameReader, fed from the AgentProcess): each read
    # waits at most until the deadline it is given (a 50 ms slice of the wait loop, which then
    # looks at Ctrl-C, the call's deadline, the CPU limit and a stall in mid-frame), headers
    # and lengths are checked before they are believed, O frames are handed over in pieces.

    def _new_reader(self) -> protocol.FrameReader:
        max_blob = getattr(self.profile, "max_blob", protocol.MAX_BLOB) or None
        return protocol.FrameReader(protocol.AGENT_KINDS, {b"B": max_blob}, stream=b"O",
                                limit_names={b"B": "the profile's max_blob", b"R": "protocol.MAX_REPLY",
                                             b"H": "protocol.MAX_HELLO"})

    @property
    def stall_limit(self) -> float:
        """Seconds the agent may leave a frame half-sent before the host gives up on it
        (a ``protocol`` error; the VM is crashed).  The profile's ``stall_limit``; 0 = none."""
        value = self.__dict__.get("_stall_limit")
        return value if value is not None else float(getattr(self.profile, "stall_limit", 30.0) or 0.0)

    @stall_limit.setter
    def stall_limit(self, value: float) -> None:
        self.__dict__["_stall_limit"] = value

    def _read_hello(self, deadline: float) -> tuple[bytes, bytes]:
        """The agent's first frame (it should be the hello), read as any frame is."""
        while True:
            frame = self._next_frame(min(deadline, time.monotonic() + _POLL_SLICE), starting=True)
            if frame is not None:
                return frame
            if self._proc is None:  # a protocol failure: _next_frame failed the VM
                raise VMProtocolError(self._crash_message(), kind="protocol", vm=self.name)
            self._check_stall()
            if self._proc is None:
                raise VMProtocolError(self._crash_message(), kind="protocol", vm=self.name)
            if time.monotonic() >= deadline:
                raise VMError(f"{self.name}: the agent did not say hello within {self.start_timeout:g} s",
                              kind="timeout", vm=self.name)

    def _next_frame(self, deadline: float, starting: bool = False) -> tuple[bytes, Any] | None:
        """The next frame ``(kind, payload)`` (for ``O``: the next piece of one), or ``None``
        when nothing more came by ``deadline``, or when the stream ended or broke the protocol
        (then the pending requests have their errors)."""
        reader = self._reader
        while True:
            try:
                frame = reader.next()
            except (protocol.FrameError, MemoryError) as exc:
                err = self._protocol_failure(str(exc) or "the host ran out of memory for a frame")
                if starting:
                    raise err from None
                return None
            if frame is not None:
                return frame
            proc = self._proc
            if proc is None:
                raise VMCrashed(self._crash_message(), kind="crashed", vm=self.name)
            timeout = deadline - time.monotonic()
            if timeout < 0.0:
                timeout = 0.0
            recv_into = getattr(proc, "recv_into", None)
            self._in_read = True
            try:
                view = reader.room() if recv_into is not None else None
                if view is not None:
                    n = recv_into(view, timeout)
                    if n:
                        reader.advance(n)
                else:
                    data = proc.recv(min(reader.want(), 16 << 20) if reader.pending() else _RECV_CHUNK, timeout)
                    n = len(data)
                    if n:
                        reader.add(data)
            except TransportTimeout:
                self._in_read = False
                self._starved += timeout
                return None
            except MemoryError:
                self._in_read = False
                err = self._protocol_failure(f"the host ran out of memory receiving {reader.progress()}")
                if starting:
                    raise err from None
                return None
            self._in_read = False
            if not n:
                if starting:
                    reason = getattr(proc, "wait_exit_reason", lambda t: proc.exit_reason())(1.0)
                    self.exit_reason = reason or "connection lost"
                    raise VMCrashed(f"{self.name}: the agent exited while starting ({self.exit_reason})",
                                    kind="crashed", vm=self.name)
                self._on_stream_end()
                return None
            self._starved = 0.0

    def _check_stall(self) -> None:
        """A frame left half-sent for ``stall_limit`` seconds of waiting ends the VM."""
        limit = self.stall_limit
        if limit and self._starved >= limit and self._proc is not None and self._reader.pending():
            self._protocol_failure(
                f"the agent stopped sending in the middle of a frame ({self._reader.progress()} "
                f"arrived, then nothing for {self._starved:.3g} s; stall_limit {limit:g} s)")

    def _protocol_failure(self, what: str) -> VMProtocolError:
        """The agent broke the protocol: kill it, crash the VM, fail every pending request."""
        err = VMProtocolError(f"{self.name}: protocol error: {what}; the VM was killed "
                              f"(:restart() starts it again)", kind="protocol", vm=self.name)
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.close()
        self.exit_reason = f"protocol error: {what}"
        if self.status != "destroyed":
            self.status = "crashed"
        self._reader = self._new_reader()
        self._fail_inflight(err)
        return err

    def protocol_error(self, what: str) -> VMProtocolError:
        """Report a reply the caller could not decode (the shell's Lua decoder does this):
        the VM is crashed as for any protocol error; returns the error to raise."""
        with self._lock:
            if self._proc is None and self.exit_reason and self.exit_reason.startswith("protocol error"):
                return VMProtocolError(self._crash_message(), kind="protocol", vm=self.name)
            return self._protocol_failure(what)

    def _stream_cut(self, what: str) -> None:
        """A KeyboardInterrupt (from a SIGINT handler that raises, outside the main thread's
        deferral) landed inside a read or a write of the stream: bytes may be lost or half a
        frame written, so the stream cannot be trusted.  Kill the agent and start a fresh one."""
        pending = list(self._inflight)
        self._inflight.clear()
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.close()
        err: VMError
        try:
            if self._starting or self._ending:
                raise VMError("not restarted")
            done = list(self._async_done)
            try:
                self._discard_proc()
                self.start()
            finally:
                self._async_done.extendleft(reversed(done))
            self.restarts += 1
            self.last_restart = f"Ctrl-C {what}"
            err = InterruptRestarted(f"{self.name}: Ctrl-C {what}; the VM was restarted, and its state "
                                      f"(globals) was lost", kind="interrupted", vm=self.name)
        except Exception as exc:
            self.status = "crashed" if self.status != "destroyed" else self.status
            self.exit_reason = f"Ctrl-C {what}"
            err = VMInterrupted(f"{self.name}: Ctrl-C {what}; the VM was killed"
                                + ("" if str(exc) == "not restarted" else f", and restarting it failed ({exc})")
                                + " (:restart() starts it again)", kind="interrupted", vm=self.name)
        for p in pending:
            p.error = err
            if not p.sync:
                self._async_done.append(p)


def _default_output(data: bytes) -> None:
    out = getattr(sys.stdout, "buffer", None)
    if out is not None:
        sys.stdout.flush()
        out.write(data)
        out.flush()
    else:
        sys.stdout.write(data.decode("utf-8", "replace"))
