"""eval round trip on a local VM (target: p50 <= 50 µs), beside the prior art's `lua -e` per call.

    python bench/vm_roundtrip.py [N]
"""
from __future__ import annotations

import os
import sys

from _vmbench import LUA, percentile, prior_art_execute_string, table, timed, us

from bioxen_shell.engine import Engine
from bioxen_shell.vm.manager import Manager


def pipe_ping_pong(n: int) -> list[float]:
    """The floor for any worker-process design: one byte there and back over two pipes.

    Printed beside the VM so a reader can tell the machine's IPC latency from bioxen's own
    cost (on this shared 2-core machine the floor itself moves between ~20 and ~50 µs).
    """
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w1)  # else the child's own copy keeps the pipe open and it never sees EOF
        os.close(r2)
        while True:
            data = os.read(r1, 64)
            if not data:
                os._exit(0)
            os.write(w2, data)
    try:
        return timed(lambda: (os.write(w1, b"x"), os.read(r2, 64)), n)
    finally:
        os.close(w1)
        os.waitpid(pid, 0)
        for fd in (r1, r2, w2):
            os.close(fd)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rows = []
    m = Manager()
    vm = m.create("bench")
    vm.set("x", 41)
    vm.eval("function inc(v) return v + 1 end")
    for label, fn in [
        ("bioxen local VM, Python API: vm.eval('return 1')", lambda: vm.eval("return 1")),
        ("bioxen local VM, Python API: vm.call('inc', 1)", lambda: vm.call("inc", 1)),
        ("bioxen local VM, Python API: vm.get('x')", lambda: vm.get("x")),
    ]:
        s = timed(fn, n)
        rows.append((label, us(percentile(s, 50)), us(percentile(s, 95)), n))
    m.destroy_all()

    eng = Engine("lua54")
    eng.eval_line("w = vm.create{name='bench'}")
    timer = eng.lua.eval("function() return w:eval('return 1') end")
    s = timed(timer, n)
    rows.append(("bioxen local VM, shell Lua API: w:eval('return 1')", us(percentile(s, 50)), us(percentile(s, 95)), n))
    eng.close()

    k = min(n, 300)
    s = timed(lambda: prior_art_execute_string("print(1)"), k, warmup=5)
    rows.append((f"prior art: {LUA} -e per call (LuaProcess.execute_string)", us(percentile(s, 50)),
                 us(percentile(s, 95)), k))
    s = pipe_ping_pong(n)
    rows.append(("floor: 1-byte pipe ping-pong between two processes", us(percentile(s, 50)),
                 us(percentile(s, 95)), n))
    table("eval round trip (lower is better; target p50 <= 50 µs)", ("path", "p50", "p95", "N"), rows)


if __name__ == "__main__":
    main()
