"""bio.fasta against Biopython's SeqIO "fasta" parser and FASTA writer, on every runtime."""
from __future__ import annotations

import io
import random

import pytest
from Bio import SeqIO
from Bio.Seq import Seq
from Bio.SeqIO.FastaIO import FastaWriter
from Bio.SeqRecord import SeqRecord

from tests.bio._lua import bio_runtimes, lua, run_bio
from tests.system import require_binary


def random_fasta(seed: int) -> str:
    rng = random.Random(seed)
    nl = "\r\n" if rng.random() < 0.3 else "\n"
    out = []
    for _ in range(rng.randrange(1, 8)):
        words = ["".join(rng.choice("abcXYZ019_|.") for _ in range(rng.randrange(0, 8))) for _ in range(rng.randrange(0, 4))]
        sep = rng.choice([" ", "\t", "  "])
        out.append(">" + sep.join(words) + rng.choice(["", " ", "\t"]) + nl)
        for _ in range(rng.randrange(0, 5)):
            line = "".join(rng.choice("ACGTNacgtn-*RY") for _ in range(rng.randrange(0, 70)))
            if rng.random() < 0.2:
                line = line[: len(line) // 2] + rng.choice([" ", "\t", "  "]) + line[len(line) // 2:]
            out.append(line + (" " if rng.random() < 0.1 else "") + nl)
            if rng.random() < 0.15:
                out.append(nl)  # blank line inside a record
    text = "".join(out)
    if rng.random() < 0.3:
        text = text.rstrip("\r\n")  # no final newline
    return text


def biopython_records(text: str):
    return [[r.id, r.description, str(r.seq)] for r in SeqIO.parse(io.StringIO(text, newline=None), "fasta")]


PARSE_ALL = """
    local X = require "bio.fasta"
    local out = {}
    for i, text in ipairs(TEXTS) do
      local per_size = {}
      for _, cs in ipairs(SIZES) do
        local recs = {}
        for r in X.records_from_string(text, {chunk_size = cs}) do recs[#recs + 1] = {r.id, r.description, r.seq} end
        per_size[#per_size + 1] = recs
      end
      out[i] = per_size
    end
    return out
"""


@bio_runtimes()
def test_parser_matches_biopython_fasta(runtime):
    texts = [random_fasta(seed) for seed in range(60)]
    texts += [">", ">\n", ">a\n>b\n", ">only header", ">x y\nACGT\n>\nAC\n", "\n\n>a\nAC\n", "\r\n  \n>a b\r\nAC\r\n",
              # a short line then a header exactly one line-width on: a parser guessing
              # line ends from the previous line's length would swallow the header
              ">a\nACGT\nA\n>b\nCC\n", ">a\nACGTACGT\nACG\n>bb\nT\n>c\n\n\nG"]
    sizes = [1, 2, 7, 64, 1 << 20]
    got = run_bio(runtime, f"local TEXTS = {lua(texts)}\nlocal SIZES = {lua(sizes)}\n" + PARSE_ALL)
    for text, per_size in zip(texts, got):
        # Biopython's "fasta" refuses even blank lines before the first record; we skip them
        want = biopython_records(text.lstrip("\r\n "))
        for cs, recs in zip(sizes, per_size):
            assert (recs or []) == want, (cs, text[:80])


def test_text_before_first_record_is_an_error_with_line_number():
    got = run_bio("lua5.4", r"""
        local X = require "bio.fasta"
        local out = {}
        for _, text in ipairs{"# comment\n>a\nAC\n", "\n\n  \nACGT\n>a\nAC\n", "\r\n;x\r\n>a\r\n"} do
          local ok, err = pcall(X.parse, text, {chunk_size = 3})
          out[#out + 1] = err
        end
        return out
    """)
    assert "line 1: text before the first '>' header" in got[0]
    assert "line 4: text before the first '>' header" in got[1] and '"ACGT"' in got[1]
    assert "line 2: text before the first '>' header" in got[2]
    with pytest.raises(ValueError):  # Biopython agrees that this is an error
        list(SeqIO.parse(io.StringIO("# comment\n>a\nAC\n"), "fasta"))


@bio_runtimes()
def test_sources_path_open_file_and_errors(runtime, tmp_path):
    path = tmp_path / "x.fa"
    path.write_bytes(b">r1 first\r\nACGT\r\nac\r\n>r2\nNN\n")
    got = run_bio(runtime, f"""
        local X = require "bio.fasta"
        local a = X.read({lua(str(path))})
        local f = assert(io.open({lua(str(path))}, "rb"))
        local b = {{}}
        for r in X.records(f) do b[#b + 1] = r end
        f:close()
        local ok, err = pcall(X.read, {lua(str(tmp_path / "missing.fa"))})
        local ok2, err2 = pcall(X.records, 42)
        return {{a, b, err, err2}}
    """)
    want = [{"id": "r1", "description": "r1 first", "seq": "ACGTac"}, {"id": "r2", "description": "r2", "seq": "NN"}]
    assert got[0] == want and got[1] == want
    assert "cannot open" in got[2] and "missing.fa" in got[2]
    assert "bad argument #1 'source'" in got[3]


@bio_runtimes()
def test_writer_matches_biopython(runtime):
    rng = random.Random(3)
    recs = []
    for i in range(12):
        seq = "".join(rng.choice("ACGTN") for _ in range(rng.choice([0, 1, 59, 60, 61, 120, 133])))
        desc = rng.choice(["", f"s{i} some words", "other text", f"s{i}"])
        recs.append({"id": f"s{i}", "description": desc, "seq": seq})
    widths = [60, 10, 1, 0]
    got = run_bio(runtime, f"""
        local X = require "bio.fasta"
        local out = {{}}
        for i, w in ipairs({lua(widths)}) do out[i] = X.to_string({lua(recs)}, {{width = w}}) end
        return out
    """)
    for w, text in zip(widths, got):
        handle = io.StringIO()
        writer = FastaWriter(handle, wrap=w or None)
        writer.write_file([SeqRecord(Seq(r["seq"]), id=r["id"], description=r["description"]) for r in recs])
        assert text == handle.getvalue(), w


def test_write_to_path_roundtrips(tmp_path):
    out = tmp_path / "o.fa"
    got = run_bio("luajit", f"""
        local X = require "bio.fasta"
        local n = X.write({lua(str(out))}, X.records_from_string(">a x\\nACGT\\n>b\\n" .. string.rep("AC", 50) .. "\\n"), {{width = 7}})
        return {{n, X.read({lua(str(out))})}}
    """)
    assert got[0] == 2
    assert [r["seq"] for r in got[1]] == ["ACGT", "AC" * 50]
    assert out.read_text().splitlines()[2:4] == [">b", "ACACACA"]


@pytest.mark.parametrize("runtime", ["lua5.4", "luajit", "luajit+portable"])
def test_streaming_keeps_memory_bounded(runtime, tmp_path):
    require_binary(runtime.split("+")[0])
    from bench.make_fasta import make_fasta

    path = tmp_path / "big.fa"
    size = make_fasta(path, mb=40, seed=1)
    got = run_bio(runtime, f"""
        local X = require "bio.fasta"
        collectgarbage()
        local base = collectgarbage("count")
        local peak, n, total = 0, 0, 0
        for r in X.records({lua(str(path))}) do
          n = n + 1; total = total + #r.seq
          if n % 50 == 0 then
            collectgarbage()
            local kb = collectgarbage("count") - base
            if kb > peak then peak = kb end
          end
        end
        return {{n, total, peak}}
    """)
    n, total, peak_kb = got
    assert n > 1000 and total > 0.95 * size * 60 / 61 * 0.99
    # the file is 40 MB; the reader holds one chunk (1 MiB) and one record (<= 40 kb)
    assert peak_kb < 8 * 1024, f"peak Lua heap {peak_kb:.0f} KiB while streaming a {size / 1e6:.0f} MB file"


@bio_runtimes()
def test_interleaved_readers_do_not_share_state(runtime):
    a = ">a1\n" + "A" * 70 + "\nCC\n>a2\nGG\n"
    b = ">b1\n" + "T" * 50 + "\n>b2\n" + "C" * 90 + "\n"
    got = run_bio(runtime, f"""
        local X = require "bio.fasta"
        local ia = X.records_from_string({lua(a)}, {{chunk_size = 16}})
        local ib = X.records_from_string({lua(b)}, {{chunk_size = 16}})
        local out = {{}}
        for _ = 1, 2 do
          local ra, rb = ia(), ib()
          out[#out + 1] = {{ra.id, ra.seq, rb.id, rb.seq}}
        end
        return out
    """)
    assert got == [["a1", "A" * 70 + "CC", "b1", "T" * 50], ["a2", "GG", "b2", "C" * 90]]


def test_reads_a_compressed_file_through_a_pipe(tmp_path):
    import gzip

    path = tmp_path / "x.fa.gz"
    with gzip.open(path, "wt") as f:
        f.write(">a one\nACGT\nAC\n>b\nGG\n")
    got = run_bio("lua5.4", f"""
        local X = require "bio.fasta"
        local pipe = io.popen("gzip -dc " .. {lua(str(path))})
        local out = {{}}
        for r in X.records(pipe) do out[#out + 1] = {{r.id, r.seq}} end
        pipe:close()
        return out
    """)
    assert got == [["a", "ACGTAC"], ["b", "GG"]]


@bio_runtimes()
def test_ids_split_on_python_whitespace(runtime):
    # str.split() ends a word at \x0b, \x0c and \x1c-\x1f too; str.rstrip() drops them at the end
    texts = []
    for ch in ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x00", "\x7f", "\x01"]:
        texts.append(f">a{ch}b c\nACGT\n>{ch}lead x\nAC\n>trail{ch}\nGG\n>x y{ch}{ch}\nT\n")
    got = run_bio(runtime, f"local TEXTS = {lua(texts)}\nlocal SIZES = {{1, 1048576}}\n" + PARSE_ALL)
    for text, per_size in zip(texts, got):
        want = biopython_records(text)
        for recs in per_size:
            assert recs == want, repr(text)
    # the writer's "does the description start with the id" test splits the same way
    got = run_bio(runtime, r"""
        local X = require "bio.fasta"
        return {X.title({id = "a", description = "a\28b"}), X.title({id = "a\28b", description = "a\28b c"})}
    """)
    assert got == ["a\x1cb", "a\x1cb a\x1cb c"]
