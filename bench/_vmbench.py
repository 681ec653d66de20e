"""Shared helpers for the VM benchmarks (timing, tables, the prior art's call shape)."""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LUA = shutil.which("lua5.4") or shutil.which("lua")


def percentile(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def timed(fn, n: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def prior_art_execute_string(code: str) -> dict:
    """pylua_bioxen_vm_lib's LuaProcess.execute_string: one `lua -e` process per call."""
    r = subprocess.run([LUA, "-e", code], capture_output=True, text=True)
    return {"stdout": r.stdout.strip(), "stderr": r.stderr.strip(), "return_code": r.returncode,
            "success": r.returncode == 0}


def table(title: str, header: tuple, rows: list[tuple]) -> None:
    cols = [header] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cols[1:]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def us(x: float) -> str:
    return f"{x * 1e6:.1f} µs"


def ms(x: float) -> str:
    return f"{x * 1e3:.2f} ms"


def median(xs):
    return statistics.median(xs)
