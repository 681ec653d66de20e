"""bio.fasta.index / read_index / fetch against the real ``samtools faidx`` (1.16).

Every .fai (and .gzi) is compared byte for byte with the one samtools writes for the same
bytes; a file samtools refuses must raise, and one it indexes must not.  Regions are fetched
with both and the sequences compared, warnings included.  The core cases run on every
runtime; the real genomes (E. coli from bowtie-examples, any2fasta's test.fna) on lua5.4 and
luajit.
"""
from __future__ import annotations

import gzip
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.bio._lua import bio_runtimes, lua, run_bio
from tests.system import require_binary

ECOLI = Path("/usr/share/doc/bowtie/examples/genomes/NC_008253.fna.gz")
ANY2FASTA_FNA = Path("/usr/share/doc/any2fasta/examples/test.fna.gz")
BIG_RUNTIMES = ["lua5.4", "luajit"]

# ------------------------------------------------------------------------------ samtools


def samtools() -> str:
    return require_binary("samtools")


def samtools_index(path: Path) -> dict:
    """What ``samtools faidx path`` does to a copy of path: ok, the .fai (and .gzi) bytes, warnings."""
    work = path.parent / "samtools"
    work.mkdir(exist_ok=True)
    copy = work / path.name
    shutil.copyfile(path, copy)
    proc = subprocess.run([samtools(), "faidx", str(copy)], capture_output=True)
    fai, gzi = Path(f"{copy}.fai"), Path(f"{copy}.gzi")
    warnings = [line.split("] ", 1)[1] for line in proc.stderr.decode().splitlines() if line.startswith("[W::")]
    return {"ok": proc.returncode == 0, "fai": fai.read_bytes() if proc.returncode == 0 else None,
            "gzi": gzi.read_bytes() if proc.returncode == 0 and gzi.exists() else None, "warnings": warnings,
            "stderr": proc.stderr.decode()}


def samtools_fetch(path: Path, regions: list[str]) -> tuple[list[str], list[str]]:
    """The sequences ``samtools faidx path REGION...`` prints (lines joined) and its [faidx] warnings."""
    proc = subprocess.run([samtools(), "faidx", str(path), *regions], capture_output=True, check=True)
    seqs: list[list[str]] = []
    for line in proc.stdout.decode().splitlines():
        if line.startswith(">"):
            seqs.append([])
        else:
            seqs[-1].append(line)
    warnings = [line.split("] ", 1)[1] for line in proc.stderr.decode().splitlines()
                if line.startswith("[faidx] ") and ("Truncated" in line or "Zero length" in line)]
    return ["".join(parts) for parts in seqs], warnings


# ------------------------------------------------------------------------------ Lua side

_INDEX = r"""
local fasta = require "bio.fasta"
local fai = require "bio._fai"
local out = {}
for i, path in ipairs(%(paths)s) do
  local row = {}
  for _, cs in ipairs(%(sizes)s) do
    local ok, entries, warnings = pcall(fasta.index, path, cs > 0 and {chunk_size = cs, write = false} or nil)
    if ok then
      local f = io.open(path .. ".fai", "rb")
      local written = cs == 0 and f and f:read("*a") or fai.format(entries)
      if f then f:close() end
      local g = io.open(path .. ".gzi", "rb")
      local gzi = g and g:read("*a") or ""
      if g then g:close() end
      row[#row + 1] = {ok = true, fai = written, gzi = gzi, warnings = warnings, n = #entries}
    else
      row[#row + 1] = {ok = false, err = tostring(entries)}
    end
  end
  out[i] = row
end
return out
"""


def our_index(runtime: str, paths: list[Path], sizes=(0,), module: str = "fasta") -> list[list[dict]]:
    """fasta.index (or fastq.index) on each path: size 0 writes the files, other sizes read in
    chunks of that many bytes."""
    code = _INDEX % {"paths": lua([str(p) for p in paths]), "sizes": lua(list(sizes))}
    return run_bio(runtime, code.replace('require "bio.fasta"', f'require "bio.{module}"'))


def check_same_as_samtools(mine: dict, theirs: dict, what: str) -> None:
    if not theirs["ok"]:
        assert not mine["ok"], f"{what}: samtools refuses it ({theirs['stderr'].strip()}), we indexed it"
        assert mine["err"].startswith(("bio.fasta.index: ", "bio.fastq.index: ")), mine["err"]
        return
    assert mine["ok"], f"{what}: samtools indexes it, we raised {mine.get('err')}"
    assert mine["fai"].encode("latin-1") == theirs["fai"], what
    assert (mine["warnings"] or []) == theirs["warnings"], what  # an empty Lua table comes back as {}
    if theirs["gzi"] is not None:
        assert mine["gzi"].encode("latin-1") == theirs["gzi"], what


# ------------------------------------------------------------------------------ cases

EDGE_CASES = {
    "worked_example": b">s1 desc\nACGTACGTAC\nGTACGTACGT\nACG\n>s2\nTTTTT\nGG\n",
    "crlf": b">r1\r\nACGTA\r\nCGT\r\n",
    "crlf_blank_end": b">x\r\nACGT\r\nAC\r\n\r\n\r\n>y\r\nA\r\n",
    "blank_lines_at_record_end": b">x\nACGT\nAC\n\n\n>y\nA\n",
    "blank_lines_first": b"\n\n>x\nAC\n",
    "blank_line_inside": b">x\nACGT\n\nAC\n",
    "shorter_line_inside": b">x\nACGT\nAC\nACGT\n",
    "longer_line_inside": b">x\nACG\nACGTT\nA\n",
    "duplicates": b">d\nAC\n>e\nA\n>d\nACGT\n>d\nG\n",
    "duplicate_of_empty": b">d\n>d\nAC\n",
    "empty_record_first": b">a\n>b\nAC\n",
    "empty_record_blank": b">a\n\n>b\nAC\n",
    "empty_record_last": b">a\nAC\n>b\n",
    "empty_record_last_blank": b">a\nAC\n>b\n\n",
    "header_at_eof": b">a\nAC\n>b",
    "header_at_eof_desc": b">a\nAC\n>b desc",
    "header_only": b">x\n",
    "empty_file": b"",
    "only_blank_lines": b"\n\n",
    "no_final_newline": b">x\nACGT",
    "no_final_newline_2": b">x\nACGT\nACGT",
    "lowercase_iupac": b">x\nacgtNNRYKMSWbdhv\nacgt\n",
    "space_only_line": b">a\nAC\n>b\n \n",
    "space_line_first": b">a\n \n>b\nAC\n",
    "space_inside_lines": b">x\nA C\nACG\nA\n",
    "spaces_after_short": b">x\nACGT\nAC\n \n>y\nA\n",
    "cr_inside_line": b">x\nAC\rAC\n",
    "cr_line_start": b">x\nAC\n\rA\n",
    "cr_alone_between": b">x\nACGT\nAC\n\rA\n",
    "cr_blank_first": b">x\n\r\nACGT\n",
    "at_inside": b">x\nAC\n@y\nAC\n",
    "at_after_short": b">x\nACGT\nAC\n@y\nA\n",
    "control_after_short": b">x\nACGT\nAC\n\x01y\nA\n",
    "gt_inside_line": b">x\nAC>G\nA\n",
    "text_before_header": b"hello\n>x\nAC\n",
    "empty_name": b">\nAC\n",
    "empty_name_empty": b">\n>b\nAC\n",
    "name_after_space": b"> x y\nAC\n",
    "name_after_vt": b">\x0bx y\nAC\n",
    "tab_in_header": b">x\tdesc\nAC\n",
    "high_bytes": b">x\nAC\xe9G\nA\n",
    "fastq": b"@q1\nACGTAC\n+\nIIIIII\n",
    "one_long_line": b">x\n" + b"ACGT" * 5000 + b"\n>y\n" + b"AC" * 3000,  # lines across many chunks
}


def random_fasta(rng: random.Random) -> bytes:
    """Mostly valid FASTA with the features that change the index: widths, CRLF, blank lines,
    empty and duplicate records, a missing final newline."""
    nl = "\r\n" if rng.random() < 0.25 else "\n"
    names = [f"r{i}" for i in range(6)]
    out = []
    for _ in range(rng.randrange(1, 7)):
        out.append(">" + rng.choice(names) + rng.choice(["", " desc", "\tx y"]) + nl)
        width = rng.choice([1, 2, 7, 60, 61, 80])
        n = rng.choice([0, 0, 1, width - 1, width, width + 1, 3 * width, 500])
        seq = "".join(rng.choice("ACGTNacgtnRYKM*-") for _ in range(max(n, 0)))
        lines = [seq[j:j + width] for j in range(0, len(seq), width)]
        if rng.random() < 0.1 and len(lines) > 2:
            lines[1] = lines[1][:-1]  # a short line inside: an error
        out.extend(line + nl for line in lines)
        if rng.random() < 0.2:
            out.append(nl * rng.randrange(1, 3))
    text = "".join(out)
    if rng.random() < 0.2:
        text = text.rstrip("\r\n")
    return text.encode()


def write_cases(root: Path, cases: dict[str, bytes]) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in cases.items():
        p = root / f"{name}.fa"
        p.write_bytes(data)
        paths.append(p)
    return paths


def all_cases() -> dict[str, bytes]:
    cases = dict(EDGE_CASES)
    rng = random.Random(12)
    for i in range(40):
        cases[f"random{i}"] = random_fasta(rng)
    return cases


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    """samtools' result for every case, computed once."""
    root = tmp_path_factory.mktemp("fai_expected")
    return {p.stem: samtools_index(p) for p in write_cases(root, all_cases())}


# ------------------------------------------------------------------------------ tests


@bio_runtimes()
def test_index_is_byte_identical_to_samtools(runtime, expected, tmp_path):
    cases = all_cases()
    paths = write_cases(tmp_path, cases)
    got = our_index(runtime, paths, sizes=(0, 1, 3))
    refused = 0
    for path, rows in zip(paths, got):
        for size, mine in zip((0, 1, 3), rows):
            if path.stem == "fastq":  # samtools writes a 6-column FASTQ index; fasta.index refuses FASTQ
                assert expected["fastq"]["fai"].count(b"\t") == 5 and "FASTQ" in mine["err"]
                continue
            check_same_as_samtools(mine, expected[path.stem], f"{path.stem} (chunk size {size})")
        refused += not expected[path.stem]["ok"]
        if expected[path.stem]["ok"] and path.stem != "fastq":
            assert Path(f"{path}.fai").read_bytes() == expected[path.stem]["fai"]
    assert 10 < refused < len(cases) - 20  # both kinds are exercised


# What each refused file's error must say (samtools refuses them all).
ERROR_TEXT = {
    "shorter_line_inside": 'unexpected "A" at line 4',
    "longer_line_inside": "different line length in sequence 'x' (line 3",
    "empty_record_last": "the last entry 'b' has no sequence",
    "empty_file": "no FASTA records",
    "text_before_header": 'unexpected "h" at line 1',
    "fastq": "this is FASTQ",
    "at_after_short": "found '@' in a FASTA file at line 4",
}


@bio_runtimes()
def test_errors_name_the_file_and_the_problem(runtime, tmp_path):
    paths = write_cases(tmp_path, {k: EDGE_CASES[k] for k in ERROR_TEXT})
    for path, rows in zip(paths, our_index(runtime, paths)):
        err = rows[0]["err"]
        assert err.startswith(f"bio.fasta.index: '{path}': ") and ERROR_TEXT[path.stem] in err, err
        assert not Path(f"{path}.fai").exists()


def _bgzip(path: Path) -> Path:
    out = Path(f"{path}.gz")
    with open(out, "wb") as f:
        subprocess.run([require_binary("bgzip"), "-c", str(path)], stdout=f, check=True)
    return out


def _big_text(rng: random.Random, records: int = 4, length: int = 90000, width: int = 70) -> bytes:
    out = []
    for i in range(records):
        seq = "".join(rng.choice("ACGTacgtN") for _ in range(length + i))
        out.append(f">chr{i} test\n" + "".join(seq[j:j + width] + "\n" for j in range(0, len(seq), width)))
    return "".join(out).encode()


@bio_runtimes()
def test_bgzf_index_and_gzi_match_samtools(runtime, tmp_path):
    plain = tmp_path / "x.fa"
    plain.write_bytes(_big_text(random.Random(4)))  # several BGZF blocks
    tail = tmp_path / "t.fa"
    tail.write_bytes(b">tail\n" + b"ACGT" * 20 + b"\n")
    one = tmp_path / "one.fa"
    one.write_bytes(EDGE_CASES["worked_example"])
    gz, tail_gz, one_gz = _bgzip(plain), _bgzip(tail), _bgzip(one)
    joined = tmp_path / "joined.fa.gz"  # an EOF block in the middle
    joined.write_bytes(gz.read_bytes() + tail_gz.read_bytes())
    paths = [gz, one_gz, joined]
    expect = [samtools_index(p) for p in paths]
    assert all(e["ok"] and e["gzi"] is not None for e in expect)
    assert len(expect[0]["gzi"]) > 8 and expect[1]["gzi"] == bytes(8)
    for path, rows, theirs in zip(paths, our_index(runtime, paths), expect):
        check_same_as_samtools(rows[0], theirs, path.name)
        assert Path(f"{path}.gzi").read_bytes() == theirs["gzi"]


@bio_runtimes()
def test_plain_gzip_is_refused_as_samtools_refuses_it(runtime, tmp_path):
    path = tmp_path / "x.fa.gz"
    path.write_bytes(gzip.compress(EDGE_CASES["worked_example"]))
    assert not samtools_index(path)["ok"]
    got = run_bio(runtime, f"""
      local fasta = require "bio.fasta"
      local out = {{}}
      out[1] = select(2, pcall(fasta.index, {lua(str(path))}))
      out[2] = select(2, pcall(fasta.fetch, {lua(str(path))}, "s1"))
      return out""")
    for err in got:
        assert "plain gzip" in err and "bgzip" in err and str(path) in err, err
    assert not Path(f"{path}.fai").exists()


_FETCH = r"""
local fasta = require "bio.fasta"
local out = {}
for i, r in ipairs(%(regions)s) do
  local seq, warning = fasta.fetch(%(path)s, r[1], r[2], r[3])
  out[i] = {seq, warning or ""}
end
return out
"""


def random_regions(rng: random.Random, fai: bytes, n: int) -> list[tuple]:
    entries = [(f.split("\t")[0], int(f.split("\t")[1])) for f in fai.decode().splitlines()]
    out = []
    for _ in range(n):
        name, length = rng.choice(entries)
        start = rng.choice([1, 2, length, length + 1, length + 3] + [rng.randrange(1, length + 2) for _ in range(3)])
        start = max(start, 1)
        stop = rng.choice([None, start, start + rng.randrange(0, 200), length, length + 5, start + 70])
        stop = None if stop is None else max(stop, start)  # start > stop fails in samtools (tested apart)
        out.append((name, None, None) if rng.random() < 0.1 else (name, start, stop))
    return out


def region_string(name, start, stop) -> str:
    if start is None:
        return name
    return f"{name}:{start}" + (f"-{stop}" if stop is not None else "")


def check_fetch(runtime: str, path: Path, regions: list[tuple]) -> None:
    seqs, warnings = samtools_fetch(path, [region_string(*r) for r in regions])
    got = run_bio(runtime, _FETCH % {"path": lua(str(path)), "regions": "{" + ", ".join(
        "{" + ", ".join(lua(v) for v in r) + "}" for r in regions) + "}"})
    assert [g[0] for g in got] == seqs
    assert [g[1] for g in got if g[1]] == warnings


@bio_runtimes()
def test_fetch_matches_samtools_plain_and_bgzf(runtime, tmp_path):
    rng = random.Random(8)
    plain = tmp_path / "x.fa"
    plain.write_bytes(_big_text(rng, records=3, length=70000) + EDGE_CASES["crlf"] + b">low\nacgtn\nAC\n")
    gz = _bgzip(plain)
    for path in (plain, gz):
        fai = samtools_index(path)["fai"]
        regions = random_regions(rng, fai, 40) + [("chr0", 1, 1), ("r1", 1, 8), ("low", 2, 6), ("chr1", 69990, 70010)]
        check_fetch(runtime, path, regions)
        # the .fai fetch built is samtools' own
        assert Path(f"{path}.fai").read_bytes() == fai


@bio_runtimes()
def test_fetch_uses_an_existing_index_as_samtools_does(runtime, tmp_path):
    path = tmp_path / "x.fa"
    path.write_bytes(b">a\nACGT\nAC\n")
    subprocess.run([samtools(), "faidx", str(path)], check=True)
    path.write_bytes(b">a\nTTGT\nAC\n>b\nGGG\n")  # the .fai is now stale: samtools keeps using it
    assert subprocess.run([samtools(), "faidx", str(path), "b"], capture_output=True).returncode != 0
    stale = samtools_fetch(path, ["a"])[0][0]
    got = run_bio(runtime, f"""
      local fasta = require "bio.fasta"
      local seq = fasta.fetch({lua(str(path))}, "a")
      local ok, err = pcall(fasta.fetch, {lua(str(path))}, "b")
      fasta.index({lua(str(path))})  -- a new index: the next fetch sees it
      return {{seq, ok, err, fasta.fetch({lua(str(path))}, "b"), fasta.fetch({lua(str(path))}, "a")}}""")
    assert got[0] == stale == "TTGTAC"
    assert got[1] is False and "no sequence named 'b'" in got[2]
    assert got[3:] == ["GGG", "TTGTAC"]


@bio_runtimes()
def test_fetch_argument_errors(runtime, tmp_path):
    path = tmp_path / "x.fa"
    path.write_bytes(EDGE_CASES["worked_example"] + b">e\n \n")
    for region in ("s1:5-3", "nope"):  # samtools fails on both
        assert subprocess.run([samtools(), "faidx", str(path), region], capture_output=True).returncode != 0
    got = run_bio(runtime, f"""
      local fasta = require "bio.fasta"
      local p = {lua(str(path))}
      local out = {{}}
      local function try(...) local ok, e = pcall(fasta.fetch, ...); out[#out + 1] = ok and "ok" or e end
      try(p, "s1", 5, 3); try(p, "nope"); try(p, "s1", 0, 3); try(p, "s1", 1.5); try(p, 3)
      try({lua(str(tmp_path / 'missing.fa'))}, "s1")
      local seq, w = fasta.fetch(p, "e")
      out[#out + 1] = seq .. "|" .. w
      return out""")
    assert "bio.fasta.fetch: bad argument #3 'start'" in got[0] and "after stop" in got[0]
    assert "no sequence named 'nope'" in got[1]
    assert "#3 'start'" in got[2] and "#3 'start'" in got[3] and "#2 'name'" in got[4]
    assert "cannot open" in got[5] and "missing.fa" in got[5]
    assert got[6] == "|Zero length sequence: e"  # samtools itself crashes on a zero-width record
    for err in got[:6]:
        assert "_fai.lua" not in err and "fasta.lua" not in err, err


@bio_runtimes()
def test_index_argument_errors(runtime, tmp_path):
    got = run_bio(runtime, f"""
      local fasta = require "bio.fasta"
      local out = {{}}
      for i, args in ipairs({{{{3}}, {{"x.fa", {{foo = 1}}}}, {{"x.fa", {{chunk_size = 0}}}}, {{{lua(str(tmp_path / 'no.fa'))}}}}}) do
        out[i] = select(2, pcall(fasta.index, args[1], args[2]))
      end
      return out""")
    assert "bio.fasta.index: bad argument #1 'path'" in got[0]
    assert "unknown option 'foo'" in got[1] and "chunk_size must be" in got[2]
    assert "cannot open" in got[3] and "no.fa" in got[3]
    for err in got:
        assert "_fai.lua" not in err and "fasta.lua" not in err, err


@bio_runtimes()
def test_read_index(runtime, tmp_path):
    path = tmp_path / "x.fa"
    path.write_bytes(EDGE_CASES["worked_example"])
    subprocess.run([samtools(), "faidx", str(path)], check=True)
    bad = tmp_path / "bad.fai"
    bad.write_bytes(b"s1\t23\t9\t10\t11\ns2\tx\t39\t5\t6\n")
    got = run_bio(runtime, f"""
      local fasta = require "bio.fasta"
      local out = {{}}
      for _, e in ipairs(fasta.read_index({lua(str(path) + '.fai')})) do
        out[#out + 1] = {{e.name, e.length, e.offset, e.linebases, e.linewidth}}
      end
      local ok, err = pcall(fasta.read_index, {lua(str(bad))})
      out[#out + 1] = err
      return out""")
    assert got[:2] == [["s1", 23, 9, 10, 11], ["s2", 7, 39, 5, 6]]
    assert f"'{bad}' line 2" in got[2] and got[2].startswith("bio.fasta.read_index: ")


# ------------------------------------------------------------------------------ real genomes


@pytest.fixture(scope="module")
def genomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("fai_genomes")
    out = []
    for src in (ECOLI, ANY2FASTA_FNA):
        if not src.exists():
            pytest.skip(f"{src} is missing (apt-get install bowtie-examples any2fasta)")
        plain = root / src.name.replace(".gz", "")
        plain.write_bytes(gzip.decompress(src.read_bytes()))
        out += [plain, _bgzip(plain)]
    return out


@pytest.mark.parametrize("runtime", BIG_RUNTIMES)
def test_real_genomes_index_and_fetch_as_samtools(runtime, genomes):
    expect = [samtools_index(p) for p in genomes]
    for path, rows, theirs in zip(genomes, our_index(runtime, genomes), expect):
        check_same_as_samtools(rows[0], theirs, path.name)
    rng = random.Random(1)
    for path, theirs in zip(genomes, expect):
        entries = [(f.split("\t")[0], int(f.split("\t")[1])) for f in theirs["fai"].decode().splitlines()]
        regions = []
        for name, length in rng.sample(entries, min(6, len(entries))):
            # windows of up to 5 kb (a whole 5 Mb genome would only test the transport), and the edges
            for _ in range(4):
                start = rng.randrange(1, length + 1)
                regions.append((name, start, start + rng.randrange(0, 5000)))
            regions += [(name, 1, 1), (name, length, length), (name, length - 10, length + 10), (name, length - 99, None)]
        check_fetch(runtime, path, regions)


# ------------------------------------------------------------------------------ FASTQ

FASTQ_CASES = {
    "two_reads": b"@q1\nACGTAC\n+\nIIIIII\n@q2\nAC\n+\nII\n",
    "wrapped": b"@q1\nACGT\nAC\n+\nIIII\nII\n@q2\nAC\n+\nII\n",
    "plus_name_blank_no_newline": b"@q1\nACGT\nAC\n+q1\nIIII\nII\n\n@q2\nAC\n+\nII",
    "blank_in_sequence": b"@q1\nACGT\n\n+\nIIII\n",
    "quality_short": b"@q1\nACGT\n+\nIII\n",
    "quality_long": b"@q1\nACGT\n+\nIIIII\n",
    "quality_wrapped_short": b"@q1\nACGT\n+\nII\nII\n",
    "no_plus": b"@q1\nACGT\nAC\nA\n+\nIIIIIII\n",
    "crlf": b"@q1\r\nACGT\r\n+\r\nIIII\r\n@q2\r\nA\r\n+\r\n@\r\n",
    "quality_starts_with_at": b"@q1\nACGT\n+\n@III\n@q1\nA\n+\nI\n",
    "gt_after": b"@q1\nACGT\n+\nIIII\n>x\n",
    "empty_read": b"@q1\n\n+\n\n",
    "blank_lines_between": b"@q1\nACGT\n+\nIIII\n\n\n@q2\nA\n+\nI\n",
    "no_final_newline": b"@q1\nACGT\n+\nIIII",
    "extra_quality_line": b"@q1\nACGT\n+\nIIII\nJJ\n",
    "fasta": b">q1\nACGT\n",
}


def random_fastq(rng: random.Random) -> bytes:
    nl = "\r\n" if rng.random() < 0.25 else "\n"
    out = []
    for _ in range(rng.randrange(1, 6)):
        n = rng.choice([1, 5, 60, 151])
        width = rng.choice([n, n, 60, 7])
        seq = "".join(rng.choice("ACGTN") for _ in range(n))
        qual = "".join(rng.choice("!#+5@ABCIJ") for _ in range(n + (rng.random() < 0.05)))
        out.append(f"@{rng.choice(['a', 'b', 'c', 'd'])} x{nl}")
        out.extend(seq[j:j + width] + nl for j in range(0, n, width))
        out.append("+" + nl)
        out.extend(qual[j:j + width] + nl for j in range(0, len(qual), width))
    return "".join(out).encode()


@bio_runtimes()
def test_fastq_index_is_byte_identical_to_samtools(runtime, tmp_path):
    cases = dict(FASTQ_CASES)
    rng = random.Random(5)
    for i in range(25):
        cases[f"random{i}"] = random_fastq(rng)
    paths = write_cases(tmp_path, cases)
    expect = {p.stem: samtools_index(p) for p in paths}
    got = our_index(runtime, paths, sizes=(0, 2), module="fastq")
    for path, rows in zip(paths, got):
        for mine in rows:
            if path.stem == "fasta":  # samtools indexes it as FASTA; fastq.index refuses it
                assert expect["fasta"]["ok"] and "this is FASTA" in mine["err"]
                continue
            check_same_as_samtools(mine, expect[path.stem], path.stem)
    assert sum(not e["ok"] for e in expect.values()) >= 9 and sum(e["ok"] for e in expect.values()) >= 20


@pytest.mark.parametrize("runtime", BIG_RUNTIMES)
def test_real_fastq_plain_and_bgzf(runtime, tmp_path):
    src = Path("/usr/share/doc/any2fasta/examples/test.fq.gz")
    if not src.exists():
        pytest.skip(f"{src} is missing (apt-get install any2fasta)")
    plain = tmp_path / "test.fq"
    plain.write_bytes(gzip.decompress(src.read_bytes()))
    paths = [plain, _bgzip(plain)]
    for path, rows in zip(paths, our_index(runtime, paths, module="fastq")):
        theirs = samtools_index(path)
        check_same_as_samtools(rows[0], theirs, path.name)
        assert theirs["fai"].count(b"\n") > 100


# ------------------------------------------------------------------------------ shards

_SHARDS = r"""
local fasta = require "bio.fasta"
local out = {}
for i, path in ipairs(%(paths)s) do
  out[i] = {}
  for _, n in ipairs({1, 2, 3, 7, 20}) do
    local ranges = {}
    for k, s in ipairs(fasta.shards(path, n)) do ranges[k] = {s.offset, s.length, s.first_id or "", s.block or -1, s.skip or -1} end
    out[i][#out[i] + 1] = ranges
  end
end
return out
"""


def _shards(runtime: str, paths: list[Path]):
    return run_bio(runtime, _SHARDS % {"paths": lua([str(p) for p in paths])})


@bio_runtimes()
def test_shards_are_the_same_with_and_without_an_index(runtime, tmp_path):
    from tests.bio.test_shards import FASTA_CASES
    cases = {name: make(random.Random(len(name))).encode() for name, make in FASTA_CASES.items()}
    cases["empty_records_between"] = b"".join(b">e%d\n>r%d\n" % (i, i) + b"ACGT\n" * 30 for i in range(40))
    paths = write_cases(tmp_path, cases)
    paths.append(_bgzip(paths[0]))
    without = _shards(runtime, paths)
    indexed = [p for p in paths if samtools_index(p)["ok"]]
    for p in indexed:
        shutil.copyfile(p.parent / "samtools" / f"{p.name}.fai", f"{p}.fai")
    assert {p.stem for p in paths} - {p.stem for p in indexed} == {"empty_records", "empty_file", "crlf", "blank_lines_first"}
    assert _shards(runtime, paths) == without


@bio_runtimes()
def test_shards_use_the_index(runtime, tmp_path):
    # An index that lists 'b' as part of 'a' (as a stale one might): the first cut, which a scan
    # puts at 'b', moves to 'c', which the index lists where it is.
    path = tmp_path / "x.fa"
    body = b"ACGT\n" * 100
    path.write_bytes(b">a\n" + body + b">b\n" + body + b">c\n" + body)
    plain = _shards(runtime, [path])[0][2]  # 3 shards: cut points at 'b' and 'c'

    Path(f"{path}.fai").write_bytes(b"a\t800\t3\t4\t5\nc\t400\t%d\t4\t5\n" % (3 + 500 + 3 + 500 + 3))
    hinted = _shards(runtime, [path])[0][2]
    assert [r[2] for r in plain] == ["a", "b", "c"] and [r[2] for r in hinted] == ["a", "c"]
