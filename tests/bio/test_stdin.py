""""-" is standard input for every reader and standard output for the writers: real pipes
(subprocess), plain, gzip and BGZF text, on the stock interpreters and through `bioxen run`,
checked against Biopython's parsers and writers."""
from __future__ import annotations

import gzip
import io
import os
import random
import subprocess

import pytest
from Bio import SeqIO
from Bio.SeqUtils import gc_fraction

from bioxen_shell.paths import bio_stdlib_dir
from tests.bio.harness import STOCK_RUNTIMES
from tests.bio.test_examples import EXAMPLES, REPO, SAMPLE, bioxen_exe, expected_gc_table
from tests.system import require_binary

# Reads "-" with the function named by arg[1] and prints one line per record, fields
# hex-encoded (ids and descriptions may hold any byte).
READER = r"""
package.path = %(path)r .. "/?.lua;" .. package.path
if os.getenv("PORTABLE") then BIOXEN_BIO_PORTABLE = true end
local fasta, fastq = require "bio.fasta", require "bio.fastq"
local function hex(s) return (s:gsub(".", function(c) return string.format("%%02x", c:byte()) end)) end
local what, cs = arg[1], tonumber(arg[2] or "")
local opts = cs and { chunk_size = cs } or nil
local function show(rec) print(hex(rec.id) .. "\t" .. hex(rec.description) .. "\t" .. hex(rec.seq) .. "\t" .. hex(rec.quality or "")) end
if what == "fasta.records" then for rec in fasta.records("-", opts) do show(rec) end
elseif what == "fasta.read" then for _, rec in ipairs(fasta.read("-", opts)) do show(rec) end
elseif what == "fastq.records" then for rec in fastq.records("-", opts) do show(rec) end
elseif what == "fastq.read" then for _, rec in ipairs(fastq.read("-", opts)) do show(rec) end
elseif what == "gc_records" then
  for id, n, gc in fasta.gc_records("-", arg[3], opts) do print(hex(id) .. "\t" .. n .. "\t" .. string.format("%%.12f", gc)) end
elseif what == "fasta.write" then fasta.write("-", fasta.records(arg[2]))
elseif what == "fastq.write" then fastq.write("-", fastq.records(arg[2]))
elseif what == "io.stdin" then for rec in fasta.records(io.stdin) do show(rec) end
elseif what == "shards" then
  for _, mod in ipairs{fasta, fastq} do
    local ok, err = pcall(function() local s = mod.shards("-", 2); return s end)
    print(err)
  end
end
"""

RUNTIMES = STOCK_RUNTIMES + ["luajit+portable", "luajit+lua-zlib"]


@pytest.fixture(scope="module")
def reader_script(tmp_path_factory):
    path = tmp_path_factory.mktemp("stdin") / "reader.lua"
    path.write_text(READER % {"path": str(bio_stdlib_dir())})
    return path


def lua_cmd(runtime: str, script, *args: str):
    env = {**os.environ, "LUA_PATH": ""}
    if runtime.endswith("+portable"):
        env["PORTABLE"] = "1"
    if runtime.endswith("+lua-zlib"):
        env["BIOXEN_NO_FFI_ZLIB"] = "1"
    return [require_binary(runtime.split("+")[0]), str(script), *args], env


def pipe(cmd, env, data: bytes, tmp_dir) -> str:
    """Run cmd with `data` on a pipe as its standard input (`cat FILE | cmd`: a real pipe)."""
    src = tmp_dir / "input.bin"
    src.write_bytes(data)
    feeder = subprocess.Popen(["cat", str(src)], stdout=subprocess.PIPE)
    proc = subprocess.Popen(cmd, stdin=feeder.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    feeder.stdout.close()
    out, err = proc.communicate(timeout=120)
    feeder.wait()
    assert proc.returncode == 0, err.decode(errors="replace")
    return out.decode("latin-1")


def rows(records, quality=False):
    h = lambda s: s.encode("latin-1").hex()
    out = []
    for r in records:
        q = "".join(chr(33 + v) for v in r.letter_annotations["phred_quality"]) if quality else ""
        out.append("\t".join([h(r.id), h(r.description), h(str(r.seq)), h(q)]))
    return out


def random_fasta(rng: random.Random, n: int) -> str:
    out = []
    for i in range(n):
        junk = "".join(rng.choice("xy\x00\x1a\x7f\xff|") for _ in range(rng.randrange(0, 4)))
        out.append(f">r{i}{junk} desc {i}\n")
        seq = "".join(rng.choice("ACGTNacgtn-RY") for _ in range(rng.randrange(0, 300)))
        out += [seq[j:j + 61] + "\n" for j in range(0, len(seq), 61)]
    return "".join(out)


def random_fastq(rng: random.Random, n: int) -> str:
    out = []
    for i in range(n):
        seq = "".join(rng.choice("ACGTN") for _ in range(rng.randrange(1, 120)))
        qual = "".join(chr(33 + rng.randrange(0, 42)) for _ in seq)
        out.append(f"@read{i} lane {i % 3}\n{seq}\n+\n{qual}\n")
    return "".join(out)


def bgzf(data: bytes) -> bytes:
    proc = subprocess.run([require_binary("bgzip"), "-c"], input=data, capture_output=True, check=True)
    return proc.stdout


def encodings(data: bytes):
    """The same text as sent: plain, gzip, several gzip members, BGZF."""
    half = len(data) // 2
    return {"plain": data, "gzip": gzip.compress(data, 6),
            "members": gzip.compress(data[:half]) + gzip.compress(data[half:]), "bgzf": bgzf(data)}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_readers_on_stdin_match_biopython(runtime, reader_script, tmp_path):
    rng = random.Random(7)
    fa, fq = random_fasta(rng, 40), random_fastq(rng, 40)
    want_fa = rows(SeqIO.parse(io.StringIO(fa), "fasta"))
    want_fq = rows(SeqIO.parse(io.StringIO(fq), "fastq"), quality=True)
    want_gc = [f"{r.id.encode('latin-1').hex()}\t{len(r.seq)}\t{gc_fraction(r.seq, 'ignore'):.12f}"
               for r in SeqIO.parse(io.StringIO(fa), "fasta")]
    for kind, data in encodings(fa.encode("latin-1")).items():
        for what, cs in (("fasta.records", None), ("fasta.read", "7"), ("io.stdin", None)):
            cmd, env = lua_cmd(runtime, reader_script, what, *([cs] if cs else []))
            assert pipe(cmd, env, data, tmp_path).splitlines() == want_fa, (kind, what)
        cmd, env = lua_cmd(runtime, reader_script, "gc_records", "65536", "ignore")
        assert pipe(cmd, env, data, tmp_path).splitlines() == want_gc, kind
    for kind, data in encodings(fq.encode()).items():
        for what, cs in (("fastq.records", "5"), ("fastq.read", None)):
            cmd, env = lua_cmd(runtime, reader_script, what, *([cs] if cs else []))
            assert pipe(cmd, env, data, tmp_path).splitlines() == want_fq, (kind, what)


@pytest.mark.parametrize("runtime", ["lua5.4", "luajit"])
def test_large_gzip_stream(runtime, reader_script, tmp_path):
    # a few MB through the stream path: many reads, and a deflate window crossing them
    rng = random.Random(3)
    fa = random_fasta(rng, 6000)
    want = rows(SeqIO.parse(io.StringIO(fa), "fasta"))
    cmd, env = lua_cmd(runtime, reader_script, "fasta.records")
    assert pipe(cmd, env, gzip.compress(fa.encode("latin-1"), 1), tmp_path).splitlines() == want


@pytest.mark.parametrize("runtime", ["lua5.1", "lua5.4", "luajit"])
def test_empty_and_broken_stdin(runtime, reader_script, tmp_path):
    cmd, env = lua_cmd(runtime, reader_script, "fasta.records")
    assert pipe(cmd, env, b"", tmp_path) == ""
    bad = gzip.compress(b">a\nACGT\n" * 1000)[:-12]
    proc = subprocess.run(cmd, input=bad, capture_output=True, env=env)
    assert proc.returncode != 0
    assert b"bio.fasta.records: '<stdin>': truncated gzip member at byte offset 0" in proc.stderr
    proc = subprocess.run(cmd, input=b"hello\n>a\nAC\n", capture_output=True, env=env)
    assert b"bio.fasta.records: <stdin> line 1: text before the first '>' header" in proc.stderr


@pytest.mark.parametrize("runtime", ["lua5.1", "lua5.4", "luajit"])
def test_writers_to_stdout_match_biopython(runtime, reader_script, tmp_path):
    rng = random.Random(11)
    fa, fq = tmp_path / "x.fa", tmp_path / "x.fq"
    fa.write_text(random_fasta(rng, 20).replace("\x00", "").replace("\xff", "").replace("\x1a", ""))
    fq.write_text(random_fastq(rng, 20))
    for what, path, fmt in (("fasta.write", fa, "fasta"), ("fastq.write", fq, "fastq")):
        want = io.StringIO()
        SeqIO.write(SeqIO.parse(path, fmt), want, fmt)
        cmd, env = lua_cmd(runtime, reader_script, what, str(path))
        proc = subprocess.run(cmd, capture_output=True, env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.decode("latin-1") == want.getvalue(), what


@pytest.mark.parametrize("runtime", ["lua5.1", "luajit"])
def test_shards_of_stdin_are_refused(runtime, reader_script):
    cmd, env = lua_cmd(runtime, reader_script, "shards")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout.splitlines()
    for line, mod in zip(out, ("fasta", "fastq")):
        assert line.endswith(f"bio.{mod}.shards: bad argument #1 'path': '-' (standard input) cannot be sharded: "
                             "a pipe can only be read once, from the start; read it with records() instead, "
                             "or save it to a file first"), line
        assert "reader.lua:" in line  # raised at the caller's line


def shell(cmdline: str) -> str:
    proc = subprocess.run(["sh", "-c", cmdline], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "LUA_PATH": ""})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("runner", ["bioxen", "lua5.1", "luajit"])
def test_examples_read_pipes(runner, tmp_path):
    run = f"{bioxen_exe()} run" if runner == "bioxen" else require_binary(runner)
    gz, bgz = tmp_path / "sample.fa.gz", tmp_path / "sample.fa.bgz"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    bgz.write_bytes(bgzf(SAMPLE.read_bytes()))
    want = expected_gc_table()
    gc = EXAMPLES / "gc_table.lua"
    assert shell(f"cat {SAMPLE} | {run} {gc} -") == want
    assert shell(f"zcat {gz} | {run} {gc} -") == want
    assert shell(f"cat {gz} | {run} {gc} -") == want
    assert shell(f"cat {bgz} | {run} {gc} -") == want
    assert shell(f"{run} {gc} {gz}") == want
    orfs = EXAMPLES / "six_frame_orfs.lua"
    assert shell(f"cat {gz} | {run} {orfs} - --min 150") == shell(f"{run} {orfs} {SAMPLE} --min 150")
    reads = EXAMPLES / "data" / "reads.fq"
    kmers = EXAMPLES / "kmer_spectrum.lua"
    assert shell(f"gzip -c {reads} | {run} {kmers} - --k 15") == shell(f"{run} {kmers} {reads} --k 15")
    assert shell(f"cat {SAMPLE} | {run} {kmers} - --k 9") == shell(f"{run} {kmers} {SAMPLE} --k 9")
    if runner == "bioxen":
        pair = EXAMPLES / "align_pair.lua"
        assert shell(f"cat {gz} | {run} {pair} - GATTACAGATTACA") == shell(f"{run} {pair} {SAMPLE} GATTACAGATTACA")
