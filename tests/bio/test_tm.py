"""bio.tm against Bio.SeqUtils.MeltingTemp (Biopython 1.88) on random and edge-case inputs.

Every runtime (lupa lua51-54/luajit21, stock lua5.1-5.4/luajit) evaluates the same batch of
calls; each result must equal Biopython's to 1e-9 (relative), and a call must fail in Lua
exactly when it raises in Biopython.
"""
from __future__ import annotations

import math
import random
import warnings

import pytest

from tests.bio.harness import run, runtime_params
from tests.bio.test_tm_data import lua_value

mt = pytest.importorskip("Bio.SeqUtils.MeltingTemp")

TABLES = ["DNA_NN1", "DNA_NN2", "DNA_NN3", "DNA_NN4", "RNA_NN1", "RNA_NN2", "RNA_NN3", "R_DNA_NN1"]


def _oracle(fn: str, seq, opts: dict):
    kwargs = dict(opts)
    for key in ("nn_table", "tmm_table", "imm_table", "de_table"):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = getattr(mt, kwargs[key])
    if "userset" in kwargs:
        kwargs["userset"] = tuple(kwargs["userset"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if fn in ("salt_correction",):
                return ("ok", getattr(mt, fn)(**kwargs))
            return ("ok", getattr(mt, fn)(seq, **kwargs))
        except (ValueError, ZeroDivisionError, KeyError, IndexError, UnboundLocalError) as exc:
            return ("err", f"{type(exc).__name__}: {exc}")


def _run_batch(runtime: str, cases):
    body = ",\n".join("{" + lua_value(fn) + ", " + lua_value(seq) + ", " + lua_value(opts) + "}"
                      for fn, seq, opts in cases)
    code = f"""
local tm = require "bio.tm"
local cases = {{ {body} }}
local out = {{}}
for i, c in ipairs(cases) do
  local ok, v
  if c[1] == "salt_correction" then ok, v = pcall(tm.salt_correction, c[3])
  else ok, v = pcall(tm[c[1]], c[2], c[3]) end
  if ok then out[i] = {{"ok", v}} else out[i] = {{"err", tostring(v)}} end
end
return out
"""
    return run(runtime, code)


def _compare(cases, got):
    assert len(got) == len(cases)
    for (fn, seq, opts), mine in zip(cases, got):
        want = _oracle(fn, seq, opts)
        ctx = f"{fn}({seq!r}, {opts!r}): lua={mine!r} biopython={want!r}"
        assert mine[0] == want[0], ctx
        if want[0] == "ok":
            a, b = float(mine[1]), float(want[1])
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), ctx


def _conc(rng):
    return {
        "Na": rng.choice([0, 1, 50, 100, 1000, round(rng.uniform(0.1, 500), 3)]),
        "K": rng.choice([0, 0, 10, round(rng.uniform(0, 100), 2)]),
        "Tris": rng.choice([0, 0, 20]),
        "Mg": rng.choice([0, 0, 1.5, 3, round(rng.uniform(0, 10), 3)]),
        "dNTPs": rng.choice([0, 0, 0.8, 2, 5]),
    }


def _cases():
    rng = random.Random(1988)
    cases = []
    letters = "ACGTACGTACGTUacgtNRYKMBVDHSWX 1-I"
    for _ in range(120):
        seq = "".join(rng.choice(letters) for _ in range(rng.randint(0, 30)))
        cases.append(("Tm_Wallace", seq, {"check": rng.random() < 0.8, "strict": rng.random() < 0.5}))
    # Tm_GC
    for _ in range(200):
        seq = "".join(rng.choice("ACGTACGTacgtuXX NRSW" if rng.random() < 0.5 else "ACGT")
                      for _ in range(rng.randint(0, 40)))
        opts = {"strict": rng.random() < 0.4, "mismatch": rng.random() < 0.7,
                "valueset": rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 7, 9])}
        if rng.random() < 0.2:
            opts["userset"] = [rng.uniform(60, 80), 0.41, rng.choice([500, 600]), 1]
        if rng.random() < 0.5:
            opts["saltcorr"] = rng.choice([0, 1, 2, 3, 4, 6, 7, 5])
        opts.update(_conc(rng))
        if rng.random() < 0.1:
            opts["check"] = False
        cases.append(("Tm_GC", seq, opts))
    # salt_correction
    for _ in range(150):
        opts = _conc(rng)
        opts["method"] = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8])
        if rng.random() < 0.9:
            opts["seq"] = "".join(rng.choice("ACGT") for _ in range(rng.randint(1, 30)))
        cases.append(("salt_correction", None, opts))
    # Tm_NN: perfect duplexes on every table, every salt correction
    for table in TABLES:
        for saltcorr in range(8):
            for _ in range(4):
                seq = "".join(rng.choice("ACGT") for _ in range(rng.randint(2, 40)))
                if table.startswith("R") and rng.random() < 0.5:
                    seq = seq.replace("T", "U")
                opts = {"nn_table": table, "saltcorr": saltcorr, "dnac1": rng.choice([25, 250, 1000]),
                        "dnac2": rng.choice([25, 0, 10]), "selfcomp": rng.random() < 0.2}
                opts.update(_conc(rng))
                cases.append(("Tm_NN", seq, opts))
    # Tm_NN with mismatches, dangling ends (shift, different lengths) and inosine
    comp = {"A": "T", "C": "G", "G": "C", "T": "A"}
    for _ in range(250):
        seq = "".join(rng.choice("ACGT") for _ in range(rng.randint(4, 30)))
        cseq = "".join(comp[c] for c in seq)
        cl = list(cseq)
        for _ in range(rng.randint(0, 3)):
            cl[rng.randrange(len(cl))] = rng.choice("ACGTI")
        cseq = "".join(cl)
        if rng.random() < 0.4:
            cseq = cseq[: rng.randint(1, len(cseq))] if rng.random() < 0.5 else cseq + rng.choice(["A", "GT", "C"])
        opts = {"c_seq": cseq, "shift": rng.choice([0, 0, 0, 1, -1, 2, -2]),
                "strict": rng.random() < 0.5,
                "de_table": rng.choice(["DNA_DE1", "RNA_DE1"]),
                "saltcorr": rng.choice([0, 1, 5, 6, 7])}
        opts.update(_conc(rng))
        cases.append(("Tm_NN", seq, opts))
    # edge cases
    cases += [
        ("Tm_NN", "", {}), ("Tm_NN", "A", {}), ("Tm_NN", "AT", {}), ("Tm_NN", "acgt tgca", {}),
        ("Tm_NN", "CGTTCCAAAGATGTGGGCATGAGCTTAC", {}),
        ("Tm_NN", "CGTTCCAAAGATGTGGGCATGAGCTTAC", {"check": False}),
        ("Tm_NN", "CGTTCCAAAGATGTGGGCATGAGCTTAC", {"dnac1": 10, "dnac2": 20}),  # log of negative k
        ("Tm_NN", "CGTTCCAAAGATGTGGGCATGAGCTTAC", {"Na": 0, "saltcorr": 5}),
        ("Tm_NN", "CGTTCCAAAGATGTGGGCATGAGCTTAC", {"saltcorr": 9}),
        ("Tm_NN", "AAAAAAAAAATTTTTTT", {"nn_table": "DNA_NN1"}),
        ("Tm_NN", "TAAAAAAAAATTTTTTA", {"nn_table": "DNA_NN2"}),
        ("Tm_GC", "", {}), ("Tm_GC", "", {"mismatch": False}), ("Tm_GC", "ACGTN", {}),
        ("Tm_GC", "CTGCTGATXGCACGAGGTTATGG", {"valueset": 2}),
        ("Tm_GC", "ACGT", {"saltcorr": 5}), ("Tm_GC", "ACGT", {"valueset": 0}),
        ("Tm_Wallace", "", {}), ("Tm_Wallace", "ACGTTGCAATGCCGTA", {}),
        ("Tm_Wallace", "1ACGT2TGCA3ATGC4CGTA", {}), ("Tm_Wallace", "ACGTN", {"strict": False}),
        ("salt_correction", None, {"Na": 50, "method": 1}),
        ("salt_correction", None, {"Na": 100, "Tris": 20, "Mg": 1.5, "method": 2}),
        ("salt_correction", None, {"Na": 0, "method": 3}),
        ("salt_correction", None, {"Na": 50, "method": 7}),
        ("salt_correction", None, {"Na": 50, "Mg": 2, "method": 7, "seq": "A"}),
        ("salt_correction", None, {"Mg": 2, "method": 7, "seq": "ACGTAC"}),
    ]
    return cases


CASES = _cases()


@runtime_params()
def test_tm_matches_biopython(runtime):
    _compare(CASES, _run_batch(runtime, CASES))


@runtime_params(["lupa:lua54", "luajit"])
def test_chem_correction_matches_biopython(runtime):
    cases = [(70, {}), (70, {"DMSO": 3}), (70, {"fmd": 5}), (70, {"fmdmethod": 2, "fmd": 1.25, "GC": 50}),
             (65.5, {"DMSO": 2, "DMSOfactor": 0.6, "fmd": 1, "fmdmethod": 2, "GC": 42.5}),
             (70, {"fmd": 1, "fmdmethod": 2}), (70, {"fmd": 1, "fmdmethod": 3})]
    body = ",".join("{" + lua_value(t) + "," + lua_value(o) + "}" for t, o in cases)
    got = run(runtime, f"""
local tm = require "bio.tm"
local out = {{}}
for i, c in ipairs({{{body}}}) do
  local ok, v = pcall(tm.chem_correction, c[1], c[2])
  out[i] = ok and v or "error"
end
return out""")
    for (t, o), mine in zip(cases, got):
        try:
            want = mt.chem_correction(t, **o)
        except ValueError:
            want = "error"
        if want == "error":
            assert mine == "error", (t, o)
        else:
            assert math.isclose(mine, want, rel_tol=1e-12), (t, o, mine, want)


@runtime_params(["lupa:lua51", "lua5.4"])
def test_errors_name_the_argument(runtime):
    got = run(runtime, r"""
local tm = require "bio.tm"
local out = {}
for _, f in ipairs({
  function() return tm.Tm_NN("ACGT", {na = 50}) end,
  function() return tm.Tm_NN(42) end,
  function() return tm.Tm_NN("ACGTACGT", {nn_table = "DNA_NN9"}) end,
  function() return tm.Tm_Wallace("ACGNT") end,
  function() return tm.Tm_NN("ACGTACGT", {c_seq = "TGCCCGCA"}) end,
  function() return tm.Tm_GC("ACGTACGT", {Na = "50"}) end,
}) do
  local ok, err = pcall(f)
  out[#out + 1] = ok and "no error" or tostring(err)
end
return out""")
    assert "unknown option 'na'" in got[0]
    assert "bad argument #1 'seq': expected a string" in got[1]
    assert "nn_table" in got[2] and "DNA_NN9" in got[2]
    assert "bad argument #1 'seq': ambiguous base 'N' at position 4" in got[3]
    assert "no thermodynamic data for neighbors" in got[4]
    assert "option 'Na' must be a number" in got[5]


def test_non_strict_returns_warnings():
    got = run("lupa:lua54", r"""
local tm = require "bio.tm"
local t, w = tm.Tm_NN("ACGTACGT", {c_seq = "TGCCCGCA", strict = false})
return {t, w}""")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        want = mt.Tm_NN("ACGTACGT", c_seq="TGCCCGCA", strict=False)
    assert math.isclose(got[0], want, rel_tol=1e-9)
    assert len(got[1]) == len(caught) >= 1
