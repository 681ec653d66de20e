"""bio.genbank against Biopython 1.88 (SeqIO "genbank" and Bio.GenBank's raw locations), on every file of
Biopython's Tests/GenBank and a real draft genome, plus errors, streaming and the writer/extract wrappers
(the shared tests are in insdc_reference.ReaderTests)."""
from __future__ import annotations

from Bio import SeqIO

from tests.bio import insdc_reference as ref
from tests.bio._lua import bio_runtimes, lua, run_bio

MODULE = "bio.genbank"


@bio_runtimes()
def test_strings_and_open_files(runtime):
    path = ref.biopython_tests_dir() / "GenBank" / "cor6_6.gb"
    text = path.read_text()
    got = run_bio(runtime, f"""
        local G = require "bio.genbank"
        local ids = {{}}
        for r in G.records_from_string({lua(text)}, {{chunk_size = 3}}) do ids[#ids + 1] = r.id end
        local parsed = G.parse({lua(text)})
        local f = assert(io.open({lua(str(path))}, "rb"))
        local from_file = G.read(f)
        f:close()
        return {{ids, #parsed, parsed[6].seq, from_file[2].features[2].location, #from_file}}
    """)
    records = list(SeqIO.parse(path, "genbank"))
    assert got[0] == [r.id for r in records]
    assert got[1] == got[4] == len(records)
    assert got[2] == str(records[5].seq)
    assert got[3] == ref.raw_locations(path, "genbank")[1][1]


LOCUS = "LOCUS       {:<16}{:>12} bp    DNA     linear   BCT 01-JAN-2000\n"


def record(name="TEST", features="", footer="ORIGIN\n        1 acgtacgtac\n//\n"):
    return (LOCUS.format(name, 10) + "DEFINITION  A test.\nACCESSION   " + name + "\nVERSION     " + name + ".1\n"
            + "FEATURES             Location/Qualifiers\n" + features + footer)


GOOD = record(features="     gene            1..10\n                     /gene=\"g\"\n")
MALFORMED = {
    # name: (text, the line our error names, words it says)
    "features_to_eof": (GOOD.split("ORIGIN")[0], 7, "premature end of file in the features table"),
    "bare_qualifier_continued": (record(features="     gene            1..10\n                     /pseudo\n"
                                        "                     more\n"), 6, "qualifier /pseudo has no value"),
    "end_marker_in_features": (record(features="     gene            1..10\n//\n"), 7, "'//' before the sequence"),
    "end_marker_in_header": (LOCUS.format("TEST", 10) + "DEFINITION  A test.\n//\n", 3, "'//' before the features"),
    "sequence_line": (record(footer="ORIGIN\n  ab1234567890acgt\n//\n"), 7, "sequence line mal-formed"),
    "second_record": (GOOD + record(name="BAD", features="     gene            1..10\n//\n"), 17,
                      "'//' before the sequence"),
}


class TestGenBank(ref.ReaderTests):
    MODULE, FMT, SUFFIX, FOLDER = MODULE, "genbank", "genbank", "GenBank"
    EXTRA = [ref.ANY2FASTA / "test.gbk.gz"]
    CORE = ["NC_005816.gb", "protein_refseq.gb", "cor6_6.gb.bgz", "qualifier_escaping_read.gb",
            "bad_loc_wrap.gb", "no_origin_no_end.gb", "invalid_product.gb"]
    GOOD, MALFORMED, STRING_CASE = GOOD, MALFORMED, "sequence_line"
    SAMPLE = "NC_005816.gb"
