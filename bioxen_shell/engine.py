"""The Python side of the shell: one Lua runtime running the Lua REPL engine.

The read-eval-print logic lives in Lua (``lua/bioxen/shell/``).  This class
creates the runtime, hands the Lua engine a small table of host callbacks
(output, interrupt polling, directory listing, history), and feeds it input.

User code runs in a worker thread while the calling thread waits on a ``done``
event.  During the wait a SIGINT handler turns Ctrl-C into a flag that the Lua
count hook polls, so even ``while true do end`` stops within milliseconds; the
third Ctrl-C gives up on Lua stuck in a C call and raises ShellExit(130).
(Waiting on an Event rather than ``Thread.join`` avoids CPython issue 90882.)

Strings: the runtime is created with ``encoding=None``, so Lua strings reach
Python as ``bytes`` (sequence data may be binary) and Python must pass
``bytes`` to Lua — a Python ``str`` would arrive as an opaque userdata.  Use
:meth:`Engine.to_lua` / :meth:`Engine.from_lua` to convert structures.
"""
from __future__ import annotations

import importlib
import io
import os
import signal
import sys
import threading
import time

TYPE_CHECKING = False  # typing costs ~2.5 ms of start-up: only for type checkers
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

from . import paths
from .runtimes import DEFAULT_RUNTIME, RUNTIMES, canonical_name, load_lupa

__all__ = ["Engine", "Result", "ShellExit", "EXTENSIONS"]

#: Modules whose ``install(engine)`` runs when an engine starts (and after :reset).
EXTENSIONS: list[str] = ["bioxen_shell.vm.bindings"]


class ShellExit(Exception):
    """Lua called ``os.exit(code)`` or the user asked to quit; the caller should exit."""

    def __init__(self, code: int = 0):
        super().__init__(code)
        self.code = code


class Result:
    """What one evaluation produced.  Byte strings: Lua output may be binary.

    kind: ``ok`` | ``error`` | ``syntax`` | ``interrupted`` | ``input`` (a script that cannot
    be run: missing, unreadable, a directory, over the size cap).
    output: the pretty-printed values (empty when there are none).
    message, traceback: for failures (traceback holds the user's frames only).
    (A plain class, not a dataclass: importing dataclasses costs start-up time.)
    """

    __slots__ = ("ok", "kind", "output", "message", "traceback")

    def __init__(self, ok: bool, kind: str, output: bytes = b"", message: bytes = b"",
                 traceback: bytes = b"") -> None:
        self.ok, self.kind, self.output = ok, kind, output
        self.message, self.traceback = message, traceback

    def __repr__(self) -> str:
        return (f"Result(ok={self.ok!r}, kind={self.kind!r}, output={self.output!r}, "
                f"message={self.message!r}, traceback={self.traceback!r})")

    def error_text(self) -> bytes:
        """Message and traceback as one block, for stderr."""
        text = self.message
        if self.traceback:
            text += b"\n" + self.traceback
        return text


def _field(table: Any, name: str, default: Any = None) -> Any:
    value = table[name.encode()]
    return default if value is None else value


class Engine:
    """A Lua runtime running the bioxen REPL engine.

    ``runtime``: a name from :data:`bioxen_shell.runtimes.RUNTIMES` (or alias).
    ``extensions``: modules to ``install(engine)`` at start.
    ``module_paths``: extra directories searched by ``require`` (before
    ``BIOXEN_PATH`` and the sequence library).
    ``stdout``: a binary stream for Lua output (default: ``sys.stdout`` at write time).
    """

    def __init__(
        self,
        runtime: str = DEFAULT_RUNTIME,
        *,
        extensions: Iterable[str] = EXTENSIONS,
        module_paths: Iterable[str] = (),
        stdout: Any = None,
    ) -> None:
        self.runtime = canonical_name(runtime)
        self._extensions = list(extensions)
        self._module_paths = [str(p) for p in module_paths]
        self._stdout = stdout
        self._stop = threading.Event()
        self._exit_code: int | None = None
        self._close_hooks: list[Callable[[], None]] = []
        self._status: list[Callable[[], str | None]] = []
        self._worker_ident: int | None = None
        self._busy: threading.Event | None = None
        self._presses = 0  # Ctrl-C presses during the current call
        self._tty_cache: tuple[Any, bool] = (None, False)
        self._out_cache: tuple[Any, Any, str] = (None, None, "")  # stream, binary stream, mode
        # Output held back for an unbuffered stdout (see write): the stream, pieces, size.
        self._held_out: Any = None
        self._held: list[bytes] = []
        self._held_size = 0
        self._closed = False
        #: Set by the front end: ``fn(n) -> list[str]``, the last n history entries.
        self.history_provider: Callable[[int], list[str]] | None = None
        self._start()

    # ------------------------------------------------------------------ setup

    def _start(self) -> None:
        self.lupa = load_lupa(self.runtime)
        self.lua = self.lupa.LuaRuntime(
            encoding=None,
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
        )
        # bioxen's search path, then the current directory as plain `lua` does.
        search = paths.lua_search_path(self._module_paths) + ";./?.lua;./?/init.lua"
        self.lua.globals()[b"package"][b"path"] = search.encode()
        host = self.lua.table_from(
            {
                b"write": self.write,
                b"flush": self.flush,
                b"poll": self._poll,
                b"request_exit": self._request_exit,
                b"cancel_exit": self._cancel_exit,
                b"listdir": self._listdir,
                b"read_script": self._read_script,
                b"history": self._history,
                b"clock": time.perf_counter,
                b"runtimes": lambda: self.lua.table_from([n.encode() for n in RUNTIMES]),
                b"runtime": self.runtime.encode(),
            }
        )
        shell_module = self.require("bioxen.shell")
        self.shell = shell_module[b"new"](host)
        self._api = self.shell[b"api"]
        self._load_extensions()

    def _load_extensions(self) -> None:
        for name in self._extensions:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name == name or name.startswith(f"{exc.name}."):
                    continue  # that extension (or its package) is not installed: fine
                self._report_extension_error(name, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - report, keep the shell usable
                self._report_extension_error(name, exc)
                continue
            try:
                module.install(self)
            except Exception as exc:  # noqa: BLE001
                self._report_extension_error(name, exc)

    @staticmethod
    def _report_extension_error(name: str, exc: BaseException) -> None:
        sys.stderr.write(f"bioxen: extension {name} failed to load: {type(exc).__name__}: {exc}\n")
        if os.environ.get("BIOXEN_DEBUG"):
            import traceback

            traceback.print_exception(exc)

    # ---------------------------------------------------------- host callbacks

    def write(self, data: bytes) -> None:
        """Write bytes to the shell's output (Lua ``print`` lands here too).

        Buffered like C stdio's stdout: flushed at once on a terminal, else in
        blocks and when each call into Lua ends.  That holds even when Python
        runs unbuffered (``python -u``, ``PYTHONUNBUFFERED``, common in
        containers), whose raw stdout would otherwise cost one system call
        per ``io.write`` -- several milliseconds for a table of a few thousand
        lines.
        """
        if data.__class__ is not bytes:
            data = data.encode() if isinstance(data, str) else bytes(data)
        stream = self._stdout or sys.stdout
        cached_stream, out, mode = self._out_cache
        if stream is not cached_stream:  # look the stream up once, not per write
            out, mode = self._output_mode(stream)
            self._out_cache = (stream, out, mode)
        if mode == "hold":
            if out is not self._held_out:
                self._release_held()
                self._held_out = out
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size >= 65536:
                try:
                    self._release_held()
                except BrokenPipeError:
                    self._stdout_gone()
            return
        try:
            if self._held:
                self._release_held()
            if mode == "text":  # a text-only stream (e.g. io.StringIO)
                out.write(data.decode("utf-8", "replace"))
                return
            out.write(data)
            if mode == "tty":
                out.flush()
        except BrokenPipeError:
            self._stdout_gone()

    def _output_mode(self, stream: Any) -> tuple[Any, str]:
        """(binary stream, how to write to it) for ``stream``: "tty" (flush every
        write), "buffered", "hold" (raw, unbuffered: write() buffers), "text"."""
        out = stream if self._stdout is not None else getattr(stream, "buffer", None)
        if out is None:
            return stream, "text"
        if self._interactive_output():
            return out, "tty"
        return out, "hold" if isinstance(out, io.RawIOBase) else "buffered"

    def _release_held(self) -> None:
        """Write out what write() held back for an unbuffered stream."""
        held, out = self._held, self._held_out
        if not held:
            return
        self._held, self._held_size = [], 0
        view = memoryview(b"".join(held))
        while view:  # a raw stream may take part of it
            written = out.write(view)
            if written is None:
                raise BlockingIOError("bioxen: stdout is non-blocking and full")
            view = view[written:]

    def flush(self) -> None:
        try:
            self._release_held()
        except BrokenPipeError:
            self._stdout_gone()
        except (OSError, ValueError):
            self._held, self._held_size = [], 0
        out = self._stdout if self._stdout is not None else getattr(sys.stdout, "buffer", sys.stdout)
        try:
            out.flush()
        except BrokenPipeError:
            self._stdout_gone()
            try:
                out.flush()  # now into /dev/null: nothing left to complain at exit
            except (OSError, ValueError):
                pass
        except (OSError, ValueError):
            pass

    def _stdout_gone(self) -> None:
        """The reader of stdout went away (``bioxen run x.lua | head``).

        End the running code as SIGPIPE ends ``lua`` -- exit status 141, no
        message -- instead of raising "Broken pipe" into Lua: the exit request
        is seen by the interrupt hook, and stdout is pointed at /dev/null so
        later writes and the final flush go nowhere quietly.
        """
        self._held, self._held_size = [], 0
        if self._stdout is None:
            try:
                fd = sys.stdout.fileno()
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)
            except (OSError, ValueError, AttributeError):
                pass
        if self._busy is not None and self._exit_code is None:
            self._exit_code = 128 + signal.SIGPIPE

    def _interactive_output(self) -> bool:
        """Is the output a terminal?  (Then every write is flushed, as C stdio does.)

        Cached per stream object: isatty() is a system call and print() is hot.
        """
        stream = self._stdout or sys.stdout
        if self._tty_cache[0] is not stream:
            try:
                tty = stream.isatty()
            except (AttributeError, ValueError):
                tty = False
            self._tty_cache = (stream, tty)
        return self._tty_cache[1]

    def _poll(self) -> int:
        if self._exit_code is not None:
            return 2
        return 1 if self._stop.is_set() else 0

    def _request_exit(self, code: int) -> None:
        self._exit_code = int(code)

    def _cancel_exit(self) -> None:
        """os.exit inside ``:run FILE`` ends that script only (the REPL goes on)."""
        self._exit_code = None

    def _listdir(self, path: bytes) -> Any:
        entries = []
        try:
            with os.scandir(os.path.expanduser(os.fsdecode(path)) or ".") as it:
                for entry in it:
                    try:
                        is_dir = entry.is_dir()
                    except OSError:
                        is_dir = False
                    entries.append(self.lua.table_from([os.fsencode(entry.name), is_dir]))
        except OSError:
            pass
        return self.lua.table_from(entries)

    @staticmethod
    def _read_script(path: bytes) -> Any:
        """A script's bytes, or ``(nil, message)``: at most ``files.MAX_SCRIPT_BYTES``, so
        ``bioxen run /dev/zero`` fails at once (the message names the file and the cap)."""
        from .files import MAX_SCRIPT_BYTES, InputFileError, read_capped

        name = os.fsdecode(path)
        try:
            return read_capped(name, MAX_SCRIPT_BYTES, "a Lua script")
        except FileNotFoundError:
            return None, b"cannot open " + path + b": no such file"
        except InputFileError as exc:
            return None, os.fsencode(str(exc))

    def _history(self, n: int) -> Any:
        items = self.history_provider(int(n)) if self.history_provider else []
        return self.lua.table_from([s.encode() for s in items])

    # ------------------------------------------------------------- running code

    def _call(self, fn: Any, *args: Any) -> Any:
        """Run a Lua call in the worker thread; Ctrl-C in this thread interrupts it."""
        if self._closed:
            raise RuntimeError("the Lua engine is closed")
        if threading.get_ident() == self._worker_ident:
            return fn(*args)  # re-entered from Lua (an extension's callback)
        self._stop.clear()
        self._exit_code = None
        if self._stdout is None:
            sys.stdout.flush()  # what Python printed before comes before Lua's output
        done = threading.Event()
        box: list[tuple[bool, Any]] = []

        def work() -> None:
            self._worker_ident = threading.get_ident()
            try:
                box.append((True, fn(*args)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box.append((False, exc))
            finally:
                self._worker_ident = None
                done.set()

        self._busy = done
        previous = self._catch_sigint()
        try:
            threading.Thread(target=work, name="bioxen-lua", daemon=True).start()
            while not done.is_set():
                try:
                    done.wait(0.1)
                except KeyboardInterrupt:  # raised by someone else's SIGINT handler
                    self._on_sigint()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        self._busy = None
        self._stop.clear()
        self.flush()
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def _catch_sigint(self) -> Any:
        """While Lua runs, Ctrl-C only raises the interrupt flag.

        A handler that sets a flag (instead of raising KeyboardInterrupt at any
        bytecode) cannot break the wait loop half-way.  Returns the previous
        handler, or None when not on the main thread (no signals arrive there).
        """
        if threading.current_thread() is not threading.main_thread():
            return None
        self._presses = 0
        return signal.signal(signal.SIGINT, lambda signum, frame: self._on_sigint())

    def _on_sigint(self) -> None:
        self._presses += 1
        self.interrupt()
        if self._presses == 2:
            sys.stderr.write(
                "\nbioxen: still stopping (a long call inside a C function cannot be "
                "interrupted); press Ctrl-C again to quit bioxen\n"
            )
            sys.stderr.flush()
        elif self._presses >= 3:
            raise ShellExit(130)

    def _to_result(self, table: Any) -> Result:
        kind = _field(table, "kind", b"error").decode()
        if kind == "exit":
            raise ShellExit(self._exit_code if self._exit_code is not None else 0)
        return Result(
            ok=bool(_field(table, "ok", False)),
            kind=kind,
            output=_field(table, "output", b""),
            message=_field(table, "message", b""),
            traceback=_field(table, "traceback", b""),
        )

    def eval_line(self, line: str) -> Result:
        """Evaluate one REPL input: a meta-command (``:help``) or Lua code.

        Expressions print their values (in ``Result.output``).  Raises
        :class:`ShellExit` for ``os.exit`` and ``:quit``.
        """
        table = self._call(self._api[b"handle"], line.encode())
        action = _field(table, "action")
        result = self._to_result(table)
        if action is not None:
            return self._do_action(action.decode(), _field(table, "arg", b"").decode(), result)
        return result

    def _do_action(self, action: str, arg: str, result: Result) -> Result:
        if action == "quit":
            raise ShellExit(0)
        if action == "reset":
            self.reset()
            return Result(True, "ok", output=b"fresh Lua state (" + self.runtime.encode() + b")")
        if action == "runtime":
            try:
                self.switch_runtime(arg)
            except ValueError as exc:
                return Result(False, "error", message=str(exc).encode())
            return Result(True, "ok", output=f"switched to {self.runtime} (a fresh Lua state)".encode())
        return result

    def execute(self, src: str | bytes, chunkname: str = "=(command line)",
                args: Iterable[str] | None = None) -> Result:
        """Run a chunk as a script (``-e``, stdin).  An expression prints its values.

        With ``args`` the chunk is the script ``-`` (stdin, as in ``lua - a b``):
        a ``#`` first line is skipped, ``arg`` is set and ``...`` holds ``args``.
        """
        if isinstance(src, str):
            src = src.encode()
        lua_args = None if args is None else self.lua.table_from([os.fsencode(a) for a in args])
        return self._to_result(self._call(self._api[b"execute"], src, chunkname.encode(), lua_args))

    def set_arg(self, script: str, args: Iterable[str] = ()) -> None:
        """Set the global ``arg`` for ``script`` and its ``args`` (``arg[0]`` is the script), as
        ``lua`` does before its ``-e`` chunks; run_file and execute set it again."""
        self._api[b"set_arg"](os.fsencode(script), self.lua.table_from([os.fsencode(a) for a in args]))

    def run_file(self, path: str | os.PathLike, args: Iterable[str] = ()) -> Result:
        """Run a Lua script with ``arg``/``...`` set as ``lua`` does; globals stay in the shell."""
        lua_args = self.lua.table_from([os.fsencode(a) for a in args])
        return self._to_result(self._call(self._api[b"run_file"], os.fsencode(path), lua_args))

    def is_complete(self, src: str) -> tuple[str, int]:
        """``("complete" | "incomplete" | "invalid", indent)`` for the input so far."""
        status, indent = self._api[b"is_complete"](src.encode())
        return status.decode(), int(indent)

    def complete(self, text: str, cursor: int | None = None) -> list[tuple[str, int, str]]:
        """Completions for ``text[:cursor]``: ``(replacement, start_position, meta)``.

        ``start_position`` is negative (in characters), as prompt_toolkit's
        ``Completion`` wants it.
        """
        if cursor is not None:
            text = text[:cursor]
        if self._busy is not None:
            return []  # never touch a runtime that is running user code
        encoded = text.encode()
        res = self._api[b"complete"](encoded)
        replace = int(res[b"replace"])
        # Lua counts bytes; prompt_toolkit wants characters.
        start = -len(encoded[len(encoded) - replace:].decode(errors="replace")) if replace else 0
        out = []
        for item in res[b"items"].values():
            out.append((item[b"text"].decode(errors="replace"), start, (item[b"meta"] or b"").decode()))
        return out

    def signature(self, text: str) -> dict[str, Any] | None:
        """The call ``text`` ends inside: ``{"name", "signature", "doc", "arg"}`` or None.

        Found on the Lua side without calling anything (complete.signature), from
        the same help that ``:help`` shows.
        """
        if self._busy is not None or len(text) > 20000:
            return None  # never block the UI; a huge input is not worth lexing per key
        res = self._api[b"signature"](text.encode())
        if res is None:
            return None
        doc = res[b"doc"]
        return {
            "name": res[b"name"].decode(errors="replace"),
            "signature": res[b"signature"].decode(errors="replace"),
            "doc": doc.decode(errors="replace") if doc is not None else None,
            "arg": int(res[b"arg"]),
        }

    def prompt_name(self) -> str | None:
        """The name of the eval target (``:attach``) or None when evaluating locally."""
        if self._busy is not None:
            return None  # never block the UI on a runtime that is running user code
        name = self._api[b"prompt_name"]()
        return name.decode() if name is not None else None

    def detach(self) -> Result | None:
        """Ctrl-D while attached: back to the shell's own Lua (``:detach``), whose result
        is returned; None when not attached (Ctrl-D then ends the REPL)."""
        if self.prompt_name() is None:
            return None
        return self.eval_line(":detach")

    def set_option(self, name: str, value: int) -> None:
        """Set a printing option (depth, items, string_max, width, indent)."""
        self._api[b"set_option"](name.encode(), value)

    # -------------------------------------------------------------- interrupts

    def interrupt(self) -> None:
        """Ask the running Lua code to stop (it raises "interrupted!")."""
        self._stop.set()

    def interrupted(self) -> bool:
        """True while a Ctrl-C is pending for the running code (VM waits poll this)."""
        return self._stop.is_set()

    @property
    def busy(self) -> bool:
        """True while user code runs in the worker thread."""
        return self._busy is not None

    # ------------------------------------------------------- extension points

    def set_global(self, name: str, value: Any) -> None:
        """Set a Lua global (strings are converted to Lua strings)."""
        self.lua.globals()[name.encode()] = self.to_lua(value)

    def require(self, module: str) -> Any:
        """``require`` a Lua module in this runtime and return it."""
        loaded = self.lua.require(module.encode())
        # Lua 5.4+ `require` also returns the loader data; keep the module only.
        return loaded[0] if isinstance(loaded, tuple) else loaded

    def on_close(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` when the engine closes, resets or switches runtime (VM cleanup)."""
        self._close_hooks.append(fn)

    def add_status(self, fn: Callable[[], str | None]) -> None:
        """Add a toolbar segment: ``fn()`` returns short text, or None to hide it."""
        self._status.append(fn)

    def status_segments(self) -> list[str]:
        out = []
        for fn in self._status:
            try:
                text = fn()
            except Exception as exc:  # noqa: BLE001 - a broken segment must not break the UI
                text = f"status error: {exc}"
            if text:
                out.append(text)
        return out

    def to_lua(self, value: Any) -> Any:
        """Python value -> Lua value: str -> Lua string, dict/list/tuple -> tables (recursively)."""
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, dict):
            return self.lua.table_from({self.to_lua(k): self.to_lua(v) for k, v in value.items()})
        if isinstance(value, (list, tuple)):
            return self.lua.table_from([self.to_lua(v) for v in value])
        return value

    def from_lua(self, value: Any) -> Any:
        """Lua value -> Python: tables become lists (keys 1..n) or dicts; strings stay bytes."""
        if self.lupa.lua_type(value) != "table":
            return value
        items = {k: self.from_lua(v) for k, v in value.items()}
        if items and all(isinstance(k, int) for k in items) and sorted(items) == list(range(1, len(items) + 1)):
            return [items[i] for i in range(1, len(items) + 1)]
        return items

    # -------------------------------------------------------------- lifecycle

    def _run_close_hooks(self) -> None:
        if self._busy is not None:  # left by an exception (SIGTERM, 3x Ctrl-C) mid-call
            self.interrupt()
            if self._busy.wait(2.0):
                self._busy = None
        hooks, self._close_hooks = self._close_hooks, []
        for fn in reversed(hooks):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - every hook must get its turn
                sys.stderr.write(f"bioxen: cleanup failed: {type(exc).__name__}: {exc}\n")
        self._status = []

    def reset(self) -> None:
        """A fresh Lua state on the same runtime (close hooks run first)."""
        self._run_close_hooks()
        self._start()

    def switch_runtime(self, name: str) -> None:
        """A fresh Lua state on another runtime (raises ValueError for a bad name)."""
        new = canonical_name(name)
        load_lupa(new)  # fail before tearing anything down
        self._run_close_hooks()
        self.runtime = new
        self._start()

    def close(self) -> None:
        """Stop running code, run the cleanup hooks (VMs are destroyed).  Idempotent.

        Also flushes the C stdio streams of files Lua left open, where the
        runtime can (see :attr:`c_streams_flushed`).
        """
        if self._closed:
            return
        self._run_close_hooks()
        self._closed = True
        self.flush()
        if self._busy is None:
            try:
                self.c_streams_flushed = bool(self._api[b"flush_c_streams"]())
            except Exception:  # noqa: BLE001 - a broken state: the normal exit path flushes
                self.c_streams_flushed = False

    #: Set by close(): True when every C stdio stream was flushed, so the process
    #: may end with os._exit (cli._exit_now) without losing file data.
    c_streams_flushed = False

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
