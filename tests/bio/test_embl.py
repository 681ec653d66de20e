"""bio.embl against Biopython 1.88 (SeqIO "embl" and EmblScanner's raw feature locations), on every file of
Biopython's Tests/EMBL and a real record, plus errors, streaming and the writer/extract wrappers
(the shared tests are in insdc_reference.ReaderTests)."""
from __future__ import annotations

from tests.bio import insdc_reference as ref
from tests.bio._lua import bio_runtimes


def record(acc="X1", footer="SQ   Sequence 10 BP; 3 A; 3 C; 2 G; 2 T; 0 other;\n     acgtacgtac         10\n//\n"):
    return (f"ID   {acc}; SV 1; linear; mRNA; STD; PLN; 10 BP.\nXX\nAC   {acc};\nXX\nDE   A test.\nXX\n"
            "FH   Key             Location/Qualifiers\nFH\nFT   gene            1..10\nFT                   /gene=\"g\"\n"
            "XX\n" + footer)


class TestEmbl(ref.ReaderTests):
    MODULE, FMT, SUFFIX, FOLDER = "bio.embl", "embl", "embl", "EMBL"
    EXTRA = [ref.ANY2FASTA / "test.embl"]
    # read as "embl" too: Biopython's "embl" parser raises on hla_3260_sample.imgt, so must we
    ALSO = ("imgt",)
    CORE = ["TRBG361.embl", "Human_contigs.embl", "location_wrap.embl", "kipo_prt_sample.embl",
            "patents.embl", "101ma_no_coords.embl", "xx_after_co.embl"]
    GOOD = record()
    MALFORMED = {
        "id_line": ("ID   nothing here\nXX\n" + GOOD, 1, "did not recognise the ID line layout"),
        "blank_in_sequence": (record(footer="SQ   Sequence 10 BP;\n     acgta      5\n\n     cgtac      10\n//\n"),
                              14, "blank line in sequence data"),
        "xx_after_sq": (record(footer="SQ   Sequence 10 BP;\nXX\n     acgtacgtac         10\n//\n"), 13,
                        "unexpected content after SQ or CO line"),
        # the error is at the end of the file, after the second record's last line
        "second_record": (GOOD + record(acc="X2", footer="SQ   Sequence 10 BP;\n     acgtac\n"), 27,
                          "premature end of file in sequence data"),
    }
    STRING_CASE = "blank_in_sequence"
    SAMPLE = "AE017046.embl"


@bio_runtimes()
def test_imgt_variant_matches_biopython_imgt(runtime):
    files = ref.biopython_files("imgt")
    assert len(files) == 2
    assert ref.differential_failures(runtime, "imgt", "bio.embl", files, chunk=11, variant="imgt") == []
