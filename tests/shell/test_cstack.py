"""The shell survives recursion through C functions that call Lua (LuaJIT has no C-stack limit
of its own: bioxen.cstack gives it PUC Lua's "C stack overflow").

The engine runs in a child process: before the guard, this recursion took the process down
with SIGSEGV, and the test must be able to see that without dying itself.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bioxen_shell.runtimes import RUNTIMES

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys
from bioxen_shell.engine import Engine
engine = Engine(sys.argv[1], extensions=[])
for code in sys.argv[2:]:
    r = engine.execute(code)
    print(r.kind, r.message.decode(errors="replace"), flush=True)
print(engine.execute("return 6 * 7").kind, flush=True)
"""

CASES = [
    "local function f(s) return (s:gsub('.', function(c) return f(c) end)) end f('ab')",
    "local function f() return coroutine.wrap(f)() end f()",
    "local mt = {} mt.__tostring = function() return string.format('%s', setmetatable({}, mt)) end"
    " local s = string.format('%s', setmetatable({}, mt))",
    # errors caught by pcall inside callbacks leave the count where it was
    "local n = 0 for i = 1, 1000 do pcall(function() ('a'):gsub('.', function() error('x') end) end) n = n + 1 end"
    " assert(n == 1000) error('counted ' .. n, 0)",
]


# LuaJIT, where the guard is, and Lua 5.4, which counts C calls itself: the same errors.
@pytest.mark.parametrize("runtime", [rt for rt in RUNTIMES if rt in ("luajit", "lua54")])
def test_recursion_through_c_functions_does_not_take_the_shell_down(runtime):
    proc = subprocess.run([sys.executable, "-c", CHILD, runtime, *CASES], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stdout.splitlines()
    assert len(lines) == len(CASES) + 1, proc.stdout
    for line in lines[:3]:
        assert line.startswith("error ") and "stack overflow" in line, line
    assert lines[3] == "error counted 1000"
    assert lines[-1] == "ok"
