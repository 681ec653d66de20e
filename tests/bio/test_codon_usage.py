"""bio.codon_usage against Bio.SeqUtils.CodonAdaptationIndex (Biopython 1.88), every runtime."""
from __future__ import annotations

import math
import random

import pytest

from tests.bio.harness import run, runtime_params
from tests.bio.test_tm_data import lua_value

SeqUtils = pytest.importorskip("Bio.SeqUtils")
from Bio.Data import CodonTable  # noqa: E402

CODONS = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT"]
TABLE_IDS = sorted(CodonTable.unambiguous_dna_by_id)


def _cases():
    rng = random.Random(1987)
    cases = []
    for k in range(40):
        table = TABLE_IDS[k % len(TABLE_IDS)]
        # a skewed codon preference so the weights differ
        prefs = [rng.random() ** 3 for _ in CODONS]
        refs = ["".join(rng.choices(CODONS, prefs, k=rng.randint(1, 120))) for _ in range(rng.randint(1, 6))]
        refs = [r.lower() if rng.random() < 0.2 else r for r in refs]
        genes = ["".join(rng.choices(CODONS, k=rng.randint(1, 200))) for _ in range(3)]
        genes.append("ATGTGG" + rng.choice(CODONS))
        cases.append((refs, table, genes))
    return cases


CASES = _cases()


@runtime_params()
def test_cai_matches_biopython(runtime):
    body = ",\n".join("{" + lua_value(r) + "," + str(t) + "," + lua_value(g) + "}" for r, t, g in CASES)
    got = run(runtime, f"""
local cu = require "bio.codon_usage"
local out = {{}}
for i, c in ipairs({{ {body} }}) do
  local index = cu.cai_index(c[1], {{table = c[2]}})
  local w = {{}}
  for k, codon in ipairs(cu.CODONS) do w[k] = index.weights[codon] end
  local cai = {{}}
  for k, g in ipairs(c[3]) do
    local ok, v = pcall(index.calculate, index, g)
    cai[k] = ok and v or "error"
  end
  out[i] = {{w, cai, tostring(index)}}
end
return out""")
    for (refs, table, genes), (weights, cais, text) in zip(CASES, got):
        index = SeqUtils.CodonAdaptationIndex(refs, CodonTable.unambiguous_dna_by_id[table])
        assert weights == pytest.approx([index[c] for c in CODONS], rel=1e-15), table
        assert text == str(index)
        for gene, mine in zip(genes, cais):
            try:
                want = index.calculate(gene)
            except (ValueError, ZeroDivisionError, TypeError):
                want = "error"
            if want == "error":
                assert mine == "error", (table, gene)
            else:
                assert math.isclose(mine, want, rel_tol=1e-12), (table, gene, mine, want)


@runtime_params(["lupa:lua51", "lupa:luajit21", "lua5.3"])
def test_counts_frequencies_rscu_and_errors(runtime):
    rng = random.Random(5)
    seqs = ["".join(rng.choices(CODONS, k=rng.randint(0, 50))) for _ in range(5)]
    got = run(runtime, f"""
local cu = require "bio.codon_usage"
local seqs = {lua_value(seqs)}
local counts = cu.counts(seqs)
local freqs = cu.frequencies(seqs)
local rscu = cu.rscu(counts, {{table = "Vertebrate Mitochondrial"}})
local c, f, r = {{}}, {{}}, {{}}
for k, codon in ipairs(cu.CODONS) do c[k], f[k], r[k] = counts[codon], freqs[codon], rscu[codon] end
local function err(fn) local ok, e = pcall(fn); return ok and "no error" or tostring(e) end
return {{c, f, r,
  err(function() return cu.counts({{"ATGAAA", "ATGANA"}}) end),
  err(function() return cu.cai_index({{"ATGAAAT"}}) end),
  err(function() return cu.cai_index({{"ATG"}}, {{table = 7}}) end),
  err(function() return cu.cai_index({{"ATGAAA"}}):calculate("ATGTGG") end),
  err(function() return cu.cai_index({{"ATGAAA"}}):calculate("AAANNN") end),
  cu.counts("ATGNNNAAAT", {{skip_invalid = true}}).AAA,
}}""")
    counts, freqs, rscu = got[0], got[1], got[2]
    want_counts = [sum(s[i:i + 3] == c for s in seqs for i in range(0, len(s), 3)) for c in CODONS]
    assert counts == want_counts
    total = sum(want_counts)
    assert freqs == pytest.approx([n / total for n in want_counts], rel=1e-15)
    # RSCU (Sharp & Li): count / mean count of the synonymous codons; stops are one group.
    table = CodonTable.unambiguous_dna_by_id[2]
    groups = {}
    for codon in CODONS:
        key = table.forward_table.get(codon, "*" if codon in table.stop_codons else None)
        groups.setdefault(key, []).append(codon)
    for k, codon in enumerate(CODONS):
        group = next(g for g in groups.values() if codon in g)
        s = sum(want_counts[CODONS.index(x)] for x in group)
        assert rscu[k] == pytest.approx(want_counts[k] / (s / len(group)) if s else 0, rel=1e-15)
    assert "bio.codon_usage.counts: bad argument #1 'sequences': sequence 2, position 4: illegal codon 'ANA'" in got[3]
    assert "sequence 1, position 7: illegal codon 'T'" in got[4]
    assert "option 'table'" in got[5] and "'7'" in got[5]
    assert "no codon other than ATG and TGG" in got[6]
    assert "illegal codon 'NNN' at position 4" in got[7]
    assert got[8] == 1


@runtime_params(["lupa:lua51", "lupa:lua54", "lupa:luajit21", "lua5.2", "luajit"])
def test_optimize_matches_biopython(runtime):
    rng = random.Random(11)
    cases = []
    for k in range(30):
        table = rng.choice([1, 1, 2, 11, 4])
        prefs = [rng.random() ** 4 for _ in CODONS]
        refs = ["".join(rng.choices(CODONS, prefs, k=400))]
        if k % 3 == 0:
            seq, seq_type = "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY*") for _ in range(30)), "protein"
        else:
            seq, seq_type = "".join(rng.choices(CODONS, k=25)), rng.choice(["DNA", "RNA"])
            if seq_type == "RNA":
                seq = seq.replace("T", "U")
        cases.append((refs, table, seq, seq_type, k % 2 == 0))
    body = ",\n".join("{" + ",".join([lua_value(r), str(t), lua_value(s), lua_value(st), lua_value(strict)]) + "}"
                      for r, t, s, st, strict in cases)
    got = run(runtime, f"""
local cu = require "bio.codon_usage"
local out = {{}}
for i, c in ipairs({{ {body} }}) do
  local index = cu.cai_index(c[1], {{table = c[2]}})
  local ok, v = pcall(index.optimize, index, c[3], {{seq_type = c[4], strict = c[5]}})
  out[i] = ok and v or "error"
end
return out""")
    import warnings as _w
    for (refs, table, seq, seq_type, strict), mine in zip(cases, got):
        index = SeqUtils.CodonAdaptationIndex(refs, CodonTable.unambiguous_dna_by_id[table])
        try:
            with _w.catch_warnings():
                _w.simplefilter("ignore")
                want = str(index.optimize(seq, seq_type=seq_type, strict=strict))
        except (ValueError, KeyError):
            want = "error"
        assert mine == want, (table, seq, seq_type, strict)
