"""Helpers for the bio core tests: Lua literals and runtime selection.

``run_bio(runtime, code)`` is ``harness.run`` plus two more runtimes: lupa's
``lua55`` (the shell offers it) and ``luajit+portable``, the stock ``luajit``
with the portable (PUC) kernels forced, so both kernel families are tested on
LuaJIT as well.
"""
from __future__ import annotations

import math

import pytest

from tests.bio.harness import ALL_RUNTIMES, run

# Lua 5.5 (lupa) is a runtime the shell offers, so the library is tested on it too.
BIO_RUNTIMES = ALL_RUNTIMES + ["lupa:lua55", "luajit+portable"]


def lua(value) -> str:
    """A Lua literal for a Python value (str/bytes as byte strings, lists as arrays, dicts as tables)."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            raise ValueError("no literal for inf/nan")
        return repr(value)
    if isinstance(value, str):
        value = value.encode("latin-1")
    if isinstance(value, (bytes, bytearray)):
        out = []
        for b in value:
            if 32 <= b < 127 and b not in (34, 92):
                out.append(chr(b))
            else:
                out.append("\\%03d" % b)
        return '"' + "".join(out) + '"'
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua(k)}] = {lua(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def run_bio(runtime: str, code: str):
    """Run a snippet on `runtime` (see BIO_RUNTIMES) and return its JSON-decoded result."""
    if runtime.endswith("+portable"):
        return run(runtime.split("+", 1)[0], "BIOXEN_BIO_PORTABLE = true\n" + code)
    return run(runtime, code)


def bio_runtimes():
    """parametrize over every runtime, plus LuaJIT with the portable kernels."""
    return pytest.mark.parametrize("runtime", BIO_RUNTIMES)
