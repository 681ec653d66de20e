"""Every error about a bad argument names the caller's chunk and line (docs/bio/alphabet.md),
however deep inside the library the check sits, through tail calls (Lua 5.1 counts them), on
every runtime.

Two parts: a probe that calls every public function of every bio module with a set of bad
argument lists and checks each validation error ("bio.<module>.<fn>: ...") it provokes, and
explicit cases for methods and for checks the probe's arguments do not reach.
"""
from __future__ import annotations

from tests.bio._lua import lua
from tests.bio.harness import ALL_RUNTIMES, run, runtime_params

# Argument lists tried on every public function (as Lua source).
PROBE_ARGS = [
    "42", "'ACGT', 42", "'ACGT', {bogus = 1}", "'ACGT', 'ACGT', {bogus = 1}", "{}, {bogus = 1}",
    "'ACGT', 'ACGT', 42", "'/nonexistent/x'", "'ACGT', -1", "'ACGT', {table = 'nope'}", "{seq = 42}",
    "'ACGT', 'ACGT', 'ACGT', {bogus = 1}", "", "{'ACGT'}, {bogus = 1}", "{'ACGT'}, 42", "'ACGT', 1.5",
    "{bogus = 1}", "'ACGT', 'ACGT', -1", "{{id = 'a', seq = 'AC'}}, {bogus = 1}", "'-', 0", "'-', 2",
]

# (setup, call): `call` is the line that must be named; `setup` runs before it on line 1.
EXPLICIT = [
    ("", "tm.Tm_NN('ACGT', {bogus = 1})"),
    ("", "tm.Tm_NN('ACGT', {saltcorr = 99})"),
    ("", "tm.Tm_GC('ACGT', {valueset = 99})"),
    ("", "codon_usage.counts({'ACGT'}, {bogus = 1})"),
    ("", "codon_usage.counts({'ACGTX'})"),
    ("local ix = codon_usage.cai_index({'ATGAAATAA'})", "ix:calculate(42)"),
    ("", "align.score('ACGT', 42)"),
    ("", "align.align(42, 'ACGT')"),
    ("", "align.new({bogus = 1})"),
    ("local al = align.new({})", "al:score(42, 'A')"),
    ("local al = align.new({})", "al:align('A', {})"),
    ("", "fasta.read('/nonexistent/x.fa')"),
    ("", "fasta.records('/nonexistent/x.fa')"),
    ("", "fasta.gc_records('/nonexistent/x.fa')"),
    ("", "fasta.gc_records('/nonexistent/x.fa', 'median')"),
    ("", "fasta.write({write = function() end}, {{seq = 42}})"),
    ("", "fasta.to_string({{seq = 'A\\nC'}})"),
    ("", "fasta.format({seq = 'AC'}, -3)"),
    ("", "fasta.shards('-', 2)"),
    ("", "fastq.read('/nonexistent/x.fq')"),
    ("", "fastq.read('/nonexistent/x.fq', {variant = 'nope'})"),
    ("", "fastq.format({seq = 'AC', quality = 'I'})"),
    ("", "fastq.format({seq = 'AC', qualities = {1, 200}})"),
    ("", "fastq.format({seq = 'AC', quality = 'II'}, {variant = 'nope'})"),
    ("", "fastq.write({write = function() end}, {{seq = 'AC', quality = 'I'}})"),
    ("", "fastq.shards('-', 2)"),
    ("", "fastq.decode_qualities(42)"),
    ("", "fastq.decode_qualities('II', 'x')"),
    ("", "fastq.encode_qualities('II')"),
    ("", "fastq.encode_qualities({1, 2}, 1.5)"),
    ("", "fasta.title(42)"),
    ("", "translate.translate('ATG', {tabel = 1})"),
    ("", "translate.translate('ATG', {gap = 'xy'})"),
    ("", "translate.translate('ATG', {table = '1e1'})"),
    ("", "translate.translate('AAACCCTAG', {cds = true})"),
    ("", "translate.translate('ATGTA?')"),
    ("", "translate.six_frames('ACGT\\200')"),
    ("", "seq.complement('AC\\200')"),
    ("", "seq.gc_skew('ACGT', 0)"),
    ("", "kmer.count({'ACGT'}, 40)"),
    ("", "motif.find('ACGT', 'QQ')"),
    ("", "matrices.new('AA', {1, 2, 3, 4})"),
]

PROBE = r"""
local load_chunk = rawget(_G, "loadstring") or load
local bio = require "bio"
local function try(mod, setup, call)
  local src = "local " .. mod .. " = ...\n" .. setup .. "\nlocal x = " .. call .. "\nreturn x"
  local chunk = assert(load_chunk(src, "=caller"))
  local ok, err = pcall(chunk, bio[mod])
  return not ok and tostring(err) or false
end
local probe, explicit = {}, {}
local names = {}
for name in pairs(bio._modules) do if name ~= "alphabet" then names[#names + 1] = name end end
table.sort(names)
for _, name in ipairs(names) do
  local fns = {}
  for k, v in pairs(bio[name]) do if type(v) == "function" and k:sub(1, 1) ~= "_" then fns[#fns + 1] = k end end
  table.sort(fns)
  for _, fn in ipairs(fns) do
    for _, args in ipairs(PROBE_ARGS) do
      local err = try(name, "", name .. "." .. fn .. "(" .. args .. ")")
      -- a validation error (not a data error naming a line of its input)
      if err and err:find("bio%.[%w_]+%.[%w_]+: ") and not err:find(" line %d+: ") then
        probe[#probe + 1] = {name .. "." .. fn .. "(" .. args .. ")", err}
      end
    end
  end
end
for i, case in ipairs(EXPLICIT) do
  local mod = case[2]:match("^[%w_]+")
  if mod == "ix" or mod == "al" then mod = case[1]:match("= ([%w_]+)%.") end
  explicit[i] = {case[2], try(mod, case[1], case[2])}
end
return {probe, explicit}
"""


@runtime_params(ALL_RUNTIMES)
def test_errors_name_the_callers_line(runtime, tmp_path, monkeypatch):
    # The probe calls writers with paths such as 'ACGT': they must land in a scratch folder.
    monkeypatch.chdir(tmp_path)
    code = f"local PROBE_ARGS = {lua(PROBE_ARGS)}\nlocal EXPLICIT = {lua([list(c) for c in EXPLICIT])}\n" + PROBE
    probe, explicit = run(runtime, code)
    assert len(probe) > 100  # the probe reaches most checks
    wrong = [(call, err) for call, err in probe if not err.startswith("caller:3: bio.")]
    assert wrong == []
    for (setup, call), (shown, err) in zip(EXPLICIT, explicit):
        assert err, f"{call} raised no error"
        assert err.startswith("caller:3: bio."), (call, err)
