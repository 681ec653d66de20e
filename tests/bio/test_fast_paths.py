"""The speed paths added for issue 4 give exactly the plain paths' results, on every runtime.

* bio._bytemap: the PUC-Lua (reverse) complement kernels -- the unpack/pack "words" kernel over
  the common alphabet, its fallback to the byte/char kernel on any other byte, lengths around
  the 768-byte word block and the 100-byte char block -- against Biopython.
* bio.fasta.gc_records: the fused per-record GC scanner (LuaJIT) against records() +
  gc_fraction, for paths, open files and strings, tiny read sizes (records and headers split
  across reads), CRLF, blank lines, '>' inside a line, empty records, a header at EOF, and the
  same errors.
"""
from __future__ import annotations

import random

import pytest
from Bio.Seq import Seq

from tests.bio._lua import bio_runtimes, lua, run_bio


def _mixed(rng: random.Random, n: int, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


@bio_runtimes()
def test_long_complements_match_biopython_on_both_kernels(runtime):
    rng = random.Random(11)
    seqs = []
    for n in (2047, 2048, 2049, 768 * 3, 768 * 3 + 99, 768 * 3 + 101, 10_007):
        seqs.append(_mixed(rng, n, "ACGTNacgtn"))            # the words kernel throughout
        seqs.append(_mixed(rng, n, "ACGUNacgun"))            # RNA's common alphabet
    late = _mixed(rng, 9000, "ACGTN")
    seqs.append(late[:8500] + "R" + late[8501:])             # falls back after most of the work
    seqs.append(late[:5] + "\x7f" + late[6:])                # an odd (ASCII) byte early; high bytes: test_seq.py
    got = run_bio(runtime, f"""
        local S = require "bio.seq"
        local out = {{}}
        for i, s in ipairs({lua(seqs)}) do
          out[i] = {{S.reverse_complement(s), S.complement(s), S.reverse_complement_rna(s), S.complement_rna(s)}}
        end
        return out
    """)
    for s, row in zip(seqs, got):
        seq = Seq(s.encode("latin-1"))
        want = [bytes(seq.reverse_complement()), bytes(seq.complement()),
                bytes(seq.reverse_complement_rna()), bytes(seq.complement_rna())]
        assert [r.encode("latin-1") for r in row] == want, s[:40]


def _fasta_cases() -> list[str]:
    rng = random.Random(5)
    cases = ["", "\n\n", ">", ">a", ">a\n", ">a\nACGT", ">x y \r\nAC GT\r\nTT\n>b\n>c\nGG>C\n>d\n",
             "\n \n>x\nAC\n\n>y\n\nGG\n", ">only header\n>\n>\n"]
    alphabet = "ACGTNacgtnRYKMSWBDHVXU-*> \t\r"
    for _ in range(40):
        parts = []
        for r in range(rng.randrange(0, 6)):
            parts.append(f">id{r}" + (f" desc {r}" if rng.random() < 0.5 else "") + ("\r" if rng.random() < 0.2 else "") + "\n")
            for _ in range(rng.randrange(0, 5)):
                parts.append(_mixed(rng, rng.randrange(0, 70), alphabet) + "\n")
        cases.append("".join(parts))
    return cases


@bio_runtimes()
def test_gc_records_equals_records_plus_gc_fraction(runtime, tmp_path):
    cases = _fasta_cases()
    paths = []
    for i, text in enumerate(cases):
        p = tmp_path / f"c{i}.fa"
        p.write_bytes(text.encode("latin-1"))
        paths.append(str(p))
    got = run_bio(runtime, f"""
        local fasta, seq = require "bio.fasta", require "bio.seq"
        local function fmt(id, n, gc, d) return table.concat({{id, n, string.format("%.17g", gc), d}}, "|") end
        local out = {{}}
        for i, path in ipairs({lua(paths)}) do
          for _, mode in ipairs({{"remove", "ignore", "weighted"}}) do
            local want = {{}}
            for rec in fasta.records(path) do want[#want + 1] = fmt(rec.id, #rec.seq, seq.gc_fraction(rec.seq, mode), rec.description) end
            want = table.concat(want, "\\n")
            for _, cs in ipairs({{1, 3, 64, 1000000}}) do
              local f = assert(io.open(path, "rb"))
              local text = f:read("*a")
              f:seek("set", 0)
              local via = {{
                path = fasta.gc_records(path, mode, {{chunk_size = cs}}),
                file = fasta.gc_records(f, mode, {{chunk_size = cs}}),
                string = fasta.gc_records_from_string(text, mode, {{chunk_size = cs}}),
              }}
              for kind, it in pairs(via) do
                local got = {{}}
                for id, n, gc, d in it do got[#got + 1] = fmt(id, n, gc, d) end
                got = table.concat(got, "\\n")
                if got ~= want then out[#out + 1] = {{i, mode, cs, kind, want, got}} end
              end
              f:close()
            end
          end
        end
        return #out == 0 and "all equal" or out
    """)
    assert got == "all equal"


@bio_runtimes()
def test_gc_records_errors_name_the_source_and_line(runtime, tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text("\n\nhello\n>a\nAC\n")
    got = run_bio(runtime, f"""
        local fasta = require "bio.fasta"
        local out = {{}}
        for _, f in ipairs {{
          function() for _ in fasta.gc_records({lua(str(bad))}) do end end,
          function() for _ in fasta.gc_records("/nonexistent/x.fa") do end end,
          function() for _ in fasta.gc_records({lua(str(bad))}, "median") do end end,
          function() for _ in fasta.gc_records_from_string("junk\\n>a\\n") do end end,
        }} do
          local ok, err = pcall(f)
          out[#out + 1] = ok and "no error" or tostring(err)
        end
        return out
    """)
    assert got[0] == f"bio.fasta.gc_records: {bad} line 3: text before the first '>' header: \"hello\" (FASTA records start with '>')"
    assert "bio.fasta.gc_records: cannot open '/nonexistent/x.fa'" in got[1]
    assert "bad argument #2 'ambiguous'" in got[2] and "median" in got[2]
    assert got[3].startswith("bio.fasta.gc_records_from_string: <string> line 1: text before the first '>'")


@pytest.mark.parametrize("runtime", ["luajit", "lua5.4"])
def test_kernel_choice(runtime):
    got = run_bio(runtime, 'return require("bio._bytemap").kernels')
    assert got == ("bytes" if runtime == "luajit" else "words+bytes")
