"""bio._insdc_writer against Biopython 1.88's GenBank and EMBL writers.

The input records are built from Biopython, independently of our reader: each file of
Biopython's Tests/GenBank and Tests/EMBL (and any2fasta's real draft genome) is parsed with
``SeqIO.parse``, every SeqRecord is turned into the Lua record shape (docs/bio/genbank-writing.md)
and written by ``format_genbank`` / ``format_embl``; the text must equal what Biopython writes
for the same SeqRecord, byte for byte.

Feature locations: our writer writes the record's location text as it is, so for the
byte-identical comparison the text is Biopython's own rendering of the parsed location
(``InsdcIO._insdc_location_string``, what its writer puts in the file).  The round-trip tests use
the raw text of the file instead (``Bio.GenBank.parse``'s ``Feature.location``), as our reader
gives it, and check that Biopython reads our output back to the same record.
"""
from __future__ import annotations

import functools
import gzip
import io
import re
import warnings
from pathlib import Path

import pytest
from Bio import BiopythonWarning, GenBank, SeqIO
from Bio.GenBank.Scanner import EmblScanner
from Bio.Seq import UndefinedSequenceError
from Bio.SeqFeature import Reference
from Bio.SeqIO.InsdcIO import _insdc_location_string

from tests.bio._lua import lua
from tests.bio.biopython_material import biopython_tests_dir
from tests.bio.harness import ALL_RUNTIMES, run

ANY2FASTA = Path("/usr/share/doc/any2fasta/examples")

# Records Biopython itself cannot write, and why: (file, record id, format) -> reason.
BIOPYTHON_CANNOT_WRITE = {
    ("addgene-plasmid-11664-sequence-180430.gbk", ".", "*"): "a feature wraps the origin of a linear record: no location",
    ("bad_origin_wrap_linear.gb", "XX_123456.1", "*"): "a feature wraps the origin of a linear record: no location",
    ("negative_location.gb", "AB070938.1", "*"): "a negative position: Biopython parses no location",
    ("101ma_no_coords.embl", "101MA", "embl"): "molecule_type 'unspecified' has no EMBL unit",
    ("location_wrap.embl", "Test", "embl"): "molecule_type 'unspecified' has no EMBL unit",
    ("DD231055_edited2.embl", "DD231055.1", "*"): "no molecule_type annotation",
    **{("kipo_prt_sample.embl", f"DI5{n:05d}", "*"): "no molecule_type annotation" for n in range(1, 21)},
}
# Files Biopython cannot read at all (so there is no record to write).
BIOPYTHON_CANNOT_READ = {"invalid_product.gb", "no_origin_no_end.gb", "xx_after_co.embl"}


# --- SeqRecord -> Lua record literal -------------------------------------------------------

_PLAIN = re.compile(r'[ !#-\[\]-~]*')  # printable ASCII but quote and backslash


def lua_literal(value) -> str:
    """A Lua literal; text as UTF-8 bytes (Biopython reads the files as UTF-8 text)."""
    if isinstance(value, str):
        # plain text (sequences above all) skips the per-byte escaping of lua()
        return f'"{value}"' if _PLAIN.fullmatch(value) else lua(value.encode("utf-8"))
    if isinstance(value, (list, tuple)):
        return "{" + ",".join(map(lua_literal, value)) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"[{lua_literal(k)}]={lua_literal(v)}" for k, v in value.items()) + "}"
    return lua(value)


def convert_annotation(key, value):
    if key == "references":
        return [{"location": [{"start": int(loc.start) + 1, "stop": int(loc.end)} for loc in (ref.location or [])],
                 "authors": ref.authors, "consrtm": ref.consrtm, "title": ref.title, "journal": ref.journal,
                 "medline_id": ref.medline_id, "pubmed_id": ref.pubmed_id, "comment": ref.comment}
                for ref in value if isinstance(ref, Reference)]
    if key == "structured_comment":
        # the ordered form (a list of {name, {{key, value}, ...}}): Lua maps have no order
        return [[name, [[k, v] for k, v in section.items()]] for name, section in value.items()]
    return value


def lua_record(rec, locations=None) -> dict:
    """The record shape of record.md for a SeqRecord; `locations` overrides the location texts."""
    try:
        seq = str(rec.seq)
    except UndefinedSequenceError:
        seq = None
    feats = []
    for i, f in enumerate(rec.features):
        loc = locations[i] if locations else _insdc_location_string(f.location, len(rec))
        feats.append({"type": f.type, "location": loc, "qualifiers": {k: list(v) for k, v in f.qualifiers.items()},
                      "qualifier_names": list(f.qualifiers)})
    return {"id": rec.id, "name": rec.name, "description": rec.description, "seq": seq, "length": len(rec),
            "dbxrefs": list(rec.dbxrefs),
            "annotations": {k: convert_annotation(k, v) for k, v in rec.annotations.items()},
            "features": feats}


def biopython_text(rec, fmt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BiopythonWarning)
        return rec.format(fmt)


# --- the material --------------------------------------------------------------------------

def _open(path: Path):
    if path.suffix in (".gz", ".bgz"):
        return gzip.open(path, "rt")
    return open(path)


def material_files():
    tests = biopython_tests_dir()
    out = []
    for p in sorted((tests / "GenBank").iterdir()):
        if p.suffix in (".gb", ".gbk", ".gp", ".seq", ".gbwithparts", ".bgz"):
            out.append((p, "genbank"))
    for p in sorted((tests / "EMBL").iterdir()):
        if p.suffix in (".embl", ".imgt"):
            out.append((p, "imgt" if p.suffix == ".imgt" else "embl"))
    return out


def parse_file(path, fmt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BiopythonWarning)
        with _open(path) as h:
            return list(SeqIO.parse(h, fmt))


def cannot_write(path, rec, fmt):
    for key in ((path.name, rec.id, fmt), (path.name, rec.id, "*")):
        if key in BIOPYTHON_CANNOT_WRITE:
            return key
    return None


# --- running the writer --------------------------------------------------------------------

def write_all(runtime, tmp_path, records, formats=("genbank", "embl")):
    """format_<fmt> of each record (a dict) in each format; [text or error] per record per format."""
    files = []
    for i, rec in enumerate(records):
        p = tmp_path / f"rec{i}.lua"
        p.write_bytes(b"return " + lua_literal(rec).encode("latin-1"))
        files.append(str(p))
    code = f"""
        local W = require "bio._insdc_writer"
        local files, formats, out = {lua_literal(files)}, {lua_literal(list(formats))}, {{}}
        for i, path in ipairs(files) do
          local rec = dofile(path)
          for j, fmt in ipairs(formats) do
            local ok, text = pcall(W["format_" .. fmt], rec)
            local f = assert(io.open(path .. "." .. fmt, "wb"))
            f:write(ok and "OK\\n" .. text or "ERR\\n" .. tostring(text))
            f:close()
          end
        end
        return #files
    """
    assert run(runtime, code) == len(records)
    out = []
    for path in files:
        per = {}
        for fmt in formats:
            data = Path(path + "." + fmt).read_bytes().decode("utf-8")
            per[fmt] = data[3:] if data.startswith("OK\n") else ValueError(data[4:])
        out.append(per)
    return out


@functools.lru_cache(maxsize=None)
def prepared(sources):
    """Lua records, Biopython's texts, labels and the refusals met, for `sources` ((path, fmt), ...)."""
    records, expected, labels, skipped = [], [], [], set()
    for path, fmt in sources:
        if path.name in BIOPYTHON_CANNOT_READ:
            with pytest.raises(Exception):
                parse_file(path, fmt)
            continue
        for rec in parse_file(path, fmt):
            want = {}
            for out_fmt in ("genbank", "embl"):
                try:
                    want[out_fmt] = biopython_text(rec, out_fmt)
                except Exception as exc:  # noqa: BLE001 - Biopython's own refusal
                    key = cannot_write(path, rec, out_fmt)
                    assert key, f"Biopython cannot write {path.name} {rec.id} as {out_fmt} ({exc!r}): list it"
                    skipped.add(key)
            if not want:
                continue
            try:
                lua_rec = lua_record(rec)
            except Exception:  # a feature without a location: Biopython could not write it either
                assert cannot_write(path, rec, "genbank")
                continue
            records.append(lua_rec)
            expected.append(want)
            labels.append(f"{path.name}:{rec.id}")
    return records, expected, labels, frozenset(skipped)


def differential(runtime, tmp_path, sources):
    """Every record of `sources` [(path, fmt)] in both formats, against Biopython."""
    records, expected, labels, skipped = prepared(tuple(sources))
    got = write_all(runtime, tmp_path, records)
    compared = 0
    for label, want, have in zip(labels, expected, got):
        for fmt, text in want.items():
            assert not isinstance(have[fmt], Exception), (label, fmt, have[fmt])
            assert have[fmt] == text, (label, fmt)
            compared += 1
    return compared, skipped


@pytest.mark.parametrize("runtime", ["lua5.4", "luajit"])
def test_every_biopython_test_file_byte_identical(runtime, tmp_path):
    compared, skipped = differential(runtime, tmp_path, material_files())
    assert compared > 150
    # every listed refusal still happens (a record Biopython learns to write must be compared)
    listed = {k for k in BIOPYTHON_CANNOT_WRITE}
    assert skipped == listed


@pytest.mark.parametrize("runtime", ["lua5.4", "luajit"])
def test_real_draft_genome_byte_identical(runtime, tmp_path):
    compared, _ = differential(runtime, tmp_path, [(ANY2FASTA / "test.gbk.gz", "genbank"), (ANY2FASTA / "test.embl", "embl")])
    assert compared == 2 * (75 + 2)


# --- round trip: Biopython reads our output back ------------------------------------------------

class _RawFeatures(GenBank._RecordConsumer):
    """The raw record consumer, ignoring the EMBL-only header calls it lacks."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def raw_locations(path, fmt):
    """Each record's feature location texts as the file has them (continuation lines joined)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BiopythonWarning)
        with _open(path) as h:
            if fmt == "genbank":
                return [[f.location for f in raw.features] for raw in GenBank.parse(h)]
            scanner, out = EmblScanner(), []
            while True:
                consumer = _RawFeatures()
                if not scanner.feed(h, consumer, do_features=True):
                    return out
                out.append([f.location for f in consumer.data.features])


def same_record(a, b, fmt):
    assert a.id == b.id
    if fmt == "genbank":
        assert a.name == b.name
    assert a.description == b.description
    try:
        assert str(a.seq) == str(b.seq)
    except UndefinedSequenceError:
        assert len(a) == len(b)
    assert len(a.features) == len(b.features)
    for fa, fb in zip(a.features, b.features):
        assert (fa.type, fa.location, fa.qualifiers) == (fb.type, fb.location, fb.qualifiers)


@pytest.mark.parametrize("runtime", ["luajit"])
def test_round_trip_with_the_files_own_location_text(runtime, tmp_path):
    # every GenBank and EMBL file Biopython reads (IMGT has a scanner of its own: left out)
    records, originals, labels = [], [], []
    for path, fmt in material_files():
        if fmt == "imgt" or path.name in BIOPYTHON_CANNOT_READ:
            continue
        recs, locs = parse_file(path, fmt), raw_locations(path, fmt)
        assert len(recs) == len(locs), path.name
        for rec, texts in zip(recs, locs):
            records.append(lua_record(rec, locations=texts))
            originals.append(rec)
            labels.append(path)
    assert len(records) > 100
    got = write_all(runtime, tmp_path, records)
    read_back = 0
    for path, rec, have in zip(labels, originals, got):
        for fmt in ("genbank", "embl"):
            if isinstance(have[fmt], Exception):  # only where Biopython refuses too, for the same reason
                assert cannot_write(path, rec, fmt) and "molecule_type" in str(have[fmt]), (path.name, rec.id, have[fmt])
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BiopythonWarning)
                back = SeqIO.read(io.StringIO(have[fmt]), fmt)
            same_record(rec, back, fmt)
            read_back += 1
    assert read_back > 150


# --- core cases on every runtime -----------------------------------------------------------------

def core_records():
    tests = biopython_tests_dir()
    recs = []
    for name, fmt in [("GenBank/NC_005816.gb", "genbank"), ("GenBank/protein_refseq2.gb", "genbank"),
                      ("GenBank/qualifier_escaping_write.gb", "genbank"), ("EMBL/Human_contigs.embl", "embl"),
                      ("EMBL/U87107.embl", "embl"), ("GenBank/tls_KDHP01000000.gb", "genbank")]:
        recs += parse_file(tests / name, fmt)[:2]
    return recs


@pytest.mark.parametrize("runtime", ALL_RUNTIMES)
def test_core_records_on_every_runtime(runtime, tmp_path):
    recs = core_records()
    got = write_all(runtime, tmp_path, [lua_record(r) for r in recs])
    for rec, have in zip(recs, got):
        for fmt in ("genbank", "embl"):
            assert have[fmt] == biopython_text(rec, fmt), (rec.id, fmt)


EDGE = """
    local W = require "bio._insdc_writer"
    local function rec(t)
      local r = {id = "X1.2", name = "X1", description = "d", seq = "acgt",
                 annotations = {molecule_type = "DNA"}, features = {}}
      for k, v in pairs(t) do r[k] = v end
      return r
    end
    local out = {}
    -- a map-form structured comment is written in sorted key order
    out.sc = W.format_genbank(rec{annotations = {molecule_type = "DNA",
      structured_comment = {Zeta = {b = "2", a = "1"}, Alpha = {long_key = "x"}}}})
    -- UTF-8 text counts characters when wrapping
    out.utf8 = W.format_genbank(rec{features = {{type = "gene", location = "1..4",
      qualifiers = {note = {string.rep("\\195\\169", 70) .. " x " .. string.rep("\\195\\169", 10)}}}}})
    -- a record with no sequence but a length and a contig
    out.contig = W.format_genbank({id = "C1.1", name = "C1", description = "c", length = 100,
      annotations = {molecule_type = "DNA", contig = "join(" .. string.rep("AB000001.1:1..10,", 6) .. "AB000002.1:1..10)"}})
    out.contig_embl = W.format_embl({id = "C1.1", name = "C1", description = "c", length = 100,
      annotations = {molecule_type = "DNA", contig = "join(" .. string.rep("AB000001.1:1..10,", 6) .. "AB000002.1:1..10)"}})
    -- several records, an iterator, a path
    local list = {rec{}, rec{id = "Y", seq = string.rep("a", 61)}}
    out.two = W.to_string_embl(list)
    local i = 0
    out.n = W.write_genbank(TMP, function() i = i + 1; return list[i] end)
    local f = io.open(TMP, "rb"); out.file = f:read("*a"); f:close()
    out.file_same = out.file == W.to_string_genbank(list)
    return out
"""


def _biopython_record(id, name, description, seq, length=None, **annotations):
    from Bio.Seq import Seq
    from Bio.SeqRecord import SeqRecord
    r = SeqRecord(Seq(seq) if seq is not None else Seq(None, length), id=id, name=name, description=description)
    r.annotations.update(annotations)
    return r


@pytest.mark.parametrize("runtime", ALL_RUNTIMES)
def test_edge_cases_on_every_runtime(runtime, tmp_path):
    from Bio.SeqFeature import SeqFeature, SimpleLocation
    tmp = str(tmp_path / "out.gb")
    got = run(runtime, f"local TMP = {lua_literal(tmp)}\n" + EDGE)
    dec = {k: (v.encode("latin-1").decode("utf-8") if isinstance(v, str) else v) for k, v in got.items()}
    sc = _biopython_record("X1.2", "X1", "d", "acgt", molecule_type="DNA",
                           structured_comment={"Alpha": {"long_key": "x"}, "Zeta": {"a": "1", "b": "2"}})
    assert dec["sc"] == sc.format("genbank")
    u = _biopython_record("X1.2", "X1", "d", "acgt", molecule_type="DNA")
    u.features.append(SeqFeature(SimpleLocation(0, 4), type="gene",
                                 qualifiers={"note": ["é" * 70 + " x " + "é" * 10]}))
    assert dec["utf8"] == u.format("genbank")
    contig = "join(" + "AB000001.1:1..10," * 6 + "AB000002.1:1..10)"
    c = _biopython_record("C1.1", "C1", "c", None, length=100, molecule_type="DNA", contig=contig)
    assert dec["contig"] == c.format("genbank")
    assert dec["contig_embl"] == c.format("embl")
    two = [_biopython_record("X1.2", "X1", "d", "acgt", molecule_type="DNA"),
           _biopython_record("Y", "X1", "d", "a" * 61, molecule_type="DNA")]
    s = io.StringIO()
    SeqIO.write(two, s, "embl")
    assert dec["two"] == s.getvalue()
    s = io.StringIO()
    SeqIO.write(two, s, "genbank")
    assert dec["n"] == 2 and dec["file"] == s.getvalue() and dec["file_same"] is True


ERRORS = """
    local genbank, embl = require "bio.genbank", require "bio.embl"
    local out = {}
    local function try(f, ...) local ok, e = pcall(f, ...); out[#out + 1] = e end
    local ok_rec = {id = "R1", seq = "ac", annotations = {molecule_type = "DNA"}}
    try(genbank.format, {id = "R1", annotations = {molecule_type = "DNA"}})
    try(embl.format, {id = "R1", seq = "ac", annotations = {molecule_type = "DNA"},
        features = {{type = "gene", location = "1..2"}, {type = "CDS"}}})
    try(genbank.format, {id = "R1", seq = "ac", annotations = {molecule_type = "DNA"},
        features = {{location = "1..2"}}})
    try(genbank.format, {id = "R1", seq = "ac", annotations = {molecule_type = "DNA"},
        features = {{type = "gene", location = "1..2", qualifiers = {gene = "abc"}}}})
    try(genbank.to_string, {ok_rec, {id = "R2", seq = "ac", annotations = {molecule_type = "DNA"},
        features = {{type = "gene", location = "1..2", qualifiers = {note = {"x", 3}}}}}})
    try(genbank.format, {id = "R1", seq = "ac"})
    try(genbank.write, {}, {ok_rec})
    try(embl.write, TMP, {ok_rec, {id = "R3", length = "x"}})
    -- raised at the caller's line
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, e = pcall(function() genbank.format({id = "Q"}) end)
    out[#out + 1] = tostring(line) .. "|" .. e
    line = debug.getinfo(1, "l").currentline + 1
    ok, e = pcall(function() embl.write(TMP, {{id = "Q"}}) end)
    out[#out + 1] = tostring(line) .. "|" .. e
    return out
"""


@pytest.mark.parametrize("runtime", ALL_RUNTIMES)
def test_errors_name_the_record_feature_and_key(runtime, tmp_path):
    got = run(runtime, f"local TMP = {lua_literal(str(tmp_path / 'x.embl'))}\n" + ERRORS)
    want = [
        "bio.genbank.format: record 'R1': has neither 'seq' (a string) nor 'length' (an integer)",
        "bio.embl.format: record 'R1' feature 2 (CDS): field 'location' must be a non-empty string, got nil",
        "bio.genbank.format: record 'R1' feature 1: field 'type' must be a non-empty string, got nil",
        "bio.genbank.format: record 'R1' feature 1 (gene) qualifier 'gene': the value must be a list of strings, got string",
        "bio.genbank.to_string: record 'R2' feature 1 (gene) qualifier 'note': the value must be a list of strings, got a list holding a non-string",
        "bio.genbank.format: record 'R1': missing molecule_type in annotations",
        "bio.genbank.write: bad argument #1 'dest': expected a file path or an open file, got table",
        "bio.embl.write: record 'R3': has neither 'seq' (a string) nor 'length' (an integer)",
    ]
    for w, g in zip(want, got):
        assert g.endswith(w), (g, w)
    assert len(got) == len(want) + 2
    for entry in got[-2:]:
        line, msg = entry.split("|", 1)
        assert f":{line}: bio.genbank.format" in msg or f":{line}: bio.embl.write" in msg, entry


# --- generated records: the corners the test files do not reach -------------------------------

def _words(rng, n, alphabet="abcXY019-.,;:/()'\" é\t"):
    return "".join(rng.choice(alphabet) for _ in range(n))


def random_seqrecord(rng):
    """A SeqRecord with random names, wrapping-prone text, qualifiers and dates; may be unwritable."""
    from Bio.Seq import Seq
    from Bio.SeqFeature import SeqFeature, SimpleLocation
    from Bio.SeqRecord import SeqRecord
    length = rng.choice([0, 1, 59, 60, 61, 119, 120, 121, 250])
    seq = "".join(rng.choice("ACGTNacgtn") for _ in range(length))
    name = rng.choice(["X1", "ABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOPQRS", "A" * 26, "A" * 30, "has space", ""])
    rid = rng.choice(["X1", "X1.2", "X1.02", "X1.a", "A.B.3", "X1. 4", name or "Z9.1"])
    desc = rng.choice(["", "<unknown description>", _words(rng, rng.randrange(0, 200)), "w" * 75 + " tail"])
    defined = rng.random() < 0.85
    rec = SeqRecord(Seq(seq) if defined else Seq(None, length), id=rid, name=name, description=desc)
    ann = rec.annotations
    ann["molecule_type"] = rng.choice(["DNA", "mRNA", "genomic DNA", "unassigned DNA", "protein", "RNA",
                                       "ss-DNA", "other molecule type", "unspecified"])
    if rng.random() < 0.8:
        ann["topology"] = rng.choice(["linear", "circular", "", "weird", "toolongtopology"])
    if rng.random() < 0.8:
        ann["data_file_division"] = rng.choice(["BCT", "PRO", "PLN", "HUM", "XXX", "ZZZ", "CON"])
    if rng.random() < 0.8:
        ann["date"] = rng.choice(["21-JUL-2008", "29-FEB-2001", "29-FEB-2000", "31-APR-2010", "1-JAN-2000",
                                  "01-Jan-2000", "01xJAN-2000", "+1-MAR-2011"])
    for key in ("keywords", "taxonomy"):
        if rng.random() < 0.7:
            ann[key] = [_words(rng, rng.randrange(0, 30)) for _ in range(rng.randrange(0, 8))]
    for key in ("source", "organism"):
        if rng.random() < 0.7:
            ann[key] = _words(rng, rng.randrange(0, 120))
    if rng.random() < 0.3:
        ann["gi"] = str(rng.randrange(1, 10 ** 9))
    if rng.random() < 0.3:
        ann["accession"] = rng.choice(["ACC9", "X1"])
    if rng.random() < 0.4:
        ann["comment"] = "\n".join(_words(rng, rng.randrange(0, 150)) for _ in range(rng.randrange(1, 4)))
    if rng.random() < 0.3:
        ann["structured_comment"] = {"Assembly-Data": {"Assembly Method": "x v. 1", "Sequencing Technology": "y"},
                                     "Other": {"k": _words(rng, 90)}}
    if rng.random() < 0.4:
        refs = []
        for _ in range(rng.randrange(1, 3)):
            ref = Reference()
            ref.location = [SimpleLocation(0, max(length, 1))] * rng.choice([0, 1, 2])
            ref.authors, ref.title, ref.journal = _words(rng, 100), _words(rng, 80), _words(rng, 20)
            ref.consrtm = rng.choice(["", "Consortium"])
            ref.pubmed_id = rng.choice(["", "123"])
            ref.medline_id = rng.choice(["", "456"])
            ref.comment = rng.choice(["", _words(rng, 90)])
            refs.append(ref)
        ann["references"] = refs
    if not defined and rng.random() < 0.7:
        ann["contig"] = "join(" + ",".join(f"AB{rng.randrange(10 ** 5):06d}.1:1..{rng.randrange(1, 10 ** 6)}"
                                           for _ in range(rng.randrange(1, 12))) + ")"
    rec.dbxrefs = rng.sample(["BioProject:PRJNA1", "Project:7", "BioSample:SAMN1", "a:b:c", "Trace: 5"], rng.randrange(0, 4))
    for _ in range(rng.randrange(0, 4)):
        quals = {}
        for key in rng.sample(["note", "gene", "translation", "codon_start", "transl_except", "product", "pseudo"],
                              rng.randrange(0, 5)):
            if key == "translation":
                quals[key] = ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randrange(0, 200)))]
            else:
                quals[key] = [_words(rng, rng.randrange(0, 160)) for _ in range(rng.randrange(1, 3))]
        ftype = rng.choice(["CDS", "gene", "misc_feature", "a very long feature key"])
        rec.features.append(SeqFeature(SimpleLocation(0, max(length, 1)), type=ftype, qualifiers=quals))
    return rec


def random_location(rng):
    """A join of up to 14 ranges (often longer than a line), sometimes complemented."""
    starts = [rng.randrange(1, 10 ** rng.randrange(1, 8)) for _ in range(rng.randrange(1, 15))]
    text = "join(" + ",".join(f"{a}..{a + rng.randrange(1, 10 ** 5)}" for a in starts) + ")"
    return f"complement({text})" if rng.random() < 0.3 else text


@pytest.mark.parametrize("runtime", ["lua5.4", "luajit"])
def test_generated_records_match_biopython_or_fail_where_it_fails(runtime, tmp_path):
    import random
    from Bio.SeqFeature import Location
    rng = random.Random(12)
    recs, wants, refused = [], [], 0
    for _ in range(300):
        rec = random_seqrecord(rng)
        for f in rec.features:  # long locations: wrapped at commas
            f.location = Location.fromstring(random_location(rng))
        want = {}
        for fmt in ("genbank", "embl"):
            try:
                want[fmt] = biopython_text(rec, fmt)
            except Exception as exc:  # noqa: BLE001 - we must refuse it too
                want[fmt] = exc
                refused += 1
        recs.append(lua_record(rec))
        wants.append(want)
    got = write_all(runtime, tmp_path, recs)
    for i, (want, have) in enumerate(zip(wants, got)):
        for fmt in ("genbank", "embl"):
            if isinstance(want[fmt], Exception):
                assert isinstance(have[fmt], Exception), (i, fmt, want[fmt])
            else:
                assert have[fmt] == want[fmt], (i, fmt, have[fmt])
    assert 30 < refused < 400
