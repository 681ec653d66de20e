"""Shared helpers for the GenBank/EMBL reader tests: Biopython's view of a file, ours, and the comparison.

Biopython's records come from ``SeqIO.parse(path, "genbank"/"embl")``; the raw location
strings from ``Bio.GenBank.parse`` (GenBank) or from ``EmblScanner``'s feature tuples with
whitespace removed (EMBL), which is what our ``feature.location`` holds.
"""
from __future__ import annotations

import functools
import gzip
import io
import json
import re
import tempfile
import warnings
from pathlib import Path

from Bio import GenBank, SeqIO
from Bio.GenBank.Scanner import EmblScanner, _ImgtScanner
from Bio.Seq import UndefinedSequenceError

from tests.bio._lua import bio_runtimes, lua, run_bio
from tests.bio.biopython_material import biopython_tests_dir
from tests.bio.harness import runtime_params

ANY2FASTA = Path("/usr/share/doc/any2fasta/examples")
SKIP_SUFFIXES = (".faa", ".ffn", ".fna", ".tsv")


def biopython_files(fmt: str) -> list[Path]:
    """Every GenBank (``fmt="genbank"``), EMBL or IMGT file of Biopython's Tests folder."""
    tests = biopython_tests_dir()
    if fmt == "genbank":
        return sorted(p for p in (tests / "GenBank").iterdir()
                      if p.is_file() and not p.name.endswith(SKIP_SUFFIXES))
    return sorted((tests / "EMBL").glob("*." + fmt))


def _open(path: Path):
    if path.read_bytes()[:2] == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8")
    return open(path, encoding="utf-8")


def _bytes_text(v):
    """Python text as the byte string Lua sees (non-ASCII as Latin-1 code points, as the harness decodes)."""
    return v.encode("utf-8").decode("latin-1") if isinstance(v, str) else v


def normalise(v):
    """A JSON-comparable value: empty dicts and lists alike (Lua has one empty table), text as bytes."""
    if isinstance(v, dict):
        return {_bytes_text(k): normalise(x) for k, x in v.items()} if v else []
    if isinstance(v, (list, tuple)):
        return [normalise(x) for x in v]
    return _bytes_text(v)


def _reference(ref) -> dict:
    return {"location": [[int(l.start) + 1, int(l.end)] for l in ref.location],
            "authors": ref.authors, "consrtm": ref.consrtm, "title": ref.title, "journal": ref.journal,
            "medline_id": ref.medline_id, "pubmed_id": ref.pubmed_id, "comment": ref.comment}


def raw_locations(path: Path, fmt: str) -> list[list[str]]:
    with _open(path) as h, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "genbank":
            return [[f.location for f in rec.features] for rec in GenBank.parse(h)]
        scanner, out = (_ImgtScanner() if fmt == "imgt" else EmblScanner()), []
        scanner.set_handle(h)
        while scanner.find_start():
            scanner.parse_header()
            out.append(["".join(loc.split()) for _, loc, _ in scanner.parse_features()])
            scanner.parse_footer()
            scanner.set_handle(h)
        return out


def biopython_view(path: Path, fmt: str):
    """``("records", [...])`` as normalised dicts, or ``("error", message)`` where Biopython raises."""
    try:
        with _open(path) as h, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records = list(SeqIO.parse(h, fmt))
        locations = raw_locations(path, fmt)
    except (ValueError, AssertionError) as e:
        return "error", str(e) or type(e).__name__
    out = []
    for rec, locs in zip(records, locations, strict=True):
        try:
            seq = str(rec.seq)
        except UndefinedSequenceError:
            seq = None
        ann = dict(rec.annotations)
        if "references" in ann:
            ann["references"] = [_reference(r) for r in ann["references"]]
        if "structured_comment" in ann:
            ann["structured_comment"] = {k: dict(v) for k, v in ann["structured_comment"].items()}
        feats = [{"type": f.type, "location": loc, "qualifiers": dict(f.qualifiers),
                  "qualifier_names": list(f.qualifiers)} for f, loc in zip(rec.features, locs, strict=True)]
        out.append(normalise({"id": rec.id, "name": rec.name, "description": rec.description, "seq": seq,
                              "length": len(rec), "dbxrefs": rec.dbxrefs, "annotations": ann,
                              "features": feats}))
    return "records", out


# Our records, as the same dicts (reference locations as [start, stop] pairs); errors as ("error", msg).
_LUA_READ = r"""
local M = require(%(module)s)
local out = {}
for i, path in ipairs(%(paths)s) do
  local ok, recs = pcall(M.read, path, {chunk_size = %(chunk)s, variant = %(variant)s})
  if not ok then out[i] = {"error", recs}
  else
    for _, r in ipairs(recs) do
      for _, ref in ipairs(r.annotations.references or {}) do
        for k, span in ipairs(ref.location) do ref.location[k] = {span.start, span.stop} end
      end
      if r.seq == nil then r.seq = "\0nil" end
    end
    out[i] = {"records", recs}
  end
end
return out
"""


def ours(runtime: str, module: str, paths: list[Path], chunk: int = 65536, variant: str | None = None):
    got = run_bio(runtime, _LUA_READ % {"module": lua(module), "paths": lua([str(p) for p in paths]),
                                        "chunk": chunk, "variant": lua(variant)})
    views = []
    for kind, value in got:
        if kind == "records":
            value = normalise(value) if value else []
            for r in value:
                if r["seq"] == "\0nil":
                    r["seq"] = None
        views.append((kind, value))
    return views


def first_difference(want, got, where=""):
    """A readable description of the first place two normalised values differ, or None."""
    if type(want) is not type(got):
        return f"{where}: {json.dumps(want)[:200]} != {json.dumps(got)[:200]}"
    if isinstance(want, dict):
        if set(want) != set(got):
            return f"{where}: keys {sorted(set(want) ^ set(got))} differ"
        for k in want:
            d = first_difference(want[k], got[k], f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(want, list):
        if len(want) != len(got):
            return f"{where}: length {len(want)} != {len(got)}"
        for i, (a, b) in enumerate(zip(want, got)):
            d = first_difference(a, b, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if want == got else f"{where}: {str(want)[:200]!r} != {str(got)[:200]!r}"


@functools.lru_cache(maxsize=None)
def biopython_view_cached(path: str, fmt: str):
    return biopython_view(Path(path), fmt)


def differential_failures(runtime: str, fmt: str, module: str, files: list[Path], chunk: int = 65536,
                          variant: str | None = None) -> list[str]:
    """Every way our reading of `files` differs from Biopython's (empty: none).

    Where Biopython raises, we must raise too, with the reader's name, the file and a line.
    """
    failures = []
    for path, (kind, value) in zip(files, ours(runtime, module, files, chunk, variant), strict=True):
        want_kind, want = biopython_view_cached(str(path), fmt)
        if want_kind == "error":
            if kind != "error":
                failures.append(f"{path.name}: Biopython raises ({want[:80]!r}), we do not")
            elif not re.match(rf"{re.escape(module)}\.records: {re.escape(str(path))} line \d+: ", value):
                failures.append(f"{path.name}: error without file and line: {value[:200]}")
        elif kind == "error":
            failures.append(f"{path.name}: we raise, Biopython does not: {value[:300]}")
        else:
            diff = first_difference(want, value)
            if diff:
                failures.append(f"{path.name}{diff}")
    return failures


# Peak live memory (KiB, after full collections) while streaming a file, and the records seen.
_LUA_MEMORY = r"""
local M = require(%(module)s)
collectgarbage("collect")
local base, peak, n = collectgarbage("count"), 0, 0
for rec in M.records(%(path)s, {chunk_size = %(chunk)s}) do
  n = n + 1
  if n %% 25 == 0 then
    collectgarbage("collect")
    local now = collectgarbage("count") - base
    if now > peak then peak = now end
  end
end
return {peak, n}
"""


def assert_streaming_is_bounded(runtime: str, module: str, one_record: Path, tmp_path: Path, copies: int = 400):
    """Reading `copies` copies of a record (over 10 MB) keeps the live heap under 2 MiB."""
    path = tmp_path / ("many" + one_record.suffix)
    path.write_text(one_record.read_text() * copies)
    assert path.stat().st_size > 10_000_000
    peak, n = run_bio(runtime, _LUA_MEMORY % {"module": lua(module), "path": lua(str(path)), "chunk": 4096})
    assert n == copies
    assert peak < 2048, peak  # one record's tables take a few hundred KiB at most


# The format module's writer functions are bio._insdc_writer's, made for its format and named after
# the module; extract hands its arguments to bio.location.
_LUA_WRAPPERS = r"""
local calls = {}
local function recorder(name) return function(...) calls[#calls + 1] = {name, select("#", ...), ...}; return name end end
package.loaded["bio._insdc_writer"] = {functions = function(format, prefix)
  local made = {}
  for _, fn in ipairs({"write", "format", "to_string"}) do made[fn] = recorder(fn .. "_" .. format .. " " .. prefix) end
  return made
end}
package.loaded["bio.location"] = {extract = recorder("extract")}
local M = require(%(module)s)
local rec = {id = "r"}
local out = {M.write("out", {rec}, {x = 1}), M.format(rec), M.to_string({rec}), M.extract("1..2", "ACGT", {y = 2})}
for _, c in ipairs(calls) do for i = 3, #c do if type(c[i]) == "table" then c[i] = "table" end end end
return {out, calls}
"""


def assert_wrappers(runtime: str, module: str, suffix: str):
    out, calls = run_bio(runtime, _LUA_WRAPPERS % {"module": lua(module)})
    names = [f"{fn}_{suffix} {module}" for fn in ("write", "format", "to_string")] + ["extract"]
    assert out == names
    assert calls == [[names[0], 3, "out", "table", "table"], [names[1], 1, "table"],
                     [names[2], 1, "table"], [names[3], 3, "1..2", "ACGT", "table"]]


_LUA_ERRORS = r"""
local M = require(%(module)s)
local out = {}
for name, path in pairs(%(paths)s) do
  local ok, err = pcall(M.read, path)
  out[name] = ok and "no error" or err
end
return out
"""


def assert_errors_name_file_and_line(runtime: str, module: str, fmt: str, malformed: dict, tmp_path: Path):
    """`malformed` maps a name to (text, line, words): reading it raises naming the file, that line
    and those words; Biopython raises on the same text."""
    paths = {}
    for name, (text, _, _) in malformed.items():
        paths[name] = tmp_path / f"{name}.{fmt}"
        paths[name].write_text(text)
    got = run_bio(runtime, _LUA_ERRORS % {"module": lua(module),
                                          "paths": lua({k: str(v) for k, v in paths.items()})})
    for name, (text, line, words) in malformed.items():
        assert got[name].startswith(f"{module}.records: {paths[name]} line {line}: "), got[name]
        assert words in got[name], got[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                list(SeqIO.parse(io.StringIO(text), fmt))
            except ValueError:
                continue
        raise AssertionError(f"Biopython accepts {name}")


_LUA_STRINGS = r"""
local M = require(%(module)s)
local ok, err = pcall(M.parse, %(bad)s)
local good = M.parse(%(good)s, {chunk_size = 2})
return {err, good}
"""


def assert_strings(runtime: str, module: str, fmt: str, bad: str, line: int, good: str):
    """parse(text): a malformed text's error names "<string>" and the line; a good one reads as Biopython reads it."""
    err, got = run_bio(runtime, _LUA_STRINGS % {"module": lua(module), "bad": lua(bad), "good": lua(good)})
    assert err.startswith(f"{module}.records_from_string: <string> line {line}: "), err
    want = biopython_view_from_text(good, fmt)
    assert first_difference(want, normalise(_lua_records(got))) is None


def _lua_records(recs):
    for r in recs:
        for a in r["annotations"].get("references", []) if isinstance(r["annotations"], dict) else []:
            a["location"] = [[s["start"], s["stop"]] for s in a["location"]] if a["location"] else []
    return recs


def biopython_view_from_text(text: str, fmt: str):
    with tempfile.NamedTemporaryFile("w", suffix="." + fmt, delete=False) as f:
        f.write(text)
    try:
        kind, value = biopython_view(Path(f.name), fmt)
    finally:
        Path(f.name).unlink()
    assert kind == "records", value
    return value


class ReaderTests:
    """The tests both readers share; a test module subclasses this as ``Test…`` and sets the attributes."""

    MODULE = FMT = SUFFIX = ""
    FOLDER = ""  # in Biopython's Tests
    EXTRA: list[Path] = []  # real files beside Biopython's
    ALSO: tuple[str, ...] = ()  # more of Biopython's files, by suffix, to read as FMT too
    CORE: list[str] = []  # files of FOLDER read on every runtime, in tiny chunks
    MALFORMED: dict = {}  # name: (text, line, words), for assert_errors_name_file_and_line
    STRING_CASE = ""  # a MALFORMED name to parse from a string
    GOOD = ""  # a small valid text
    SAMPLE = ""  # a file of FOLDER copied many times for the streaming test

    @runtime_params(["lua5.4", "luajit"])
    def test_every_file_matches_biopython(self, runtime):
        files = biopython_files(self.FMT) + self.EXTRA + [p for suffix in self.ALSO for p in biopython_files(suffix)]
        assert len(files) > 15
        assert differential_failures(runtime, self.FMT, self.MODULE, files) == []

    @bio_runtimes()
    def test_core_files_on_every_runtime_with_tiny_chunks(self, runtime):
        files = [biopython_tests_dir() / self.FOLDER / name for name in self.CORE] + self.EXTRA[:1]
        if files[-1].suffix == ".gz":
            files.pop()  # the big genome: the differential above reads it
        assert differential_failures(runtime, self.FMT, self.MODULE, files, chunk=5) == []

    @bio_runtimes()
    def test_errors_name_the_file_and_line(self, runtime, tmp_path):
        assert_errors_name_file_and_line(runtime, self.MODULE, self.FMT, self.MALFORMED, tmp_path)

    @bio_runtimes()
    def test_strings_errors_and_records(self, runtime):
        text, line, _ = self.MALFORMED[self.STRING_CASE]
        assert_strings(runtime, self.MODULE, self.FMT, text, line, self.GOOD)

    @runtime_params(["lua5.4", "luajit"])
    def test_streaming_memory_is_bounded(self, runtime, tmp_path):
        assert_streaming_is_bounded(runtime, self.MODULE, biopython_tests_dir() / self.FOLDER / self.SAMPLE, tmp_path)

    @bio_runtimes()
    def test_writer_and_extract_wrappers(self, runtime):
        assert_wrappers(runtime, self.MODULE, self.SUFFIX)

    @bio_runtimes()
    def test_misspelt_options_are_errors(self, runtime):
        got = run_bio(runtime, f"""
            local M = require {lua(self.MODULE)}
            local out = {{}}
            for i, f in ipairs {{
              function() return M.parse({lua(self.GOOD)}, {{chunksize = 2}}) end,
              function() return M.records("x", {{variant = "imgtt"}}) end,
            }} do
              local ok, err = pcall(f)
              out[i] = err
            end
            return out
        """)
        assert "bad argument #2 'opts'" in got[0] and "unknown option 'chunksize'" in got[0], got[0]
        if self.FMT == "embl":
            assert "bad argument #2 'variant': unknown variant imgtt" in got[1], got[1]
        else:
            assert "unknown option 'variant'" in got[1], got[1]
