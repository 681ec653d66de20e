"""The one table of Lua runtimes: names, aliases, lupa modules, interpreter binaries, defaults.

Every place that takes a runtime name reads it here: the shell (``--runtime``, ``[shell]
runtime``, ``:runtime``), profiles (``runtime = …``), ``vm.create{runtime=…}``, local VMs (the
lupa module a worker loads) and remote VMs (the interpreter binary looked for on an SSH host
or a Slurm node).

Canonical names are ``lua51 lua52 lua53 lua54 lua55 luajit``.  Each also answers to the
aliases of :data:`ALIASES`: for Lua 5.x ``5.x``, ``5x``, ``lua5.x``, ``lua-5.x`` (``5.4``,
``54``, ``lua5.4``, ``lua-5.4``) and for LuaJIT ``luajit2.1``, ``luajit21``, ``luajit2``,
``jit``.  Case and surrounding blanks do not matter.  An unknown name raises
:class:`UnknownRuntime`, whose message lists every accepted name.

lupa ships several Lua builds, each as its own extension module (``lupa.lua54``,
``lupa.luajit21``, …).  Each module is a separate class universe: ``lupa.lua54.LuaError`` is
not ``lupa.LuaError``.  So the shell keeps the module it loaded and takes ``LuaRuntime``,
``LuaError`` … from it.

Light on purpose (``importlib`` only): the shell and every worker import it at start.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["RUNTIMES", "LUPA_MODULES", "BINARIES", "INTERPRETERS", "ALIASES", "DEFAULT_RUNTIME",
           "FALLBACK_RUNTIME", "canonical_name", "default_runtime", "load_lupa", "UnknownRuntime"]

#: Canonical name -> (lupa module, interpreter binary on a remote host).
_TABLE: dict[str, tuple[str, str]] = {
    "lua51": ("lupa.lua51", "lua5.1"),
    "lua52": ("lupa.lua52", "lua5.2"),
    "lua53": ("lupa.lua53", "lua5.3"),
    "lua54": ("lupa.lua54", "lua5.4"),
    "lua55": ("lupa.lua55", "lua5.5"),
    "luajit": ("lupa.luajit21", "luajit"),
}
#: The canonical names, in order.
RUNTIMES: tuple[str, ...] = tuple(_TABLE)
#: Canonical name -> lupa module (local VMs and the shell).
LUPA_MODULES: dict[str, str] = {name: module for name, (module, _) in _TABLE.items()}
#: Canonical name -> the interpreter binary that provides it on a host or a compute node.
BINARIES: dict[str, str] = {name: binary for name, (_, binary) in _TABLE.items()}
#: Interpreters tried on a remote host when nobody names a runtime, best first (plain ``lua``
#: last: whatever version the host calls that).
INTERPRETERS: tuple[str, ...] = ("luajit", "lua5.4", "lua5.3", "lua5.2", "lua5.1", "lua")

#: The runtime of the shell and of local VMs when nobody names one, if lupa has it.  LuaJIT:
#: library code (bio.*) runs JIT-compiled, while user chunks run in LuaJIT's interpreter
#: (jit.off), where the interrupt hook fires — Ctrl-C stops `while true do end`
#: (tests/shell/test_engine.py::test_interrupt_runaway_loop).  The count hook costs nothing on
#: LuaJIT, where it costs 2-3x on Lua 5.4 (docs/shell.md, "Runtimes").
DEFAULT_RUNTIME = "luajit"
#: The default where this lupa build has no LuaJIT.
FALLBACK_RUNTIME = "lua54"


def _aliases() -> dict[str, str]:
    out = {"luajit2.1": "luajit", "luajit21": "luajit", "luajit2": "luajit", "jit": "luajit"}
    for name in RUNTIMES:
        if name.startswith("lua5"):
            dotted = f"5.{name[4]}"
            for alias in (dotted, f"5{name[4]}", f"lua{dotted}", f"lua-{dotted}"):
                out[alias] = name
    return out


#: Alias -> canonical name.
ALIASES: dict[str, str] = _aliases()


class UnknownRuntime(ValueError):
    """A runtime name that is not one of RUNTIMES (or an alias); ``str()`` lists the accepted names."""

    def __init__(self, name: object, message: str | None = None) -> None:
        super().__init__(message or f"unknown Lua runtime {name!r}; {accepted_names()}")


def accepted_names() -> str:
    """What a runtime name may be, in every message that refuses one."""
    return (f"expected one of {', '.join(RUNTIMES)}, or an alias such as 5.4, 54, lua5.4, lua-5.4 "
            f"(for every 5.x), luajit2.1, luajit21 or jit")


def canonical_name(name: object) -> str:
    """Map a runtime name or alias to its canonical name, or raise :class:`UnknownRuntime`."""
    if not isinstance(name, str):
        raise UnknownRuntime(name)
    key = name.strip().lower()
    if key in _TABLE:
        return key
    if key in ALIASES:
        return ALIASES[key]
    raise UnknownRuntime(name)


_default: str | None = None


def default_runtime() -> str:
    """The runtime used when nobody names one: :data:`DEFAULT_RUNTIME` when lupa's LuaJIT module
    imports here, else :data:`FALLBACK_RUNTIME`.  Checked once per process (imports are cached)."""
    global _default
    if _default is None:
        try:
            importlib.import_module(LUPA_MODULES[DEFAULT_RUNTIME])
            _default = DEFAULT_RUNTIME
        except ImportError:
            _default = FALLBACK_RUNTIME
    return _default


def load_lupa(name: str | None = None) -> ModuleType:
    """Import and return the lupa module for runtime ``name`` (None: :func:`default_runtime`)."""
    canonical = canonical_name(name) if name is not None else default_runtime()
    module_name = LUPA_MODULES[canonical]
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownRuntime(canonical, f"Lua runtime {canonical!r} is not available in this lupa "
                                        f"installation ({module_name}: {exc})") from exc
