"""The value codec on a 100 MB string: wire.py and wire.lua, beside peers in the same run.

* Python: ``wire.encode``/``decode`` against ``json`` and ``pickle`` (the stdlib's codecs).
* Lua, on each stock interpreter: ``wire.encode_parts`` + ``write_frame`` (out) and
  ``read_frame`` + ``decode`` (in) through a file in /dev/shm, against the prior art's way of
  moving a value into Lua: Lua source text (``string.format("%q")`` + ``load``).
* End to end through a real agent (the test client's pipes, no VM handle): ``set`` (in) and
  ``get`` (out) of the same 100 MB, lupa worker and stock binaries.

Target: >= 500 MB/s each way.  Prints tables; run: ``python bench/wire_codec.py [MB]``.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _vmbench import table  # noqa: E402  (the VM benchmarks' table printer)

from bioxen_shell.vm import protocol as wire  # noqa: E402

LUA_BENCH = r"""
local N = tonumber(arg[1])
local w = require("bioxen.wire")
local clock = os.clock
local best = {}
local function keep(name, dt) if not best[name] or dt < best[name] then best[name] = dt end end
local s = string.rep("ACGT", N / 4)
local path = "/dev/shm/bioxen-wire-bench-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e9))
for _ = 1, 3 do
  local t = clock()
  local parts = {}
  local n = w.encode_parts(parts, 0, s)
  local f = assert(io.open(path, "wb"))
  w.write_frame(f, "R", parts, n)
  f:close()
  keep("out", clock() - t)
  t = clock()
  f = assert(io.open(path, "rb"))
  local kind, payload = w.read_frame(f)
  f:close()
  local v = w.decode(payload)
  keep("in", clock() - t)
  assert(v == s)
  payload, v = nil, nil
  collectgarbage()
  -- the prior art's way: the value as Lua source text
  t = clock()
  local src = "return " .. string.format("%q", s)
  local back = (loadstring or load)(src)()
  keep("peer", clock() - t)
  assert(back == s)
  src, back = nil, nil
  collectgarbage()
end
os.remove(path)
io.write(string.format("%f %f %f\n", best["out"], best["in"], best["peer"]))
"""


def mbps(size: int, seconds: float) -> str:
    return f"{size / seconds / 1e6:.0f} MB/s"


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def python_codec(size: int) -> None:
    text = "ACGT" * (size // 4)
    binary = bytes(range(256)) * (size // 256)
    rows = []
    for label, value in (("str (ACGT)", text), ("bytes (binary)", binary)):
        enc = wire.encode(value)
        t_enc = best_of(3, lambda: wire.encode(value))
        t_dec = best_of(3, lambda: wire.decode(enc))
        rows.append((f"wire.py, {label}", mbps(size, t_enc), mbps(size, t_dec)))
    js = json.dumps(text)
    rows.append(("json (peer), str", mbps(size, best_of(3, lambda: json.dumps(text))),
                 mbps(size, best_of(3, lambda: json.loads(js)))))
    pk = pickle.dumps(binary, protocol=5)
    rows.append(("pickle 5 (peer), bytes", mbps(size, best_of(3, lambda: pickle.dumps(binary, protocol=5))),
                 mbps(size, best_of(3, lambda: pickle.loads(pk)))))
    table(f"Python codec, {size >> 20} MB (CPU time, best of 3; higher is better)", ("codec", "encode", "decode"), rows)


def lua_codec(size: int) -> None:
    rows = []
    env = dict(os.environ, LUA_PATH=f"{ROOT}/lua/?.lua;;")
    for lua in ("lua5.1", "lua5.2", "lua5.3", "lua5.4", "luajit"):
        if not shutil.which(lua):
            rows.append((lua, "not installed", "", ""))
            continue
        r = subprocess.run([lua, "-", str(size)], input=LUA_BENCH, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            rows.append((lua, "failed: " + r.stderr.strip()[-80:], "", ""))
            continue
        t_out, t_in, t_peer = (float(x) for x in r.stdout.split())
        rows.append((lua, mbps(size, t_out), mbps(size, t_in), mbps(size, t_peer)))
    table(f"wire.lua, {size >> 20} MB string through a frame file (CPU time, best of 3)",
          ("runtime", "out: encode_parts+write_frame", "in: read_frame+decode", "peer in: %q + load (prior art)"), rows)


def end_to_end(size: int) -> None:
    from tests.agent.client import Agent

    data = "ACGT" * (size // 4)
    rows = []
    stock = ("lua5.4", "luajit", "lua5.1")
    for runtime in ("lua54", "luajit21", "lua51", *stock):
        if runtime in stock and not shutil.which(runtime):
            continue
        a = Agent(runtime)
        try:
            ins, outs = [], []
            for _ in range(3):
                t = time.perf_counter()
                a.values("set", name="big", value=data)
                ins.append(time.perf_counter() - t)
                t = time.perf_counter()
                back = a.values("get", name="big")[0]
                outs.append(time.perf_counter() - t)
                assert len(back) == size
            rows.append((runtime + (" (stock)" if runtime in stock else " (lupa worker)"),
                         mbps(size, sorted(ins)[1]), mbps(size, min(ins)), mbps(size, sorted(outs)[1]), mbps(size, min(outs))))
        finally:
            a.close()
    table(f"End to end, {size >> 20} MB str through an agent's pipes (wall time, median and best of 3; target >= 500 MB/s)",
          ("agent", "in (set) median", "best", "out (get) median", "best"), rows)


def main() -> None:
    size = (int(sys.argv[1]) if len(sys.argv) > 1 else 100) << 20
    python_codec(size)
    lua_codec(size)
    end_to_end(size)


if __name__ == "__main__":
    main()
