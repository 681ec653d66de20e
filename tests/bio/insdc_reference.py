"""Shared helpers for the GenBank/EMBL reader tests: Biopython's view of a file, ours, and the comparison.

Biopython's records come from ``SeqIO.parse(path, "genbank"/"embl")``; the raw location
strings from ``Bio.GenBank.parse`` (GenBank) or from ``EmblScanner``'s feature tuples with
whitespace removed (EMBL), which is what our ``feature.location`` holds.
"""
from __future__ import annotations

import gzip
import io
import json
import warnings
from pathlib import Path

from Bio import GenBank, SeqIO
from Bio.GenBank.Scanner import EmblScanner
from Bio.Seq import UndefinedSequenceError

from tests.bio._lua import lua, run_bio
from tests.bio.biopython_material import biopython_tests_dir

ANY2FASTA = Path("/usr/share/doc/any2fasta/examples")
SKIP_SUFFIXES = (".faa", ".ffn", ".fna", ".tsv")


def biopython_files(fmt: str) -> list[Path]:
    """Every GenBank (``fmt="genbank"``) or EMBL file of Biopython's Tests folder."""
    tests = biopython_tests_dir()
    if fmt == "genbank":
        return sorted(p for p in (tests / "GenBank").iterdir()
                      if p.is_file() and not p.name.endswith(SKIP_SUFFIXES))
    return sorted((tests / "EMBL").glob("*.embl"))


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


def _raw_locations(path: Path, fmt: str) -> list[list[str]]:
    with _open(path) as h, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "genbank":
            return [[f.location for f in rec.features] for rec in GenBank.parse(h)]
        scanner, out = EmblScanner(), []
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
        locations = _raw_locations(path, fmt)
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
  local ok, recs = pcall(M.read, path, {chunk_size = %(chunk)s})
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


def ours(runtime: str, module: str, paths: list[Path], chunk: int = 65536):
    got = run_bio(runtime, _LUA_READ % {"module": lua(module), "paths": lua([str(p) for p in paths]),
                                        "chunk": chunk})
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
