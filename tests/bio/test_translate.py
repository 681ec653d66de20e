"""bio.translate against Bio.Seq.translate (Biopython 1.88): every table, every option, every runtime."""
from __future__ import annotations

import random
import warnings

import pytest
from Bio import BiopythonWarning
from Bio.Data import CodonTable
from Bio.Data.CodonTable import TranslationError
from Bio.Seq import reverse_complement, translate

from tests.bio._lua import bio_runtimes, lua, run_bio

TABLE_IDS = sorted(CodonTable.ambiguous_generic_by_id)
NUC = "ACGTURYSWKMBDHVN"


def biopython(seq, table, opts):
    """('ok', protein) or ('translation'|'value', message) from Biopython."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BiopythonWarning)
            return ["ok", translate(seq, table=table, **opts)]
    except TranslationError as e:
        return ["translation", str(e)]
    except ValueError as e:
        return ["value", str(e)]


LUA_RUNNER = """
    local T = require "bio.translate"
    local out = {}
    for i, c in ipairs(CASES) do
      local opts = c[3]
      opts.table = c[2]
      local ok, res = pcall(T.translate, c[1], opts)
      if ok then out[i] = {"ok", res}
      elseif tostring(res):find("translation error", 1, true) then out[i] = {"translation", tostring(res)}
      else out[i] = {"value", tostring(res)} end
    end
    return out
"""


def run_cases(runtime, cases):
    lua_cases = [[s, t, {k: v for k, v in o.items()}] for s, t, o in cases]
    return run_bio(runtime, "local CASES = " + lua(lua_cases) + "\n" + LUA_RUNNER)


def make_cases(seed):
    rng = random.Random(seed)
    cases = []
    option_sets = [{}, {"to_stop": True}, {"stop_symbol": "@"}, {"gap": "-"}, {"stop_symbol": "", "to_stop": False}]
    for tid in TABLE_IDS:
        table = CodonTable.ambiguous_generic_by_id[tid]
        for _ in range(12):
            n = rng.randrange(0, 40)
            letters = NUC if rng.random() < 0.5 else "ACGT"
            s = "".join(rng.choice(letters) for _ in range(n))
            if rng.random() < 0.3:
                s = s.lower()
            if rng.random() < 0.1 and n >= 3:
                i = rng.randrange(n)
                s = s[:i] + rng.choice("X?-") + s[i + 1:]
            cases.append((s, tid, rng.choice(option_sets)))
        # gap codons
        cases.append(("ATG---AAA", tid, {"gap": "-"}))
        cases.append(("ATG-A-AAA", tid, {"gap": "-"}))
        # cds: valid, bad start, bad length, no stop, extra stop, invalid after extra stop
        starts = [c for c in table.start_codons if set(c) <= set("ACGT")]
        stops = [c for c in table.stop_codons if set(c) <= set("ACGT")]
        fwd = [c for c in CodonTable.unambiguous_dna_by_id[tid].forward_table if c not in stops]
        for _ in range(6):
            body = "".join(rng.choice(fwd) for _ in range(rng.randrange(0, 8)))
            orf = rng.choice(starts) + body + rng.choice(stops)
            cases.append((orf, tid, {"cds": True}))
            cases.append((orf.lower(), tid, {"cds": True, "stop_symbol": "#"}))
        s0, st = rng.choice(starts), rng.choice(stops)
        cases += [
            ("AAA" + "CCC" + st, tid, {"cds": True}),
            (s0 + "CCCA" + st, tid, {"cds": True}),
            (s0 + "CCC", tid, {"cds": True}),
            (s0 + st + "CCC" + st, tid, {"cds": True}),
            (s0 + st + "XXX" + st, tid, {"cds": True}),
            (s0, tid, {"cds": True}),
            ("", tid, {"cds": True}),
        ]
    # names and numeric strings select tables too
    cases += [("ATGTGA", "Vertebrate Mitochondrial", {}), ("ATGTGA", "SGC1", {}), ("ATGTGA", "2", {}),
              ("ATGTAG", "Bacterial", {"to_stop": True})]
    # Biopython's documented ambiguous examples
    cases += [(c, 1, {}) for c in ["GCN", "YTR", "ATH", "TAR", "TRA", "RAY", "SAR", "MTT", "WTA", "HTA", "TAN", "NNN", "RTG"]]
    return cases


@bio_runtimes()
def test_translate_matches_biopython_on_every_table(runtime):
    cases = make_cases(7)
    got = run_cases(runtime, cases)
    assert len(got) == len(cases)
    for (s, tid, opts), (kind, value) in zip(cases, got):
        want_kind, want_value = biopython(s, tid, opts)
        assert kind == want_kind, (s, tid, opts, value, want_value)
        if kind == "ok":
            assert value == want_value, (s, tid, opts)


def test_translation_errors_name_codon_position_and_character():
    got = run_cases("lua5.4", [("ATGTA?", 1, {}), ("AAACCCTAG", 1, {"cds": True}), ("ATGCCCTAGCCCTAG", 1, {"cds": True}),
                               ("ATGCCTAG", 1, {"cds": True}), ("ATGCCCTAGC", 99, {}),
                               ("ATGXXX", 1, {})])
    assert got[0][0] == "translation"
    assert "codon 'TA?' at position 4 is invalid (character '?' at position 6)" in got[0][1]
    assert "bad argument #1 'seq'" in got[0][1]
    assert "first codon 'AAA' is not a start codon" in got[1][1]
    assert "extra in frame stop codon 'TAG' found at position 7" in got[2][1]
    assert "not a multiple of three" in got[3][1]
    assert "bad argument #2 'table'" in got[4][1] and "99" in got[4][1]
    assert "codon 'XXX' at position 4 is invalid (character 'X' at position 4)" in got[5][1]


@pytest.mark.parametrize("tid", [27, 28, 31])
def test_dual_coding_tables_refuse_to_stop(tid):
    got = run_cases("luajit", [("ATGTGATAA", tid, {"to_stop": True}), ("ATGTGATAA", tid, {})])
    assert got[0][0] == "value" and "to_stop" in got[0][1]
    assert biopython("ATGTGATAA", tid, {"to_stop": True})[0] == "value"
    assert got[1] == biopython("ATGTGATAA", tid, {})


@bio_runtimes()
def test_long_sequences_cross_kernel_chunks(runtime):
    rng = random.Random(11)
    s = "".join(rng.choice("ACGTacgt") for _ in range(30_001)) + "NNRAY" + "".join(rng.choice("ACGT") for _ in range(3000))
    cases = [(s, 1, {}), (s, 11, {"to_stop": True}), (s, 2, {"stop_symbol": "STOP"})]
    got = run_cases(runtime, cases)
    for (seq, tid, opts), (kind, value) in zip(cases, got):
        assert [kind, value] == biopython(seq, tid, opts)


@bio_runtimes()
def test_six_frames_match_biopython_frames(runtime):
    rng = random.Random(12)
    seqs = ["".join(rng.choice("ACGTN") for _ in range(n)) for n in (0, 1, 2, 3, 4, 5, 17, 100, 301)]
    got = run_bio(runtime, f"""
        local T = require "bio.translate"
        local out = {{}}
        for i, s in ipairs({lua(seqs)}) do
          local fr = T.six_frames(s, 11)
          local row = {{}}
          for j, f in ipairs(fr) do row[j] = {{f.frame, f.strand, f.protein}} end
          out[i] = row
        end
        return out
    """)
    for s, frames in zip(seqs, got):
        rc = reverse_complement(s)
        want = []
        for strand, src in (("+", s), ("-", rc)):
            for f in range(3):
                part = src[f:]
                part = part[: len(part) - len(part) % 3]
                want.append([(f + 1) * (1 if strand == "+" else -1), strand, translate(part, table=11)])
        assert frames == want, s


def reference_orfs(seq, table=1, min_length=75, starts=("ATG",), partial=False):
    """An independent ORF finder on Biopython translations (first start after each stop)."""
    found = []
    n = len(seq)
    for strand, src in (("+", seq.upper()), ("-", reverse_complement(seq).upper())):
        for f in range(3):
            ncod = (n - f) // 3
            k = 0
            while k < ncod:
                # find the next stop
                j = k
                while j < ncod and translate(src[f + 3 * j: f + 3 * j + 3], table=table) != "*":
                    j += 1
                has_stop = j < ncod
                if has_stop or partial:
                    for s in range(k, j):
                        if src[f + 3 * s: f + 3 * s + 3] in starts:
                            last = j if has_stop else j - 1
                            a, b = f + 3 * s + 1, f + 3 * last + 3
                            if b - a + 1 >= min_length:
                                prot = translate(src[f + 3 * s: f + 3 * j], table=table)
                                prot = "M" + prot[1:]
                                if strand == "-":
                                    a, b = n - b + 1, n - a + 1
                                found.append([a, b, strand, (f + 1) * (1 if strand == "+" else -1), prot])
                            break
                k = j + 1
    found.sort(key=lambda o: (o[0], o[2] == "-", o[1]))
    return found


@bio_runtimes()
def test_orfs_match_an_independent_reference(runtime):
    rng = random.Random(13)
    seqs = ["".join(rng.choice("ACGT") for _ in range(rng.randrange(50, 600))) for _ in range(8)]
    seqs.append("CCATGAAATTTGGGTAACCCATGCCCTTACATT")
    got = run_bio(runtime, f"""
        local T = require "bio.translate"
        local out = {{}}
        for i, s in ipairs({lua(seqs)}) do
          local row = {{}}
          for j, o in ipairs(T.orfs(s, {{min_length = 30}})) do row[j] = {{o.start, o.stop, o.strand, o.frame, o.protein}} end
          local row2 = {{}}
          for j, o in ipairs(T.orfs(s, {{min_length = 6, partial = true, table = 11, start = "alternative"}})) do
            row2[j] = {{o.start, o.stop, o.strand, o.frame, o.protein}}
          end
          out[i] = {{row, row2}}
        end
        return out
    """)
    alt11 = tuple(c for c in CodonTable.unambiguous_dna_by_id[11].start_codons)
    for s, (row, row2) in zip(seqs, got):
        assert (row or []) == reference_orfs(s, 1, 30), s  # an empty Lua table arrives as {}
        assert (row2 or []) == reference_orfs(s, 11, 6, alt11, partial=True), s


def test_orf_coordinates_are_one_based_inclusive_on_the_given_strand():
    got = run_bio("lua5.1", """
        local T = require "bio.translate"
        local S = require "bio.seq"
        local s = "CCATGAAATTTGGGTAACCCATGCCCTTACATT"
        local out = {}
        for _, o in ipairs(T.orfs(s, {min_length = 6})) do
          local text = s:sub(o.start, o.stop)
          if o.strand == "-" then text = S.reverse_complement(text) end
          out[#out + 1] = {o.start, o.stop, o.strand, text, o.protein}
        end
        return out
    """)
    assert got == [[3, 17, "+", "ATGAAATTTGGGTAA", "MKFG"], [27, 32, "-", "ATGTAA", "M"]]


def test_orfs_options_nested_any_and_errors():
    got = run_bio("luajit", """
        local T = require "bio.translate"
        --           ATG ATG AAA TAA  (frame 1), then junk
        local s = "ATGATGAAATAACC"
        local out = {}
        for _, o in ipairs(T.orfs(s, {min_length = 0, nested = true, strand = "+"})) do
          out[#out + 1] = {o.start, o.stop, o.protein, o.strand}
        end
        local any = {}
        for _, o in ipairs(T.orfs("CCCTAAGGGTTTTGA", {min_length = 0, start = "any"})) do
          if o.strand == "+" and o.frame == 1 then any[#any + 1] = {o.start, o.stop, o.protein} end
        end
        local errs = {}
        for _, opts in ipairs{{start = "CTG"}, {min_length = -1}, {table = 7}, {strand = "up"}} do
          local ok, err = pcall(T.orfs, "ATG", opts)
          errs[#errs + 1] = err
        end
        return {out, any, errs}
    """)
    nested, any_, errs = got
    assert nested == [[1, 12, "MMK", "+"], [4, 12, "MK", "+"]]
    assert any_ == [[1, 6, "P"], [7, 15, "GF"]]
    assert "bad argument #2 'start'" in errs[0]
    assert "bad argument #2 'min_length'" in errs[1]
    assert "bad argument #2 'table'" in errs[2]
    assert "bad argument #2 'strand'" in errs[3]


def biopython_any(seq, table, opts):
    """Like biopython(), with every exception (KeyError, TypeError) as 'error'."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BiopythonWarning)
            return ["ok", translate(seq, table=table, **opts)]
    except TranslationError:
        return ["translation", None]
    except Exception:  # noqa: BLE001 - any refusal counts
        return ["error", None]


GRID_SEQS = ["ATG***TAA***", "ATG***AAATAG", "***ATGTAA", "ATG---TAG---", "ATGNNNTAR", "ATGXXXTAA",
             "atgxxxtaa", "ATG@@@TAG", "ATGAAATAGCCC", "ATGTGA***TAA", "GTGAAATGA"]
GRID_GAPS = [None, "", "-", "*", "N", "X", "x", "@"]
GRID_STOPS = ["*", "@", "", "%", "XY"]


def grid_cases():
    cases = []
    for s in GRID_SEQS:
        for gap in GRID_GAPS:
            for stop in GRID_STOPS:
                for to_stop, cds in ((False, False), (True, False), (False, True)):
                    for table in (1, 11, 27):
                        opts = {"stop_symbol": stop, "to_stop": to_stop, "cds": cds}
                        if gap is not None:
                            opts["gap"] = gap
                        cases.append((s, table, opts))
    return cases


@bio_runtimes()
def test_gap_stop_symbol_grid_matches_biopython(runtime):
    # the gap residue is emitted as the gap even when it is '*' and stops are renamed;
    # gap "" means no gap; a gap that is a nucleotide letter never makes a gap codon
    cases = grid_cases()
    got = run_cases(runtime, cases)
    for (s, table, opts), (kind, value) in zip(cases, got):
        want_kind, want_value = biopython_any(s, table, opts)
        if want_kind == "error":  # ValueError (to_stop on table 27) and the like
            assert kind == "value", (s, table, opts, value)
        else:
            assert [kind, value if kind == "ok" else None] == [want_kind, want_value], (s, table, opts, value)


TABLE_SPECS = ["1e1", "0x0B", " 11 ", "+11", "1_1", "1__1", "11_", "_11", "011", "11.0", "-1", "0", "7",
               "Standard", "standard", "SGC0", "Bacterial", "", " ", "\t2\n", "2\x1c", "inf", "nan", 2, 11, 33, 0, 34]


@pytest.mark.parametrize("runtime", ["lua5.1", "lua5.4", "luajit", "lupa:lua53"])
def test_table_argument_as_biopython_reads_it(runtime):
    cases = [("ATGTGAAGATAG", spec, {}) for spec in TABLE_SPECS]
    got = run_cases(runtime, cases)
    for (s, spec, _), (kind, value) in zip(cases, got):
        want_kind, want_value = biopython_any(s, spec, {})
        if want_kind == "ok":
            assert [kind, value] == ["ok", want_value], spec
        else:
            assert kind == "value" and "bad argument #2 'table'" in value, (spec, value)
    # a non-integral id is refused (Biopython's int() would truncate 11.5 to 11)
    got = run_cases(runtime, [("ATG", 11.5, {})])
    assert got[0][0] == "value" and "expected an integral table id, got 11.5" in got[0][1]
