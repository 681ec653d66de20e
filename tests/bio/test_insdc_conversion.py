"""Our reader, then our writer, gives what Biopython's SeqIO.convert gives.

Every GenBank and EMBL file of Biopython's test material, and the real draft genome of
any2fasta-examples, is read with bio.genbank / bio.embl and written back in both formats by
the same library; the text must equal Biopython 1.88 parsing the file and writing it with
SeqIO.write.  This is what a user converting or rewriting a file sees, and it checks what the
reader/writer tests check separately (each against Biopython) end to end: field order included,
e.g. the sections and keys of structured comments stay in the file's order.

Known differences, each a choice (docs/bio/genbank-writing.md): we write a feature's location as
the file has it, where Biopython rewrites a feature across the origin of a circular record as a
join, and drops bond().
"""
from __future__ import annotations

import gzip
import io
import warnings
from pathlib import Path

import pytest
from Bio import SeqIO

from tests.bio._lua import lua
from tests.bio.biopython_material import biopython_tests_dir
from tests.bio.harness import run
from tests.system import ANY2FASTA, require_data

# file -> why our text differs from Biopython's (in both output formats)
KNOWN = {
    "1MRR_A.gp": "bond() locations, which Biopython writes without bond()",
    "addgene-plasmid-39296-sequence-49545.gbk": "features across the origin, which Biopython writes as join()",
    "bad_origin_wrap.gb": "a feature across the origin",
    "bad_origin_wrap_CDS.gb": "a feature across the origin",
    "bad_origin_wrap_fuzzy.gb": "a feature across the origin",
}
GENBANK_SUFFIXES = {".gb", ".gbk", ".gp", ".seq", ".gbwithparts", ".bgz"}


def inputs() -> list[tuple[Path, str]]:
    tests = biopython_tests_dir()
    files = [(p, "genbank") for p in sorted((tests / "GenBank").iterdir()) if p.suffix in GENBANK_SUFFIXES]
    files += [(p, "embl") for p in sorted((tests / "EMBL").glob("*.embl"))]
    return files + [(require_data(ANY2FASTA / "test.gbk.gz"), "genbank")]


def biopython_text(path: Path, fmt: str, out: str) -> str | None:
    """SeqIO.write of SeqIO.parse, or None where Biopython cannot read or write the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with (gzip.open(path, "rt") if path.suffix in (".gz", ".bgz") else open(path)) as handle:
                text = io.StringIO()
                SeqIO.write(SeqIO.parse(handle, fmt), text, out)
                return text.getvalue()
        except Exception:  # noqa: BLE001 - Biopython refuses it: nothing to compare
            return None


CONVERT = r"""
local jobs = %(jobs)s
for _, job in ipairs(jobs) do
  local path, fmt, out, dest = job[1], job[2], job[3], job[4]
  local ok, err = pcall(function() require("bio." .. out).write(dest, require("bio." .. fmt).records(path)) end)
  if not ok then local f = assert(io.open(dest, "wb")); f:write("ERROR: " .. tostring(err)); f:close() end
end
return #jobs
"""


@pytest.mark.parametrize("runtime", ["luajit"])
def test_reading_then_writing_equals_biopythons_convert(runtime, tmp_path):
    jobs, wants = [], []
    for i, (path, fmt) in enumerate(inputs()):
        for out in ("genbank", "embl"):
            want = biopython_text(path, fmt, out)
            if want is None:
                continue
            dest = tmp_path / f"{i}.{path.name}.{out}"
            jobs.append([str(path), fmt, out, str(dest)])
            wants.append((path.name, out, want))
    assert len(jobs) > 100
    assert run(runtime, CONVERT % {"jobs": lua(jobs)}) == len(jobs)
    same, differ = set(), set()
    for (name, out, want), job in zip(wants, jobs):
        (same if Path(job[3]).read_text() == want else differ).add(name)
    assert differ == set(KNOWN), sorted(differ ^ set(KNOWN))
    assert "test.gbk.gz" in same
