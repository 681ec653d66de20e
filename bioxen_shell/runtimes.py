"""The Lua runtimes bioxen can run on, and how to load one.

lupa ships several Lua builds, each as its own extension module
(``lupa.lua54``, ``lupa.luajit21``, …).  Each module is a separate class
universe: ``lupa.lua54.LuaError`` is not ``lupa.LuaError``.  So the shell keeps
the module it loaded and takes ``LuaRuntime``, ``LuaError`` … from it.

Runtime names are ``lua51 lua52 lua53 lua54 lua55 luajit``; ``luajit21``,
``5.4``, ``54``, ``lua5.4`` and ``jit`` are accepted as aliases.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["RUNTIMES", "DEFAULT_RUNTIME", "canonical_name", "load_lupa", "UnknownRuntime"]

#: Canonical runtime name -> lupa module.
RUNTIMES: dict[str, str] = {
    "lua51": "lupa.lua51",
    "lua52": "lupa.lua52",
    "lua53": "lupa.lua53",
    "lua54": "lupa.lua54",
    "lua55": "lupa.lua55",
    "luajit": "lupa.luajit21",
}

#: The runtime used when none is chosen.  LuaJIT: library code (bio.*) runs
#: JIT-compiled, while user chunks run in LuaJIT's interpreter (jit.off), where
#: the interrupt hook fires — Ctrl-C stops `while true do end` (tests/shell/
#: test_engine.py::test_interrupt_runaway_loop).  The count hook costs nothing
#: on LuaJIT, where it costs 2-3x on Lua 5.4 (docs/shell.md, "Runtimes").
DEFAULT_RUNTIME = "luajit"

_ALIASES = {
    "luajit21": "luajit",
    "jit": "luajit",
    "luajit2.1": "luajit",
}
for _v in ("51", "52", "53", "54", "55"):
    _dotted = f"{_v[0]}.{_v[1]}"
    for _alias in (_v, _dotted, f"lua{_dotted}", f"lua-{_dotted}"):
        _ALIASES[_alias] = f"lua{_v}"


class UnknownRuntime(ValueError):
    """A runtime name that is not one of RUNTIMES (or an alias)."""


def canonical_name(name: str) -> str:
    """Map a runtime name or alias to its canonical name, or raise UnknownRuntime."""
    key = name.strip().lower()
    if key in RUNTIMES:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    raise UnknownRuntime(
        f"unknown Lua runtime {name!r}; choose one of: {', '.join(RUNTIMES)}"
        " (aliases: luajit21, 5.4, lua5.4 …)"
    )


def load_lupa(name: str = DEFAULT_RUNTIME) -> ModuleType:
    """Import and return the lupa module for runtime ``name``."""
    canonical = canonical_name(name)
    module_name = RUNTIMES[canonical]
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownRuntime(
            f"Lua runtime {canonical!r} is not available in this lupa installation "
            f"({module_name}: {exc})"
        ) from exc
