"""The examples/ scripts run and print what Biopython computes for examples/data."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from Bio import SeqIO
from Bio.Seq import reverse_complement
from Bio.SeqUtils import gc_fraction

from tests.bio.test_translate import reference_orfs
from tests.system import require_binary

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SAMPLE = EXAMPLES / "data" / "sample.fa"
READS = EXAMPLES / "data" / "reads.fq"


def bioxen_exe() -> str:
    exe = shutil.which("bioxen") or str(Path(sys.executable).with_name("bioxen"))
    if not Path(exe).exists():
        pytest.skip("the bioxen command is not installed (pip install -e .)")
    return exe


def run_script(runner: str, script: str, *args: str) -> str:
    if runner == "bioxen":
        cmd = [bioxen_exe(), "run", str(EXAMPLES / script), *args]
    else:
        cmd = [require_binary(runner), str(EXAMPLES / script), *args]
    env = {**os.environ, "LUA_PATH": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def expected_gc_table(mode="remove"):
    rows = ["#id\tlength\tgc_percent"]
    for rec in SeqIO.parse(SAMPLE, "fasta"):
        rows.append(f"{rec.id}\t{len(rec.seq)}\t{100 * gc_fraction(rec.seq, mode):.2f}")
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("runner", ["luajit", "lua5.1", "lua5.4", "bioxen"])
def test_gc_table(runner):
    assert run_script(runner, "gc_table.lua", str(SAMPLE)) == expected_gc_table()
    assert run_script(runner, "gc_table.lua", str(SAMPLE), "--mode", "weighted") == expected_gc_table("weighted")


def test_gc_map_over_vms_gives_the_same_table():
    out = run_script("bioxen", "gc_map_vms.lua", str(SAMPLE), "--vms", "2")
    assert out == expected_gc_table()


@pytest.mark.parametrize("runner", ["luajit", "lua5.3"])
def test_six_frame_orfs(runner):
    out = run_script(runner, "six_frame_orfs.lua", str(SAMPLE), "--min", "150")
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    want = []
    for rec in SeqIO.parse(SAMPLE, "fasta"):
        for a, b, strand, frame, prot in reference_orfs(str(rec.seq), 1, 150):
            shown = prot if len(prot) <= 30 else prot[:27] + "..."
            want.append([rec.id, strand, str(frame), str(a), str(b), str(b - a + 1), shown])
    assert rows == want and len(rows) >= 4
    fa = run_script(runner, "six_frame_orfs.lua", str(SAMPLE), "--min", "150", "--fasta")
    assert fa.startswith(">contig_1_orf1 contig_1:301-846(+) frame=1\nMMAGLL")


@pytest.mark.parametrize("runner", ["luajit", "lua5.1", "lua5.4", "bioxen"])
@pytest.mark.parametrize("script", ["gc_table.lua", "six_frame_orfs.lua"])
def test_shard_k_of_n_outputs_in_order_make_the_whole_output(runner, script):
    """--shard K/N runs one of bio.fasta.shards(FILE, N): a job split over plain processes (or
    a job array) and concatenated in order gives the one-process bytes, header once."""
    whole = run_script(runner, script, str(SAMPLE))
    for n in (2, 3, 7):
        parts = [run_script(runner, script, str(SAMPLE), "--shard", f"{k}/{n}") for k in range(1, n + 1)]
        assert "".join(parts) == whole, f"{n} shards"
    assert parts[-1] == ""  # sample.fa makes fewer than 7 shards: the last ones are empty


@pytest.mark.parametrize("bad", ["0/3", "4/3", "2", "x/y"])
def test_a_bad_shard_argument_is_a_usage_error(bad):
    cmd = [require_binary("luajit"), str(EXAMPLES / "gc_table.lua"), str(SAMPLE), "--shard", bad]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2 and "--shard K/N" in proc.stderr and proc.stdout == ""


def test_kmer_spectrum():
    out = run_script("luajit", "kmer_spectrum.lua", str(READS), "--k", "15", "--top", "3")
    counts = Counter()
    for rec in SeqIO.parse(READS, "fastq"):
        s = str(rec.seq).upper()
        for i in range(len(s) - 14):
            km = s[i:i + 15]
            counts[min(km, reverse_complement(km))] += 1
    lines = out.splitlines()
    assert lines[0] == f"# 40 sequences, k = 15 (canonical), {sum(counts.values())} k-mers, {len(counts)} distinct"
    spectrum = Counter(counts.values())
    i = lines.index("#multiplicity\tdistinct_kmers")
    j = lines.index("#top k-mers")
    assert [tuple(map(int, l.split("\t"))) for l in lines[i + 1:j]] == sorted(spectrum.items())
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert [tuple(l.split("\t")) for l in lines[j + 1:]] == [(k, str(v)) for k, v in top]


VM_SCRIPT = r"""
for _, spec in ipairs{{profile = "standard", runtime = "luajit"}, {profile = "standard", runtime = "lua51"},
                      {profile = "sandboxed"}} do
  spec.name = "biotest_" .. (spec.runtime or "default") .. "_" .. spec.profile
  local w = vm.create(spec)
  local ok, res = pcall(w.eval, w, [[
    local bio = require "bio"
    local recs = bio.fasta.parse(">a x\nACGTN\n>b\nGGG\n")
    return bio.seq.reverse_complement(recs[1].seq) .. "|" .. bio.translate.translate("ATGGCCTAA") .. "|" ..
      string.format("%.2f", bio.seq.gc_fraction("ACGTNN"))]])
  local ok2, err = pcall(w.eval, w, [[return require("bio.fasta").read("/nonexistent.fa")]])
  print(spec.name .. "\t" .. (ok and res or ("ERROR " .. tostring(res))) .. "\t" .. tostring(err))
  w:destroy()
end
"""


def test_library_runs_inside_vms(tmp_path):
    script = tmp_path / "vm_bio.lua"
    script.write_text(VM_SCRIPT)
    proc = subprocess.run([bioxen_exe(), "run", str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [r[0] for r in rows] == ["biotest_luajit_standard", "biotest_lua51_standard", "biotest_default_sandboxed"]
    for name, result, err in rows:
        assert result == "NACGT|MA*|0.50", name
    assert "cannot open '/nonexistent.fa'" in rows[0][2]
    assert "cannot open files here (io.open is disabled" in rows[2][2]


def test_gc_table_ignore_mode_equals_seqkit():
    seqkit = require_binary("seqkit")
    ours = run_script("luajit", "gc_table.lua", str(SAMPLE), "--mode", "ignore").splitlines()[1:]
    theirs = subprocess.run([seqkit, "fx2tab", "-n", "-i", "-g", str(SAMPLE)], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert [(r.split("\t")[0], r.split("\t")[2]) for r in ours] == [tuple(r.split("\t")[:2]) for r in theirs]
