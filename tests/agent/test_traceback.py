"""Tracebacks of deep stacks in the agent (bioxen.traceback), on lupa and on stock interpreters.

A deep stack shows its first 10 and last 11 levels with "...\t(skipping N levels)" between
them, as Lua 5.4's luaL_traceback does, on every runtime; a stack overflow is described in
about the time the runtime's own debug.traceback takes, not in time quadratic in its depth.
"""
from __future__ import annotations

import re
import subprocess

import pytest

from tests.agent.client import LUA_DIR
from tests.system import require_binary
from tests.waiting import PATIENCE

SKIP = re.compile(r"^\t\.\.\.\t\(skipping (\d+) levels\)$")


def skip_counts(traceback: str) -> list[int]:
    return [int(m.group(1)) for line in traceback.splitlines() if (m := SKIP.match(line))]


def test_stack_overflow_traceback_is_cut(agent):
    r = agent.request("eval", code="function rec(n) return 1 + rec(n + 1) end rec(1)", chunkname="=cell")
    assert r["ok"] is False and r["kind"] == "error" and r["error"].endswith("stack overflow"), r
    lines = r["traceback"].splitlines()
    assert lines[0] == "stack traceback:" and len(lines) <= 25, lines
    [skipped] = skip_counts(r["traceback"])
    assert skipped > 1000  # the smallest stack (Lua 5.1's) holds some 16,000 such frames
    assert lines[1:11] == ["\tcell:1: in function 'rec'"] * 10
    assert lines[12:22] == ["\tcell:1: in function 'rec'"] * 10
    assert lines[22:] == ["\tcell:1: in main chunk"]
    assert agent.eval("1 + 1") == [2]  # the VM lives on


@pytest.mark.parametrize("depth", [5, 20, 21, 300])
def test_levels_shown_and_skipped_count(agent, depth):
    # The levels: error's own C frame, `depth` frames of rec, the main chunk.
    code = f"function rec(n) if n == {depth} then error('bottom') end return 1 + rec(n + 1) end rec(1)"
    r = agent.request("eval", code=code, chunkname="=cell")
    assert r["error"] == "cell:1: bottom"
    lines = r["traceback"].splitlines()[1:]
    levels = ["\t[C]: in function 'error'"] + ["\tcell:1: in function 'rec'"] * depth + ["\tcell:1: in main chunk"]
    if len(levels) <= 22:  # a cut would hide one level only: none
        assert lines == levels and skip_counts(r["traceback"]) == []
    else:
        assert lines[:10] == levels[:10] and lines[11:] == levels[-11:]
        assert skip_counts(r["traceback"]) == [len(levels) - 21]


# A stop raised by the agent's hook, deep in a recursion: cut the same way, without the
# agent's `error` frame.  Output at depth 1000 says the recursion is that deep.
DEEP_SPIN = ("function rec(n) if n == 1000 then io.write(string.rep('.', 65536)) end "
             "for i = 1, 20000 do end return 1 + rec(n + 1) end rec(1)")


@pytest.mark.parametrize("runtime", ["lua54", "luajit21", "lua5.4", "luajit"])
def test_interrupted_deep_recursion(start_agent, runtime):
    a = start_agent(runtime)
    a.send("eval", code=DEEP_SPIN, chunkname="=cell")
    a.wait_output()
    a.interrupt()
    reply, _ = a.recv()
    assert reply["kind"] == "interrupted", reply
    tb = reply["traceback"]
    assert len(tb.splitlines()) <= 25 and "function 'error'" not in tb, tb
    [skipped] = skip_counts(tb)
    assert skipped >= 1000 - 21 + 1  # rec's 1000+ frames and the main chunk, 21 shown
    assert tb.splitlines()[-1] == "\tcell:1: in main chunk"


# Differential: bioxen.traceback against stock Lua 5.4's own luaL_traceback (debug.traceback)
# on the same stack -- the same levels shown, where they are.  lua5.4's skipped count leaves
# out the level where its cut begins (it says 1 where 2 levels are not shown): ours is one
# more.  (Frame descriptions differ on purpose: "function 'x'" for every named frame.)
COMPARE = r"""
package.path = %r .. "/?.lua;" .. package.path
local tb = require("bioxen.traceback")
local function where(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line ~= "stack traceback:" then out[#out + 1] = line:match("^(.-): in ") or line end
  end
  return table.concat(out, "\n")
end
local function deep(n, k)
  if n == 0 then
    local ours, stock = tb.render(tb.collect(1)), debug.traceback("", 1):sub(2) -- one line
    return where(ours) .. "\n=====\n" .. where(stock)
  end
  if k == 1 then return (deep(n - 1, 2)) end
  return (deep(n - 1, 1))
end
io.write(deep(tonumber(arg[1]), 1))
"""


@pytest.mark.parametrize("depth", [3, 19, 20, 500])
def test_cut_matches_stock_lua54(tmp_path, depth):
    require_binary("lua5.4")
    script = tmp_path / "compare.lua"
    script.write_text(COMPARE % str(LUA_DIR))
    out = subprocess.run(["lua5.4", str(script), str(depth)], capture_output=True, text=True,
                         timeout=PATIENCE, check=True).stdout
    ours, stock = out.split("\n=====\n")
    levels = depth + 3  # deep's depth + 1 frames, the main chunk, lua.c's C frame
    assert ("skipping" in stock) == ("skipping" in ours) == (levels > 22)
    assert skip_counts(ours) == [levels - 21] * (levels > 22)
    assert ours == re.sub(r"skipping (\d+) levels", lambda m: f"skipping {int(m.group(1)) + 1} levels", stock)
