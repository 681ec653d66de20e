"""The value codec: wire.py on its own, and wire.py ↔ wire.lua round trips through real agents.

The round trips send values as the arguments of `eval("...")`, so they cross wire.py's
encoder, wire.lua's decoder (in the agent), wire.lua's encoder and wire.py's decoder.
"""
from __future__ import annotations

import math
import os
import random
import struct

import pytest

from bioxen_shell.vm import protocol as wire
from bioxen_shell.vm.protocol import WireError

DOUBLES_ONLY = {"lua51", "lua52", "luajit21", "lua5.1", "lua5.2", "luajit"}  # no integer subtype


# ---------------------------------------------------------------------------------------------
# wire.py alone


@pytest.mark.parametrize(
    "value, encoded",
    [
        (None, b"n"),
        (True, b"t"),
        (False, b"f"),
        (-42, b"i-42;"),
        (2.5, b"d2.5;"),
        (1.0, b"d1.0;"),
        (math.inf, b"dinf;"),
        (-math.inf, b"d-inf;"),
        ("hé", b"s3:h\xc3\xa9"),
        (b"\x00\xff", b"s2:\x00\xff"),
        ([1, None], b"{2;i1;n}"),
        ({}, b"{0;}"),
        ({"a": 1}, b"{0;s1:ai1;}"),
    ],
)
def test_encode_matches_the_protocol_page(value, encoded):
    assert wire.encode(value) == encoded


def test_decode_maps_tables_to_lists_and_dicts():
    assert wire.decode(b"{2;i1;s1:x}") == [1, "x"]
    assert wire.decode(b"{0;}") == {}
    assert wire.decode(b"{1;t s1:ki2;}".replace(b" ", b"")) == {1: True, "k": 2}
    assert wire.decode(b"{3;nnn}") == [None, None, None]
    assert wire.decode(b"s2:\xff\xfe") == b"\xff\xfe"  # not UTF-8: bytes
    assert math.isnan(wire.decode(b"dnan;"))
    assert wire.decode(b"d-0.0;") == 0.0 and math.copysign(1, wire.decode(b"d-0.0;")) < 0


def test_encode_errors_name_the_path():
    with pytest.raises(WireError, match=r"cannot encode a builtin_function_or_method at value\.seqs\[3\]"):
        wire.encode({"seqs": ["a", "b", print]})
    cyc: list = []
    cyc.append({"x": cyc})
    with pytest.raises(WireError, match=r"cycle at value\[1\]\.x"):
        wire.encode(cyc)
    with pytest.raises(WireError, match=r"value #2"):
        wire.encode_list([1, object()])
    with pytest.raises(WireError, match="does not fit in 64 bits"):
        wire.encode(2**64)
    deep: list = []
    node = deep
    for _ in range(250):
        node.append([])
        node = node[0]
    with pytest.raises(WireError, match="deeper than 200"):
        wire.encode(deep)


def test_shared_but_acyclic_values_are_fine():
    shared = [1, 2]
    assert wire.decode(wire.encode([shared, shared])) == [[1, 2], [1, 2]]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"s5:ab", "string runs past the end"),
        (b"{2;i1;", "unexpected end of data"),
        (b"i12", "bad number"),
        (b"x", "unknown tag"),
        (b"{0;s1:a", "unexpected end"),
        (b"n n", "bytes after the value"),
    ],
)
def test_decode_errors_say_where(data, message):
    with pytest.raises(WireError, match=message):
        wire.decode(data)


def test_frame_reader_splits_frames_across_any_chunking():
    frames = wire.frame(b"O", b"hello") + wire.frame(b"R", wire.encode({"ok": True})) + wire.frame(b"O", b"")
    for size in (1, 2, 3, 7, len(frames)):
        reader = wire.FrameReader()
        got = []
        for i in range(0, len(frames), size):
            got += reader.feed(frames[i : i + size])
        assert [(k, bytes(p)) for k, p in got] == [
            (b"O", b"hello"),
            (b"R", wire.encode({"ok": True})),
            (b"O", b""),
        ]
        assert not reader.pending()


def test_frame_reader_rejects_garbage_headers():
    with pytest.raises(WireError, match="malformed frame header"):
        wire.FrameReader().feed(b"hello world\n")
    with pytest.raises(WireError, match="malformed frame header"):
        wire.FrameReader().feed(b"O" + b"9" * 40)


def test_decode_reply_always_gives_a_values_list():
    assert wire.decode_reply(b"{0;s2:idi1;s2:okts6:values{0;}}")["values"] == []
    assert wire.decode_reply(b"{0;s2:idi1;s2:okts6:values{2;nn}}")["values"] == [None, None]


# ---------------------------------------------------------------------------------------------
# Round trips through wire.lua (every runtime)


def _as_list_if_array(d: dict):
    """A decoded table with keys exactly 1..n (ints, not True) comes back as a list."""
    n = 0
    while any(type(k) is int and k == n + 1 for k in d):
        n += 1
    if d and n == len(d):
        return [d[i] for i in range(1, n + 1)]
    return d


def _expected(value, runtime):
    """What a value looks like after a trip through the agent on `runtime`."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if runtime in DOUBLES_ONLY and value == int(value) if math.isfinite(value) else False:
            if abs(value) < 2**53 and not (value == 0 and math.copysign(1, value) < 0):
                return int(value)  # only doubles there: integral values come back as integers
        return value
    if isinstance(value, int):
        if runtime in DOUBLES_ONLY and abs(value) >= 2**53:
            return float(value)
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    if isinstance(value, (list, tuple)):
        if not value:
            return {}
        # A table decoded with nils in its array part keeps its count (wire.count), so a
        # list comes back whole, nils included.
        return [_expected(v, runtime) for v in value]
    if isinstance(value, dict):
        return _as_list_if_array(
            {_expected(k, runtime): _expected(v, runtime) for k, v in value.items() if v is not None}
        )
    return value


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_ints_and_floats_stay_apart(agent):
    got = agent.eval("...", 1, 1.0, -0.0, 2.5, 2**53 - 1, -(2**53 - 1), math.inf, -math.inf, math.nan)
    doubles_only = agent.runtime in DOUBLES_ONLY
    assert type(got[0]) is int
    assert type(got[1]) is (int if doubles_only else float)
    assert math.copysign(1, got[2]) < 0 and type(got[2]) is float
    assert got[3] == 2.5
    assert got[4] == 2**53 - 1 and type(got[4]) is int
    assert got[5] == -(2**53 - 1)
    assert got[6] == math.inf and got[7] == -math.inf and math.isnan(got[8])
    # Values made in Lua keep their kind too.
    if not doubles_only:
        three_int, three_float = agent.eval("6 // 2, 6 / 2")
        assert type(three_int) is int and type(three_float) is float
    assert agent.eval("7 / 2") == [3.5]


def test_big_integers(agent):
    if agent.runtime in DOUBLES_ONLY:
        assert agent.eval("...", 2**53) == [float(2**53)]
        assert agent.eval("2^53") == [float(2**53)]
    else:
        assert agent.eval("...", 2**63 - 1, -(2**63)) == [2**63 - 1, -(2**63)]
        assert agent.eval("math.maxinteger") == [2**63 - 1]


def test_binary_strings_with_every_byte(agent):
    data = bytes(range(256)) * 4
    assert agent.eval("...", data) == [data]
    assert agent.eval("local s = ... return #s, s:byte(1), s:byte(256)", data) == [1024, 0, 255]
    # Made in Lua: all 256 bytes.
    made = agent.eval("local t = {} for i = 0, 255 do t[#t + 1] = string.char(i) end return table.concat(t)")
    assert made == [bytes(range(256))]


def test_nils_survive_in_value_lists(agent):
    assert agent.eval("...", None, 1, None) == [None, 1, None]
    assert agent.eval("select('#', ...)", None, None, None) == [3]
    assert agent.eval("nil, nil") == [None, None]
    assert agent.eval("do end") == []


def test_nested_tables(agent):
    value = {"name": "x", "seqs": ["ACGT", "GG", {"deep": [1, [2, [3, {"k": False}]]]}], 7: "seven", 1.5: "float key"}
    got = agent.eval("...", value)[0]
    assert got == value


def test_lua_side_codec_errors_name_the_path(agent):
    got = agent.eval(
        "local w = require('bioxen.wire')\n"
        "local t = {a = {b = {1, 2, print}}}\n"
        "local ok1, e1 = pcall(w.encode, t)\n"
        "local c = {} c.self = {c}\n"
        "local ok2, e2 = pcall(w.encode, c)\n"
        "local ok3, e3 = pcall(w.decode, '{2;i1;s9:ab}')\n"
        "return ok1, e1, ok2, e2, ok3, e3"
    )
    assert got[0] is False and got[1] == "cannot encode a function at value.a.b[3]"
    assert got[2] is False and "cycle at value.self[1]" in got[3]
    assert got[4] is False and "(in value[2])" in got[5] and "runs past the end" in got[5]


def test_returning_a_function_or_cycle_is_an_encode_error(agent):
    r = agent.request("eval", code="1, {f = print}")
    assert r["ok"] is False and r["kind"] == "encode"
    assert "function at value #2.f" in r["error"]
    r = agent.request("eval", code="local t = {} t[1] = t return t")
    assert r["kind"] == "encode" and "cycle at value #1[1]" in r["error"]
    r = agent.request("eval", code="coroutine.create(print)")
    assert r["kind"] == "encode" and "thread" in r["error"]
    # The VM is fine afterwards.
    assert agent.eval("1 + 1") == [2]


def _random_value(rng: random.Random, depth: int, ints_64: bool):
    kind = rng.randrange(9 if depth < 4 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        limit = 2**63 - 1 if ints_64 else 2**53 - 1
        return rng.choice([0, 1, -1, rng.randint(-1000, 1000), rng.randint(-limit, limit)])
    if kind == 3:
        return rng.choice(
            [rng.uniform(-1e6, 1e6), struct.unpack("<d", rng.randbytes(8))[0], 0.1, 1e300, -1e-300, 0.5]
        )
    if kind == 4:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)])) for _ in range(rng.randrange(12)))
    if kind == 5:
        return rng.randbytes(rng.randrange(40))
    if kind == 6:
        return rng.choice(["", "ACGT" * rng.randrange(100), "\x00"])
    if kind == 7:
        return [_random_value(rng, depth + 1, ints_64) for _ in range(rng.randrange(6))]
    keys = [rng.choice([rng.randrange(-5, 50), "k%d" % rng.randrange(99), rng.random() < 0.5]) for _ in range(rng.randrange(6))]
    return {k: _random_value(rng, depth + 1, ints_64) for k in keys}


@pytest.mark.parametrize("seed", range(3))
def test_random_values_round_trip(agent, seed):
    rng = random.Random(f"{agent.runtime}-{seed}")
    ints_64 = agent.runtime not in DOUBLES_ONLY
    values = [_random_value(rng, 0, ints_64) for _ in range(40)]
    # NaN never equals itself as a key, and float keys that equal ints merge in Lua: avoid both.
    values = [v for v in values if not _has_nan_key(v)]
    got = agent.eval("...", *values)
    assert len(got) == len(values)
    for sent, back in zip(values, got):
        assert _same(back, _expected(sent, agent.runtime)), (sent, back)


def _has_nan_key(v) -> bool:
    if isinstance(v, dict):
        return any(isinstance(k, float) for k in v) or any(_has_nan_key(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_nan_key(x) for x in v)
    return False


# ---------------------------------------------------------------------------------------------
# Blob frames: big strings of a request travel in their own B frames


def test_encode_request_puts_big_strings_in_blob_frames():
    big = b"x" * wire.BLOB_THRESHOLD
    parts = wire.encode_request("set", 7, name="s", value=big)
    frames = wire.FrameReader().feed(b"".join(parts))
    assert [k for k, _ in frames] == [b"B", b"Q"]
    assert frames[0][1] == big
    assert b"s5:valueS1;" in frames[1][1]
    small = wire.encode_request("set", 8, send_blobs=False, name="s", value=big)
    assert [k for k, _ in wire.FrameReader().feed(b"".join(small))] == [b"Q"]


@pytest.mark.parametrize("runtime", ["lua54", "lua51", "lua5.1", "lua5.4", "luajit"])
def test_big_strings_arrive_the_same_with_and_without_blobs(start_agent, runtime):
    data = bytes(range(256)) * (3 * wire.BLOB_THRESHOLD // 256)
    for blobs in (True, False):
        a = start_agent(runtime, blobs=blobs)
        a.values("set", name="a", value=data)
        assert a.eval("#a, select(2, ...) == a", 1, data, "tail") == [len(data), True]
        assert a.values("get", name="a") == [data]


def test_a_request_naming_a_missing_blob_is_a_protocol_error(start_agent):
    a = start_agent("lua5.4")
    payload = b"{0;s2:idi1;s2:ops3:sets4:names1:xs5:valueS2;}"
    os.write(a.wfd, wire.frame(b"B", b"only one") + wire.frame(b"Q", payload))
    reply, _ = a.recv()
    assert reply["ok"] is False and reply["kind"] == "protocol" and "blob" in reply["error"]
    assert a.eval("1") == [1]  # the stray blob was dropped with its request
