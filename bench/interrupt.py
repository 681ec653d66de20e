"""Ctrl-C latency: how long `while true do end` keeps running after SIGINT.

    python bench/interrupt.py [--repeat N]

For each lupa runtime the shell's engine runs the loop in this process, a timer
sends this process SIGINT, and the time from the signal to the engine handing
back its "interrupted!" result is measured.  Peers in the same run: the stock
`lua5.4` and `luajit` binaries running the same loop, sent SIGINT the same way
(LuaJIT's compiled loop ignores it: the peer is killed after a deadline).
Target: well under one second everywhere.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bioxen_shell.engine import Engine  # noqa: E402
from bioxen_shell.runtimes import RUNTIMES  # noqa: E402

LOOP = "while true do end"
SPIN_BEFORE_SIGNAL = 0.2  # seconds the loop runs before Ctrl-C
PEER_DEADLINE = 3.0


def engine_latency(runtime: str, repeat: int) -> list[float]:
    engine = Engine(runtime, extensions=[])
    latencies = []
    try:
        for _ in range(repeat):
            sent = []

            def ctrl_c() -> None:
                sent.append(time.perf_counter())
                os.kill(os.getpid(), signal.SIGINT)

            threading.Timer(SPIN_BEFORE_SIGNAL, ctrl_c).start()
            result = engine.eval_line(LOOP)
            done = time.perf_counter()
            assert result.kind == "interrupted", result
            latencies.append(done - sent[0])
    finally:
        engine.close()
    return latencies


def peer_latency(binary: str, repeat: int) -> list[float | None]:
    out: list[float | None] = []
    for _ in range(repeat):
        proc = subprocess.Popen([binary, "-e", LOOP], stderr=subprocess.DEVNULL)
        time.sleep(SPIN_BEFORE_SIGNAL)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(PEER_DEADLINE)
            out.append(time.perf_counter() - sent)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            out.append(None)
    return out


def fmt(values: list[float | None]) -> str:
    stopped = [v for v in values if v is not None]
    if not stopped:
        return f"{'never (killed after %.0f s)' % PEER_DEADLINE:>34}"
    note = "" if len(stopped) == len(values) else f"  ({len(values) - len(stopped)} never stopped)"
    return f"{statistics.median(stopped) * 1e3:10.2f} {max(stopped) * 1e3:10.2f}{note}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()
    print(f"SIGINT -> loop stopped, {opts.repeat} runs each ({LOOP!r})")
    print(f"{'runtime':<28} {'median ms':>10} {'max ms':>10}")
    for runtime in RUNTIMES:
        print(f"{'bioxen engine ' + runtime:<28} {fmt(engine_latency(runtime, opts.repeat))}", flush=True)
    for binary in ("lua5.4", "luajit"):
        if shutil.which(binary):
            print(f"{binary + ' binary (peer)':<28} {fmt(peer_latency(binary, opts.repeat))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
