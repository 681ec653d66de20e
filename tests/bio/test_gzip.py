"""bio._gzip / bio._inflate against Python's gzip and zlib and htslib's bgzip, on every interpreter.

Every test runs the Lua modules in a stock interpreter (``lua5.1`` … ``lua5.4``, ``luajit``) as
a subprocess with ``LUA_PATH`` pointing at ``bio_stdlib``.  LuaJIT runs three ways: with its
zlib fast path (the FFI), with ``BIOXEN_NO_FFI_ZLIB=1`` (the pure-Lua engine on the same
interpreter) and with ``BIOXEN_BIO_PORTABLE=1`` (no FFI at all), so both engines are checked
byte for byte against the same references: ``gzip.decompress``, ``zlib.decompressobj`` and
``bgzip -dc``.  A missing interpreter or ``bgzip`` skips with the package to install
(a failure under ``BIOXEN_REQUIRE_SYSTEM=1``, see tests/conftest.py).
"""
from __future__ import annotations

import ctypes.util
import gzip
import json
import os
import random
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from bioxen_shell.paths import bio_stdlib_dir
from tests.system import require_binary

# runtime id -> (interpreter, extra environment, engine the reader must use)
RUNTIMES = {
    "lua5.1": ("lua5.1", {}, "lua"),
    "lua5.2": ("lua5.2", {}, "lua"),
    "lua5.3": ("lua5.3", {}, "lua"),
    "lua5.4": ("lua5.4", {}, "lua"),
    "luajit": ("luajit", {}, "zlib"),  # BGZF blocks through libdeflate when it loads
    "luajit-nolibdeflate": ("luajit", {"BIOXEN_NO_LIBDEFLATE": "1"}, "zlib"),  # every member on zlib's stream
    "luajit-nozlib": ("luajit", {"BIOXEN_NO_FFI_ZLIB": "1"}, "lua"),
    "luajit-portable": ("luajit", {"BIOXEN_BIO_PORTABLE": "1"}, "lua"),
}

all_runtimes = pytest.mark.parametrize("runtime", list(RUNTIMES))

# A tiny JSON encoder, so every interpreter reports results the same way.
_PRELUDE = r"""
local function enc(v)
  local t = type(v)
  if t == "nil" then return "null"
  elseif t == "boolean" then return tostring(v)
  elseif t == "number" then
    if math.floor(v) == v and math.abs(v) < 2^53 then return string.format("%d", v) end
    return string.format("%.17g", v)
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\\128-\255]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
  end
  local n, keys = #v, {}
  for k in pairs(v) do keys[#keys + 1] = k end
  if #keys == n then
    local parts = {}
    for i = 1, n do parts[i] = enc(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = enc(tostring(k)) .. ":" .. enc(v[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end
local function slurp(p) local f = assert(io.open(p, "rb")); local s = f:read("*a"); f:close(); return s end
local function spit(p, s) local f = assert(io.open(p, "wb")); f:write(s); f:close() end
local G = require "bio._gzip"
-- Decode a whole file: {ok, err, pieces, maxpiece}; the text goes to `out`.
local function decode(path, opts, out)
  local read, close
  local ok, res = pcall(function()
    read, close = G.chunks(path, opts)
    local parts, n, maxp = {}, 0, 0
    while true do
      local p = read()
      if p == nil then break end
      if #p == 0 then error("read() returned an empty piece") end
      n = n + 1
      parts[n] = p
      if #p > maxp then maxp = #p end
    end
    if read() ~= nil then error("read() after the end returned text") end
    close(); close()
    if out then spit(out, table.concat(parts)) end
    return { ok = true, pieces = n, maxpiece = maxp }
  end)
  if ok then return res end
  if close then close() end
  return { ok = false, err = tostring(res) }
end
"""


def run_lua(runtime: str, code: str, env: dict | None = None):
    """Run `code` (a function body returning one value) on `runtime`; its JSON-decoded result."""
    exe_name, extra, _ = RUNTIMES[runtime]
    exe = require_binary(exe_name)
    bio = bio_stdlib_dir()
    script = _PRELUDE + "\nlocal function main()\n" + code + "\nend\nio.write(enc(main()))\n"
    proc = subprocess.run(
        [exe, "-"], input=script.encode(), capture_output=True, timeout=600,
        env={**os.environ, "LUA_PATH": f"{bio}/?.lua;{bio}/?/init.lua;;", **extra, **(env or {})})
    if proc.returncode != 0:
        raise AssertionError(f"{runtime} failed:\n{proc.stderr.decode(errors='replace')}")
    return json.loads(proc.stdout.decode("latin-1"))


def L(value) -> str:
    """A Lua literal for str / int / bool / None / list / dict."""
    if value is None:
        return "nil"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (str, Path)):
        return "[==[" + str(value) + "]==]"
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(L(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[ {L(k)} ] = {L(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def need_bgzip() -> str:
    return require_binary("bgzip")


def need_zlib_for(runtime: str) -> None:
    if RUNTIMES[runtime][2] == "zlib" and ctypes.util.find_library("z") is None:
        pytest.skip("the system zlib (libz.so.1) is not installed (apt-get install zlib1g)")


# ---------------------------------------------------------------------------
# Test data
# ---------------------------------------------------------------------------

def sequence_text(rng: random.Random, n: int) -> bytes:
    """FASTA-like text: 60-column lines of DNA with repeats and mutations, a few headers."""
    unit = "".join(rng.choice("ACGT") for _ in range(5000))
    seq = []
    while sum(map(len, seq)) < n:
        if rng.random() < 0.5:
            seq.append("".join(rng.choice("ACGTN") for _ in range(rng.randrange(100, 3000))))
        else:
            a = rng.randrange(0, 4000)
            piece = list(unit[a:a + rng.randrange(50, 1000)])
            for _ in range(len(piece) // 50):
                piece[rng.randrange(len(piece))] = rng.choice("acgt")
            seq.append("".join(piece))
    s = "".join(seq)
    out, i, rec = [], 0, 0
    while i < len(s):
        step = rng.randrange(20_000, 400_000)
        rec += 1
        out.append(f">rec{rec} random-ish test sequence\n")
        chunk = s[i:i + step]
        out.extend(chunk[j:j + 60] + "\n" for j in range(0, len(chunk), 60))
        i += step
    return "".join(out).encode()


def gzip_header(flags: int, extra: bytes = b"", name: bytes = b"", comment: bytes = b"", hcrc: bool = True,
                bad_hcrc: bool = False) -> bytes:
    h = b"\x1f\x8b\x08" + bytes([flags]) + struct.pack("<I", 1234567) + b"\x00\x03"
    if flags & 4:
        h += struct.pack("<H", len(extra)) + extra
    if flags & 8:
        h += name + b"\x00"
    if flags & 16:
        h += comment + b"\x00"
    if flags & 2 and hcrc:
        c = zlib.crc32(h) & 0xFFFF
        h += struct.pack("<H", c ^ 1 if bad_hcrc else c)
    return h


def raw_deflate(data: bytes, level: int = 6, strategy: int = zlib.Z_DEFAULT_STRATEGY, wbits: int = -15) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, wbits, 9, strategy)
    return c.compress(data) + c.flush()


def member(data: bytes, header: bytes | None = None, level: int = 6, strategy: int = zlib.Z_DEFAULT_STRATEGY) -> bytes:
    header = header if header is not None else gzip_header(0)
    return header + raw_deflate(data, level, strategy) + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def bgzf_blocks_in_python(blob: bytes) -> list[dict]:
    """The BGZF block layout, parsed independently of the Lua code."""
    out, off = [], 0
    while off < len(blob):
        assert blob[off:off + 4] == b"\x1f\x8b\x08\x04", off
        xlen = struct.unpack_from("<H", blob, off + 10)[0]
        extra, i, bsize = blob[off + 12:off + 12 + xlen], 0, None
        while i + 4 <= len(extra):
            si, slen = extra[i:i + 2], struct.unpack_from("<H", extra, i + 2)[0]
            if si == b"BC" and slen == 2:
                bsize = struct.unpack_from("<H", extra, i + 4)[0]
            i += 4 + slen
        csize = bsize + 1
        usize = struct.unpack_from("<I", blob, off + csize - 4)[0]
        out.append({"offset": off, "csize": csize, "usize": usize})
        off += csize
    return out


def bgzf_member(data: bytes, extra_before: bytes = b"") -> bytes:
    """One BGZF block built by hand (optionally with another subfield before BC)."""
    body = raw_deflate(data)
    xlen = len(extra_before) + 6
    total = 12 + xlen + len(body) + 8
    extra = extra_before + b"BC" + struct.pack("<HH", 2, total - 1)
    return (b"\x1f\x8b\x08\x04" + b"\0\0\0\0" + b"\x00\xff" + struct.pack("<H", xlen) + extra + body
            + struct.pack("<II", zlib.crc32(data), len(data)))


class Data:
    """Files written once per session: path -> expected decompressed bytes."""

    def __init__(self, root: Path):
        self.root = root
        rng = random.Random(20240601)
        self.seq = sequence_text(rng, 1_300_000)
        self.binary = bytes(range(256)) * 300 + bytes(rng.randrange(256) for _ in range(150_000)) + bytes(range(255, -1, -1)) * 50
        small = b"hello gzip\n" * 3
        self.expect: dict[str, bytes] = {}

        def put(name: str, blob: bytes, text: bytes | None = None) -> Path:
            p = root / name
            p.write_bytes(blob)
            self.expect[name] = gzip.decompress(blob) if text is None else text
            return p

        put("small.gz", gzip.compress(small, mtime=0))
        with open(root / "named.gz", "wb") as raw, \
                gzip.GzipFile(filename="some name.txt", mode="wb", fileobj=raw, mtime=0) as g:
            g.write(small)
        assert (root / "named.gz").read_bytes()[3] == 8  # FNAME set
        self.expect["named.gz"] = small
        put("headers.gz", member(small, gzip_header(2 | 4 | 8 | 16, extra=b"AB\x03\x00xyz",
                                                     name=b"n.txt", comment=b"a comment")))
        put("empty-member.gz", gzip.compress(b"", mtime=0))
        put("multi.gz", gzip.compress(b"first member\n", mtime=0) + gzip.compress(b"", mtime=0)
            + gzip.compress(b"second\n", mtime=0) + gzip.compress(b"", mtime=0))
        for level in (0, 1, 6, 9):
            put(f"binary-{level}.gz", gzip.compress(self.binary, compresslevel=level, mtime=0))
        put("binary-fixed.gz", member(self.binary[:70_000], strategy=zlib.Z_FIXED))
        put("seq-fixed.gz", member(self.seq[:200_000], strategy=zlib.Z_FIXED))
        put("seq-rle.gz", member(b"A" * 100_000 + self.seq[:100_000], strategy=zlib.Z_RLE))
        put("seq-huffman.gz", member(self.seq[:200_000], strategy=zlib.Z_HUFFMAN_ONLY))
        put("seq-stored.gz", member(self.seq[:300_000], level=0))
        put("seq.gz", gzip.compress(self.seq, compresslevel=6, mtime=0))
        # many members of odd sizes: member ends fall everywhere in the reader's 64 KiB reads
        parts, text = [], b""
        for i in range(120):
            piece = self.seq[i * 5000: i * 5000 + rng.randrange(0, 9000)]
            parts.append(member(piece, level=rng.choice([0, 1, 6, 9])))
            text += piece
        put("many.gz", b"".join(parts), text)
        put("zero-padded.gz", gzip.compress(small, mtime=0) + b"\0" * 1000, small)
        self.bgzf_hand = put("hand.bgz", bgzf_member(b"one\n", extra_before=b"XY\x02\x00ab") + bgzf_member(b"")
                             + bgzf_member(b"two\n"), b"one\ntwo\n")
        (root / "seq.fa").write_bytes(self.seq)
        (root / "binary.bin").write_bytes(self.binary)
        (root / "empty").write_bytes(b"")
        (root / "text.txt").write_bytes(b"just text\n")

    def bgzip(self, name: str) -> Path:
        """`bgzip -c` of a plain file here; the expected text is `bgzip -dc` of the result."""
        out = self.root / (name + ".bgz")
        if not out.exists():
            exe = need_bgzip()
            with open(out, "wb") as f:
                subprocess.run([exe, "-c", str(self.root / name)], stdout=f, check=True)
            self.expect[out.name] = subprocess.run([exe, "-dc", str(out)], stdout=subprocess.PIPE, check=True).stdout
        return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Data:
    return Data(tmp_path_factory.mktemp("gzip"))


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------

GZ_FILES = ["small.gz", "named.gz", "headers.gz", "empty-member.gz", "multi.gz", "binary-0.gz", "binary-1.gz",
            "binary-6.gz", "binary-9.gz", "binary-fixed.gz", "seq-fixed.gz", "seq-rle.gz", "seq-huffman.gz",
            "seq-stored.gz", "seq.gz", "many.gz", "zero-padded.gz", "hand.bgz"]


@all_runtimes
def test_decodes_what_python_gzip_decodes(runtime, data, tmp_path):
    need_zlib_for(runtime)
    jobs = {name: str(tmp_path / (name + ".out")) for name in GZ_FILES}
    got = run_lua(runtime, f"""
        local res = {{ backend = G.backend }}
        for name, out in pairs({L(jobs)}) do res[name] = decode({L(str(data.root))} .. "/" .. name, nil, out) end
        return res
    """)
    assert got.pop("backend") == RUNTIMES[runtime][2]
    for name in GZ_FILES:
        assert got[name]["ok"], (name, got[name])
        assert Path(jobs[name]).read_bytes() == data.expect[name], name


@all_runtimes
def test_decodes_what_bgzip_writes(runtime, data, tmp_path):
    need_zlib_for(runtime)
    tiny = data.root / "tiny65"
    tiny.write_bytes(b"x" * 64 + b"\n")
    names = [data.bgzip(n).name for n in ("seq.fa", "binary.bin", "empty", "tiny65")]
    jobs = {name: str(tmp_path / (name + ".out")) for name in names}
    got = run_lua(runtime, f"""
        local res = {{}}
        for name, out in pairs({L(jobs)}) do
          res[name] = decode({L(str(data.root))} .. "/" .. name, nil, out)
          res[name].bgzf = G.is_bgzf({L(str(data.root))} .. "/" .. name)
          res[name].gzip = G.is_gzip({L(str(data.root))} .. "/" .. name)
        end
        return res
    """)
    for name in names:
        assert got[name]["ok"], (name, got[name])
        assert got[name]["bgzf"] and got[name]["gzip"]
        assert Path(jobs[name]).read_bytes() == data.expect[name], name
    assert data.expect["seq.fa.bgz"] == data.seq and data.expect["binary.bin.bgz"] == data.binary


@all_runtimes
def test_pieces_respect_chunk_size(runtime, data, tmp_path):
    need_zlib_for(runtime)
    cases = [("many.gz", 1000), ("seq.gz", 4096), ("seq.gz", 100_000), ("binary-0.gz", 65536), ("small.gz", 1),
             ("multi.gz", 3), ("seq-stored.gz", 70_000)]
    got = run_lua(runtime, f"""
        local res = {{}}
        for i, c in ipairs({L([list(c) for c in cases])}) do
          res[i] = decode({L(str(data.root))} .. "/" .. c[1], {{chunk_size = c[2]}}, {L(str(tmp_path))} .. "/" .. i)
        end
        return res
    """)
    for i, (name, size) in enumerate(cases, 1):
        assert got[i - 1]["ok"], got[i - 1]
        assert (tmp_path / str(i)).read_bytes() == data.expect[name]
        assert got[i - 1]["maxpiece"] <= size
        if len(data.expect[name]) >= 4 * size:
            assert got[i - 1]["maxpiece"] == size  # pieces are filled, not just bounded


@pytest.mark.parametrize("runtime", ["lua5.1", "lua5.4", "luajit", "luajit-nozlib"])
def test_one_byte_pieces_across_members(runtime, data, tmp_path):
    need_zlib_for(runtime)
    got = run_lua(runtime, f"""
        return decode({L(str(data.root / "many.gz"))}, {{chunk_size = 1}}, {L(str(tmp_path / "out"))})
    """)
    assert got["ok"] and got["maxpiece"] == 1
    assert (tmp_path / "out").read_bytes() == data.expect["many.gz"]


@all_runtimes
def test_tiny_file_reads_put_boundaries_everywhere(runtime, data, tmp_path):
    """G.READ_SIZE of a few bytes: headers, deflate data and trailers all cross read boundaries."""
    need_zlib_for(runtime)
    bgz = data.bgzip("seq.fa")
    blocks = bgzf_blocks_in_python(bgz.read_bytes())
    cases = [("small.gz", 1, {}), ("headers.gz", 1, {}), ("named.gz", 2, {}), ("multi.gz", 1, {}),
             ("hand.bgz", 1, {}), ("zero-padded.gz", 3, {}), ("many.gz", 5, {}), ("many.gz", 7, {}),
             ("seq-stored.gz", 13, {}), ("binary-6.gz", 11, {}), ("seq-rle.gz", 4097, {}),
             (bgz.name, 6, {"start": blocks[2]["offset"], "skip": 1000, "limit": 150_000}),
             (bgz.name, 9, {"skip": 200_000, "limit": 10})]
    got = run_lua(runtime, f"""
        local res = {{}}
        for i, c in ipairs({L([list(c) for c in cases])}) do
          G.READ_SIZE = c[2]
          res[i] = decode({L(str(data.root))} .. "/" .. c[1], c[3], {L(str(tmp_path))} .. "/" .. i)
        end
        return res
    """)
    ustart = [sum(b["usize"] for b in blocks[:k]) for k in range(len(blocks))]
    for i, (name, _, opts) in enumerate(cases, 1):
        assert got[i - 1]["ok"], (name, got[i - 1])
        text = data.expect[name]
        begin = (ustart[2] if "start" in opts else 0) + opts.get("skip", 0)
        want = text[begin:begin + opts["limit"]] if "limit" in opts else text[begin:]
        assert (tmp_path / str(i)).read_bytes() == want, name


@all_runtimes
def test_stream_leaves_the_input_right_after_the_deflate_data(runtime, data, tmp_path):
    """bio._inflate.stream fed 1-7 byte strings: output, and where it leaves src (s, pos, base)."""
    rng = random.Random(3)
    streams, tails = [], []
    for level, strategy, text in [(0, 0, data.seq[:70_000]), (1, 0, data.seq[:30_000]), (9, 0, data.binary[:40_000]),
                                  (6, zlib.Z_FIXED, data.seq[:20_000]), (6, zlib.Z_HUFFMAN_ONLY, data.seq[:9000]),
                                  (6, zlib.Z_RLE, b"A" * 5000 + data.seq[:5000]), (6, 0, b""), (0, 0, b"")]:
        streams.append((raw_deflate(text, level, strategy), text))
        tails.append(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 12))))
    paths = []
    for i, ((stream, _), tail) in enumerate(zip(streams, tails)):
        p = tmp_path / f"s{i}"
        p.write_bytes(stream + tail)
        paths.append(str(p))
    got = run_lua(runtime, f"""
        local I = require "bio._inflate"
        local res = {{}}
        for i, path in ipairs({L(paths)}) do
          local all = slurp(path)
          local at, seed = 1, i
          local function piece()
            if at > #all then return nil end
            seed = (seed * 1103515245 + 12345) % 2147483648
            local n = 1 + seed % 7
            local s = all:sub(at, at + n - 1)
            at = at + n
            return s
          end
          local src = {{ pos = 1, base = 0 }}
          src.s = piece() or ""
          function src.more()
            local nx = piece()
            if nx then src.base = src.base + #src.s; src.s = nx end
            return nx
          end
          local d = I.stream(src)
          local out = {{}}
          for p in d.read, 1000 do out[#out + 1] = p end
          local rest = src.s:sub(src.pos)
          while true do local nx = piece(); if not nx then break end; rest = rest .. nx end
          res[i] = {{ G.crc32(table.concat(out)), #table.concat(out), rest == all:sub(-#rest) and #rest or -1,
                     src.base + src.pos - 1 }}
        end
        return res
    """)
    for (stream, text), tail, mine in zip(streams, tails, got):
        assert mine == [zlib.crc32(text), len(text), len(tail), len(stream)]


# ---------------------------------------------------------------------------
# BGZF: blocks, start / skip / limit
# ---------------------------------------------------------------------------

@all_runtimes
def test_blocks_match_the_layout_parsed_in_python(runtime, data):
    files = [data.bgzip("seq.fa"), data.bgzip("binary.bin"), data.bgzip("empty"), data.bgzf_hand]
    got = run_lua(runtime, f"""
        local res = {{}}
        for i, p in ipairs({L([str(f) for f in files])}) do
          local list = {{}}
          for b in G.blocks(p) do list[#list + 1] = {{ offset = b.offset, csize = b.csize, usize = b.usize }} end
          res[i] = list
        end
        return res
    """)
    for f, blocks in zip(files, got):
        want = bgzf_blocks_in_python(f.read_bytes())
        assert blocks == want, f.name
        assert sum(b["usize"] for b in want) == len(data.expect[f.name])
    assert len(got[0]) > 20  # the 1.3 MB sequence spans many blocks
    assert got[2] == [{"offset": 0, "csize": 28, "usize": 0}]  # an empty file: the EOF block alone


@all_runtimes
def test_start_skip_limit(runtime, data, tmp_path):
    need_zlib_for(runtime)
    path = data.bgzip("seq.fa")
    text = data.expect[path.name]
    blocks = bgzf_blocks_in_python(path.read_bytes())
    ustart, acc = [], 0
    for b in blocks:
        ustart.append(acc)
        acc += b["usize"]
    rng = random.Random(7)
    cases = [  # (start block index, skip, limit)
        (0, 0, None), (0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 65279, 2), (0, 65280, 10), (3, 0, None),
        (3, 17, 100), (5, 0, 200_000), (0, 300_000, 5000), (0, len(text) - 3, None), (0, len(text), None),
        (0, len(text) + 10, 5), (len(blocks) - 1, 0, None), (len(blocks) - 2, 0, None), (2, 10, 0),
    ]
    for _ in range(12):
        k = rng.randrange(len(blocks))
        cases.append((k, rng.randrange(0, 200_000), rng.choice([None, rng.randrange(0, 150_000)])))
    lua_cases = [{"start": blocks[k]["offset"], "skip": s, "limit": lim} for k, s, lim in cases]
    got = run_lua(runtime, f"""
        local res = {{}}
        for i, c in ipairs({L(lua_cases)}) do
          res[i] = decode({L(str(path))}, {{start = c.start, skip = c.skip, limit = c.limit, chunk_size = 50000}},
                          {L(str(tmp_path))} .. "/" .. i)
        end
        return res
    """)
    for i, (k, s, lim) in enumerate(cases, 1):
        assert got[i - 1]["ok"], (k, s, lim, got[i - 1])
        begin = ustart[k] + s
        want = text[begin:] if lim is None else text[begin:begin + lim]
        assert (tmp_path / str(i)).read_bytes() == want, (k, s, lim)


@all_runtimes
def test_skip_and_limit_on_plain_gzip(runtime, data, tmp_path):
    need_zlib_for(runtime)
    cases = [("seq.gz", 0, 10), ("seq.gz", 1_000_000, None), ("many.gz", 12345, 54321), ("multi.gz", 5, 12),
             ("multi.gz", 13, None), ("binary-0.gz", 70_000, 70_000)]
    got = run_lua(runtime, f"""
        local res = {{}}
        for i, c in ipairs({L([list(c) for c in cases])}) do
          res[i] = decode({L(str(data.root))} .. "/" .. c[1], {{skip = c[2], limit = c[3]}}, {L(str(tmp_path))} .. "/" .. i)
        end
        return res
    """)
    for i, (name, s, lim) in enumerate(cases, 1):
        assert got[i - 1]["ok"], got[i - 1]
        text = data.expect[name]
        assert (tmp_path / str(i)).read_bytes() == (text[s:] if lim is None else text[s:s + lim])


@all_runtimes
def test_limit_stops_before_a_bad_block(runtime, data, tmp_path):
    """limit reads no further than needed: a corrupt later block is never touched."""
    need_zlib_for(runtime)
    blob = bytearray(data.bgzip("seq.fa").read_bytes())
    blocks = bgzf_blocks_in_python(bytes(blob))
    bad = blocks[4]
    blob[bad["offset"] + bad["csize"] - 8] ^= 0xFF  # its CRC32
    path = tmp_path / "bad.bgz"
    path.write_bytes(bytes(blob))
    before = sum(b["usize"] for b in blocks[:4])
    got = run_lua(runtime, f"""
        return {{ decode({L(str(path))}, {{limit = {before}}}), decode({L(str(path))}),
                 decode({L(str(path))}, {{skip = {before + 10}}}) }}
    """)
    assert got[0]["ok"]
    msg = got[1]["err"]
    assert msg.startswith(f"bio._gzip.chunks: '{path}': CRC32 mismatch in gzip member at byte offset {bad['offset']} "), msg
    assert got[2]["err"] == msg  # skipping into the bad block still checks it


@all_runtimes
def test_blocks_errors(runtime, data, tmp_path):
    bgz = data.bgzip("seq.fa").read_bytes()
    blocks = bgzf_blocks_in_python(bgz)
    cut_header = tmp_path / "cut-header.bgz"
    cut_header.write_bytes(bgz[:blocks[2]["offset"] + 7])
    cut_body = tmp_path / "cut-body.bgz"
    cut_body.write_bytes(bgz[:blocks[3]["offset"] + 100])
    files = [str(data.root / "seq.gz"), str(data.root / "text.txt"), str(data.root / "empty"),
             str(cut_header), str(cut_body), str(tmp_path / "missing.bgz")]
    got = run_lua(runtime, f"""
        local res = {{}}
        for i, p in ipairs({L(files)}) do
          local ok, err = pcall(function() local n = 0 for b in G.blocks(p) do n = n + 1 end return n end)
          res[i] = ok and "ok" or tostring(err)
        end
        return res
    """)
    pre = "bio._gzip.blocks: '{}': "
    assert got[0] == pre.format(files[0]) + "not a BGZF file (the gzip member at byte offset 0 has no extra field)"
    assert got[1] == pre.format(files[1]) + "not a BGZF file (no gzip header at byte offset 0)"
    assert got[2] == pre.format(files[2]) + "not a BGZF file (it is empty)"
    assert got[3] == pre.format(files[3]) + (f"truncated BGZF block at byte offset {blocks[2]['offset']} "
                                             "(file ends inside its header)")
    assert got[4] == pre.format(files[4]) + (f"truncated BGZF block at byte offset {blocks[3]['offset']} "
                                             f"(the file ends before its {blocks[3]['csize']} bytes)")
    assert "bio._gzip.blocks: cannot open '" + files[5] + "'" in got[5]


@all_runtimes
def test_is_gzip_and_is_bgzf(runtime, data):
    files = ["small.gz", "seq.gz", "hand.bgz", "text.txt", "empty", "seq.fa"]
    got = run_lua(runtime, f"""
        local res = {{}}
        for i, n in ipairs({L(files)}) do
          local p = {L(str(data.root))} .. "/" .. n
          res[i] = {{ G.is_gzip(p), G.is_bgzf(p) }}
        end
        local ok, err = pcall(G.is_gzip, {L(str(data.root / "nope"))})
        res[#res + 1] = tostring(err)
        return res
    """)
    assert got[:-1] == [[True, False], [True, False], [True, True], [False, False], [False, False], [False, False]]
    assert "bio._gzip.is_gzip: cannot open '" in got[-1]


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

def _error_files(data: Data) -> dict[str, tuple[bytes, str]]:
    """name -> (file contents, the error message after "bio._gzip.chunks: '<path>': ")."""
    first = gzip.compress(b"first member\n", mtime=0)
    second = bytearray(gzip.compress(data.seq[:50_000], mtime=0))
    bad_crc = bytes(second[:-8]) + bytes([second[-8] ^ 0x55]) + bytes(second[-7:])
    stored_crc = struct.unpack("<I", bad_crc[-8:-4])[0]
    bad_size = bytes(second[:-4]) + struct.pack("<I", 49_999)
    whole = gzip.compress(data.seq[:200_000], mtime=0)
    bad_type = bytearray(gzip.compress(b"abc", mtime=0))
    bad_type[10] |= 0b110  # BTYPE = 3
    bad_method = bytearray(whole)
    bad_method[2] = 7
    reserved = bytearray(whole)
    reserved[3] = 0x20
    off = len(first)
    return {
        "bad-crc.gz": (first + bad_crc, f"CRC32 mismatch in gzip member at byte offset {off} "
                                         f"(stored 0x{stored_crc:08x}, computed 0x{zlib.crc32(data.seq[:50_000]):08x})"),
        "bad-isize.gz": (first + bad_size, f"ISIZE mismatch in gzip member at byte offset {off} "
                                           "(stored 49999, decompressed 50000 mod 2^32)"),
        "cut-deflate.gz": (whole[:len(whole) // 2], "truncated gzip member at byte offset 0 (unexpected end of file)"),
        "cut-trailer.gz": (whole[:-3], "truncated gzip member at byte offset 0 (unexpected end of file)"),
        "cut-header.gz": (whole[:6], "truncated gzip member at byte offset 0 (unexpected end of file)"),
        "cut-second.gz": (first + whole[:5000], f"truncated gzip member at byte offset {off} (unexpected end of file)"),
        "cut-name.gz": (gzip_header(8, name=b"long-name")[:14], "truncated gzip member at byte offset 0 (unexpected end of file)"),
        "bad-type.gz": (bytes(bad_type), "corrupt deflate data in gzip member at byte offset 0: invalid block type"),
        "bad-method.gz": (bytes(bad_method), "unsupported compression method 7 in gzip member at byte offset 0"),
        "reserved.gz": (bytes(reserved), "reserved header flags set in gzip member at byte offset 0"),
        "bad-hcrc.gz": (member(b"x", gzip_header(2, bad_hcrc=True)),
                        "header CRC mismatch in gzip member at byte offset 0 (stored 0x{:04x}, computed 0x{:04x})".format(
                            (zlib.crc32(gzip_header(2, hcrc=False)) & 0xFFFF) ^ 1, zlib.crc32(gzip_header(2, hcrc=False)) & 0xFFFF)),
        "garbage.gz": (first + b"PK\x03\x04", f"unexpected data after the last gzip member (no gzip magic at byte offset {off})"),
        "plain.txt": (b"not compressed at all\n", "not a gzip file (no gzip magic at byte offset 0)"),
        "empty.gz": (b"", "not a gzip file (it is empty)"),
    }


@all_runtimes
def test_errors_name_the_file_and_the_member(runtime, data, tmp_path):
    need_zlib_for(runtime)
    cases = _error_files(data)
    for name, (blob, _) in cases.items():
        (tmp_path / name).write_bytes(blob)
    got = run_lua(runtime, f"""
        local res = {{}}
        for _, n in ipairs({L(list(cases))}) do res[n] = decode({L(str(tmp_path))} .. "/" .. n) end
        return res
    """)
    for name, (_, msg) in cases.items():
        assert got[name] == {"ok": False, "err": f"bio._gzip.chunks: '{tmp_path / name}': {msg}"}, name


@all_runtimes
def test_argument_and_environment_errors(runtime, data):
    seq = str(data.root / "seq.gz")
    got = run_lua(runtime, f"""
        local function err(f, ...) local ok, e = pcall(f, ...) return ok and "no error" or tostring(e) end
        local res = {{}}
        res[1] = err(G.chunks, {L(seq)}, {{ limt = 5 }})
        res[2] = err(G.chunks, {L(seq)}, {{ skip = -1 }})
        res[3] = err(G.chunks, 42)
        res[4] = decode({L(seq)}, {{ start = 5 }}).err
        res[5] = decode({L(seq)}, {{ start = 10 ^ 9 }}).err
        res[6] = decode({L(seq)}, {{ fname = "bio.fasta.records", start = 5 }}).err
        local open = io.open
        io.open = nil
        res[7] = err(G.chunks, {L(seq)})
        res[8] = err(G.blocks, {L(seq)})
        io.open = open
        res[9] = err(G.chunks, {L(str(data.root / "missing.gz"))})
        return res
    """)
    assert got[0].endswith("bio._gzip.chunks: bad argument #2 'opts': unknown option 'limt' "
                           "(known: start, skip, limit, chunk_size, fname)")
    assert got[1].endswith("bio._gzip.chunks: bad argument #2 'skip': must be an integer from 0 to infinity, got -1")
    assert got[2].endswith("bio._gzip.chunks: bad argument #1 'path': expected a string, got number")
    assert got[3] == (f"bio._gzip.chunks: '{seq}': no gzip member starts at byte offset 5 (no gzip magic there; "
                      "`start` must be a member or BGZF block offset)")
    assert got[4] == f"bio._gzip.chunks: '{seq}': no gzip member at byte offset 1000000000 (end of file)"
    assert got[5].startswith(f"bio.fasta.records: '{seq}': no gzip member starts at byte offset 5")
    assert got[6].endswith("bio._gzip.chunks: cannot open files here (io.open is disabled, e.g. in a sandboxed VM)")
    assert got[7].endswith("bio._gzip.blocks: cannot open files here (io.open is disabled, e.g. in a sandboxed VM)")
    assert f"bio._gzip.chunks: cannot open '{data.root / 'missing.gz'}'" in got[8]


# ---------------------------------------------------------------------------
# The engines: both run, and agree with zlib on raw deflate, valid or not
# ---------------------------------------------------------------------------

class BitWriter:
    def __init__(self):
        self.bits: list[int] = []

    def put(self, value: int, n: int) -> "BitWriter":
        self.bits.extend((value >> i) & 1 for i in range(n))
        return self

    def bytes(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(sum(bits[i + j] << j for j in range(8)) for i in range(0, len(bits), 8))


def incomplete_code_lengths_stream() -> bytes:
    """A dynamic block whose code-length code is a single 1-bit code: incomplete, so invalid."""
    w = BitWriter().put(1, 1).put(2, 2).put(0, 5).put(0, 5).put(0, 4)
    w.put(1, 3).put(0, 3).put(0, 3).put(0, 3)  # lengths of code-length symbols 16, 17, 18, 0
    return w.bytes() + b"\0" * 8


@pytest.mark.parametrize("runtime", ["luajit", "luajit-nozlib", "lua5.4"])
def test_the_chosen_engine_really_runs(runtime, tmp_path):
    """zlib and bio._inflate word this error differently, which shows which engine decoded."""
    need_zlib_for(runtime)
    body = incomplete_code_lengths_stream()
    path = tmp_path / "x.gz"
    path.write_bytes(gzip_header(0) + body + struct.pack("<II", 0, 0))
    got = run_lua(runtime, f"""
        local a = decode({L(str(path))})
        G.backend = "lua"   -- the module-level switch
        local b = decode({L(str(path))})
        return {{ a.err, b.err }}
    """)
    prefix = f"bio._gzip.chunks: '{path}': corrupt deflate data in gzip member at byte offset 0: "
    zlib_msg, lua_msg = prefix + "invalid code lengths set", prefix + "invalid code lengths set (incomplete)"
    assert got == [zlib_msg if RUNTIMES[runtime][2] == "zlib" else lua_msg, lua_msg]


def _fuzz_cases(rng: random.Random, seq: bytes) -> list[bytes]:
    cases = []
    strategies = [zlib.Z_DEFAULT_STRATEGY, zlib.Z_FIXED, zlib.Z_RLE, zlib.Z_HUFFMAN_ONLY, zlib.Z_FILTERED]
    for i in range(260):
        kind = rng.random()
        if kind < 0.3:
            text = seq[rng.randrange(0, 500_000):][:rng.randrange(0, 20_000)]
        elif kind < 0.5:
            text = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
        else:
            alphabet = bytes(rng.sample(range(256), rng.randrange(1, 6)))
            text = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 40_000)))
        stream = raw_deflate(text, rng.randrange(0, 10), rng.choice(strategies))
        if i % 3 == 1:  # corrupt a few bytes (headers are where most checks live: bias to the start)
            b = bytearray(stream)
            for _ in range(rng.randrange(1, 4)):
                if b:
                    at = rng.randrange(min(len(b), 40)) if rng.random() < 0.6 else rng.randrange(len(b))
                    b[at] ^= 1 << rng.randrange(8)
            stream = bytes(b)
        elif i % 3 == 2 and i % 2 == 0:
            stream = stream[:rng.randrange(0, len(stream) + 1)]
        elif i % 7 == 0:
            stream = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        cases.append(stream + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 5))))
    return cases


def _zlib_reference(stream: bytes):
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(stream)
    except zlib.error as e:
        return ("error", str(e))
    if not d.eof:
        return ("truncated", None)
    return ("ok", out, len(stream) - len(d.unused_data))


@pytest.mark.parametrize("runtime", ["lua5.1", "lua5.3", "lua5.4", "luajit"])
def test_raw_inflate_agrees_with_zlib(runtime, data, tmp_path):
    """bio._inflate.inflate on valid, corrupted, truncated and random streams, against zlib."""
    rng = random.Random(99)
    cases = _fuzz_cases(rng, data.seq)
    blob = b"".join(cases)
    (tmp_path / "cases").write_bytes(blob)
    sizes = [len(c) for c in cases]
    got = run_lua(runtime, f"""
        local I = require "bio._inflate"
        local blob, res, at = slurp({L(str(tmp_path / "cases"))}), {{}}, 1
        for i, n in ipairs({L(sizes)}) do
          local s = blob:sub(at, at + n - 1)
          at = at + n
          local ok, out, nxt = pcall(I.inflate, s, 1)
          if ok then
            res[i] = {{ "ok", #out, G.crc32(out), nxt - 1 }}
          else
            res[i] = {{ out == "inflate: " .. I.TRUNCATED and "truncated" or "error", tostring(out) }}
          end
        end
        return res
    """)
    outcomes = {"ok": 0, "error": 0, "truncated": 0}
    for case, mine in zip(cases, got):
        ref = _zlib_reference(case)
        outcomes[ref[0]] += 1
        if ref[0] == "ok":
            assert mine == ["ok", len(ref[1]), zlib.crc32(ref[1]), ref[2]], mine
        else:
            assert mine[0] == ref[0], (mine, ref)
            assert mine[1].startswith("inflate: ")
    assert min(outcomes.values()) >= 10, outcomes  # every kind of outcome was exercised


@all_runtimes
def test_raw_inflate_positions_and_crc32(runtime, data, tmp_path):
    text = data.seq[:70_000]
    stream = raw_deflate(text, 9)
    padded = b"xyz" + stream + b"TAIL"
    strings = [b"", b"a", b"hello", data.binary[:5000]]
    stream_path = tmp_path / "stream"
    stream_path.write_bytes(padded)
    crc_paths = [tmp_path / f"crc{i}" for i in range(len(strings))]
    for p, s in zip(crc_paths, strings):
        p.write_bytes(s)
    got = run_lua(runtime, f"""
        local I = require "bio._inflate"
        local s = slurp({L(str(stream_path))})
        local out, nxt = I.inflate(s, 4)
        local crcs = {{}}
        for i, p in ipairs({L([str(p) for p in crc_paths])}) do
          local t = slurp(p)
          crcs[i] = {{ G.crc32(t), G.crc32(t:sub(3), G.crc32(t:sub(1, 2))) }}
        end
        local e1 = select(2, pcall(I.inflate, 5))
        return {{ #out, G.crc32(out), nxt, crcs, tostring(e1) }}
    """)
    assert got[0] == len(text) and got[1] == zlib.crc32(text)
    assert got[2] == 3 + len(stream) + 1
    assert got[3] == [[zlib.crc32(s), zlib.crc32(s)] for s in strings]
    assert "bio._inflate.inflate: bad argument #1 'data': expected a string, got number" in got[4]


@pytest.mark.parametrize("runtime", ["lua5.4", "luajit", "luajit-nozlib"])
def test_memory_stays_bounded(runtime, tmp_path):
    """A 12 MB text streams through a live Lua heap of a few MiB (one member, its window, one piece)."""
    need_zlib_for(runtime)
    rng = random.Random(1)
    lines = [("".join(rng.choice("ACGT") for _ in range(59)) + "\n").encode() for _ in range(2000)]
    text = b"".join(rng.choice(lines) for _ in range(200_000))
    path = tmp_path / "big.gz"
    path.write_bytes(gzip.compress(text, compresslevel=1, mtime=0))
    got = run_lua(runtime, f"""
        collectgarbage("collect")
        local base = collectgarbage("count")
        local read, close = G.chunks({L(str(path))})
        local peak, n = 0, 0
        while true do
          local p = read()
          if not p then break end
          n = n + #p
          collectgarbage("collect")
          local used = collectgarbage("count") - base
          if used > peak then peak = used end
        end
        return {{ n, peak }}
    """)
    assert got[0] == len(text)
    assert got[1] < 8 * 1024, f"the live Lua heap grew by {got[1]:.0f} KiB"


def test_lupa_runtimes_decode_too(data, tmp_path):
    """The shell runs the library in lupa's embedded runtimes: BGZF and plain gzip there too."""
    pytest.importorskip("lupa")
    from tests.bio.harness import run

    path = data.bgzip("seq.fa")
    for runtime in ("lupa:lua54", "lupa:luajit21"):
        out = tmp_path / (runtime.replace(":", "-") + ".out")
        got = run(runtime, f"""
            local G = require "bio._gzip"
            local f = assert(io.open({L(str(out))}, "wb"))
            for _, p in ipairs({{ {L(str(path))}, {L(str(data.root / "many.gz"))} }}) do
              local read, close = G.chunks(p)
              for piece in read do f:write(piece) end
              close()
            end
            f:close()
            local n = 0
            for b in G.blocks({L(str(path))}) do n = n + 1 end
            return {{ G.backend, n }}
        """)
        assert out.read_bytes() == data.seq + data.expect["many.gz"], runtime
        assert got[1] == len(bgzf_blocks_in_python(path.read_bytes()))


@pytest.mark.parametrize("runtime", ["luajit", "luajit-nolibdeflate"])
def test_bgzf_blocks_through_libdeflate_or_zlib(runtime, tmp_path):
    # the same bytes and the same errors whichever inflater takes a BGZF block
    rng = random.Random(4)
    text = b"".join(b">r%d\n" % i + bytes(rng.choice(b"ACGTN") for _ in range(rng.randrange(1, 3000))) + b"\n"
                    for i in range(300))
    good = tmp_path / "x.fa.bgz"
    good.write_bytes(subprocess.run([require_binary("bgzip"), "-c"], input=text, capture_output=True,
                                    check=True).stdout)
    bad = bytearray(good.read_bytes())
    bad[40] ^= 0xFF  # inside the first block's deflate data
    (tmp_path / "bad.bgz").write_bytes(bytes(bad))
    got = run_lua(runtime, f"""
        local G = require "bio._gzip"
        local read = G.chunks({L(str(good))})
        local parts = {{}}
        for piece in read do parts[#parts + 1] = piece end
        local ok, err = pcall(function()
          local r = G.chunks({L(str(tmp_path / "bad.bgz"))})
          while r() do end
        end)
        return {{ table.concat(parts), G.libdeflate_available, err }}
    """)
    assert got[0].encode("latin-1") == text
    assert got[1] is (runtime == "luajit" and ctypes.util.find_library("deflate") is not None)
    assert "in gzip member at byte offset 0" in got[2]
