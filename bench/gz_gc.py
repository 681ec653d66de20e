"""GC table over a gzipped ~100 MB genome: bioxen (gc_table.lua) vs seqkit, with the decompression
floor, in the same run (commands interleaved, medians of N runs).

    python bench/gz_gc.py [--copies 20] [--runs 5]

Data: the E. coli NC_008253 genome of Debian's ``bowtie-examples``, repeated ``--copies`` times with
unique ids (20 copies: 100 MB; bench/scale_out.py builds it the same way), compressed twice under
``$BIOXEN_BENCH_DIR`` (default: the system temp dir): plain ``gzip -6`` (one member) and ``bgzip``
(BGZF, 64 KiB blocks).  Rows, for each file:

* ``bioxen run examples/gc_table.lua FILE.gz`` (the file read and inflated by bio._gzip);
* ``cat FILE.gz | bioxen run examples/gc_table.lua -`` (the same through a pipe);
* ``seqkit fx2tab -n -g FILE.gz`` (its default threads);
* the floor: ``gzip -dc`` / ``bgzip -dc`` to /dev/null (decompression alone, one thread).

Wall and CPU time (user + system of the whole process tree) are both shown: on a shared machine
the wall time swings with the load, the CPU time much less.  Target: bioxen no slower than
seqkit on both files.  Every bioxen table is checked against
seqkit's GC column (the genome is pure ACGT, so Biopython's "remove" mode and seqkit agree).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _vmbench import ROOT, table
from scale_out import BIOXEN, ENV, fmt, genome_copies


def run(cmd: list[str]) -> tuple[float, float, bytes]:
    """Wall time, CPU time (user + system, the whole process tree) and stdout of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, cwd=ROOT, env=ENV)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, dict]:
    """Each command `runs` times after a warm-up, interleaved so that drift hits all alike."""
    res = {name: {"wall": [], "cpu": [], "out": run(cmd)[2]} for name, cmd in commands.items()}
    for _ in range(runs):
        for name, cmd in commands.items():
            wall, cpu, _ = run(cmd)
            res[name]["wall"].append(wall)
            res[name]["cpu"].append(cpu)
    for r in res.values():
        r["median"], r["cpu_median"] = statistics.median(r["wall"]), statistics.median(r["cpu"])
    return res


def compressed(plain: Path) -> tuple[Path, Path]:
    """FILE.fa.gz (gzip -6) and FILE.fa.bgz (bgzip) beside `plain`, made once."""
    gz, bgz = plain.with_suffix(".fa.gz"), plain.with_suffix(".fa.bgz")
    for out, cmd in ((gz, ["gzip", "-6", "-c"]), (bgz, ["bgzip", "-c"])):
        if not out.exists():
            tmp = out.with_suffix(".part")
            with open(plain, "rb") as src, open(tmp, "wb") as dst:
                subprocess.run(cmd, stdin=src, stdout=dst, check=True)
            tmp.rename(out)
    return gz, bgz


def gc_column(out: bytes, skip_header: bool) -> list[str]:
    lines = out.decode().splitlines()[1 if skip_header else 0:]
    return [line.rsplit("\t", 1)[1] for line in lines]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    opts = ap.parse_args()
    for tool in ("seqkit", "gzip", "bgzip"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (apt-get install seqkit gzip tabix)")
    plain = genome_copies(opts.copies)
    gz, bgz = compressed(plain)
    script = str(ROOT / "examples" / "gc_table.lua")
    print(f"genome: {plain} ({plain.stat().st_size / 1e6:.0f} MB); gzip -6 {gz.stat().st_size / 1e6:.1f} MB, "
          f"bgzip {bgz.stat().st_size / 1e6:.1f} MB; {os.cpu_count()} cores; medians of {opts.runs} runs")
    rows = []
    for label, path, floor in (("gzip -6", gz, "gzip"), ("BGZF", bgz, "bgzip")):
        commands = {
            "bioxen": [*BIOXEN, "run", script, str(path)],
            "bioxen (pipe)": ["sh", "-c", f"cat {path} | {' '.join(BIOXEN)} run {script} -"],
            "seqkit": ["seqkit", "fx2tab", "-n", "-g", str(path)],
            "floor": ["sh", "-c", f"{floor} -dc {path} > /dev/null"],
        }
        res = measure(commands, opts.runs)
        want = gc_column(res["seqkit"]["out"], False)
        for name in ("bioxen", "bioxen (pipe)"):
            if gc_column(res[name]["out"], True) != want:
                sys.exit(f"{name} on {path}: the GC column differs from seqkit's")
        sk, sk_cpu = res["seqkit"]["median"], res["seqkit"]["cpu_median"]
        for name, r in res.items():
            shown = f"{floor} -dc" if name == "floor" else name
            rows.append([label, shown, fmt(r["median"]), f"{r['median'] / sk:.2f}x",
                         fmt(r["cpu_median"]), f"{r['cpu_median'] / sk_cpu:.2f}x"])
    table("GC table over a gzipped genome (wall and CPU time: medians; ratios to seqkit's)",
          ("file", "command", "wall", "wall/seqkit", "CPU (user+sys)", "CPU/seqkit"), rows)


if __name__ == "__main__":
    main()
