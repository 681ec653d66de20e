"""Start-up time of `bioxen -e 'print(1)'` beside `python3 -c pass` and `lua5.4 -e 'print(1)'`.

    python bench/startup.py [--runs N]

All commands are measured in the same run, with hyperfine when it is installed
(warm-up runs, then N timed runs) and with a plain best-of/mean loop otherwise.
Targets: bioxen at most 150 ms (issue 2), and 30 ms (issue 4: `bioxen run`
must beat seqkit on a whole-file GC table, see bench/bio_kernels.py).

Python bytecode: a `pip install` compiles every module to .pyc, but an editable
install under PYTHONDONTWRITEBYTECODE=1 (set on the development machine)
recompiles bioxen's modules from source at every start (~5 ms).  So bioxen is
measured twice: as installed (a .pyc cache, kept in a temporary
PYTHONPYCACHEPREFIX and filled by the warm-up runs) and as this environment
runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_MS = 150.0
FAST_TARGET_MS = 30.0


def bioxen_command() -> list[str]:
    exe = shutil.which("bioxen")
    if exe:
        return [exe]
    return [sys.executable, "-m", "bioxen_shell"]


def commands(pycache: str) -> list[tuple[str, list[str]]]:
    # `env` as a command prefix: hyperfine -N runs every command in one environment.
    with_pyc = ["env", "-u", "PYTHONDONTWRITEBYTECODE", f"PYTHONPYCACHEPREFIX={pycache}"]
    without_pyc = ["env", "PYTHONDONTWRITEBYTECODE=1", "PYTHONPYCACHEPREFIX="]
    out = [
        ("bioxen -e 'print(1)'", [*with_pyc, *bioxen_command(), "-e", "print(1)"]),
        ("  (no .pyc cache)", [*without_pyc, *bioxen_command(), "-e", "print(1)"]),
        ("python3 -c pass", [*with_pyc, sys.executable, "-c", "pass"]),
    ]
    if shutil.which("lua5.4"):
        out.append(("lua5.4 -e 'print(1)'", ["lua5.4", "-e", "print(1)"]))
    return out


def with_hyperfine(cmds: list[tuple[str, list[str]]], runs: int) -> dict[str, tuple[float, float, float]]:
    import shlex

    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        export = tmp.name
    try:
        subprocess.run(
            ["hyperfine", "-N", "--warmup", "5", "--runs", str(runs), "--export-json", export, "--style", "none",
             *[shlex.join(argv) for _, argv in cmds]],
            check=True, stdout=subprocess.DEVNULL,
        )
        with open(export) as f:
            results = json.load(f)["results"]
    finally:
        os.unlink(export)
    return {label: (r["mean"] * 1e3, r["stddev"] * 1e3, r["min"] * 1e3)
            for (label, _), r in zip(cmds, results)}


def with_loop(cmds: list[tuple[str, list[str]]], runs: int) -> dict[str, tuple[float, float, float]]:
    out = {}
    for label, argv in cmds:
        for _ in range(3):
            subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
            times.append((time.perf_counter() - start) * 1e3)
        out[label] = (statistics.mean(times), statistics.stdev(times), min(times))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-hyperfine", action="store_true", help="use the built-in loop")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bioxen-pyc-") as pycache:
        cmds = commands(pycache)
        tool = "hyperfine" if shutil.which("hyperfine") and not opts.no_hyperfine else "loop"
        results = with_hyperfine(cmds, opts.runs) if tool == "hyperfine" else with_loop(cmds, opts.runs)
    print(f"start-up time, {opts.runs} runs each ({tool}); targets for bioxen: <= {TARGET_MS:.0f} ms "
          f"(issue 2), <= {FAST_TARGET_MS:.0f} ms (issue 4)")
    print(f"{'command':<24} {'mean ms':>9} {'± sd':>7} {'min ms':>8}")
    for label, (mean, sd, low) in results.items():
        print(f"{label:<24} {mean:9.1f} {sd:7.1f} {low:8.1f}")
    mean = results[cmds[0][0]][0]
    for target in (TARGET_MS, FAST_TARGET_MS):
        verdict = "meets" if mean <= target else "MISSES"
        print(f"bioxen {verdict} the {target:.0f} ms target ({mean:.1f} ms mean, .pyc cache as installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
