"""Sequence-kernel throughput: bio_stdlib on LuaJIT and Lua 5.4 beside Biopython and seqkit.

    python bench/bio_kernels.py [--mb 100] [--repeat 3] [--workdir DIR]

One run, one file: a deterministic random FASTA file of --mb megabytes (bench/make_fasta.py,
kept in --workdir and reused when it is already there).  Measured, in this order:

* kernels on the file's sequences, record by record and joined into one string: GC content
  (gc_fraction, default "remove" mode), reverse complement, translation (standard table) -- in
  the stock `luajit` (FFI kernels) and `lua5.4` (portable kernels) binaries, and in Biopython
  1.88;
* FASTA parsing of the file into records (id, description, sequence);
* a per-record GC table of the file, end to end (process start, parsing, output to /dev/null):
  `seqkit fx2tab -n -g` against examples/gc_table.lua run by `luajit` and by `bioxen run`.

Kernel times are CPU times measured inside each runtime (os.clock, time.process_time) around
the call only; the table shows the best of --repeat runs ("warm") and the first run ("first",
which includes allocating the output buffers).  Whole-program times are wall-clock, best of
--repeat, with their CPU time (user + sys of all threads; seqkit uses two) beside it, since
wall time on a shared machine depends on the load.  MB/s is 10**6 bytes of input per second.

`bioxen run` is timed as a `pip install` runs it, with compiled .pyc files (in a temporary
PYTHONPYCACHEPREFIX, filled by one untimed run), and once more as an editable install under
PYTHONDONTWRITEBYTECODE=1 runs it (every bioxen module compiled from source: ~5 ms more).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.make_fasta import make_fasta  # noqa: E402

LUA_DRIVER = r"""
local path, repeat_n = arg[1], tonumber(arg[2])
local fasta = require "bio.fasta"
local seq = require "bio.seq"
local translate = require "bio.translate"
local F = require "bio._fast"
local clock = os.clock

local function timeit(f)
  local first, best
  for i = 1, repeat_n do
    collectgarbage()
    local t0 = clock()
    f()
    local dt = clock() - t0
    if i == 1 then first = dt end
    if not best or dt < best then best = dt end
  end
  return { first = first, best = best }
end

local result = { runtime = F.runtime, kernels = F.kernels }
local f = assert(io.open(path, "rb"))
result.file_bytes = f:seek("end")
f:close()

local parts, nrec = {}, 0
result.fasta = timeit(function()
  parts, nrec = {}, 0
  for rec in fasta.records(path) do nrec = nrec + 1; parts[nrec] = rec.seq end
end)
result.records = nrec
-- per record, as a script over a FASTA file calls them
result.gc_rec = timeit(function() for i = 1, nrec do seq.gc_fraction(parts[i]) end end)
result.revcomp_rec = timeit(function() for i = 1, nrec do seq.reverse_complement(parts[i]) end end)
result.translate_rec = timeit(function() for i = 1, nrec do translate.translate(parts[i]) end end)
local all = table.concat(parts)
parts = nil
local n = #all
local cds = all:sub(1, n - n % 3)
result.seq_bytes = n
result.gc = timeit(function() seq.gc_fraction(all) end)
result.revcomp = timeit(function() seq.reverse_complement(all) end)
result.translate = timeit(function() translate.translate(cds) end)
result.gc_value = seq.gc_fraction(all)
io.write(require("bio._bench_json")(result))
"""

# A small JSON writer for the driver (numbers, strings, nested tables).
JSON_LUA = r"""
local function enc(v)
  local t = type(v)
  if t == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = string.format("%q:%s", tostring(k), enc(x)) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "string" then return string.format("%q", v)
  elseif t == "number" then return string.format("%.17g", v)
  end
  return "null"
end
return enc
"""


def run_lua(binary: str, fasta: Path, repeat: int, workdir: Path) -> dict | None:
    exe = shutil.which(binary)
    if exe is None:
        return None
    helper = workdir / "luamods" / "bio"
    helper.mkdir(parents=True, exist_ok=True)
    (helper / "_bench_json.lua").write_text(JSON_LUA)
    driver = workdir / "bio_kernels_driver.lua"
    driver.write_text(LUA_DRIVER)
    lua_path = ";".join([f"{REPO}/bio_stdlib/?.lua", f"{REPO}/bio_stdlib/?/init.lua", f"{workdir}/luamods/?.lua", ";"])
    proc = subprocess.run([exe, str(driver), str(fasta), str(repeat)], capture_output=True, text=True,
                          env={**os.environ, "LUA_PATH": lua_path}, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{binary} failed: {proc.stderr}")
    return json.loads(proc.stdout)


def run_biopython(fasta: Path, repeat: int) -> dict:
    from Bio import BiopythonWarning, SeqIO
    from Bio.Seq import reverse_complement, translate
    from Bio.SeqIO.FastaIO import SimpleFastaParser
    from Bio.SeqUtils import gc_fraction

    def timeit(f, n=repeat):
        times = []
        for _ in range(n):
            t0 = time.process_time()
            f()
            times.append(time.process_time() - t0)
        return {"first": times[0], "best": min(times)}

    res: dict = {"file_bytes": fasta.stat().st_size}
    seqs: list[str] = []

    def parse_simple():
        seqs.clear()
        with open(fasta) as h:
            for _title, s in SimpleFastaParser(h):
                seqs.append(s)

    def parse_seqio():
        with open(fasta) as h:
            for rec in SeqIO.parse(h, "fasta"):
                _ = rec.seq

    res["fasta"] = timeit(parse_simple)
    res["fasta_seqio"] = timeit(parse_seqio)
    res["gc_rec"] = timeit(lambda: [gc_fraction(x) for x in seqs])
    res["revcomp_rec"] = timeit(lambda: [reverse_complement(x) for x in seqs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BiopythonWarning)
        res["translate_rec"] = timeit(lambda: [translate(x) for x in seqs], n=1)
    all_seq = "".join(seqs)
    seqs.clear()
    n = len(all_seq)
    cds = all_seq[: n - n % 3]
    res["seq_bytes"] = n
    res["gc"] = timeit(lambda: gc_fraction(all_seq))
    res["revcomp"] = timeit(lambda: reverse_complement(all_seq))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BiopythonWarning)
        res["translate"] = timeit(lambda: translate(cds), n=1)  # ~10 s per run: once
    res["gc_value"] = gc_fraction(all_seq)
    return res


def wall(cmd: list[str], repeat: int, env=None) -> tuple[float, float] | None:
    """Best wall-clock time and best CPU time (user + sys, all threads) of a command."""
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        return None
    best = best_cpu = None
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False)
        dt = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            print(f"  ({' '.join(cmd[:3])} failed: {proc.stderr.decode(errors='replace').strip()[:200]})")
            return None
        best = dt if best is None else min(best, dt)
        best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
    return best, best_cpu


def mbps(nbytes: int, seconds: float | None) -> str:
    if not seconds:
        return "n/a"
    return f"{nbytes / seconds / 1e6:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=100.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bioxen-bench")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    fasta = args.workdir / f"random_{args.mb:g}mb_seed42.fa"
    if not fasta.exists():
        print(f"making {fasta} ...")
        make_fasta(fasta, args.mb, 42)
    size = fasta.stat().st_size
    print(f"file: {fasta} ({size / 1e6:.1f} MB)")

    print("running luajit ..."); jit = run_lua("luajit", fasta, args.repeat, args.workdir)
    print("running lua5.4 ..."); l54 = run_lua("lua5.4", fasta, args.repeat, args.workdir)
    print("running Biopython ..."); bp = run_biopython(fasta, args.repeat)
    for r in (jit, l54):
        if r and abs(r["gc_value"] - bp["gc_value"]) > 1e-12:
            raise SystemExit(f"GC disagrees with Biopython: {r['gc_value']} vs {bp['gc_value']}")

    print("running the per-record GC table ...")
    lua_env = {**os.environ, "LUA_PATH": f"{REPO}/bio_stdlib/?.lua;{REPO}/bio_stdlib/?/init.lua;;"}
    script = str(REPO / "examples" / "gc_table.lua")
    t_seqkit = wall(["seqkit", "fx2tab", "-n", "-g", str(fasta)], args.repeat)
    t_seqkit1 = wall(["seqkit", "fx2tab", "-n", "-g", "-j", "1", str(fasta)], args.repeat)
    t_luajit = wall(["luajit", script, str(fasta)], args.repeat, lua_env)
    t_lua54 = wall(["lua5.4", script, str(fasta)], args.repeat, lua_env)
    bioxen = shutil.which("bioxen") or str(Path(sys.executable).with_name("bioxen"))
    t_bioxen = t_bioxen_src = None
    if Path(bioxen).exists():
        with tempfile.TemporaryDirectory(prefix="bioxen-pyc-") as pycache:
            pyc_env = {**os.environ, "PYTHONPYCACHEPREFIX": pycache}
            pyc_env.pop("PYTHONDONTWRITEBYTECODE", None)
            wall([bioxen, "-e", "1"], 1, pyc_env)  # fills the .pyc cache
            t_bioxen = wall([bioxen, "run", script, str(fasta)], args.repeat, pyc_env)
        src_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        src_env.pop("PYTHONPYCACHEPREFIX", None)
        t_bioxen_src = wall([bioxen, "run", script, str(fasta)], args.repeat, src_env)

    def cell(r, key, which="best"):
        if not r:
            return "n/a"
        nbytes = r["file_bytes"] if key.startswith("fasta") else r["seq_bytes"]
        return mbps(nbytes, r[key][which])

    print()
    print(f"Kernels, MB/s (CPU time; {bp['seq_bytes'] / 1e6:.1f} Mbp of sequence, {size / 1e6:.1f} MB file)")
    header = f"{'operation':<28}{'LuaJIT warm':>12}{'(first)':>9}{'Lua 5.4 warm':>14}{'(first)':>9}{'Biopython':>11}"
    print(header)
    print("-" * len(header))
    rows = [("GC content (remove)", "gc"), ("reverse complement", "revcomp"), ("translation (table 1)", "translate"),
            ("GC, per record", "gc_rec"), ("reverse compl., per record", "revcomp_rec"),
            ("translation, per record", "translate_rec"), ("FASTA parsing", "fasta")]
    for label, key in rows:
        print(f"{label:<28}{cell(jit, key):>12}{cell(jit, key, 'first'):>9}{cell(l54, key):>14}"
              f"{cell(l54, key, 'first'):>9}{cell(bp, key):>11}")
    print(f"{'FASTA parsing (SeqIO)':<28}{'':>12}{'':>9}{'':>14}{'':>9}{cell(bp, 'fasta_seqio'):>11}")
    print()
    print("Per-record GC table, whole program (best wall clock and best CPU time, user+sys of all threads)")
    for label, t in [("seqkit fx2tab -n -g", t_seqkit), ("seqkit fx2tab -n -g -j 1", t_seqkit1),
                     ("luajit examples/gc_table.lua", t_luajit), ("bioxen run examples/gc_table.lua", t_bioxen),
                     ("  (no .pyc cache)", t_bioxen_src), ("lua5.4 examples/gc_table.lua", t_lua54)]:
        if t is None:
            print(f"  {label:<34}{'n/a':>10}")
        else:
            print(f"  {label:<34}{t[0]:8.3f} s wall {mbps(size, t[0]):>7} MB/s   {t[1]:7.3f} s CPU")

    print()
    print("Targets")

    def rate(r, key):
        nbytes = r["file_bytes"] if key.startswith("fasta") else r["seq_bytes"]
        return nbytes / r[key]["best"] / 1e6

    checks = []
    if jit:
        for label, key, target in [("GC", "gc", 1000), ("reverse complement", "revcomp", 1000),
                                   ("translation", "translate", 500)]:
            checks.append((f"LuaJIT {label} >= {target} MB/s (whole file as one string)", rate(jit, key) >= target))
            checks.append((f"LuaJIT {label} >= {target} MB/s (per record)", rate(jit, key + "_rec") >= target))
        checks.append(("LuaJIT FASTA parsing >= 300 MB/s", rate(jit, "fasta") >= 300))
    if l54:
        checks += [(f"Lua 5.4 GC within 3x of Biopython ({rate(bp, 'gc') / rate(l54, 'gc'):.2f}x)",
                    rate(l54, "gc") * 3 >= rate(bp, "gc")),
                   (f"Lua 5.4 reverse complement within 3x of Biopython ({rate(bp, 'revcomp') / rate(l54, 'revcomp'):.2f}x)",
                    rate(l54, "revcomp") * 3 >= rate(bp, "revcomp")),
                   (f"Lua 5.4 translation faster than Biopython ({rate(l54, 'translate') / rate(bp, 'translate'):.1f}x)",
                    rate(l54, "translate") > rate(bp, "translate"))]
    if t_seqkit and t_luajit:
        checks.append((f"luajit gc_table.lua faster than seqkit fx2tab (wall {t_seqkit[0] / t_luajit[0]:.2f}x, "
                       f"CPU {t_seqkit[1] / t_luajit[1]:.2f}x)", t_luajit[0] < t_seqkit[0]))
    if t_seqkit and t_bioxen:
        checks.append((f"bioxen run gc_table.lua faster than seqkit fx2tab (wall {t_seqkit[0] / t_bioxen[0]:.2f}x, "
                       f"CPU {t_seqkit[1] / t_bioxen[1]:.2f}x)", t_bioxen[0] < t_seqkit[0]))
    for label, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {label}")


if __name__ == "__main__":
    main()
