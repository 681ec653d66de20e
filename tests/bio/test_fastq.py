"""bio.fastq against Biopython's FastqGeneralIterator and SeqIO "fastq" variants, on every runtime."""
from __future__ import annotations

import io
import random

import pytest
from Bio import SeqIO
from Bio.SeqIO.QualityIO import FastqGeneralIterator

from tests.bio._lua import bio_runtimes, lua, run_bio


def random_fastq(seed: int) -> str:
    rng = random.Random(seed)
    nl = "\r\n" if rng.random() < 0.3 else "\n"
    out = []
    for i in range(rng.randrange(1, 6)):
        title = f"r{i}" + rng.choice(["", " extra words", "\tx"])
        seq = "".join(rng.choice("ACGTNacgtn") for _ in range(rng.randrange(0, 40)))
        qual = "".join(chr(rng.randrange(33, 127)) for _ in seq)
        wrap = rng.choice([0, 0, 7, 13])
        def lines(s):
            if not wrap or not s:
                return [s]
            return [s[j:j + wrap] for j in range(0, len(s), wrap)]
        out.append("@" + title + nl)
        out += [l + nl for l in lines(seq)]
        out.append("+" + (title if rng.random() < 0.3 else "") + nl)
        out += [l + nl for l in lines(qual)]
    return "".join(out)


def biopython_general(text):
    return [list(t) for t in FastqGeneralIterator(io.StringIO(text, newline=None))]


@bio_runtimes()
def test_parser_matches_biopython(runtime):
    texts = [random_fastq(s) for s in range(50)]
    # '@' at the start of a quality line, a wrapped record, an empty read
    texts.append("@a\nACGTAC\n+\n@IIIII\n@b\nAC\nGT\n+b\nII\nII\n@c\n+\n\n")
    got = run_bio(runtime, f"""
        local X = require "bio.fastq"
        local out = {{}}
        for i, text in ipairs({lua(texts)}) do
          local per = {{}}
          for _, cs in ipairs{{1, 5, 1048576}} do
            local recs = {{}}
            for r in X.records_from_string(text, {{chunk_size = cs}}) do
              recs[#recs + 1] = {{r.description, r.seq, r.quality, r.id, r.qualities}}
            end
            per[#per + 1] = recs
          end
          out[i] = per
        end
        return out
    """)
    for text, per in zip(texts, got):
        want = biopython_general(text)
        records = list(SeqIO.parse(io.StringIO(text, newline=None), "fastq"))
        for recs in per:
            recs = recs or []
            assert [r[:3] for r in recs] == want, text[:60]
            assert [r[3] for r in recs] == [r.id for r in records]
            assert [r[4] or [] for r in recs] == [r.letter_annotations["phred_quality"] for r in records]


@bio_runtimes()
def test_errors_carry_line_numbers(runtime):
    cases = {
        "length": "@a\nACGT\n+\nIIIII\n@b\nA\n+\nI\n",
        # a short quality swallows the next '@' line, as in Biopython; the next line then cannot fit
        "length_short": "@a\nACGT\n+\nIII\n@b\nA\n+\nI\n",
        "truncated_no_plus": "@a\nACGT\nAC\n",
        "truncated_no_quality": "@a\nACGT\n+\n",
        "bad_header": "@a\nAC\n+\nII\nxyz\nAC\n+\nII\n",
        "quality_range": "@a\nACGT\n+\nII\x7fI\n",
        "title_mismatch": "@a\nAC\n+b\nII\n",
        "space_in_quality": "@a\nACGT\n+\nI II\n",
    }
    got = run_bio(runtime, f"""
        local X = require "bio.fastq"
        local out = {{}}
        for name, text in pairs({lua(cases)}) do
          local ok, err = pcall(X.parse, text)
          out[name] = ok and "no error" or err
        end
        return out
    """)
    assert "line 4: sequence and quality lengths differ in record 'a' (line 1): 4 and 5" in got["length"]
    assert "line 6: expected a record header starting with '@' after record 'a' (line 1), got \"A\"" in got["length_short"]
    assert "line 3: unexpected end of file in record 'a' (line 1)" in got["truncated_no_plus"]
    assert "line 3: unexpected end of file in record 'a' (line 1): no quality line" in got["truncated_no_quality"]
    assert "line 5: expected a record header starting with '@'" in got["bad_header"]
    assert "line 4: quality character '\\127' (ASCII 127) at column 3 is out of range for FASTQ variant sanger" in got["quality_range"]
    assert "line 3: the '+' line repeats a different title" in got["title_mismatch"]
    assert "line 4: quality character ' ' (ASCII 32) at column 2" in got["space_in_quality"]
    for text in cases.values():  # Biopython's high-level parser rejects every one of them
        with pytest.raises(ValueError):
            list(SeqIO.parse(io.StringIO(text), "fastq"))


@bio_runtimes()
def test_variants_and_writer(runtime):
    text = "@r1 d\nACGT\n+\n@Jh~\n"
    got = run_bio(runtime, f"""
        local X = require "bio.fastq"
        local ill = X.parse({lua(text)}, {{variant = "illumina"}})[1]
        local san = X.parse({lua(text)})[1]
        local sol = X.parse("@s\\nAC\\n+\\n;h\\n", {{variant = "solexa"}})[1]
        local ok, err = pcall(X.parse, "@s\\nAC\\n+\\n!h\\n", {{variant = "illumina"}})
        local w = X.format({{id = "r1", description = "r1 d", seq = "ACGT", qualities = san.qualities}})
        local w2 = X.format({{id = "r9", seq = "AC", qualities = {{0, 62}}}}, {{variant = "illumina"}})
        return {{ill.qualities, san.qualities, sol.qualities, err, w, w2}}
    """)
    assert got[0] == [0, 10, 40, 62]
    assert got[1] == [31, 41, 71, 93]
    assert got[2] == [-5, 40]
    assert "out of range for FASTQ variant illumina" in got[3]
    assert got[4] == text
    assert got[5] == "@r9\nAC\n+\n@~\n"
    rec = next(SeqIO.parse(io.StringIO(text), "fastq-illumina"))
    assert rec.letter_annotations["phred_quality"] == got[0]
    rec = next(SeqIO.parse(io.StringIO("@s\nAC\n+\n;h\n"), "fastq-solexa"))
    assert rec.letter_annotations["solexa_quality"] == got[2]


def test_file_roundtrip(tmp_path):
    src = tmp_path / "in.fq"
    src.write_text(random_fastq(99).replace("\r\n", "\n"))
    dst = tmp_path / "out.fq"
    got = run_bio("lua5.4", f"""
        local X = require "bio.fastq"
        return X.write({lua(str(dst))}, X.records({lua(str(src))}))
    """)
    assert got == len(biopython_general(src.read_text()))
    assert biopython_general(dst.read_text()) == [[t, s, q] for t, s, q in biopython_general(src.read_text())]


def mutated_fastq(seed: int) -> str:
    """A random FASTQ text with one random corruption (or none)."""
    rng = random.Random(seed)
    lines = random_fastq(seed).replace("\r\n", "\n").split("\n")
    op = rng.randrange(5)
    if op == 0 and len(lines) > 2:
        del lines[rng.randrange(len(lines) - 1)]
    elif op == 1:
        i = rng.randrange(len(lines))
        lines[i] = lines[i][:-1]
    elif op == 2:
        lines.insert(rng.randrange(len(lines)), "junk")
    elif op == 3:
        i = rng.randrange(len(lines))
        lines[i] += "I"
    return "\n".join(lines)


def parse_each(runtime, texts):
    """For each text: ["ok", [[id, description, seq, qualities], ...]] or ["error", message] from fastq.parse."""
    return run_bio(runtime, f"""
        local X = require "bio.fastq"
        local out = {{}}
        for i, t in ipairs({lua(texts)}) do
          local ok, res = pcall(X.parse, t)
          if ok then
            local recs = {{}}
            for j, r in ipairs(res) do recs[j] = {{r.id, r.description, r.seq, r.qualities}} end
            out[i] = {{"ok", recs}}
          else
            out[i] = {{"error", res}}
          end
        end
        return out
    """)


@bio_runtimes()
def test_corrupted_files_fail_exactly_when_biopython_fails(runtime):
    texts = [mutated_fastq(seed) for seed in range(80)]
    got = parse_each(runtime, texts)
    for text, (kind, value) in zip(texts, got):
        try:
            want = ["ok", [[r.description, str(r.seq), r.letter_annotations["phred_quality"]]
                           for r in SeqIO.parse(io.StringIO(text), "fastq")]]
        except ValueError:
            want = ["error", None]
        assert kind == want[0], (text, value)
        if kind == "ok":
            assert [[d, s, q or []] for _, d, s, q in (value or [])] == want[1]
        else:
            assert " line " in value  # every error names its line


# Python's whitespace in ASCII (str.split / str.rstrip) includes \x0b, \x0c and \x1c-\x1f; Biopython's
# FASTQ parser also refuses any control character, space or DEL left in a sequence (isprintable).
ODD_BYTES = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x00", "\x7f", "\x01"]


def odd_fastq_cases():
    cases = []
    for ch in ODD_BYTES:
        cases += [f"@r1 x\nAC{ch}GT\n+\nIIIII\n",          # inside the sequence
                  f"@r1 x\nACGT{ch}\n+\nIIII\n",           # at its end (stripped if whitespace)
                  f"@r1{ch}x y\nACGT\n+\nIIII\n",          # inside the title: the id ends there or not
                  f"@{ch}r1 x\nACGT\n+\nIIII\n",           # leading
                  f"@r1 x{ch}\nACGT\n+r1 x\nIIII{ch}\n",   # trailing title and quality
                  f"@r1\nAC\nGT{ch}\n+\nII\nII\n"]         # a wrapped record
    return cases


def biopython_fastq(text):
    try:
        return ["ok", [[r.id, r.description, str(r.seq), r.letter_annotations["phred_quality"]]
                       for r in SeqIO.parse(io.StringIO(text), "fastq")]]
    except ValueError:
        return ["error", None]


@bio_runtimes()
def test_python_whitespace_and_control_bytes_as_biopython(runtime):
    cases = odd_fastq_cases()
    got = parse_each(runtime, cases)
    for text, (kind, value) in zip(cases, got):
        want_kind, want = biopython_fastq(text)
        assert kind == want_kind, (text, value)
        if kind == "ok":
            assert [[i, d, s, q or []] for i, d, s, q in value] == want, text
        elif "\n+\nIIIII\n" in text:  # a control byte inside the sequence: named
            assert "whitespace or a control character" in value and "at column 3" in value, value
