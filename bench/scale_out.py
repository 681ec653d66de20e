"""Scale-out that pays: data-parallel sequence jobs over local VMs, beside one process and
seqkit, measured in the same run (commands interleaved, medians of N runs).

    python bench/scale_out.py [--copies 100] [--orf-copies 4] [--runs 5] [--vms 2]

Data: the E. coli NC_008253 genome that Debian's ``bowtie-examples`` ships, repeated with
unique ids (``--copies 100``: ~500 MB; ``--orf-copies 4``: ~20 MB), written once under
``$BIOXEN_BENCH_DIR`` (default: the system temp dir).  Rows:

* GC table: ``gc_table.lua`` (one process) vs ``gc_map_vms.lua --vms N`` vs
  ``seqkit fx2tab -n -g -j N`` — targets: N=2 VMs ≥ 1.3x one process, and faster than seqkit.
  Printed beside it: the shell's own start-up (``bioxen -e ''``) and the start-up plus
  VM creation (a script that creates N VMs and returns), the fixed costs inside those times,
  and the shell's peak RSS during the map (target ≤ 150 MB; the shell, not its VMs).
  Floor rows: the same script under plain LuaJIT, one process over the whole file and N
  processes over one shard each (``--shard K/N``; no shell, no VMs): what this machine's cores
  give at best.
* Six-frame ORFs: ``six_frame_orfs.lua`` vs ``--vms N`` — target ≥ 1.8x with 2 VMs — with the
  same floor rows.
Every multi-VM output is checked byte for byte against the one-process output.
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _vmbench import ROOT, table

GENOME = Path("/usr/share/doc/bowtie/examples/genomes/NC_008253.fna.gz")
BIOXEN = [sys.executable, "-m", "bioxen_shell"]
#: Python may keep its .pyc files (an installed bioxen has them; the warm-up run writes them).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def genome_copies(copies: int) -> Path:
    """The genome repeated ``copies`` times with unique ids (made once, then reused)."""
    base = Path(os.environ.get("BIOXEN_BENCH_DIR") or tempfile.gettempdir())
    out = base / f"bioxen-ecoli-x{copies}.fa"
    if out.exists():
        return out
    if not GENOME.exists():
        sys.exit(f"{GENOME} is missing: apt-get install bowtie-examples")
    data = gzip.decompress(GENOME.read_bytes())
    nl = data.index(b"\n")
    header, body = data[:nl], data[nl + 1:]
    tmp = out.with_suffix(".part")
    with open(tmp, "wb") as f:
        for i in range(1, copies + 1):
            f.write(header.replace(b">", b">copy%d_" % i, 1) + b"\n")
            f.write(body)
    tmp.rename(out)
    return out


def run(cmd: list[str]) -> tuple[float, bytes, int]:
    """Wall time, stdout and the peak RSS (KiB) of the command's own process.

    Its output goes to a file, not to a pipe: a pipe that this process drained now and then
    would hold a command that writes megabytes (the ORF table) to the reader's pace.  wait4
    gives the exit time exactly and the process's peak RSS (ru_maxrss: the process and the
    children it waited for; a shell's VMs are the zygote's children, not counted)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.read().decode(errors='replace')}")
        out.seek(0)
        return wall, out.read(), usage.ru_maxrss


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, dict]:
    """Each command ``runs`` times (after one warm-up each), interleaved, so drift hits all."""
    results = {name: {"wall": [], "rss": 0, "out": None} for name in commands}
    for name, cmd in commands.items():
        _, results[name]["out"], _ = run(cmd)  # warm-up (page cache, .pyc)
    for _ in range(runs):
        for name, cmd in commands.items():
            wall, _, rss = run(cmd)
            results[name]["wall"].append(wall)
            results[name]["rss"] = max(results[name]["rss"], rss)
    for r in results.values():
        r["median"] = statistics.median(r["wall"])
    return results


def floor_rows(luajit: str, script: str, path: Path, n: int) -> dict[str, list[str]]:
    """``script`` under plain LuaJIT: one process over the whole file, and n processes at once
    over one shard each (``--shard K/N``)."""
    return {
        "floor: luajit, one process, no shell": [luajit, script, str(path)],
        f"floor: {n} luajit processes, 1/{n} each": [
            "sh", "-c", " & ".join(f"{luajit} {script} {path} --shard {k}/{n} >/dev/null" for k in range(1, n + 1))
            + "; wait"],
    }


def parallelism(res: dict[str, dict], n: int) -> float:
    """What the floor rows say this machine's cores give: one process's time over n's."""
    return res["floor: luajit, one process, no shell"]["median"] / res[f"floor: {n} luajit processes, 1/{n} each"]["median"]


def fmt(seconds: float) -> str:
    return f"{seconds:.3f} s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=100)
    ap.add_argument("--orf-copies", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--vms", type=int, default=2)
    opts = ap.parse_args()
    n = opts.vms
    big = genome_copies(opts.copies)
    size_mb = big.stat().st_size / 1e6

    gc = {
        "one process: gc_table.lua": [*BIOXEN, "run", "examples/gc_table.lua", str(big)],
        f"{n} VMs: gc_map_vms.lua --vms {n}": [*BIOXEN, "run", "examples/gc_map_vms.lua", str(big), "--vms", str(n)],
        "shell start-up: bioxen -e ''": [*BIOXEN, "-e", ""],
        f"start-up + {n} VMs created": [*BIOXEN, "-e", f"vm.create{{count = {n}}}"],
    }
    luajit = shutil.which("luajit")
    if luajit:  # the machine's own parallelism, with no shell and no VMs: the floor for the ratio
        gc.update(floor_rows(luajit, "examples/gc_table.lua", big, n))
    seqkit = shutil.which("seqkit")
    if seqkit:
        gc[f"seqkit fx2tab -n -g -j {n}"] = [seqkit, "fx2tab", "-n", "-g", "-j", str(n), str(big)]
    res = measure(gc, opts.runs)
    one = res["one process: gc_table.lua"]
    many = res[f"{n} VMs: gc_map_vms.lua --vms {n}"]
    assert many["out"] == one["out"], "the VMs' table differs from the one-process table"
    if luajit:
        assert res["floor: luajit, one process, no shell"]["out"] == one["out"], "the floor script's table differs"
    rows = []
    for name, r in res.items():
        speed = one["median"] / r["median"]
        rows.append((name, fmt(r["median"]), f"{min(r['wall']):.3f}–{max(r['wall']):.3f}",
                     f"{size_mb / r['median']:.0f} MB/s" if "start-up" not in name else "-",
                     f"{speed:.2f}x" if "start-up" not in name else "-", f"{r['rss'] / 1024:.0f} MB"))
    table(f"GC table over {size_mb:.0f} MB ({opts.copies} x E. coli NC_008253), median of {opts.runs}; "
          f"targets: {n} VMs >= 1.3x one process and faster than seqkit; shell peak RSS <= 150 MB",
          ("run", "wall", "min–max", "throughput", "vs one process", "peak RSS (its own process)"), rows)
    startup = res["shell start-up: bioxen -e ''"]["median"]
    created = res[f"start-up + {n} VMs created"]["median"]
    print(f"fixed costs inside the {n}-VM run: shell start-up {fmt(startup)} "
          f"({100 * startup / many['median']:.0f}%), VM creation {fmt(created - startup)} "
          f"({100 * (created - startup) / many['median']:.0f}%)")
    if luajit:
        print(f"the machine's own parallelism (plain LuaJIT, no shell, no VMs): {n} processes "
              f"{parallelism(res, n):.2f}x one; bioxen {n} VMs vs one process: {one['median'] / many['median']:.2f}x")
    if seqkit:
        sk = res[f"seqkit fx2tab -n -g -j {n}"]
        print(f"{n} VMs vs seqkit -j {n}: {sk['median'] / many['median']:.2f}x")

    orf_fa = genome_copies(opts.orf_copies)
    orf_mb = orf_fa.stat().st_size / 1e6
    orfs = {
        "one process: six_frame_orfs.lua": [*BIOXEN, "run", "examples/six_frame_orfs.lua", str(orf_fa)],
        f"{n} VMs: six_frame_orfs.lua --vms {n}": [*BIOXEN, "run", "examples/six_frame_orfs.lua", str(orf_fa),
                                                   "--vms", str(n)],
    }
    if luajit:
        orfs.update(floor_rows(luajit, "examples/six_frame_orfs.lua", orf_fa, n))
    res = measure(orfs, max(3, opts.runs // 2))
    one = res["one process: six_frame_orfs.lua"]
    many = res[f"{n} VMs: six_frame_orfs.lua --vms {n}"]
    assert many["out"] == one["out"], "the VMs' ORFs differ from the one-process ORFs"
    if luajit:
        assert res["floor: luajit, one process, no shell"]["out"] == one["out"], "the floor script's ORFs differ"
    table(f"Six-frame ORFs over {orf_mb:.0f} MB ({opts.orf_copies} x E. coli), median; target: 2 VMs >= 1.8x",
          ("run", "wall", "min–max", "vs one process"),
          [(name, fmt(r["median"]), f"{min(r['wall']):.3f}–{max(r['wall']):.3f}",
            f"{one['median'] / r['median']:.2f}x") for name, r in res.items()])
    if luajit:
        print(f"the machine's own parallelism on this job (plain LuaJIT, no shell, no VMs): {n} processes "
              f"{parallelism(res, n):.2f}x one; bioxen {n} VMs vs one process: {one['median'] / many['median']:.2f}x")


if __name__ == "__main__":
    main()
