"""eval round trip on a local VM, beside the 1-byte pipe ping-pong floor measured in the same run.

    python bench/vm_roundtrip.py [N]

Target (issue 11): the Python API's ``vm.eval('return 1')`` and the shell's ``w:eval`` at most
2x the floor.  The rows are measured in interleaved rounds (every row a slice of N per round),
so a neighbour's load on this shared machine moves them all alike; each row shows its ratio
to the floor.  Two more rows show why the floor is a floor: the same ping-pong with 10 µs of
work on the far side, once with both ends blocking and once with both spinning before they
block (as bioxen's host and lupa worker do).  See PROFILE below for where a round trip goes.
"""
from __future__ import annotations

import os
import sys
import time

from _vmbench import LUA, percentile, prior_art_execute_string, table, timed, us

from bioxen_shell.engine import Engine
from bioxen_shell.vm.manager import Manager

PROFILE = """
Where one vm.eval('return 1') goes (local luajit worker, this 2-core VM; see docs/protocol.md):
  host, Python (session + codec), measured against an in-process agent ...... see report
  agent, Lua (read, decode, compile cache, run, encode, write), pipelined ... see report
  wake-ups: a process that blocks in read() is woken by the hypervisor ...... see report
"""


class PingPong:
    """The floor for any worker-process design: one byte there and back over two pipes, with
    ``work`` seconds of busy work on the far side; ``spin``: both ends poll before blocking."""

    def __init__(self, work: float = 0.0, spin: bool = False) -> None:
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(w1)  # else the child's own copy keeps the pipe open and it never sees EOF
            os.close(r2)
            self._serve(r1, w2, work, spin)
        os.close(r1)
        os.close(w2)
        self.w, self.r, self.spin = w1, r2, spin
        if spin:
            os.set_blocking(r2, False)

    @staticmethod
    def _serve(r: int, w: int, work: float, spin: bool) -> None:
        if spin:
            os.set_blocking(r, False)
        while True:
            data = PingPong._read(r, spin)
            if not data:
                os._exit(0)
            until = time.perf_counter() + work
            while time.perf_counter() < until:
                pass
            os.write(w, data)

    @staticmethod
    def _read(fd: int, spin: bool) -> bytes:
        if not spin:
            return os.read(fd, 64)
        while True:
            try:
                return os.read(fd, 64)
            except BlockingIOError:
                pass

    def __call__(self) -> bytes:
        os.write(self.w, b"x")
        return self._read(self.r, self.spin)

    def close(self) -> None:
        os.close(self.w)
        os.waitpid(self.pid, 0)
        os.close(self.r)


def interleaved(rows: list[tuple[str, object]], n: int, rounds: int = 10) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {label: [] for label, _ in rows}
    for _ in range(rounds):
        for label, fn in rows:
            samples[label] += timed(fn, max(1, n // rounds), warmup=5)
    return samples


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    m = Manager()
    vm = m.create("bench")
    vm.set("x", 41)
    vm.eval("function inc(v) return v + 1 end")
    eng = Engine("lua54")
    eng.eval_line("w = vm.create{name='bench'}")
    shell_eval = eng.lua.eval("function() return w:eval('return 1') end")
    floor, busy, busy_spin = PingPong(), PingPong(10e-6), PingPong(10e-6, spin=True)
    floor_label = "floor: 1-byte pipe ping-pong between two processes"
    try:
        rows = [
            ("bioxen local VM, Python API: vm.eval('return 1')", lambda: vm.eval("return 1")),
            ("bioxen local VM, Python API: vm.call('inc', 1)", lambda: vm.call("inc", 1)),
            ("bioxen local VM, Python API: vm.get('x')", lambda: vm.get("x")),
            ("bioxen local VM, shell Lua API: w:eval('return 1')", shell_eval),
            (floor_label, floor),
            ("ping-pong, 10 µs of work on the far side, both ends blocking", busy),
            ("ping-pong, 10 µs of work on the far side, both ends spinning first", busy_spin),
        ]
        samples = interleaved(rows, n)
    finally:
        for p in (floor, busy, busy_spin):
            p.close()
        eng.close()
        m.destroy_all()
    base = percentile(samples[floor_label], 50)
    out = []
    for label, s in samples.items():
        p50 = percentile(s, 50)
        out.append((label, us(p50), us(percentile(s, 95)), f"{p50 / base:.1f}x", len(s)))
    k = min(n, 300)
    s = timed(lambda: prior_art_execute_string("print(1)"), k, warmup=5)
    p50 = percentile(s, 50)
    out.append((f"prior art: {LUA} -e per call (LuaProcess.execute_string)", us(p50), us(percentile(s, 95)),
                f"{p50 / base:.0f}x", k))
    table("eval round trip (lower is better; target: bioxen rows <= 2x the floor)",
          ("path", "p50", "p95", "p50 / floor", "N"), out)


if __name__ == "__main__":
    main()
