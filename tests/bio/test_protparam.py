"""bio.protparam against Biopython 1.88's Bio.SeqUtils.ProtParam, seq1 and seq3.

Differential: every measure of ``analyze`` and of the one-measure functions is compared with
``ProteinAnalysis`` on Biopython's doctest proteins, random proteins, edge cases (empty,
length 1, lower case, X/B/Z/U/O/J, '*', whitespace) on every runtime, and on every CDS
translation of a real GenBank file on lua5.4 and luajit.  Where Biopython raises, bio.protparam
must raise too and name the same letter.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import math
import random
import re
from functools import lru_cache
from pathlib import Path

import pytest

from tests.bio import gen_protparam_data
from tests.bio._lua import bio_runtimes, lua, run_bio

pytest.importorskip("Bio")
from Bio.SeqUtils import ProtParamData, seq1, seq3  # noqa: E402
from Bio.SeqUtils.ProtParam import ProteinAnalysis  # noqa: E402

TOL = 0.0  # exact: the arithmetic is Biopython's, step by step (the requirement is 1e-9)
GBK = Path("/usr/share/doc/any2fasta/examples/test.gbk.gz")
SCALES = sorted(ProtParamData.gravy_scales)
PHS = [0.0, 4.05, 7.0, 7.775, 9.5, 14.0]
EXTRA_SCALES = {"Flex": ProtParamData.Flex, "HoppWoods": ProtParamData.hw,
                "Emini": ProtParamData.em, "Janin": ProtParamData.ja}
MEASURES = ["amino_acids_percent", "molecular_weight", "aromaticity", "instability_index",
            "isoelectric_point", "gravy", "secondary_structure_fraction",
            "molar_extinction_coefficient", "flexibility"]

DOCTEST = ("MAEGEITTFTALTEKFNLPPGNYKKPKLLYCSNGGHFLRILPDGTVDGTRDRSDQHIQLQLSAESVGEVYIKSTETGQYLAMDTSGLLY"
           "GSQTPSEECLFLERLEENHYNTYTSKKHAEKNWFVGLKKNGSCKRGPRTHYGQKAILFLPLPV")


def test_committed_data_file_is_what_the_generator_writes():
    committed = gen_protparam_data.DEFAULT_OUT.read_text()
    assert committed == gen_protparam_data.generate(), "run: python tests/bio/gen_protparam_data.py"


# ---------------------------------------------------------------- the oracle

def _error_kind(e: Exception) -> str:
    """What Biopython's exception says: the letter it could not look up, or 'empty'."""
    if isinstance(e, KeyError):
        return e.args[0]
    if isinstance(e, ValueError):  # molecular_weight: "''X'' is not a valid unambiguous letter ..."
        return re.match(r"^''(.*)'' is not a valid", str(e), re.S).group(1)
    assert isinstance(e, (ZeroDivisionError, IndexError)), repr(e)
    return "empty"


def _try(f, *args):
    try:
        return ("ok", f(*args))
    except (KeyError, ValueError, ZeroDivisionError, IndexError) as e:
        return ("err", _error_kind(e))


def _percent(a: ProteinAnalysis):
    return a.amino_acids_percent


def oracle(p: str, full_flex: bool = True, all_scales: bool = True) -> dict:
    a = ProteinAnalysis(p)
    out = {"length": ("ok", a.length), "count_amino_acids": ("ok", a.count_amino_acids()),
           "amino_acids_percent": _try(_percent, a)}
    for name in MEASURES[1:]:
        out[name] = _try(getattr(a, name))
    if not full_flex and out["flexibility"][0] == "ok":
        out["flexibility"] = ("ok", _flex_summary(out["flexibility"][1]))
    out["mw_mono"] = _try(ProteinAnalysis(p, monoisotopic=True).molecular_weight)
    out["charge"] = [_try(a.charge_at_pH, pH) for pH in PHS]
    out["scales"] = [_try(a.gravy, s) for s in SCALES] if all_scales else []
    return out


def _flex_summary(values):
    return [len(values), sum(values), sum((i + 1) * v for i, v in enumerate(values))]


# What the Lua side reports for a protein, in the oracle's shape.
LUA_MEASURE = r"""
local pp = require "bio.protparam"
local SCALES = pp.scale_names()
local PHS = %(phs)s
local MEASURES = {"amino_acids_percent", "molecular_weight", "aromaticity", "instability_index",
  "isoelectric_point", "gravy", "secondary_structure_fraction", "molar_extinction_coefficient",
  "flexibility"}
local function try(f, ...)
  local ok, v = pcall(f, ...)
  if ok then return {"ok", v} end
  return {"err", tostring(v)}
end
local function flex_summary(v)
  local s, w = 0, 0
  for i = 1, #v do s = s + v[i] end
  for i = 1, #v do w = w + i * v[i] end
  return {#v, s, w}
end
local function measure(p, full_flex, all_scales, individual)
  local r = pp.analyze(p)
  local out = {length = {"ok", r.length}, count_amino_acids = {"ok", r.count_amino_acids}}
  for _, k in ipairs(MEASURES) do out[k] = try(function() return r[k] end) end
  if not full_flex and out.flexibility[1] == "ok" then out.flexibility[2] = flex_summary(out.flexibility[2]) end
  out.mw_mono = individual and try(function() return pp.analyze(p, {monoisotopic = true}).molecular_weight end)
    or try(pp.molecular_weight, p, {monoisotopic = true})
  out.charge = {}
  for i, pH in ipairs(PHS) do out.charge[i] = try(r.charge_at_pH, pH) end
  out.scales = {}
  if all_scales then
    for i, name in ipairs(SCALES) do
      out.scales[i] = individual and try(function() return pp.analyze(p, {scale = name}).gravy end)
        or try(pp.gravy, p, name)
    end
  end
  if individual then
    -- the one-measure functions must say the same as analyze
    local fn = {}
    for _, k in ipairs(MEASURES) do fn[k] = try(pp[k], p) end
    fn.count_amino_acids = try(pp.count_amino_acids, p)
    fn.mw_mono = try(pp.molecular_weight, p, {monoisotopic = true})
    fn.charge = {}
    for i, pH in ipairs(PHS) do fn.charge[i] = try(pp.charge_at_pH, p, pH) end
    fn.scales = {}
    if all_scales then for i, name in ipairs(SCALES) do fn.scales[i] = try(pp.gravy, p, name) end end
    out.fn = fn
  end
  return out
end
""" % {"phs": lua(PHS)}


def _close(a, b) -> bool:
    return math.isclose(a, b, rel_tol=TOL, abs_tol=TOL)


def _same_value(mine, want) -> bool:
    if isinstance(want, bool) or want is None:
        return mine == want
    if isinstance(want, (int, float)):
        return isinstance(mine, (int, float)) and _close(mine, want)
    if isinstance(want, dict):
        return isinstance(mine, dict) and set(mine) == set(want) and all(_same_value(mine[k], want[k]) for k in want)
    if isinstance(want, (list, tuple)):
        if mine == {}:  # the JSON encoder writes an empty Lua table as {}
            mine = []
        if isinstance(mine, dict):  # a {helix, turn, sheet, helix = ...} table
            return _same_value([mine[str(i + 1)] for i in range(len(want))], list(want))
        return isinstance(mine, list) and len(mine) == len(want) and all(map(_same_value, mine, want))
    raise TypeError(type(want))


def _check(name, mine, want, p):
    assert mine[0] == want[0], (name, p[:60], mine, want)
    if want[0] == "ok":
        assert _same_value(mine[1], want[1]), (name, p[:60], mine, want)
        return
    msg, what = mine[1], want[1]
    assert "bio.protparam." in msg, (name, msg)
    if what == "empty":
        assert "empty protein" in msg, (name, p, msg)
    else:  # names the letter Biopython could not look up
        assert f"'{what}'" in msg, (name, p[:60], msg, what)


def compare(p, mine, want):
    for name in ["length", "count_amino_acids"] + MEASURES + ["mw_mono"]:
        _check(name, mine[name], want[name], p)
    for key in ("charge", "scales"):
        got = mine[key] if mine[key] != {} else []
        assert len(got) == len(want[key]), (key, p)
        for m, w in zip(got, want[key]):
            _check(key, m, w, p)
    if "fn" in mine:
        compare(p, {**mine["fn"], "length": mine["length"]}, want)


def run_measure(runtime, proteins, full_flex=True, all_scales=True, individual=True):
    # plain letters need no escaping (and the GenBank set is a megabyte of them)
    body = ",\n".join(f'"{p}"' if p.isalpha() and p.isascii() else lua(p) for p in proteins)
    return run_bio(runtime, LUA_MEASURE + f"""
local out = {{}}
for i, p in ipairs({{ {body} }}) do out[i] = measure(p, {lua(full_flex)}, {lua(all_scales)}, {lua(individual)}) end
return out""")


# ---------------------------------------------------------------- core set, every runtime

def _core_proteins():
    rng = random.Random(1994)
    std = "ACDEFGHIKLMNPQRSTVWY"
    edge = ["", "A", "M", "X", "B", "*", "W", "C", "CC", "D", "E", "acd", "PETER", "INGAR", "ACDXB" * 3,
            "MKXLLV", "XAAAAAAAAAAA", "AAAAXAAAAA", "AAAAAXAAAA", "AAAAAAAAAB", "BAAAAAAAAA",
            "MAEGEITTF TALTEKFNLPPGNY", "ZAJUO", "MUOK", "MKV*", "mkvlaaGGHW", "AAAAAAAAA", "AAAAAAAAAA",
            DOCTEST, DOCTEST.lower()]
    randoms = []
    for _ in range(50):
        n = rng.choice([2, 8, 9, 10, 11, rng.randint(12, 80), rng.randint(80, 400)])
        p = "".join(rng.choice(std) for _ in range(n))
        if rng.random() < 0.3:
            i = rng.randrange(n)
            p = p[:i] + rng.choice("XBZUOJ*") + p[i + 1:]
        if rng.random() < 0.2:
            p = p.lower()
        randoms.append(p)
    return edge + randoms


CORE = _core_proteins()


@lru_cache(maxsize=None)
def _core_oracle():
    return [oracle(p) for p in CORE]


@bio_runtimes()
def test_every_measure_matches_biopython(runtime):
    got = run_measure(runtime, CORE)
    for p, mine, want in zip(CORE, got, _core_oracle()):
        compare(p, mine, want)


def test_doctest_values():
    got = run_measure("lupa:lua54", [DOCTEST], all_scales=False, individual=False)[0]
    assert got["count_amino_acids"][1]["A"] == 6 and got["count_amino_acids"][1]["E"] == 12
    assert "%.2f" % got["amino_acids_percent"][1]["L"] == "11.84"
    assert "%.2f" % got["molecular_weight"][1] == "17103.16"
    assert "%.2f" % got["instability_index"][1] == "41.98"
    assert "%.2f" % got["isoelectric_point"][1] == "7.72"
    assert got["molar_extinction_coefficient"][1]["reduced"] == 17420
    assert got["molar_extinction_coefficient"][1]["oxidized"] == 17545
    ss = got["secondary_structure_fraction"][1]
    assert ["%.2f" % ss[k] for k in ("helix", "turn", "sheet")] == ["0.33", "0.29", "0.37"]


# ---------------------------------------------------------------- protein_scale

SCALE_CASES = [("KyteDoolitle", 9, 1.0), ("Flex", 5, 0.4), ("HoppWoods", 2, 0.0), ("Emini", 10, 0.7),
               ("Janin", 21, 0.25), ("Eisenberg", 3, 1.5), ({"A": 1, "C": 2.5, "K": -1.25}, 5, 0.5)]


def _scale_oracle(p, scale, window, edge):
    table = scale if isinstance(scale, dict) else ProtParamData.gravy_scales.get(scale) or EXTRA_SCALES[scale]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        scores = ProteinAnalysis(p).protein_scale(table, window, edge)
    return scores, err.getvalue().splitlines()


@bio_runtimes()
def test_protein_scale_matches_biopython(runtime):
    proteins = [p for p in CORE if len(p) < 200][:40]
    cases = [(p, s, w, e) for p in proteins for s, w, e in SCALE_CASES]
    body = ",\n".join("{" + ", ".join(lua(x) for x in c) + "}" for c in cases)
    got = run_bio(runtime, f"""
local pp = require "bio.protparam"
local out = {{}}
for i, c in ipairs({{ {body} }}) do
  local scores, warnings = pp.protein_scale(c[1], c[2], c[3], c[4])
  out[i] = {{scores, warnings}}
end
return out""")
    for (p, s, w, e), (scores, warnings) in zip(cases, got):
        want_scores, want_warnings = _scale_oracle(p, s, w, e)
        assert _same_value(scores, want_scores), (p, s, w, e, scores, want_scores)
        assert (warnings if warnings != {} else []) == want_warnings, (p, s, w, e)


# ---------------------------------------------------------------- seq1 / seq3

def _seq_cases():
    rng = random.Random(3)
    threes = ["Ala", "ARG", "asn", "Asp", "cYs", "Gln", "Glu", "Gly", "His", "Ile", "Leu", "Lys", "Met",
              "Phe", "Pro", "Ser", "Thr", "Trp", "Tyr", "Val", "Asx", "Glx", "Xaa", "Xle", "Sec", "Pyl",
              "Ter", "ter", "---", "***", "Foo", "Sel"]
    ones = "ACDEFGHIKLMNPQRSTVWYBZXJUOacgt*-. "
    cases = []
    for k in range(40):
        three = "".join(rng.choice(threes) for _ in range(rng.randint(0, 30))) + "Al"[: k % 3]
        one = "".join(rng.choice(ones) for _ in range(rng.randint(0, 40)))
        maps = [None, {"***": "*"}, {"Foo": "F", "ter": "!"}]
        cases.append(("seq1", three, maps[k % 3], [None, "?", "--"][k % 3 if k % 2 else 0]))
        maps3 = [None, {"*": "***"}, {"-": "gap", "a": "ala"}]
        cases.append(("seq3", one, maps3[k % 3], [None, "---", "?"][k % 3 if k % 2 else 0]))
    return cases


SEQ_CASES = _seq_cases()


@bio_runtimes()
def test_seq1_seq3_match_biopython(runtime):
    body = ",\n".join("{" + ", ".join([lua(f), lua(t), lua(m) if m else "false", lua(u) if u else "false"]) + "}"
                      for f, t, m, u in SEQ_CASES)
    got = run_bio(runtime, f"""
local pp = require "bio.protparam"
local out = {{}}
for i, c in ipairs({{ {body} }}) do
  out[i] = pp[c[1]](c[2], c[3] or nil, c[4] or nil)
end
return out""")
    for (f, text, custom, undef), mine in zip(SEQ_CASES, got):
        kwargs = {"custom_map": custom} if custom else {}
        if undef:
            kwargs["undef_code"] = undef
        want = (seq1 if f == "seq1" else seq3)(text, **kwargs)
        assert mine == want, (f, text, custom, undef)


# ---------------------------------------------------------------- errors and lazy fields

@bio_runtimes()
def test_errors_name_the_function_and_point_at_the_caller(runtime):
    got = run_bio(runtime, r"""
local pp = require "bio.protparam"
local function err(f) local ok, e = pcall(f); return ok and "no error" or tostring(e) end
local r = pp.analyze("ACDXB")
local e = pp.analyze("")
return {
  err(function() return pp.analyze(42) end),
  err(function() return pp.analyze("ACD", {mono = true}) end),
  err(function() return pp.analyze("ACD", {scale = "KyteDoolittle"}) end),
  err(function() local v = r.gravy; return v end),
  err(function() local v = pp.gravy("ACDXB"); return v end),
  err(function() local v = pp.gravy("ACD", "Nope"); return v end),
  err(function() local v = r.charge_at_pH("7"); return v end),
  err(function() local v = e.charge_at_pH(7); return v end),
  err(function() local v = pp.protein_scale("ACDEFG", "KyteDoolitle", 1); return v end),
  err(function() local v = pp.protein_scale("ACDEFG", "Nope", 3); return v end),
  err(function() local v = pp.molecular_weight("AC DX"); return v end),
  err(function() local v = pp.seq1(nil); return v end),
  r.aromaticity, r.isoelectric_point, r.nonexistent == nil, r.charge_at_pH(7) == r:charge_at_pH(7),
}""")
    assert got[0].startswith("bio.protparam.analyze: bad argument #1 'protein': expected a string, got number")
    assert "unknown option 'mono'" in got[1]
    assert "scale 'KyteDoolittle' not known" in got[2]
    # every error is raised at the line of the snippet that asked, not inside the library
    for msg in got[3:12]:
        assert re.match(r"^\[string .*\]:\d+: bio\.protparam\.|^[^:]*:\d+: bio\.protparam\.", msg), msg
        assert "protparam.lua" not in msg, msg
    assert "bio.protparam.gravy: 'X' at position 4" in got[3] and got[3].split(": ", 1)[1] == got[4].split(": ", 1)[1]
    assert "'pH': expected a number, got string" in got[6]
    assert "empty protein" in got[7]
    assert "'window': must be an integer of at least 2" in got[8]
    assert "scale 'Nope' not known" in got[9] and "scale 'Nope' not known" in got[5]
    assert "'X' is not a valid unambiguous letter for protein (position 5)" in got[10]
    assert "bio.protparam.seq1: bad argument #1 'text'" in got[11]
    assert got[12:] == [0, pytest.approx(ProteinAnalysis("ACDXB").isoelectric_point(), rel=TOL), True, True]


# ---------------------------------------------------------------- real proteins

@lru_cache(maxsize=None)
def _gbk_proteins():
    from Bio import SeqIO
    with gzip.open(GBK, "rt") as fh:
        return [f.qualifiers["translation"][0] for rec in SeqIO.parse(fh, "genbank")
                for f in rec.features if f.type == "CDS" and "translation" in f.qualifiers]


@lru_cache(maxsize=None)
def _gbk_oracle():
    # Full flexibility lists for every 16th protein, a checksum of them for the rest.
    return [oracle(p, full_flex=(i % 16 == 0), all_scales=(i % 16 == 0)) for i, p in enumerate(_gbk_proteins())]


@pytest.mark.parametrize("runtime", ["lua5.4", "luajit"])
def test_every_cds_translation_of_a_genbank_file(runtime):
    if not GBK.exists():
        pytest.skip(f"{GBK} is missing (apt-get install any2fasta-examples)")
    proteins = _gbk_proteins()
    assert len(proteins) > 3000
    wants = _gbk_oracle()
    for full in (True, False):
        idx = [i for i in range(len(proteins)) if (i % 16 == 0) == full]
        got = run_measure(runtime, [proteins[i] for i in idx], full_flex=full, all_scales=full, individual=False)
        for i, mine in zip(idx, got):
            compare(proteins[i], mine, wants[i])
