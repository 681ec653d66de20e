"""FASTA indexing: bio.fasta.index on LuaJIT and Lua 5.4 beside `samtools faidx`, same run.

    python bench/fai.py [--mb 100] [--repeat 3] [--workdir DIR]

One file: a deterministic random FASTA file of --mb megabytes (bench/make_fasta.py, kept in
--workdir and reused), indexed plain and as BGZF (`bgzip`).  Each tool indexes its own copy;
the .fai files are checked to be identical.  Times are wall-clock, best of --repeat, with CPU
time (user + sys of the child) beside them; the ratios to samtools (wall and CPU: the
machine may be shared) are printed per row.  Peak
memory (max RSS) shows that indexing streams.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.make_fasta import make_fasta  # noqa: E402
from bioxen_shell.paths import bio_stdlib_dir  # noqa: E402

LUA = 'package.path = "{lib}/?.lua;" .. package.path; require("bio.fasta").index(arg[1])'


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and max RSS (MB) of one run of cmd."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, kind, default in (("--mb", float, 100.0), ("--repeat", int, 3),
                                ("--workdir", Path, Path(tempfile.gettempdir()) / "bioxen-bench")):
        ap.add_argument(flag, type=kind, default=default)
    return ap.parse_args()


def main() -> None:
    args = arguments()
    args.workdir.mkdir(parents=True, exist_ok=True)
    src = args.workdir / f"random_{args.mb:g}mb_seed42.fa"  # the file bench/bio_kernels.py uses
    if not src.exists():
        make_fasta(src, args.mb, 42)
    gz = Path(f"{src}.gz")
    if not gz.exists():
        with open(gz, "wb") as out:
            subprocess.run(["bgzip", "-c", str(src)], stdout=out, check=True)
    script = args.workdir / "fai_index.lua"
    script.write_text(LUA.format(lib=bio_stdlib_dir()))
    tools = {"samtools": ["samtools", "faidx"], "luajit": ["luajit", str(script)], "lua5.4": ["lua5.4", str(script)]}
    print(f"{src.name}: {src.stat().st_size / 1e6:.0f} MB, BGZF {gz.stat().st_size / 1e6:.0f} MB")
    print(f"{'file':6} {'tool':9} {'wall s':>8} {'cpu s':>8} {'MB/s':>7} {'maxrss MB':>10} {'x samtools wall':>16} {'cpu':>6}")
    for kind, path in (("plain", src), ("bgzf", gz)):
        fais, base, base_cpu = {}, None, None
        for name, cmd in tools.items():
            copy = args.workdir / f"{name}_{path.name}"
            if not copy.exists():
                shutil.copyfile(path, copy)
            runs = [timed(cmd + [str(copy)]) for _ in range(args.repeat)]
            wall, cpu, rss = min(runs)
            base, base_cpu = base or wall, base_cpu or cpu
            fais[name] = Path(f"{copy}.fai").read_bytes()
            print(f"{kind:6} {name:9} {wall:8.2f} {cpu:8.2f} {src.stat().st_size / 1e6 / wall:7.0f} {rss:10.0f} "
                  f"{wall / base:16.1f} {cpu / base_cpu:6.1f}")
        assert len(set(fais.values())) == 1, "the .fai files differ"
    print("the .fai files are identical")


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    main()
