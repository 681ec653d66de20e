"""Records print as Biopython's str(record) (bio._record's __tostring), and stay plain tables."""
from __future__ import annotations

import io

import pytest
from Bio import SeqIO

from tests.bio import insdc_reference as ref
from tests.bio._lua import bio_runtimes, lua, run_bio

TESTS = ref.biopython_tests_dir()


def _tostrings(runtime, module, path, opts="{}", how="tostring"):
    return run_bio(runtime, f"""
        local show = {how}
        local out = {{}}
        for r in require({lua(module)}).records({lua(str(path))}, {opts}) do out[#out + 1] = show(r) end
        return out
    """)


REPR = 'getmetatable(require("bio.fasta").parse(">a\\nA\\n")[1]).__repr'


# GenBank and EMBL files of Biopython's tests: (module, SeqIO format, path)
INSDC = [("bio.genbank", "genbank", TESTS / "GenBank" / name) for name in ("NC_005816.gb", "cor6_6.gb", "NC_000932.gb")] \
    + [("bio.embl", "embl", TESTS / "EMBL" / name) for name in ("TRBG361.embl", "DD231055_edited.embl")]


@pytest.mark.parametrize("runtime", ["lupa:luajit21", "lua5.1", "lua5.4"])
@pytest.mark.parametrize("module,fmt,path", [
    ("bio.fasta", "fasta", TESTS / "Fasta" / "f002"),
    ("bio.fastq", "fastq", TESTS / "Quality" / "example.fastq"),
] + INSDC)
def test_records_have_biopythons_repr(runtime, module, fmt, path):
    # the one-line form the REPL shows for a record inside a table
    assert _tostrings(runtime, module, path, how=REPR) == [repr(r) for r in SeqIO.parse(path, fmt)]


@bio_runtimes()
def test_fasta_and_fastq_records_print_as_biopython(runtime):
    # the long records of f002 show the 54...3 cut of repr(Seq)
    for module, path, fmt, opts in [
        ("bio.fasta", TESTS / "Fasta" / "f002", "fasta", "{}"),
        ("bio.fastq", TESTS / "Quality" / "example.fastq", "fastq", "{}"),
        ("bio.fastq", TESTS / "Quality" / "solexa_faked.fastq", "fastq-solexa", '{variant = "solexa"}'),
    ]:
        assert _tostrings(runtime, module, path, opts) == [str(r) for r in SeqIO.parse(path, fmt)], path


def _expected_insdc(rec) -> str:
    """str(rec) with the annotations sorted by key (a Lua table has no order); the structured
    comment (a defaultdict in Biopython) is checked apart."""
    lines = str(rec).split("\n")
    head = lines[:next(i for i, s in enumerate(lines) if s.startswith("Number of features:")) + 1]
    entries = {k: f"/{k}={v!s}" for k, v in rec.annotations.items() if k != "structured_comment"}
    return "\n".join(head + [entries[k] for k in sorted(entries)] + lines[-1:])


@pytest.mark.parametrize("runtime", ["lupa:luajit21", "lua5.4"])
@pytest.mark.parametrize("module,fmt,path", INSDC)
def test_genbank_and_embl_records_print_as_biopython(runtime, module, fmt, path):
    got = _tostrings(runtime, module, path)
    records = list(SeqIO.parse(path, fmt))
    assert len(got) == len(records)
    for text, rec in zip(got, records):
        if "structured_comment" in rec.annotations:
            kept = [s for s in text.split("\n/") if not s.startswith("structured_comment=")]
            text = "\n/".join(kept)
        assert text == _expected_insdc(rec)


def test_undefined_sequence_prints_its_length():
    # the record's text without its sequence lines: Biopython knows the length only
    text = (TESTS / "GenBank" / "NC_005816.gb").read_text().split("ORIGIN")[0] + "ORIGIN\n//\n"
    got = run_bio("lua5.4", f"""
        return tostring(require("bio.genbank").parse({lua(text)})[1])
    """)
    (rec,) = SeqIO.parse(io.StringIO(text), "genbank")
    assert got.split("\n")[-1] == str(rec).split("\n")[-1] == f"Undefined sequence of length {len(rec.seq)}"


@bio_runtimes()
def test_records_stay_plain_tables(runtime):
    # one metatable for every kind, holding how it shows only: no __index, __eq, __len, __pairs
    got = run_bio(runtime, """
        local fa = require("bio.fasta").parse(">a b\\nAC\\n")[1]
        local fq = require("bio.fastq").parse("@a b\\nAC\\n+\\nII\\n")[1]
        local gb = require("bio.genbank").parse(
          "LOCUS       X 2 bp    DNA     linear   BCT 01-JAN-2000\\nORIGIN\\n        1 ac\\n//\\n")[1]
        local keys = {}
        for k in pairs(fa) do keys[#keys + 1] = k end
        table.sort(keys)
        local mts = {}
        for i, r in ipairs({fa, fq, gb}) do
          local mt = getmetatable(r)
          local names = {}
          for k in pairs(mt) do names[#names + 1] = k end
          table.sort(names)
          mts[i] = names
        end
        local twin = require("bio.fasta").parse(">a b\\nAC\\n")[1]
        return {keys, mts, fa == twin, getmetatable(fa) == getmetatable(gb), #fa}
    """)
    assert got[0] == ["description", "id", "seq"]
    assert got[1] == [["__name", "__repr", "__tostring"]] * 3
    assert got[2] is False and got[3] is True and got[4] == 0
