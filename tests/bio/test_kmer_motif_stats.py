"""bio.kmer, bio.motif, bio.stats and bio.alphabet on every runtime, against Biopython and plain Python."""
from __future__ import annotations

import random
from collections import Counter

from Bio.Data import IUPACData
from Bio.Seq import reverse_complement
from Bio.SeqUtils import nt_search

from tests.bio._lua import bio_runtimes, lua, run_bio


def py_kmers(seqs, k, canonical=False):
    c = Counter()
    for s in seqs:
        s = s.upper()
        for i in range(len(s) - k + 1):
            km = s[i:i + k]
            if set(km) <= set("ACGT"):
                if canonical:
                    km = min(km, reverse_complement(km))
                c[km] += 1
    return dict(c)


@bio_runtimes()
def test_kmer_counts_match_counter(runtime):
    rng = random.Random(21)
    seqs = ["".join(rng.choice("ACGTacgtN") for _ in range(rng.randrange(0, 300))) for _ in range(6)]
    ks = [1, 2, 5, 10, 11, 21, 26, 27, 31]
    got = run_bio(runtime, f"""
        local K = require "bio.kmer"
        local out = {{}}
        for i, k in ipairs({lua(ks)}) do
          local a, ta = K.count({lua(seqs)}, k)
          local b, tb = K.count({lua(seqs)}, k, {{canonical = true}})
          local c = K.count({lua(seqs[0])}, k)
          out[i] = {{a, ta, b, tb, c}}
        end
        return out
    """)
    for k, (a, ta, b, tb, c) in zip(ks, got):
        want = py_kmers(seqs, k)
        assert (a or {}) == want and ta == sum(want.values()), k
        wantc = py_kmers(seqs, k, canonical=True)
        assert (b or {}) == wantc and tb == sum(wantc.values()), k
        assert (c or {}) == py_kmers(seqs[:1], k)


@bio_runtimes()
def test_kmer_codes_decode_to_the_same_counts(runtime):
    rng = random.Random(25)
    seq = "".join(rng.choice("ACGTN") for _ in range(2000))
    got = run_bio(runtime, f"""
        local K = require "bio.kmer"
        local out = {{}}
        for _, k in ipairs{{3, 17, 26}} do
          local codes, total = K.count_codes({lua(seq)}, k, {{canonical = true}})
          local decoded = {{}}
          for code, c in pairs(codes) do decoded[K.decode(code, k)] = c end
          out[#out + 1] = {{decoded, total}}
        end
        return out
    """)
    for k, (decoded, total) in zip([3, 17, 26], got):
        want = py_kmers([seq], k, canonical=True)
        assert decoded == want and total == sum(want.values())


@bio_runtimes()
def test_kmer_helpers_and_errors(runtime):
    got = run_bio(runtime, """
        local K = require "bio.kmer"
        local counts = K.count("AAAACGT", 2)
        local out = {K.canonical("TTT"), K.canonical("acg"), K.spectrum(counts), K.top(counts, 2)}
        for _, bad in ipairs{0, 32, 2.5, "3"} do
          local ok, err = pcall(K.count, "ACGT", bad)
          out[#out + 1] = err
        end
        local ok, err = pcall(K.canonical, "ACNT")
        out[#out + 1] = err
        return out
    """)
    assert got[0] == "AAA" and got[1] == "ACG"
    assert got[2] == [[1, 3], [3, 1]]
    assert got[3] == [["AA", 3], ["AC", 1]]
    for msg in got[4:8]:
        assert "bio.kmer.count: bad argument #2 'k': must be an integer from 1 to 31" in msg
    assert "invalid character 'N' at position 3" in got[8]


@bio_runtimes()
def test_nt_search_matches_biopython(runtime):
    rng = random.Random(22)
    cases = []
    for _ in range(40):
        s = "".join(rng.choice("ACGTNacgt") for _ in range(rng.randrange(0, 200)))
        pat = "".join(rng.choice("ACGTRYSWKMBDHVNX") for _ in range(rng.randrange(1, 4)))
        cases.append([s, pat])
    cases.append(["AGATCTAGATCC", "RGATCY"])
    got = run_bio(runtime, f"""
        local M = require "bio.motif"
        local out = {{}}
        for i, c in ipairs({lua(cases)}) do out[i] = M.nt_search(c[1], c[2]) end
        return out
    """)
    for (s, pat), res in zip(cases, got):
        assert res == nt_search(s, pat), (s, pat)


def py_find(s, pat):
    """Both-strand IUPAC search by brute force: 1-based inclusive coordinates."""
    def matches(text, motif):
        return all(ch in IUPACData.ambiguous_dna_values[m] for ch, m in zip(text, motif))
    up, k = s.upper(), len(pat)
    rc = reverse_complement(pat)
    hits = []
    for i in range(len(s) - k + 1):
        if matches(up[i:i + k], pat):
            hits.append([i + 1, i + k, "+", s[i:i + k]])
        if matches(up[i:i + k], rc):
            hits.append([i + 1, i + k, "-", reverse_complement(s[i:i + k])])
    return hits


@bio_runtimes()
def test_motif_find_both_strands(runtime):
    rng = random.Random(23)
    cases = [["ccGAATTCaaGGATCCgaattc", "GAATTC"], ["AAAAAA", "AA"], ["ACGTTT", "RCG"]]
    for _ in range(20):
        cases.append(["".join(rng.choice("ACGTacgtN") for _ in range(rng.randrange(0, 120))),
                      "".join(rng.choice("ACGTRYN") for _ in range(rng.randrange(1, 5)))])
    got = run_bio(runtime, f"""
        local M = require "bio.motif"
        local out = {{}}
        for i, c in ipairs({lua(cases)}) do
          local row = {{}}
          for j, h in ipairs(M.find(c[1], c[2])) do row[j] = {{h.start, h.stop, h.strand, h.match}} end
          out[i] = row
        end
        local plus = M.find("GAATTCxGAATTC", "gaattc", {{strand = "+"}})
        local ok, err = pcall(M.find, "ACGT", "GA-C")
        local ok2, err2 = pcall(M.nt_search, "ACGT", "gatc")
        out[#out + 1] = {{#plus, err, err2}}
        return out
    """)
    for (s, pat), row in zip(cases, got):
        assert (row or []) == py_find(s, pat), (s, pat)
    n_plus, err, err2 = got[-1]
    assert n_plus == 2
    assert "bio.motif.find: bad argument #2 'pattern': invalid character '-' at position 3" in err
    assert "bad argument #2 'pattern': invalid character 'g' at position 1" in err2


@bio_runtimes()
def test_length_statistics(runtime):
    rng = random.Random(24)
    lengths = [rng.randrange(1, 10_000) for _ in range(101)]
    got = run_bio(runtime, f"""
        local St = require "bio.stats"
        local X = require "bio.fasta"
        local a = St.lengths({lua(lengths)})
        local b = St.summary(X.records_from_string(">a\\nACGTNN\\n>b\\nGGGG\\n>c\\nAT\\n"))
        local e = St.lengths({{}})
        return {{a, b, e}}
    """)
    a, b, e = got
    srt = sorted(lengths, reverse=True)
    total = sum(lengths)

    def nx(x):
        acc = 0
        for i, l in enumerate(srt, 1):
            acc += l
            if acc >= total * x / 100:
                return l, i

    assert a["count"] == 101 and a["total"] == total and a["min"] == min(lengths) and a["max"] == max(lengths)
    assert a["median"] == sorted(lengths)[50]
    assert abs(a["mean"] - total / 101) < 1e-9
    for x in (10, 50, 90):
        assert (a[f"n{x}"], a[f"l{x}"]) == nx(x)
    assert b["count"] == 3 and b["total"] == 12 and b["n50"] == 6 and b["l50"] == 1 and b["n_count"] == 2
    assert abs(b["gc"] - 6 / 10) < 1e-12  # remove mode: Ns left out
    assert abs(b["gc_skew"] - (5 - 1) / 6) < 1e-12
    assert e["count"] == 0 and e["total"] == 0 and "n50" not in e


def test_alphabet_tables_are_biopythons():
    got = run_bio("lua5.3", """
        local A = require "bio.alphabet"
        return {A.dna_values, A.dna_complement, A.rna_complement}
    """)
    assert got[0] == IUPACData.ambiguous_dna_values
    assert got[1] == {**IUPACData.ambiguous_dna_complement, "U": "A"}
    assert got[2] == {**IUPACData.ambiguous_rna_complement, "T": "A"}


def test_require_bio_loads_modules_lazily():
    got = run_bio("lua5.2", """
        local bio = require "bio"
        local before = package.loaded["bio.kmer"] ~= nil
        local rc = bio.seq.reverse_complement("AACG")
        return {before, rc, package.loaded["bio.kmer"] ~= nil, bio.nonexistent == nil}
    """)
    assert got == [False, "CGTT", False, True]


@bio_runtimes()
def test_misspelt_options_are_errors(runtime):
    got = run_bio(runtime, """
        local bio = require "bio"
        local calls = {
          function() return bio.translate.translate("ATG", {tabel = 2}) end,
          function() return bio.translate.orfs("ATG", {min_len = 3}) end,
          function() return bio.fasta.parse(">a\\nAC\\n", {chunksize = 2}) end,
          function() return bio.fastq.parse("@a\\nA\\n+\\nI\\n", {varient = "illumina"}) end,
          function() return bio.kmer.count("ACGT", 2, {canonicle = true}) end,
          function() return bio.motif.find("ACGT", "CG", {strands = "+"}) end,
        }
        local out = {}
        for i, f in ipairs(calls) do local ok, err = pcall(f); out[i] = err end
        return out
    """)
    for msg, name in zip(got, ["tabel", "min_len", "chunksize", "varient", "canonicle", "strands"]):
        assert f"unknown option '{name}'" in msg and "bad argument" in msg
