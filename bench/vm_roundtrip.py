"""eval round trip on a local VM, beside the 1-byte pipe ping-pong floor measured in the same run.

    python bench/vm_roundtrip.py [N]

Target (issue 11): the Python API's ``vm.eval('return 1')`` and the shell's ``w:eval`` at most
2x the floor.  The rows are measured in interleaved rounds (every row a slice of N per round),
so a neighbour's load on this shared machine moves them all alike; each row shows its ratio
to the floor.  Two more rows show why the floor is a floor: the same ping-pong with 10 µs of
work on the far side, once with both ends blocking and once with both spinning before they
block (as bioxen's host does).  See PROFILE below for where a round trip goes.
"""
from __future__ import annotations

import os
import select
import sys
import time

from _vmbench import LUA, percentile, prior_art_execute_string, table, timed, us

from bioxen_shell.engine import Engine
from bioxen_shell.vm.manager import Manager

PROFILE = """
Where one vm.eval('return 1') goes (local luajit worker on this shared 2-core VM, issue 11;
the same table is in docs/protocol.md, "Round trip"):
  floor: 1-byte pipe ping-pong ............................................... 3.3 µs
  host, Python, per request against an in-process agent (no IPC) ........... 16 µs (was 25)
    of which the protocol layer: encode request 1.4, read frame 1.2, parse and decode reply 1.9
    the rest: the session (lock, Ctrl-C gate, pending request, wait loop, Result)
  agent, Lua, per request when pipelined (no wake-ups): eval 12 µs, get 10 µs (lua54: 23 µs)
    (read, decode, compile cache, run under the limits, encode, write and flush)
  two process wake-ups per round trip .................................. 3 to 40 µs each,
    depending on how idle the machine is (an idle vCPU halts and wakes slowly)
  measured: vm.eval 53 µs (16x the floor, was 74 µs), w:eval 62 µs (19x, was 94 µs)
  (busy machine; idle, the floor itself is ~67 µs: vm.eval 96 µs = 1.4x, w:eval 106 µs = 1.6x)
2x the floor (~7 µs) is below what the protocol layer alone costs in Python (4.5 µs) plus
one lupa call into the agent's Lua work: the floor moves no data and runs no code.
"""


class PingPong:
    """The floor for any worker-process design: one byte there and back over two pipes, with
    ``work`` seconds of busy work on the far side; ``spin``: both ends poll for up to 100 µs
    (yielding the core between polls) before they block, as bioxen's host does (pipes.py)."""

    def __init__(self, work: float = 0.0, spin: bool = False) -> None:
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            # Only its own two ends: a copy of another pipe's write end (an earlier PingPong's)
            # would keep that pipe open, and its child would never see EOF.
            for fd in range(3, 256):
                if fd not in (r1, w2):
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._serve(r1, w2, work, spin)
        os.close(r1)
        os.close(w2)
        self.w, self.r, self.spin = w1, r2, spin

    @staticmethod
    def _serve(r: int, w: int, work: float, spin: bool) -> None:
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
        if spin:
            poll = select.poll()
            poll.register(fd, select.POLLIN)
            until = time.perf_counter() + 100e-6
            while not poll.poll(0) and time.perf_counter() < until:
                os.sched_yield()
        return os.read(fd, 64)

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
    # The ping-pong processes are forked first, before the VM machinery starts its threads.
    floor, busy, busy_spin = PingPong(), PingPong(10e-6), PingPong(10e-6, spin=True)
    m = Manager()
    vm = m.create("bench")
    vm.set("x", 41)
    vm.eval("function inc(v) return v + 1 end")
    eng = Engine("lua54")
    eng.eval_line("w = vm.create{name='bench'}")
    shell_eval = eng.lua.eval("function() return w:eval('return 1') end")
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
    print(PROFILE)


if __name__ == "__main__":
    main()
