"""The ``bioxen`` command.

    bioxen                       the REPL (prompt_toolkit on a terminal; prompts on
                                 the terminal when only stdin is one: bioxen | tee log)
    bioxen [OPTS] FILE.lua [ARGS...]      run a script (as ``bioxen run``)
    bioxen run [OPTS] FILE.lua [ARGS...]  run a script: ``arg``/``...`` as in ``lua``; a ``#!`` line is allowed
    bioxen -e CODE               run a chunk (an expression prints its value)
    bioxen - [ARGS...]  /  … | bioxen   run Lua read from stdin as the script "-" (no prompt, no escape codes)
    bioxen -i [FILE]             run FILE (and -e chunks), then open the REPL
    bioxen profiles|vm|config …  subcommands of the VM and remote layers

Exit status: 0; ``os.exit(n)`` gives n; an uncaught Lua error gives 1 (message
and traceback on stderr); bad usage or a missing file gives 2.

This module is on the start-up path of ``bioxen -e`` and ``bioxen run``: it
must not import prompt_toolkit, pygments or the VM layer at module level, and
ordinary command lines are parsed without argparse (importing and building it
costs ~3 ms of a ~30 ms start); argparse still owns ``--help``, every error
message and every command line the small parser is not sure about.
"""
from __future__ import annotations

import gc
import importlib
import os
import signal
import sys

from . import __version__

TYPE_CHECKING = False  # typing costs ~2.5 ms of start-up: only for type checkers
if TYPE_CHECKING:
    import argparse
    from typing import Callable, Sequence

__all__ = ["main", "SUBCOMMANDS"]

#: Subcommand -> "module:function"; the function takes argv and returns an exit status.
SUBCOMMANDS: dict[str, str] = {
    "profiles": "bioxen_shell.vm.profiles:cli_main",
    "vm": "bioxen_shell.remote.gc:cli_main",
    "config": "bioxen_shell.remote.config:cli_main",
}

USAGE_EXIT = 2


class UsageError(Exception):
    """Bad command line: printed as one line, exit status 2."""


def _build_parser() -> argparse.ArgumentParser:
    import argparse

    from .runtimes import RUNTIMES, default_runtime

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # one line, not argparse's two
            raise UsageError(f"{message} (see bioxen --help)")

    p = _Parser(
        prog="bioxen",
        description="A Lua shell for biological sequence work, with Lua VMs that run "
        "locally, over SSH or on XCP-ng.",
        epilog="Subcommands: bioxen run FILE [args]; bioxen profiles …; bioxen vm …; "
        "bioxen config …  (each has --help).  See docs/shell.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-e", dest="chunks", action="append", default=[], metavar="CODE",
                   help="run the Lua chunk CODE (repeatable; an expression prints its value)")
    p.add_argument("-l", dest="modules", action="append", default=[], metavar="MODULE",
                   help="require MODULE into the global of the same name, or -l NAME=MODULE (repeatable)")
    p.add_argument("-i", dest="interactive", action="store_true",
                   help="open the REPL after running the script and -e chunks")
    p.add_argument("--runtime", metavar="NAME",
                   help=f"Lua runtime: {' '.join(RUNTIMES)} (default: runtime in the [shell] table "
                   f"of config.toml, else {default_runtime()}); aliases such as 5.4 or lua5.4 work too")
    p.add_argument("--path", dest="paths", action="append", default=[], metavar="DIR",
                   help="also search DIR for Lua modules (repeatable; see also BIOXEN_PATH)")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("script", nargs="?", metavar="FILE",
                   help="a Lua script to run ('-' reads Lua from stdin)")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARG",
                   help="arguments for the script (its `arg` table and `...`)")
    return p


class _Options:
    """What _build_parser().parse_args() returns, for the command lines _quick_parse handles."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.modules: list[str] = []
        self.interactive = False
        self.runtime: str | None = None
        self.paths: list[str] = []
        self.version = False
        self.script: str | None = None
        self.args: list[str] = []


#: Options that take a value -> the _Options list (or attribute) it goes to.
_VALUE_OPTIONS = {"-e": "chunks", "-l": "modules", "--path": "paths", "--runtime": "runtime"}


def _quick_parse(argv: list[str]) -> _Options | None:
    """Parse an ordinary command line exactly as _argparse would, or return None.

    Handles the options of _build_parser spelled out in full (``--runtime NAME``
    or ``--runtime=NAME``), ``--`` and the script with its arguments.  Anything
    else -- ``--help``, abbreviations, attached values (``-eCODE``), a value
    that starts with ``-``, a missing value -- returns None and goes to argparse,
    which also writes every error message.  tests/shell/test_cli_quick.py
    checks it agrees with _argparse.
    """
    opts = _Options()
    i, n = 0, len(argv)
    while i < n:
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg == "-" or not arg.startswith("-"):
            break  # the script: it and everything after it belong to the script
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _VALUE_OPTIONS:
            if not eq:
                if i + 1 >= n:
                    return None
                i += 1
                value = argv[i]
            if value.startswith("-"):
                return None
            field = _VALUE_OPTIONS[name]
            if field == "runtime":
                opts.runtime = value
            else:
                getattr(opts, field).append(value)
        elif arg == "-i":
            opts.interactive = True
        elif arg == "--version":
            opts.version = True
        else:
            return None
        i += 1
    if i < n:
        opts.script = argv[i]
        opts.args = argv[i + 1:]
    return opts


def _argparse(argv: list[str]) -> argparse.Namespace:
    """Parse with argparse, keeping the script's arguments as given.

    argparse drops a ``--`` that comes right after the script; ``lua`` passes
    it on (``lua f.lua -- x``: ``arg[1]`` is ``--``), and so does bioxen.
    """
    opts = _build_parser().parse_args(argv)
    if opts.script is not None:
        n = len(opts.args)
        start = len(argv) - n - 1  # where the script is when nothing was dropped
        if argv[start:] != [opts.script, *opts.args] and start > 0 and argv[start - 1] == opts.script:
            opts.args = argv[start:]
    return opts


def _stderr(text: str | bytes) -> None:
    if isinstance(text, str):
        text = text.encode(errors="replace")
    sys.stderr.flush()
    sys.stderr.buffer.write(text)
    sys.stderr.buffer.flush()


def _run_subcommand(name: str, argv: list[str]) -> int:
    target = SUBCOMMANDS[name]
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
        func = getattr(module, func_name)
    except (ImportError, AttributeError) as exc:
        _stderr(f"bioxen: the '{name}' subcommand is not available ({module_name}: {exc})\n")
        return USAGE_EXIT
    return int(func(argv) or 0)


def _on_terminate(signum: int, frame: object) -> None:
    # Unwind normally so Engine.close() runs its cleanup hooks (VMs are destroyed).
    raise SystemExit(128 + signum)


def _report(result) -> int:  # noqa: ANN001 - engine.Result, imported lazily
    """Print a result; return the exit status it means for a script."""
    if result.ok:
        if result.output:
            sys.stdout.flush()
            sys.stdout.buffer.write(result.output + b"\n")
        return 0
    _stderr(b"bioxen: " + result.error_text() + b"\n")
    if result.kind == "input":  # the script could not be read: bad input, as a missing file
        return USAGE_EXIT
    return 130 if result.kind == "interrupted" else 1


def _check_file(path: str) -> None:
    if path == "-":
        return
    if not os.path.exists(path):
        raise UsageError(f"cannot open {path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"cannot run {path}: it is a directory")
    if not os.access(path, os.R_OK):
        raise UsageError(f"cannot open {path}: permission denied")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bioxen`` command; returns the exit status.

    Called without ``argv`` -- as the ``bioxen`` console script and ``python -m
    bioxen_shell`` call it -- it ends the process itself (see _exit_now).
    """
    if argv is None:
        _exit_now(_main_argv(sys.argv[1:]))
    return _main_argv(list(argv))


def _main_argv(argv: list[str]) -> int:
    # Start-up allocates tens of thousands of objects (imports) that all stay
    # alive: the cyclic garbage collector would only walk them, ~1.5 ms here.
    # It is on again before any Lua or user code runs (in _main).
    gc.disable()
    try:
        return _dispatch(argv)
    finally:
        gc.enable()


#: Set when the last engine's close() flushed every C stdio stream (see _exit_now).
_c_streams_flushed = False


def _exit_now(status: int) -> None:
    """Exit with ``status`` without tearing the interpreter down.

    main() has already closed the engine (its VMs are destroyed, output is
    flushed, and the C stdio buffers of files Lua left open are flushed as
    C's exit() would).  What normal interpreter finalization adds -- tearing
    down every module, a last garbage collection -- costs ~5 ms, a sixth of
    ``bioxen -e``'s start-up, and nothing a finished process needs.  atexit
    handlers still run.  Falls back to a normal exit whenever that might
    differ: no engine ran or it could not flush C streams (PUC Lua runtimes,
    subcommands), a non-daemon thread still running, stdout that cannot be
    flushed.
    """
    threading = sys.modules.get("threading")
    others = threading is not None and any(
        t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate())
    run_exitfuncs = getattr(__import__("atexit"), "_run_exitfuncs", None)
    if others or run_exitfuncs is None or not _c_streams_flushed:
        sys.exit(status)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(status)  # let the normal exit report it
    run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(status)


_RUN_USAGE = "bioxen run [OPTIONS] FILE [ARGS...]"


def _dispatch(argv: list[str]) -> int:
    try:
        if argv and argv[0] in SUBCOMMANDS:
            gc.enable()  # a subcommand may run for long: collect as usual
            return _run_subcommand(argv[0], argv[1:])
        run = bool(argv) and argv[0] == "run"
        if run:
            argv = argv[1:]
            if argv[:1] in (["-h"], ["--help"]):
                print(f"usage: {_RUN_USAGE}\n\nRun a Lua script; `arg` and `...` hold the arguments, "
                      "a leading #! line is skipped.  The options (before FILE) are bioxen's "
                      "(see bioxen --help); everything after FILE goes to the script.")
                return 0
        opts = _quick_parse(argv) or _argparse(argv)
        if run and opts.script is None and not opts.version:
            raise UsageError(f"run: missing FILE (usage: {_RUN_USAGE})")
        return _main(opts)
    except UsageError as exc:
        _stderr(f"bioxen: {exc}\n")
        return USAGE_EXIT


def _main(opts: argparse.Namespace | _Options) -> int:
    from .runtimes import UnknownRuntime, default_runtime

    if opts.version:
        import lupa

        print(f"bioxen {__version__} (lupa {lupa.__version__}; default runtime {default_runtime()})")
        return 0
    script = opts.script
    if script is not None:
        _check_file(script)
    warm_up = _prestart_vms_if_used(script, opts.chunks)
    stdin_chunk = script == "-" or (
        script is None and not opts.chunks and not opts.interactive and not sys.stdin.isatty()
    )
    interactive = opts.interactive or (script is None and not opts.chunks and not stdin_chunk)

    from .engine import Engine, ShellExit

    settings = _shell_settings(full=interactive)
    runtime = opts.runtime or settings.get("runtime") or default_runtime()
    if warm_up is not None:
        warm_up()
    try:
        engine = Engine(runtime, module_paths=[*opts.paths, *settings.get("path", [])])
    except UnknownRuntime as exc:
        raise UsageError(str(exc)) from None
    gc.enable()  # start-up is over (see _main_argv)
    # SIGTERM and SIGHUP (terminal closed) unwind like os.exit: VMs get destroyed.
    previous = {sig: signal.signal(sig, _on_terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    status = 1
    try:
        if script is not None:
            engine.set_arg(script, opts.args)  # -l and -e code sees it too, as in lua
        for spec in opts.modules:  # -l mod  or  -l name=mod (as in Lua 5.4)
            name, _, module = spec.rpartition("=")
            code = f"{_lua_name(name or module)} = require({_lua_string(module)})"
            status = _report(engine.execute(code, "=(command line)"))
            if status:
                return status
        for chunk in opts.chunks:
            status = _report(engine.execute(chunk, "=(command line)"))
            if status:
                return status
        if stdin_chunk:
            status = _report(engine.execute(_read_stdin(), "=stdin", opts.args))
            if status:
                return status
        elif script is not None:
            status = _report(engine.run_file(script, opts.args))
            if status:
                return status
        status = _interactive(engine, settings.get("style")) if interactive else 0
        return status
    except ShellExit as exc:
        status = exc.code
        return status
    except SystemExit as exc:  # SIGTERM, SIGHUP
        status = exc.code if isinstance(exc.code, int) else 1
        raise
    finally:
        engine.close()
        global _c_streams_flushed
        _c_streams_flushed = engine.c_streams_flushed
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if engine.busy:  # Lua is stuck in a C call: do not wait for it at exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)


def _read_stdin() -> bytes:
    """The Lua on stdin, at most ``files.MAX_SCRIPT_BYTES`` (``bioxen - < /dev/zero`` stops)."""
    from .files import MAX_SCRIPT_BYTES, InputFileError, read_stream

    try:
        return read_stream(sys.stdin.buffer, "stdin", MAX_SCRIPT_BYTES, "a Lua script")
    except InputFileError as exc:
        raise UsageError(str(exc)) from None


def _prestart_vms_if_used(script: str | None, chunks: list[str]) -> Callable[[], None] | None:
    """When the code about to run mentions ``vm``, fork the zygote now (while this process
    has one thread) and return a function that starts the rest of the VM layer's warm-up in
    the background (bindings.warm_up).  The caller starts it as the engine is built, when the
    shell's own Python start-up is done: the warm-up's Python work then overlaps Lua (the
    engine's, then the user code's, which runs without the GIL: finding a file's shards, say)
    rather than the shell's own imports, which need the GIL as much.  A wrong guess costs
    little: a zygote nobody uses exits with the shell.  None: the code does not mention
    ``vm``."""
    import re
    import stat

    uses_vm = re.compile(rb"(?<![\w.])vm\s*[.:\[]")  # vm. vm: vm[ as a word
    texts = [c.encode() for c in chunks]
    if script not in (None, "-"):
        try:
            if not stat.S_ISREG(os.stat(script).st_mode):
                return None  # a pipe (bioxen run <(…)) read here would be empty for the run itself
            with open(script, "rb") as f:
                texts.append(f.read(1 << 20))
        except OSError:
            return None
    if not any(uses_vm.search(t) for t in texts):
        return None
    import threading

    if threading.active_count() == 1:  # forking is safe only with one thread (zygote.py)
        try:
            from .vm.zygote import fork_zygote

            fork_zygote()  # the default runtime, imported and its agent loaded in the zygote
        except OSError:
            pass

    def start() -> None:
        from .vm.bindings import warm_up

        threading.Thread(target=warm_up, name="bioxen-vm-warm-up", daemon=True).start()

    return start


def _shell_settings(full: bool = True) -> dict:
    """The ``[shell]`` table of the user's config.toml: ``runtime``, ``path`` and ``style``
    (bioxen_shell.settings; a file that cannot be used is a usage error, exit status 2).
    ``full``: a REPL will open, so look the style's name up too."""
    from . import paths

    path = paths.config_dir() / "config.toml"
    if not os.path.lexists(path):
        return {}  # the common case: no imports, one stat
    from .settings import SettingsError, read_shell_settings

    try:
        return read_shell_settings(path, full=full)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


def _interactive(engine, style: str | None = None) -> int:  # noqa: ANN001
    """The REPL; ``style``: the colour style config.toml names (None: the default)."""
    _run_init_file(engine)
    if sys.stdin.isatty() and sys.stdout.isatty():
        from .repl.app import run_repl

        return run_repl(engine, style=style)
    from .repl.plain import run_repl

    return run_repl(engine)


def _run_init_file(engine) -> None:  # noqa: ANN001
    """Run the user's ``init.lua`` (config directory) before an interactive session.

    Only the REPL reads it — scripts, ``-e`` and stdin stay reproducible.  An
    error in it is shown and the REPL opens anyway.
    """
    from . import paths

    init = paths.config_dir() / "init.lua"
    if init.is_file():
        result = engine.run_file(str(init))
        if not result.ok:
            _stderr(b"bioxen: in " + os.fsencode(init) + b": " + result.error_text() + b"\n")


def _lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _lua_name(module: str) -> str:
    name = module.replace(".", "_").replace("-", "_")
    if not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
        raise UsageError(f"-l {module}: not a usable global name (use -l NAME=MODULE)")
    return name
