"""Run Lua snippets that use bio_stdlib on every runtime the library must support.

Two kinds of runtime:

* lupa's embedded runtimes (``lupa.lua51`` … ``lupa.lua54``, ``lupa.luajit21``), in process;
* the stock Debian interpreters (``lua5.1`` … ``lua5.4``, ``luajit``), as subprocesses.

``run(runtime, code)`` returns what the snippet *returns*, as a JSON-decoded
Python value; snippets return a string built with the tiny JSON encoder below,
so both kinds of runtime report results the same way.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess

import pytest

from bioxen_shell.paths import bio_stdlib_dir, lua_dir
from tests.system import require_binary

__all__ = ["LUPA_RUNTIMES", "STOCK_RUNTIMES", "ALL_RUNTIMES", "run", "runtime_params"]

LUPA_RUNTIMES = ["lupa:lua51", "lupa:lua52", "lupa:lua53", "lupa:lua54", "lupa:luajit21"]
STOCK_RUNTIMES = ["lua5.1", "lua5.2", "lua5.3", "lua5.4", "luajit"]
ALL_RUNTIMES = LUPA_RUNTIMES + STOCK_RUNTIMES

# A minimal JSON encoder in Lua so results come back the same way from every runtime.
_PRELUDE = r"""
package.path = [==[%(path)s]==] .. ";" .. package.path
local function enc(v)
  local t = type(v)
  if t == "nil" then return "null"
  elseif t == "boolean" then return tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return string.format("%%q", tostring(v)) end
    if math.floor(v) == v and math.abs(v) < 2^53 then return string.format("%%d", v) end
    return string.format("%%.17g", v)
  elseif t == "string" then
    return '"' .. v:gsub('[%%c"\\\128-\255]', function(c)
      return string.format("\\u%%04x", c:byte())
    end) .. '"'
  elseif t == "table" then
    local n = #v
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    if n > 0 and #keys == n then
      local parts = {}
      for i = 1, n do parts[i] = enc(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = enc(tostring(k)) .. ":" .. enc(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("cannot encode " .. t)
end
__bioxen_test_json = enc
"""


def _prelude() -> str:
    path = ";".join(f"{d}/?.lua;{d}/?/init.lua" for d in (bio_stdlib_dir(), lua_dir()))
    return _PRELUDE % {"path": path}


def _wrap(code: str) -> str:
    # The snippet is a function body; its first return value is JSON-encoded.
    return _prelude() + "\nlocal __f = function()\n" + code + "\nend\nreturn __bioxen_test_json(__f())\n"


def run(runtime: str, code: str):
    """Run a snippet (a function body that returns one value) and return that value."""
    src = _wrap(code)
    if runtime.startswith("lupa:"):
        mod = importlib.import_module("lupa." + runtime.split(":", 1)[1])
        lua = mod.LuaRuntime(encoding=None)
        out = lua.execute(src)
        return json.loads(out.decode("latin-1") if isinstance(out, bytes) else out)
    exe = require_binary(runtime)
    proc = subprocess.run([exe, "-"], input=src.replace("return __bioxen_test_json(__f())", "io.write(__bioxen_test_json(__f()))").encode(),
                          capture_output=True, timeout=120, env={**os.environ, "LUA_PATH": ""})
    if proc.returncode != 0:
        raise RuntimeError(f"{runtime} failed: {proc.stderr.decode(errors='replace')}")
    return json.loads(proc.stdout.decode("latin-1"))


def runtime_params(runtimes=None):
    """``pytest.mark.parametrize`` arguments over runtimes, with readable ids."""
    return pytest.mark.parametrize("runtime", runtimes or ALL_RUNTIMES)
