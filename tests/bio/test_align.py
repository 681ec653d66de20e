"""bio.align against Bio.Align.PairwiseAligner (Biopython 1.88) on random inputs, every runtime.

* score(): equal to ``aligner.score(a, b)`` for random sequences and random parameters
  (match/mismatch, substitution matrices, linear and affine gaps, end-gap variants, local mode);
* align(): the returned rows spell the sequences, the coordinates agree with the rows, the
  alignment re-scored independently here equals Biopython's optimal score, and, when Biopython
  finds a unique optimal alignment, the coordinates equal ``alignment.coordinates``.
"""
from __future__ import annotations

import math
import random
import warnings

import pytest

from tests.bio.harness import run, runtime_params
from tests.bio.test_tm_data import lua_value

Align = pytest.importorskip("Bio.Align")
from Bio.Align import substitution_matrices  # noqa: E402

MATRICES = ["BLOSUM62", "BLOSUM45", "PAM250", "PAM30", "BENNER22", "NUC.4.4", "BLASTN", "HOXD70"]
LOCS = ["internal", "left", "right"]


def _specificity(name: str) -> float:
    if not name.endswith("_score") or name in ("match_score", "mismatch_score"):
        return -1
    words = set(name.split("_"))
    return ((1 if words & {"open", "extend"} else 0) + (2 if "end" in words else 0)
            + (3 if words & {"internal", "left", "right"} else 0)
            + (4 if words & {"insertion", "deletion", "target", "query"} else 0))


def _biopython_aligner(opts: dict):
    kwargs = dict(opts)
    if isinstance(kwargs.get("substitution_matrix"), str):
        kwargs["substitution_matrix"] = substitution_matrices.load(kwargs["substitution_matrix"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aligner = Align.PairwiseAligner(**{k: v for k, v in kwargs.items() if k == "scoring"})
        # bio.align applies overlapping gap names from general to specific (documented rule);
        # set Biopython's attributes in that order so both mean the same leaf scores.
        for k in sorted((k for k in kwargs if k != "scoring"), key=lambda k: (_specificity(k), k)):
            setattr(aligner, k, kwargs[k])
    return aligner


def _random_opts(rng):
    opts = {"mode": rng.choice(["global", "global", "local"])}
    r = rng.random()
    if r < 0.35:
        alphabet = "ACGT"
        opts["match_score"] = rng.choice([1, 2, 5, 1.5])
        opts["mismatch_score"] = rng.choice([0, -1, -3, -0.5])
        if rng.random() < 0.15:
            opts["wildcard"] = "N"
            alphabet = "ACGTN"
    elif r < 0.45:
        alphabet = "ACGTacgt"  # case-sensitive comparisons
    else:
        name = rng.choice(MATRICES)
        opts["substitution_matrix"] = name
        alphabet = "".join(substitution_matrices.load(name).alphabet)
        if name in ("NUC.4.4", "BLASTN"):
            alphabet = "ACGT" * 3 + alphabet
        elif len(alphabet) > 20:
            alphabet = alphabet[:20] * 2 + alphabet  # mostly standard amino acids
    g = rng.random()
    if g < 0.25:
        opts["gap_score"] = rng.choice([-1, -2, -0.5, -3])
    elif g < 0.6:
        opts["open_gap_score"] = rng.choice([-1, -2, -5, -10, -11])
        opts["extend_gap_score"] = rng.choice([-0.5, -1, -2, -0.1])
    elif g < 0.8:
        opts["open_gap_score"] = rng.choice([-2, -5])
        opts["extend_gap_score"] = rng.choice([-0.5, -1])
        opts[rng.choice(["end_gap_score", "left_gap_score", "right_gap_score", "end_insertion_score",
                         "end_deletion_score", "open_end_gap_score"])] = rng.choice([0, -0.5, -3])
    else:  # random leaves, including positive end gaps and open > extend
        for kind in ("open", "extend"):
            for loc in LOCS:
                for ty in ("insertion", "deletion"):
                    if rng.random() < 0.4:
                        opts[f"{kind}_{loc}_{ty}_score"] = rng.choice([0, -1, -2, -4, -0.5])
    return opts, alphabet


def _cases(count, seed, max_len):
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        opts, alphabet = _random_opts(rng)
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, max_len)))
        b = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, max_len)))
        if rng.random() < 0.3:  # related sequences: mutate a copy
            b = list(a)
            for _ in range(rng.randint(0, 4)):
                op = rng.random()
                pos = rng.randrange(len(b) + 1)
                if op < 0.4 and b:
                    del b[min(pos, len(b) - 1)]
                elif op < 0.7:
                    b.insert(pos, rng.choice(alphabet))
                elif b:
                    b[min(pos, len(b) - 1)] = rng.choice(alphabet)
            b = "".join(b) or a
        cases.append((a, b, opts))
    return cases


SCORE_CASES = _cases(300, 2024, 40) + [
    ("GAACT", "GAT", {}), ("A", "C", {}), ("ACGT", "ACGT", {"mode": "local"}),
    ("AAA", "CCC", {"mode": "local"}),
    ("HEAGAWGHEE", "PAWHEAE", {"substitution_matrix": "BLOSUM62", "open_gap_score": -10,
                               "extend_gap_score": -0.5}),
    ("ACGTTGCA", "ACGA", {"scoring": "blastn"}), ("MKVLA", "MKLA", {"scoring": "blastp"}),
    ("ACGTACGTTT", "ACGTT", {"scoring": "megablast"}),
    ("ACGTACGTTT", "CGTA", {"end_gap_score": 0, "mismatch_score": -1}),
    ("ACGTACGTTT", "CGTA", {"target_end_gap_score": 0, "query_end_gap_score": -3}),
    ("ACXXC", "ACDC", {"substitution_matrix": "BLOSUM62", "wildcard": "X"}),  # wildcard ignored
    ("ACNNT", "ACGTT", {"wildcard": "N", "mismatch_score": -2}),
]
ALIGN_CASES = _cases(150, 7, 25)


def _lua_batch(runtime, cases, method):
    body = ",\n".join("{" + lua_value(a) + "," + lua_value(b) + "," + lua_value(o) + "}" for a, b, o in cases)
    code = f"""
local align = require "bio.align"
local out = {{}}
for i, c in ipairs({{ {body} }}) do
  local ok, v = pcall(function() return align.new(c[3]):{method}(c[1], c[2]) end)
  if not ok then out[i] = {{"err", tostring(v)}}
  elseif type(v) == "table" then
    out[i] = {{"ok", {{v.score, v.target, v.query, v.coordinates, v:counts(c[3].substitution_matrix)}}}}
  else out[i] = {{"ok", v or "none"}} end
end
return out"""
    return run(runtime, code)


@runtime_params()
def test_score_matches_biopython(runtime):
    got = _lua_batch(runtime, SCORE_CASES, "score")
    for (a, b, opts), mine in zip(SCORE_CASES, got):
        want = _biopython_aligner(opts).score(a, b)
        assert mine[0] == "ok", (a, b, opts, mine)
        assert math.isclose(mine[1], want, rel_tol=1e-9, abs_tol=1e-9), (a, b, opts, mine[1], want)


def _gap_score(opts_aligner, kind_ty, loc, length):
    o = getattr(opts_aligner, f"open_{loc}_{kind_ty}_score")
    e = getattr(opts_aligner, f"extend_{loc}_{kind_ty}_score")
    return o + (length - 1) * e


def _rescore(aligner, a, b, row_t, row_q, coords):
    """Score an alignment independently: pairs from the matrix or match/mismatch, gap runs by
    type (insertion = gap in target) and location (left/right end of the sequence, or internal)."""
    local = aligner.mode == "local"
    matrix = aligner.substitution_matrix
    wildcard = aligner.wildcard
    i, j = coords[0][0], coords[1][0]
    score = 0.0
    k = 0
    while k < len(row_t):
        x, y = row_t[k], row_q[k]
        if x != "-" and y != "-":
            if wildcard is not None and (x == wildcard or y == wildcard):
                s = 0.0
            elif matrix is not None:
                s = matrix[x, y]
            else:
                s = aligner.match_score if x == y else aligner.mismatch_score
            score += s
            i, j, k = i + 1, j + 1, k + 1
            continue
        ty = "insertion" if x == "-" else "deletion"
        run_len = 0
        while k < len(row_t) and (row_t[k] == "-" if ty == "insertion" else row_q[k] == "-"):
            run_len += 1
            k += 1
        if ty == "insertion":
            loc = "internal" if local else ("left" if i == 0 else "right" if i == len(a) else "internal")
            j += run_len
        else:
            loc = "internal" if local else ("left" if j == 0 else "right" if j == len(b) else "internal")
            i += run_len
        score += _gap_score(aligner, ty, loc, run_len)
    return score


@runtime_params()
def test_alignment_is_optimal_and_consistent(runtime):
    got = _lua_batch(runtime, ALIGN_CASES, "align")
    unique_checked = 0
    for (a, b, opts), mine in zip(ALIGN_CASES, got):
        aligner = _biopython_aligner(opts)
        want = aligner.score(a, b)
        assert mine[0] == "ok", (a, b, opts, mine)
        if mine[1] == "none":  # local mode without any positive pair
            assert want == 0 and len(aligner.align(a, b)) == 0
            continue
        score, row_t, row_q, coords, counts = mine[1]
        assert math.isclose(score, want, rel_tol=1e-9, abs_tol=1e-9), (a, b, opts, score, want)
        t0, t1, q0, q1 = coords[0][0], coords[0][-1], coords[1][0], coords[1][-1]
        assert row_t.replace("-", "") == a[t0:t1] and row_q.replace("-", "") == b[q0:q1]
        assert len(row_t) == len(row_q)
        if aligner.mode == "global":
            assert (t0, t1, q0, q1) == (0, len(a), 0, len(b))
        rescored = _rescore(aligner, a, b, row_t, row_q, coords)
        assert math.isclose(rescored, want, rel_tol=1e-9, abs_tol=1e-9), (a, b, opts, row_t, row_q, rescored, want)
        # counts(): Biopython's own counts of *our* alignment, field by field
        import numpy as np
        from Bio.Align import Alignment
        theirs = Alignment([a, b], np.array(coords)).counts(aligner.substitution_matrix)
        assert set(counts) >= {"aligned", "identities", "mismatches", "gaps", "open_internal_insertions"}
        for name, value in counts.items():
            assert value == pytest.approx(getattr(theirs, name)), (a, b, opts, name)
        alignments = aligner.align(a, b)
        if len(alignments) == 1:
            unique_checked += 1
            assert [list(r) for r in alignments[0].coordinates] == coords, (a, b, opts)
    assert unique_checked >= 10


@runtime_params(["lupa:lua54", "luajit"])
def test_bad_parameters_name_the_argument(runtime):
    got = run(runtime, r"""
local align = require "bio.align"
local function err(f) local ok, e = pcall(f); return ok and "no error" or tostring(e) end
return {
  err(function() return align.new{mode = "semiglobal"} end),
  err(function() return align.new{open_gap = -1} end),
  err(function() return align.new{open_gap_score = "x"} end),
  err(function() return align.new{substitution_matrix = "BLOSUM63"} end),
  err(function() return align.new{substitution_matrix = "BLOSUM62"}:score("ACDx", "ACD") end),
  err(function() return align.new{}:score("", "ACD") end),
  err(function() return align.new{}:score("ACD", 5) end),
  err(function() return align.new{scoring = "blastx"} end),
  err(function() return align.new{substitution_matrix = "BLOSUM62", match_score = 2} end),
  err(function() return align.new{mode = "local", open_gap_score = 2} end),
}""")
    assert "local mode needs gap scores <= 0" in got[9] and "open_" in got[9]
    assert "bio.align.new: bad argument #1 'opts': option 'mode'" in got[0] and "semiglobal" in got[0]
    assert "unknown option 'open_gap'" in got[1]
    assert "'open_gap_score' must be a number" in got[2]
    assert "BLOSUM63" in got[3]
    assert "bio.align.score: bad argument #1 'target': invalid character 'x' at position 4" in got[4]
    assert "bad argument #1 'target': sequence has zero length" in got[5]
    assert "bad argument #2 'query': expected a string, got number" in got[6]
    assert "scoring" in got[7] and "blastx" in got[7]
    assert "match_score" in got[8]


def test_matrices_match_biopython():
    names = [n for n in substitution_matrices.load() if n != "SCHNEIDER"]
    got = run("lupa:lua54", """
local matrices = require "bio.matrices"
local out = {}
for _, name in ipairs(matrices.names()) do
  local m = matrices.load(name)
  local rows = {}
  for i = 1, #m.alphabet do
    local r = {}
    for j = 1, #m.alphabet do r[j] = m:score(m.alphabet:sub(i, i), m.alphabet:sub(j, j)) end
    rows[i] = r
  end
  out[#out + 1] = {name, m.alphabet, rows}
end
return out""")
    assert [g[0] for g in got] == sorted(names)
    for name, alphabet, rows in got:
        m = substitution_matrices.load(name)
        assert alphabet == "".join(m.alphabet)
        assert rows == [[float(m[x, y]) for y in alphabet] for x in alphabet], name


@runtime_params(["lupa:lua52", "lupa:luajit21"])
def test_algorithm_names_match_biopython(runtime):
    configs = [{}, {"mode": "local"}, {"open_gap_score": -5, "extend_gap_score": -1},
               {"mode": "local", "open_gap_score": -5, "extend_gap_score": -1},
               {"end_gap_score": 0}, {"open_end_gap_score": -2}]
    body = ",".join(lua_value(c) for c in configs)
    got = run(runtime, f"""
local align = require "bio.align"
local out = {{}}
for i, c in ipairs({{{body}}}) do out[i] = align.new(c):algorithm() end
return out""")
    assert got == [_biopython_aligner(c).algorithm for c in configs]


def test_example_script_runs_on_stock_interpreters(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    from bioxen_shell.paths import bio_stdlib_dir
    from tests.system import require_binary

    example = Path(__file__).resolve().parents[2] / "examples" / "align_pair.lua"
    fasta = tmp_path / "a.fa"
    fasta.write_text(">first some protein\nHEAGA\nWGHEE\n")
    for exe in ("lua5.4", "luajit"):
        path = require_binary(exe)
        env = {**os.environ, "LUA_PATH": f"{bio_stdlib_dir()}/?.lua;;"}
        out = subprocess.run([path, str(example), str(fasta), "PAWHEAE", "--matrix", "BLOSUM62",
                              "--open", "-10", "--extend", "-0.5"], capture_output=True, text=True, env=env,
                             timeout=60, check=True).stdout
        assert "first (10) vs PAWHEAE (7)" in out
        assert "score 4" in out and "---PAWHEAE" in out
        assert "target {0, 3, 10}, query {0, 0, 7}" in out


@runtime_params(["lupa:lua53", "luajit"])
def test_documented_tie_breaking(runtime):
    """Among co-optimal alignments: match/mismatch before deletion before insertion, from the end."""
    got = run(runtime, r"""
local align = require "bio.align"
local a = align.new{}
local x, y, z = a:align("AA", "A"), a:align("A", "AA"), align.new{mode = "local"}:align("ACAC", "AC")
return {x.target, x.query, y.target, y.query, z.coordinates}""")
    assert got[:4] == ["AA", "-A", "-A", "AA"]
    assert got[4] == [[0, 2], [0, 2]]  # the first best cell in row-major order


@runtime_params(["lupa:lua51", "lua5.4", "luajit"])
def test_custom_matrix_and_matrix_errors(runtime):
    got = run(runtime, r"""
local matrices = require "bio.matrices"
local align = require "bio.align"
local m = matrices.new("ACGT", {{5, -4, -4, -4}, {-4, 5, -4, -4}, {-4, -4, 5, -4}, {-4, -4, -4, 5}}, "simple")
local function err(f) local ok, e = pcall(f); return ok and "no error" or tostring(e) end
return {
  m:score("A", "A"), m:score("A", "G"), m:has("N"),
  align.score("ACGTT", "ACTT", {substitution_matrix = m, open_gap_score = -6, extend_gap_score = -1}),
  err(function() return matrices.load("BLOSUM63") end),
  err(function() return matrices.new("AC", {1, 2, 3}) end),
  err(function() return matrices.new("AA", {1, 2, 3, 4}) end),
  err(function() return m:score("A", "N") end),
}""")
    from Bio.Align import PairwiseAligner
    from Bio.Align.substitution_matrices import Array
    import numpy as np
    matrix = Array("ACGT", dims=2, data=np.array([[5, -4, -4, -4], [-4, 5, -4, -4], [-4, -4, 5, -4], [-4, -4, -4, 5]], float))
    want = PairwiseAligner(substitution_matrix=matrix, open_gap_score=-6, extend_gap_score=-1).score("ACGTT", "ACTT")
    assert got[:4] == [5, -4, False, want]
    assert "bad argument #1 'name': unknown matrix 'BLOSUM63'" in got[4]
    assert "bad argument #2 'rows': expected 4 scores" in got[5]
    assert "letter 'A' appears twice" in got[6]
    assert "letter 'N' is not in the alphabet 'ACGT'" in got[7]


@runtime_params(["lupa:luajit21", "luajit"])
def test_portable_kernels_on_luajit_give_the_same_scores(runtime):
    """BIOXEN_BIO_PORTABLE forces the portable (inline-comparison, table) kernels under LuaJIT."""
    cases = SCORE_CASES[:60]
    body = ",\n".join("{" + lua_value(a) + "," + lua_value(b) + "," + lua_value(o) + "}" for a, b, o in cases)
    got = run(runtime, f"""
BIOXEN_BIO_PORTABLE = true
local align = require "bio.align"
local fast = require "bio._fast"
local out = {{fast.kernels}}
for i, c in ipairs({{ {body} }}) do
  local al = align.new(c[3])
  out[#out + 1] = {{al:score(c[1], c[2]), al:align(c[1], c[2]) and al:align(c[1], c[2]).score or 0}}
end
return out""")
    assert got[0] == "portable"
    for (a, b, opts), (score, aligned) in zip(cases, got[1:]):
        want = _biopython_aligner(opts).score(a, b)
        assert math.isclose(score, want, abs_tol=1e-9) and math.isclose(aligned, want, abs_tol=1e-9), (a, b, opts)
