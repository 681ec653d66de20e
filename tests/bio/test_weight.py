"""bio.weight against Bio.SeqUtils.molecular_weight (Biopython 1.88), on every runtime."""
from __future__ import annotations

import math
import random

import pytest

from tests.bio.harness import run, runtime_params
from tests.bio.test_tm_data import lua_value

SeqUtils = pytest.importorskip("Bio.SeqUtils")

ALPHABET = {"DNA": "ACGT", "RNA": "ACGU", "protein": "ACDEFGHIKLMNOPQRSTUVWY"}


def _cases():
    rng = random.Random(88)
    cases = []
    for seq_type, letters in ALPHABET.items():
        for _ in range(60):
            n = rng.choice([0, 1, 2, 3, rng.randint(4, 60), rng.randint(100, 3000)])
            seq = "".join(rng.choice(letters + letters.lower()) for _ in range(n))
            if rng.random() < 0.2 and seq:
                i = rng.randrange(len(seq))
                seq = seq[:i] + rng.choice([" ", "\n", "\t"]) + seq[i:]
            if rng.random() < 0.15 and seq:  # an invalid letter somewhere
                i = rng.randrange(len(seq))
                seq = seq[:i] + rng.choice("NXBZ-*U") + seq[i + 1:]
            opts = {"seq_type": seq_type, "double_stranded": rng.random() < 0.4,
                    "circular": rng.random() < 0.4, "monoisotopic": rng.random() < 0.5}
            cases.append((seq, opts))
    cases += [("AGC", {}), ("AGC", {"seq_type": "RNA"}), ("AGC", {"seq_type": "protein"}),
              ("AGC", {"double_stranded": True}), ("AGC", {"circular": True}),
              ("AGC", {"monoisotopic": True}), ("AGC", {"seq_type": "dna"}),
              ("AGC", {"seq_type": "protein", "double_stranded": True}), ("ACGN", {}), ("", {})]
    return cases


CASES = _cases()


def _oracle(seq, opts):
    try:
        return ("ok", SeqUtils.molecular_weight(seq, **opts))
    except ValueError:
        return ("err", None)


@runtime_params()
def test_molecular_weight_matches_biopython(runtime):
    body = ",\n".join("{" + lua_value(s) + "," + lua_value(o) + "}" for s, o in CASES)
    got = run(runtime, f"""
local weight = require "bio.weight"
local out = {{}}
for i, c in ipairs({{ {body} }}) do
  local ok, v = pcall(weight.molecular_weight, c[1], c[2])
  out[i] = ok and {{"ok", v}} or {{"err", tostring(v)}}
end
return out""")
    for (seq, opts), mine in zip(CASES, got):
        want = _oracle(seq, opts)
        assert mine[0] == want[0], (seq, opts, mine, want)
        if want[0] == "ok":
            assert math.isclose(mine[1], want[1], rel_tol=1e-12, abs_tol=1e-9), (seq, opts, mine, want)


@runtime_params(["lupa:luajit21", "lua5.1"])
def test_documented_values_and_error_messages(runtime):
    got = run(runtime, r"""
local weight = require "bio.weight"
local function err(f) local ok, e = pcall(f); return ok and "no error" or tostring(e) end
return {
  weight.molecular_weight("AGC"), weight.molecular_weight("AGC", "RNA"),
  weight.molecular_weight("AGC", {seq_type = "protein"}),
  weight.molecular_weight("AGC", {double_stranded = true}),
  weight.molecular_weight("AGC", {circular = true}),
  weight.molecular_weight("AGC", {monoisotopic = true}),
  err(function() return weight.molecular_weight("ACGNA") end),
  err(function() return weight.molecular_weight("ACG", {seq_type = "rna"}) end),
  err(function() return weight.molecular_weight("ACG", {circ = true}) end),
}""")
    assert [round(x, 4) for x in got[:6]] == [949.6095, 997.6077, 249.2874, 1890.2057, 931.5942, 949.1671]
    assert got[6].startswith("bio.weight.molecular_weight: bad argument #1 'seq': invalid character 'N' at position 4")
    assert "unambiguous DNA letter" in got[6]
    assert "seq_type" in got[7] and "'rna'" in got[7]
    assert "unknown option 'circ'" in got[8]
