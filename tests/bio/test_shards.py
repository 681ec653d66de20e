"""bio.fasta.shards / bio.fastq.shards: record-aligned byte ranges, read back exactly.

For every runtime: reading the shards of a file one after another gives exactly the records
(and gc_records rows) of reading the whole file, for 1, 2, 3 and 7 shards, over files with
records that straddle cut points, CRLF line ends, empty records, no final newline, one huge
record; the shards cover the file exactly once; errors inside a shard name the line of the
whole file.  BGZF files are sharded in their decompressed text.  Shards sized for N VMs
(``shards(path, n, vms)``: "factoring", smaller shards last) obey the same rules, and fall
back to equal shards where records are as big as the shards.
"""
from __future__ import annotations

import gzip
import random
import zlib
import subprocess

import pytest

from tests.bio._lua import bio_runtimes, lua, run_bio
from tests.system import require_binary

SHARD_COUNTS = [1, 2, 3, 7]

# Reads a file whole and shard by shard, returns both (and the shards).
_COMPARE = r"""
local mod = require("bio." .. %(format)s)
local path = %(path)s
local function dump(src)
  local out = {}
  for rec in mod.records(src) do out[#out + 1] = {rec.id, rec.description, rec.seq, rec.quality or ""} end
  return out
end
local whole = dump(path)
local result = {whole = whole, runs = {}}
for _, n in ipairs(%(counts)s) do
  local shards = mod.shards(path, n, %(vms)s)
  local got = {}
  for _, s in ipairs(shards) do
    for _, r in ipairs(dump(s)) do got[#got + 1] = r end
  end
  local ranges = {}
  for i, s in ipairs(shards) do ranges[i] = {s.offset, s.length, s.first_id or "", s.index, s.count} end
  result.runs[#result.runs + 1] = {n = n, records = got, ranges = ranges}
end
return result
"""


def _compare(runtime: str, path, fmt: str, counts=SHARD_COUNTS, vms=None):
    return run_bio(runtime, _COMPARE % {"format": lua(fmt), "path": lua(str(path)), "counts": lua(counts),
                                        "vms": "nil" if vms is None else str(vms)})


def _check_cover(ranges, size: int, n: int) -> None:
    assert 1 <= len(ranges) <= max(1, n)
    pos = 0
    for i, (offset, length, _first, index, count) in enumerate(ranges, 1):
        assert offset == pos, f"shard {i} starts at {offset}, expected {pos}"
        assert length >= 0
        assert index == i and count == len(ranges)
        pos += length
    assert pos == size


def _straddling_fasta(rng: random.Random, nl: str = "\n", final_newline: bool = True) -> str:
    out = []
    for i in range(60):
        n = rng.choice([0, 0, 1, 59, 60, 61, 700, 2500])
        seq = "".join(rng.choice("ACGTNacgt") for _ in range(n))
        out.append(f">rec{i} some description {i}{nl}")
        out.extend(seq[j:j + 60] + nl for j in range(0, len(seq), 60))
    text = "".join(out)
    return text if final_newline else text.rstrip("\r\n")


FASTA_CASES = {
    "straddling": lambda rng: _straddling_fasta(rng),
    "crlf": lambda rng: _straddling_fasta(rng, "\r\n"),
    "no_final_newline": lambda rng: _straddling_fasta(rng, final_newline=False),
    "empty_records": lambda rng: ">a\n>b\n\n>c x\n>d\nAC\n>e\n",
    "blank_lines_first": lambda rng: "\n\n  \n" + _straddling_fasta(rng),
    "one_huge_record": lambda rng: ">huge chromosome\n" + "".join(
        "".join(rng.choice("ACGT") for _ in range(60)) + "\n" for _ in range(3000)),
    "gt_inside_lines": lambda rng: "".join(f">r{i}\nAC>GT\nA>\n" for i in range(200)),
    # Cut points far from the next record (LuaJIT reads 256 KiB at a time to find it), and a
    # header longer than that read, so the header's end is in the next one.
    "long_records_and_headers": lambda rng: "".join(
        f">r{i} {'d' * (300_000 if i == 1 else 10)}\n" + "".join(
            "".join(rng.choice("ACGT") for _ in range(60)) + "\n" for _ in range(lines))
        for i, lines in enumerate([9000, 10, 9000, 9000])),
    "empty_file": lambda rng: "",
}


def _aims(n: int, vms: int | None) -> list[float]:
    """Where the documented rule aims the n - 1 cuts, as fractions of the file: k/n, or for
    vms VMs the factoring sizes (rounds of vms shards, each round half the previous one's)."""
    if not vms or vms < 2:
        return [k / n for k in range(1, n)]
    sizes = [0.5 ** min((i - 1) // vms, 30) for i in range(1, n + 1)]
    total, at, aims = sum(sizes), 0.0, []
    for size in sizes[:-1]:
        at += size
        aims.append(at / total)
    return aims


def _cuts(data: bytes, aims: list[float], strict: float | None):
    starts = [p for p in range(1, len(data)) if data[p] == 0x3E and data[p - 1] == 0x0A]
    bounds, found = [0], 0
    for k, aim in enumerate(aims):
        target = int(len(data) * aim)
        if target > found and target > 0:
            nxt = next((p for p in starts if p >= target), None)
            if nxt is None:
                break
            following = (aims[k + 1] if k + 1 < len(aims) else 1) - aim
            if strict is not None and nxt - target > strict * len(data) * following:
                return None
            bounds.append(nxt)
            found = nxt
    return bounds


def _expected_fasta_starts(data: bytes, n: int, vms: int | None = None) -> list[int]:
    """The shard starts the documented rule gives: for each cut's aim, the first record start
    ('>' after a newline) at or after it; sized for vms VMs, equal shards instead if a cut
    lands further past its aim than half the size of the shard after it."""
    if vms and vms > 1:
        bounds = _cuts(data, _aims(n, vms), 0.5)
        if bounds is not None:
            return bounds
    return _cuts(data, _aims(n, None), None)


def _header_id(data: bytes, start: int) -> str:
    """The id (first word) of the FASTA header line that begins at ``start``."""
    end = data.find(b"\n", start)
    words = data[start + 1:end if end >= 0 else len(data)].split()
    return words[0].decode() if words else ""


@bio_runtimes()
@pytest.mark.parametrize("vms", [None, 2])
@pytest.mark.parametrize("case", sorted(FASTA_CASES))
def test_fasta_shards_read_back_exactly(runtime, case, vms, tmp_path):
    text = FASTA_CASES[case](random.Random(zlib.crc32(case.encode())))
    path = tmp_path / "x.fa"
    path.write_bytes(text.encode())
    got = _compare(runtime, path, "fasta", counts=SHARD_COUNTS + [8, 12] if vms else SHARD_COUNTS, vms=vms)
    for run in got["runs"]:
        assert run["records"] == got["whole"], f"{run['n']} shards"
        _check_cover(run["ranges"], len(text.encode()), run["n"])
        if text:
            assert [r[0] for r in run["ranges"]] == _expected_fasta_starts(text.encode(), run["n"], vms)
            for start, _, first_id, *_ in run["ranges"][1:]:  # each cut names the record it starts
                assert first_id == _header_id(text.encode(), start), (run["n"], start)
    if case == "one_huge_record":
        assert all(len(run["ranges"]) == 1 for run in got["runs"])
    if case == "straddling":
        assert len(got["runs"][-1]["ranges"]) > 3


def _fastq(rng: random.Random, nl: str = "\n", final_newline: bool = True) -> str:
    out = []
    for i in range(400):
        n = rng.choice([0, 1, 30, 150]) if i < 399 else 5
        seq = "".join(rng.choice("ACGTN") for _ in range(n))
        # Quality lines starting with '@' and '+' are legal and must not be taken for record starts.
        qual = "".join(rng.choice("@+!#ABCDEFGHI") for _ in range(n))
        out.append(f"@read{i} lane=1{nl}{seq}{nl}+{nl}{qual}{nl}")
    text = "".join(out)
    return text if final_newline else text[:-len(nl)]


FASTQ_CASES = {
    "plain": lambda rng: _fastq(rng),
    "crlf": lambda rng: _fastq(rng, "\r\n"),
    "no_final_newline": lambda rng: _fastq(rng, final_newline=False),
    # Wrapped records cannot be entered safely: they stay whole, the result stays exact.
    "wrapped": lambda rng: "".join(f"@w{i}\nACGT\nAC\n+\n@@@@\n!!\n" for i in range(300)),
}


@bio_runtimes()
@pytest.mark.parametrize("vms", [None, 2])
@pytest.mark.parametrize("case", sorted(FASTQ_CASES))
def test_fastq_shards_read_back_exactly(runtime, case, vms, tmp_path):
    text = FASTQ_CASES[case](random.Random(7))
    path = tmp_path / "x.fq"
    path.write_bytes(text.encode())
    got = _compare(runtime, path, "fastq", vms=vms)
    assert len(got["whole"]) > 0
    for run in got["runs"]:
        assert run["records"] == got["whole"], f"{run['n']} shards"
        _check_cover(run["ranges"], len(text.encode()), run["n"])
    if case == "plain":
        assert [len(r["ranges"]) for r in got["runs"]] == SHARD_COUNTS


def _many_small_records(n: int = 4000) -> bytes:
    rng = random.Random(11)
    return "".join(f">s{i}\n" + "".join(rng.choice("ACGT") for _ in range(rng.randint(50, 150))) + "\n"
                   for i in range(n)).encode()


_LENGTHS = r"""
local out = {}
for i, s in ipairs(require("bio.fasta").shards(%(path)s, %(n)d, %(vms)s)) do out[i] = s.length end
return out
"""


@bio_runtimes()
def test_shards_sized_for_vms_get_smaller_towards_the_end(runtime, tmp_path):
    """Two VMs, 8 shards: rounds of two, each about half the size of the round before, so the
    VM that is idle first takes the small last ones (the map's tail is short)."""
    data = _many_small_records()
    path = tmp_path / "small.fa"
    path.write_bytes(data)
    lengths = run_bio(runtime, _LENGTHS % {"path": lua(str(path)), "n": 8, "vms": 2})
    equal = run_bio(runtime, _LENGTHS % {"path": lua(str(path)), "n": 8, "vms": "nil"})
    assert len(lengths) == 8 and sum(lengths) == len(data) == sum(equal)
    for first, second in zip(lengths[0:6:2], lengths[2:8:2]):  # round r vs round r + 1
        assert 0.4 < second / first < 0.6, lengths
    assert max(lengths[-2:]) < 0.05 * len(data) < min(equal), (lengths, equal)


@bio_runtimes()
def test_records_as_big_as_the_shards_get_equal_shards(runtime, tmp_path):
    """4 equal records cut for 2 VMs: factoring's first shard would take two records (its cut
    aims just past the second record's start), so the file gets the equal cuts: one each."""
    rng = random.Random(12)
    seq = "".join("".join(rng.choice("ACGT") for _ in range(60)) + "\n" for _ in range(500))
    data = "".join(f">chr{i}\n{seq}" for i in range(4)).encode()
    path = tmp_path / "big.fa"
    path.write_bytes(data)
    lengths = run_bio(runtime, _LENGTHS % {"path": lua(str(path)), "n": 8, "vms": 2})
    assert lengths == [len(data) // 4] * 4


_GC = r"""
local fasta = require "bio.fasta"
local path = %(path)s
local function rows(src, mode)
  local out = {}
  for id, len, gc, desc in fasta.gc_records(src, mode) do out[#out + 1] = {id, len, string.format("%%.12f", gc), desc} end
  return out
end
local res = {}
for _, mode in ipairs({"remove", "ignore", "weighted"}) do
  local whole = rows(path, mode)
  for _, n in ipairs({1, 2, 3, 7}) do
    local got = {}
    for _, s in ipairs(fasta.shards(path, n)) do for _, r in ipairs(rows(s, mode)) do got[#got + 1] = r end end
    res[#res + 1] = {mode = mode, n = n, same = #got == #whole and (function()
      for i = 1, #whole do for k = 1, 4 do if got[i][k] ~= whole[i][k] then return false end end end
      return true end)(), count = #got}
  end
end
return res
"""


@bio_runtimes()
def test_gc_records_over_shards_match_the_whole_file(runtime, tmp_path):
    path = tmp_path / "x.fa"
    path.write_bytes(_straddling_fasta(random.Random(3), "\r\n").encode())
    for row in run_bio(runtime, _GC % {"path": lua(str(path))}):
        assert row["same"], row
        assert row["count"] == 60


def _first_ids(runtime, path, fmt, n):
    return run_bio(runtime, f"""
      local out = {{}}
      for i, s in ipairs(require("bio.{fmt}").shards({lua(str(path))}, {n})) do out[i] = s.first_id end
      return out""")


@bio_runtimes()
def test_each_shard_names_its_first_record(runtime, tmp_path):
    path = tmp_path / "x.fa"
    path.write_bytes(_straddling_fasta(random.Random(5)).encode())
    ids = _first_ids(runtime, path, "fasta", 7)
    whole = run_bio(runtime, f"""
      local out = {{}}
      for _, s in ipairs(require("bio.fasta").shards({lua(str(path))}, 7)) do
        for rec in require("bio.fasta").records(s) do out[#out + 1] = rec.id break end
      end
      return out""")
    assert ids == whole and len(ids) == 7 and ids[0] == "rec0"


_ERROR = r"""
local mod = require("bio." .. %(format)s)
local shards = mod.shards(%(path)s, %(n)d)
local last = shards[#shards]
local ok, err = pcall(function() for _ in mod.records(last) do end end)
return {ok = ok, err = tostring(err), offset = last.offset}
"""


@bio_runtimes()
def test_errors_in_a_shard_name_the_line_of_the_whole_file(runtime, tmp_path):
    good = "".join(f"@r{i}\nACGT\n+\nIIII\n" for i in range(500))
    bad_line = good.count("\n") + 2  # the sequence line of the bad record
    text = good + "@bad\nAC GT\n+\nIIIII\n"
    path = tmp_path / "bad.fq"
    path.write_bytes(text.encode())
    got = run_bio(runtime, _ERROR % {"format": lua("fastq"), "path": lua(str(path)), "n": 4})
    assert got["offset"] > 0 and not got["ok"]
    # The record header is on line bad_line - 1: fastq names the record's line.
    assert f"record 'bad' (line {bad_line - 1})" in got["err"], got["err"]
    assert str(path) in got["err"]
    # and exactly as reading the whole file says it
    whole = run_bio(runtime, f"""
      local ok, err = pcall(function() for _ in require("bio.fastq").records({lua(str(path))}) do end end)
      return tostring(err)""")
    assert whole == got["err"]


@bio_runtimes()
def test_shard_arguments_are_checked(runtime, tmp_path):
    path = tmp_path / "x.fa"
    path.write_bytes(b">a\nAC\n")
    got = run_bio(runtime, f"""
      local fasta, fastq = require "bio.fasta", require "bio.fastq"
      local out = {{}}
      out[1] = select(2, pcall(fasta.shards, {lua(str(path))}, 0))
      out[2] = select(2, pcall(fasta.shards, {lua(str(tmp_path / 'missing.fa'))}, 2))
      local s = fastq.shards({lua(str(path))}, 1)[1]
      out[3] = select(2, pcall(function() for _ in fasta.records(s) do end end))
      out[4] = select(2, pcall(function() for _ in fasta.records({{path = {lua(str(path))}, offset = -3, length = 1}}) do end end))
      out[5] = select(2, pcall(fastq.shards, {lua(str(path))}, 4, 0))
      return out""")
    assert "bio.fasta.shards" in got[0] and "#2 'n'" in got[0]
    assert "missing.fa" in got[1] and "cannot open" in got[1]
    assert "fastq shard" in got[2]
    assert "offset" in got[3]
    assert "bio.fastq.shards" in got[4] and "#3 'vms'" in got[4]


# ---------------------------------------------------------------------------------- BGZF

def _bgzip(path) -> None:
    """``path`` + ``.gz``, written by the real bgzip (the plain file is kept)."""
    exe = require_binary("bgzip")
    with open(f"{path}.gz", "wb") as out:
        subprocess.run([exe, "-c", str(path)], stdout=out, check=True)


@bio_runtimes()
@pytest.mark.parametrize("fmt", ["fasta", "fastq"])
def test_bgzf_files_shard_and_read_back_exactly(runtime, fmt, tmp_path):
    rng = random.Random(11)
    # Big enough for several BGZF blocks (64 KiB of text each).
    text = (_straddling_fasta(rng) * 6) if fmt == "fasta" else _fastq(rng) * 4
    plain = tmp_path / f"x.{fmt[:2]}"
    plain.write_bytes(text.encode())
    _bgzip(plain)
    gz = tmp_path / f"x.{fmt[:2]}.gz"
    assert gzip.decompress(gz.read_bytes()) == text.encode()
    got = _compare(runtime, gz, fmt)
    expected = _compare(runtime, plain, fmt, counts=[1])["whole"]
    assert got["whole"] == expected
    for run in got["runs"]:
        assert run["records"] == expected, f"{run['n']} shards"
        _check_cover(run["ranges"], len(text.encode()), run["n"])
    assert len(got["runs"][-1]["ranges"]) > 1


@bio_runtimes()
def test_a_plain_gzip_file_is_one_shard(runtime, tmp_path):
    text = _straddling_fasta(random.Random(2))
    path = tmp_path / "x.fa.gz"
    path.write_bytes(gzip.compress(text.encode()))
    got = _compare(runtime, path, "fasta", counts=[1, 4])
    for run in got["runs"]:
        assert len(run["ranges"]) == 1
        assert run["records"] == got["whole"]
    assert len(got["whole"]) == 60


@bio_runtimes()
def test_open_errors_blame_the_callers_line_not_the_library(runtime, tmp_path):
    got = run_bio(runtime, f"""
      local out = {{}}
      out[1] = select(2, pcall(function() for _ in require("bio.fasta").records({lua(str(tmp_path / 'no.fa'))}) do end end))
      out[2] = select(2, pcall(function() for _ in require("bio.fastq").records({{path = {lua(str(tmp_path / 'no.fq'))}, offset = 0, length = 1}}) do end end))
      return out""")
    for err in got:
        assert "cannot open" in err and "fasta.lua:" not in err and "fastq.lua:" not in err and "_io.lua:" not in err, err
