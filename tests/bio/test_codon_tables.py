"""The generated codon-table data module is exactly what Biopython 1.88 gives."""
from __future__ import annotations

from pathlib import Path

from Bio.Data import CodonTable

from tests.bio import gen_codon_tables
from tests.bio._lua import bio_runtimes, run_bio


def test_committed_data_file_is_what_the_generator_writes():
    committed = Path(gen_codon_tables.DEFAULT_OUT).read_text()
    assert committed == gen_codon_tables.generate(), "run: python tests/bio/gen_codon_tables.py"


@bio_runtimes()
def test_codon_table_api_matches_unambiguous_dna_tables(runtime):
    got = run_bio(runtime, """
        local T = require "bio.translate"
        local out = {}
        for _, id in ipairs(T.table_ids()) do
          local t = T.codon_table(id)
          out[#out + 1] = {t.id, t.names, t.forward, t.starts, t.stops}
        end
        out[#out + 1] = T.codon_table("Bacterial").id
        out[#out + 1] = T.codon_table("SGC0").id
        return out
    """)
    by_id = CodonTable.unambiguous_dna_by_id
    assert [row[0] for row in got[:-2]] == sorted(by_id) == [1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16,
                                                              21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33]
    for tid, names, forward, starts, stops in got[:-2]:
        t = by_id[tid]
        assert names == [n for n in t.names if n]
        assert forward == t.forward_table
        assert starts == t.start_codons
        assert stops == t.stop_codons
    assert got[-2:] == [11, 1]


def test_unknown_table_ids_and_names_are_rejected():
    got = run_bio("lua5.4", """
        local T = require "bio.translate"
        local out = {}
        for _, spec in ipairs{7, 8, 17, 20, 34, "Martian", 0} do
          local ok, err = pcall(T.translate, "ATG", spec)
          out[#out + 1] = err
        end
        return out
    """)
    for msg in got:
        assert "bad argument #2 'table'" in msg and "unknown genetic code" in msg
