"""bio.seq against Biopython 1.88 on every runtime (and both LuaJIT kernel families)."""
from __future__ import annotations

import random

import pytest
from Bio.Seq import Seq, back_transcribe, complement, complement_rna, reverse_complement, reverse_complement_rna, transcribe
from Bio.SeqUtils import GC123, GC_skew, gc_fraction

from tests.bio._lua import bio_runtimes, lua, run_bio

IUPAC = "ACGTURYSWKMBDHVNX"
ALPHABET = IUPAC + IUPAC.lower() + "-.*?0 "


def random_seqs(seed: int, count: int, max_len: int, alphabet: str = ALPHABET) -> list[str]:
    rng = random.Random(seed)
    seqs = ["", "A", "ACGT", "acgtACGT", "NNNN", "ACGTNNNN", "ACGT----", "GDVV", "ACTGSSSS", "u", "ACGTacgtRYKMBDHVNrykmbdhvn"]
    while len(seqs) < count:
        n = rng.randrange(0, max_len)
        seqs.append("".join(rng.choice(alphabet) for _ in range(n)))
    return seqs


@bio_runtimes()
def test_complement_family_matches_biopython(runtime):
    # lengths around the 6-byte window and FFI chunk edges, every IUPAC letter in both cases
    seqs = random_seqs(1, 120, 40) + ["".join(random.Random(2).choice(ALPHABET) for _ in range(70001))]
    got = run_bio(runtime, f"""
        local S = require "bio.seq"
        local out = {{}}
        for i, s in ipairs({lua(seqs)}) do
          out[i] = {{S.complement(s), S.reverse_complement(s), S.complement_rna(s), S.reverse_complement_rna(s),
                    S.transcribe(s), S.back_transcribe(s)}}
        end
        return out
    """)
    for s, row in zip(seqs, got):
        assert row == [complement(s), reverse_complement(s), complement_rna(s), reverse_complement_rna(s),
                       transcribe(s), back_transcribe(s)], s[:50]


@bio_runtimes()
def test_gc_fraction_three_modes_match_biopython(runtime):
    seqs = random_seqs(3, 150, 60)
    big = "".join(random.Random(4).choice("ACGTNacgtnSWRY-") for _ in range(100_003))  # > 3 packed blocks
    seqs.append(big)
    got = run_bio(runtime, f"""
        local S = require "bio.seq"
        local out = {{}}
        for i, s in ipairs({lua(seqs)}) do
          out[i] = {{S.gc_fraction(s), S.gc_fraction(s, "remove"), S.gc_fraction(s, "ignore"), S.gc_fraction(s, "weighted")}}
        end
        return out
    """)
    for s, row in zip(seqs, got):
        want = [gc_fraction(s), gc_fraction(s, "remove"), gc_fraction(s, "ignore"), gc_fraction(s, "weighted")]
        assert row == pytest.approx(want, abs=1e-12), s[:50]


def test_gc_fraction_documented_examples():
    got = run_bio("lua5.4", """
        local S = require "bio.seq"
        return {S.gc_fraction("ACGTNNNN"), S.gc_fraction("ACGTNNNN", "ignore"), S.gc_fraction("ACGTNNNN", "weighted"),
                S.gc_fraction("ACGT----"), S.gc_fraction("ACGT----", "ignore"), S.gc_fraction("ACGT----", "weighted"),
                S.gc_fraction("")}
    """)
    assert got == pytest.approx([0.5, 0.25, 0.5, 0.5, 0.25, 0.25, 0])


@bio_runtimes()
def test_gc_skew_and_gc123_match_biopython(runtime):
    rng = random.Random(5)
    cases = []
    for _ in range(40):
        s = "".join(rng.choice("ACGTacgtN") for _ in range(rng.randrange(1, 400)))
        cases.append((s, rng.choice([1, 3, 7, 50, 100, 1000])))
    # a window <= 0 (but not 0, an error) gives no windows; one longer than the sequence, one window
    cases += [("ACGT", -1), ("ACGT", -100), ("", -3), ("", 5), ("GGGC", 4), ("GGGC", 5), ("GGGC", 10 ** 9)]
    got = run_bio(runtime, f"""
        local S = require "bio.seq"
        local out = {{}}
        for i, c in ipairs({lua([list(c) for c in cases])}) do
          local ok, t, p1, p2, p3 = pcall(S.gc123, c[1])
          out[i] = {{S.gc_skew(c[1], c[2]), ok and {{t, p1, p2, p3}} or {{}}}}
        end
        return out
    """)
    for (s, w), (skew, g123) in zip(cases, got):
        assert (skew or []) == pytest.approx(GC_skew(s, w), abs=1e-12)  # {} is how an empty list comes back
        if any(ch in "ACGTacgt" for ch in s) and w > 0:
            assert g123 == pytest.approx(list(GC123(s)), abs=1e-12)


@bio_runtimes()
def test_composition_and_count_overlap(runtime):
    got = run_bio(runtime, """
        local S = require "bio.seq"
        return {S.composition("AACGTn-a"), S.composition("AACGTn-a", true), S.count_overlap("AAAA", "AA"),
                S.count_overlap("ACGTACGT", "CG")}
    """)
    assert got == [{"A": 2, "C": 1, "G": 1, "T": 1, "n": 1, "-": 1, "a": 1},
                   {"A": 3, "C": 1, "G": 1, "T": 1, "N": 1, "-": 1}, 3, 2]


@bio_runtimes()
def test_errors_name_the_argument(runtime):
    got = run_bio(runtime, """
        local S = require "bio.seq"
        local out = {}
        for _, f in ipairs{
          function() return S.reverse_complement(42) end,
          function() return S.gc_fraction("ACGT", "median") end,
          function() return S.gc_skew("ACGT", 0) end,
        } do
          local ok, err = pcall(f)
          out[#out + 1] = ok and "no error" or tostring(err)
        end
        return out
    """)
    assert "bio.seq.reverse_complement: bad argument #1 'seq': expected a string, got number" in got[0]
    assert "bad argument #2 'ambiguous'" in got[1] and "median" in got[1]
    assert "bad argument #2 'window'" in got[2] and "got 0" in got[2]


def test_kernel_family_is_chosen_at_load_time():
    assert run_bio("luajit", 'return require("bio._fast").kernels') == "ffi"
    assert run_bio("luajit+portable", 'return require("bio._fast").kernels') == "portable"
    assert run_bio("lua5.4", 'return require("bio._fast").kernels') == "portable"


@bio_runtimes()
def test_every_ascii_byte_passes_through_like_biopython(runtime):
    # all 128 ASCII byte values, NUL included, around window and block edges
    data = bytes(range(128)) * 6 + b"ACGTN" * 7
    got = run_bio(runtime, f"""
        local S = require "bio.seq"
        local s = {lua(data)}
        return {{S.reverse_complement(s), S.complement_rna(s), S.gc_fraction(s), S.gc_fraction(s, "ignore"),
                S.gc_fraction(s, "weighted")}}
    """)
    text = data.decode("ascii")
    assert got[0] == reverse_complement(text)
    assert got[1] == complement_rna(text)
    seq = Seq(data)
    assert got[2:] == pytest.approx([gc_fraction(seq), gc_fraction(seq, "ignore"), gc_fraction(seq, "weighted")],
                                    abs=1e-12)


@bio_runtimes()
def test_bytes_above_ascii_are_refused_like_biopython(runtime):
    # Biopython's complement functions encode their str as ASCII: any other character raises
    # UnicodeEncodeError.  Every high byte, at the start, inside a long string (word kernels),
    # and in a short tail.
    cases = [bytes([b]) + b"ACGT" for b in range(128, 256)]
    cases += [b"ACGTN" * 900 + b"\x80" + b"ACGT" * 500, b"ACGT" * 1000 + b"\xff", b"AC\xc3\xa9GT"]
    got = run_bio(runtime, f"""
        local S = require "bio.seq"
        local out = {{}}
        for i, s in ipairs({lua(cases)}) do
          local row = {{}}
          for _, f in ipairs{{"complement", "reverse_complement", "complement_rna", "reverse_complement_rna"}} do
            local ok, err = pcall(S[f], s)
            row[#row + 1] = ok and "ok" or err
          end
          out[i] = row
        end
        return out
    """)
    for data, row in zip(cases, got):
        text = data.decode("latin-1")
        at = next(i for i, b in enumerate(data) if b >= 128)
        for name, f, msg in zip(("complement", "reverse_complement", "complement_rna", "reverse_complement_rna"),
                                (complement, reverse_complement, complement_rna, reverse_complement_rna), row):
            with pytest.raises(UnicodeEncodeError):
                f(text)
            assert msg == (f"bio.seq.{name}: bad argument #1 'seq': non-ASCII byte \\{data[at]} at position {at + 1} "
                           "(sequences are ASCII text; Biopython raises UnicodeEncodeError)"), (name, data[:8])
