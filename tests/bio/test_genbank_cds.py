"""Conformance on a real annotated genome: every complete CDS translates to its own /translation.

The draft genome of *Leptospira kirschneri* that Debian's any2fasta-examples ships (75 contigs,
thousands of CDS) is read with bio.genbank (gzip included), each complete CDS is extracted with
genbank.extract and translated with bio.translate (cds = true, the feature's /transl_table):
the result must equal the /translation the file carries.  The same check runs over our EMBL
reader on the EMBL files of Biopython's test material that carry translations.
"""
from __future__ import annotations

import pytest

from tests.bio.biopython_material import biopython_tests_dir
from tests.bio.harness import run
from tests.system import ANY2FASTA, require_data

EMBL_WITH_TRANSLATIONS = ["AAA03323.embl", "AE017046.embl", "TRBG361.embl", "U87107.embl"]


def lua_list(paths) -> str:
    return "{" + ", ".join(f"[==[{p}]==]" for p in paths) + "}"

CHECK = r"""
local fmt = require("%(module)s")
local T = require "bio.translate"
local n, bad, skipped = 0, {}, 0
for _, path in ipairs(%(paths)s) do
for rec in fmt.records(path) do
  for _, f in ipairs(rec.features) do
    local q = f.qualifiers
    if f.type == "CDS" and q.translation and not q.transl_except and not q.pseudo
       and not f.location:find("[<>:]") then  -- complete, and on this record (no remote part)
      local ok, prot = pcall(T.translate, fmt.extract(f, rec.seq),
        {table = tonumber(q.transl_table and q.transl_table[1] or "1"), cds = true})
      n = n + 1
      if not ok or prot ~= q.translation[1] then
        if #bad < 5 then bad[#bad + 1] = rec.id .. " " .. f.location .. ": " .. tostring(prot) end
      end
    elseif f.type == "CDS" then
      skipped = skipped + 1
    end
  end
end
end
return {n = n, bad = bad, skipped = skipped}
"""


@pytest.mark.parametrize("runtime", ["lua5.4", "luajit"])
def test_every_complete_cds_of_a_real_genome_translates_to_its_translation(runtime):
    path = require_data(ANY2FASTA / "test.gbk.gz")
    got = run(runtime, CHECK % {"module": "bio.genbank", "paths": lua_list([path])})
    assert not got["bad"], got["bad"]  # an empty Lua table comes back as {}
    assert got["n"] > 3500, got  # the file has 3,697 translations; a few are partial


@pytest.mark.parametrize("runtime", ["lua5.4", "luajit"])
def test_every_complete_embl_cds_translates_to_its_translation(runtime):
    tests = biopython_tests_dir() / "EMBL"
    got = run(runtime, CHECK % {"module": "bio.embl", "paths": lua_list(tests / n for n in EMBL_WITH_TRANSLATIONS)})
    assert not got["bad"], got["bad"]  # an empty Lua table comes back as {}
    assert got["n"] >= 10, got
