"""Blob frames in both directions (docs/protocol.md, "Blobs"), through real agent processes.

Host -> agent: the test client sends every string of at least wire.BLOB_THRESHOLD bytes as a
B frame.  Agent -> host: an agent configured with ``blobs`` sends the big strings of a
reply's values as B frames right before the R frame.  Every case runs on lupa workers and on
stock interpreters; no test sleeps, waits are for frames.
"""
from __future__ import annotations

import os
import select
import threading

import pytest

from bioxen_shell.vm import protocol as wire
from tests.agent.client import AgentError
from tests.waiting import PATIENCE

T = wire.BLOB_THRESHOLD
ALL_BYTES = bytes(range(256))
RUNTIMES = ["lua54", "lua51", "luajit21", "lua5.1", "lua5.2", "lua5.3", "lua5.4", "luajit"]
# SIGINT can interrupt these any number of times (lupa: the worker's interrupt file; stock
# luajit: polled by the hook); stock PUC interpreters take an interrupt file instead.
SIGINT_RUNTIMES = {"lua54", "lua51", "luajit21", "luajit"}


def _binary(n: int, salt: int = 0) -> bytes:
    """n bytes holding every byte value, not UTF-8 (stays bytes in Python)."""
    pattern = bytes((b + salt) % 256 for b in ALL_BYTES)
    return (pattern * (n // 256 + 1))[:n]


def _py(b: bytes):
    """What the Python decoder makes of a Lua string: str when it is UTF-8, else bytes."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b


def _started(start_agent, runtime, tmp_path=None, **configure):
    extra = []
    flag = None
    if tmp_path is not None and runtime not in SIGINT_RUNTIMES:
        flag = tmp_path / "interrupt"
        flag.write_bytes(b"")
        extra = [f"--interrupt-file={flag}"]
    a = start_agent(runtime, extra_args=extra)
    a.configure(**configure)
    a.flag = flag
    return a


def _interrupt(a) -> None:
    if a.flag is None:
        a.interrupt()
    else:
        with open(a.flag, "ab") as f:
            f.write(b"x")


# ---------------------------------------------------------------------------------------------
# The codecs on their own


def test_python_codec_leaves_big_strings_out_and_takes_them_back():
    blobs: list = []
    text, accented, binary = "ACGT" * (T // 4), "é" * (T // 2), _binary(T)
    value = [text, {"k": accented}, binary, "x" * (T - 1)]
    encoded = b"".join(bytes(p) for p in wire.encode_parts(value, blobs=blobs))
    assert encoded.startswith(b"{4;S1;{0;s1:kS2;}S3;s1048575:")
    assert [bytes(b) for b in blobs] == [text.encode(), accented.encode(), binary]
    assert wire.decode(encoded, blobs=blobs) == value
    assert wire.decode(b"S2;", blobs=[b"a", b"\xff"]) == b"\xff"
    with pytest.raises(wire.WireError, match="blob that did not come"):
        wire.decode(b"{1;S2;}", blobs=[b"a"])
    with pytest.raises(wire.WireError, match="blob that did not come"):
        wire.decode(b"S1;")


@pytest.mark.parametrize("runtime", ["lua51", "lua54", "luajit21"])
def test_lua_codec_leaves_big_strings_out_and_takes_them_back(runtime):
    lupa = pytest.importorskip(f"lupa.{runtime}")
    from tests.agent.client import LUA_DIR

    lua = lupa.LuaRuntime(encoding=None)
    lua.globals().package.path = f"{LUA_DIR}/?.lua".encode()
    check = lua.eval("""function(T)
      local wire = require("bioxen.wire")
      local big, other = string.rep("\\0\\255", T / 2), string.rep("a", T + 1)
      local blobs = {}
      local s = wire.encode_list_blobs(blobs, 4, big, nil, {x = other, y = "small"}, big)
      assert(#blobs == 3 and blobs[1] == big and blobs[2] == other and blobs[3] == big)
      assert(s:find("S1;", 1, true) and not s:find(big, 1, true) and #s < 100)
      local t = wire.decode(s, 1, "value", blobs)
      assert(wire.count(t) == 4 and t[1] == big and t[2] == nil and t[3].x == other and t[4] == big)
      -- without blobs: inline, as before
      assert(#big == T and wire.encode(big) == "s" .. #big .. ":" .. big)
      local one = {}
      assert(wire.encode(string.rep("z", T - 1), "v", one) and #one == 0)
      return true
    end""")
    assert check(T) is True
    assert lua.eval("select(2, pcall(require('bioxen.wire').decode, 'S1;'))").find(b"blob that did not come") > 0


def _blob_count(a) -> int:
    assert a.last_frames[-1] == wire.REPLY
    return a.last_frames.count(wire.BLOB)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_big_strings_round_trip_exactly_around_the_threshold(start_agent, runtime):
    a = _started(start_agent, runtime)
    sizes = [T - 1, T, T + 1]
    values = [_binary(n, salt=i) for i, n in enumerate(sizes)]
    # in: three strings, one blob each for the two at or above the threshold
    assert a.eval("local a, b, c = ... return #a, #b, #c", *values) == sizes
    # out: the same strings come back, as blobs exactly when they are that big
    back = a.eval("...", *values)
    assert back == values and _blob_count(a) == 2
    # text stays text, every byte value stays as it was
    text = "ACGT" * (T // 4)
    assert a.eval("...", text, ALL_BYTES * (T // 256)) == [text, ALL_BYTES * (T // 256)]
    assert _blob_count(a) == 2


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_several_big_strings_nested_in_tables(start_agent, runtime):
    a = _started(start_agent, runtime)
    x, y = _binary(T + 7, 1), _binary(2 * T, 2)
    value = {"seqs": [x, "small", {"deep": y}], "x": x, "n": 3}
    a.values("set", name="v", value=value)
    assert a.eval("v.x == v.seqs[1], #v.seqs[3].deep, v.n") == [True, 2 * T, 3]
    got = a.values("get", name="v")[0]
    assert got == value
    assert _blob_count(a) == 3  # v.x, v.seqs[1], v.seqs[3].deep
    # a value list with nils between big strings keeps its count
    assert a.eval("return nil, v.x, nil, v.seqs[3].deep, nil") == [None, x, None, y, None]
    assert _blob_count(a) == 2


@pytest.mark.parametrize("runtime", ["lua54", "lua5.1", "lua5.4", "luajit"])
def test_many_blobs_with_a_small_threshold(start_agent, runtime):
    a = _started(start_agent, runtime, blobs=1000)
    items = [_binary(1000 + i, i) for i in range(300)]
    back = a.eval("local t = {} for i = 1, 300 do t[i] = string.rep(string.char(i % 256), 1000 + i) end return t, ...",
                  *items)
    assert back[1:] == items and _blob_count(a) == 600
    assert back[0] == [_py(bytes([i % 256]) * (1000 + i)) for i in range(1, 301)]
    assert a.eval("'x'") == ["x"] and _blob_count(a) == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_output_printed_before_a_big_reply_comes_first(start_agent, runtime):
    a = _started(start_agent, runtime)
    reply, out = a.request("eval", code="print('before') io.write('more\\n') return string.rep('y', ...)",
                           args=[3 * T]), a.last_output
    assert reply["ok"] and reply["values"] == ["y" * 3 * T] and out == b"before\nmore\n"
    kinds = a.last_frames
    assert kinds[-2:] == [wire.BLOB, wire.REPLY] and set(kinds[:-2]) == {wire.OUTPUT}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pipelined_requests_with_big_arguments_and_replies(start_agent, runtime):
    a = _started(start_agent, runtime)
    args = [_binary(T + i, i) for i in range(4)]
    first = a.next_id
    # All four requests go out before any reply is read.  They do not fit in the pipe, so
    # they are written from a thread while this one reads (as the VM handle drains replies
    # while it writes).
    writer = threading.Thread(target=lambda: [a.send("eval", code="print(#...) return (...), #...", args=[s])
                                              for s in args])
    writer.start()
    try:
        for rid, s in enumerate(args, first):
            reply, out = a.recv()
            assert reply["id"] == rid and reply["values"] == [s, len(s)] and out == b"%d\n" % len(s)
            assert a.last_frames.count(wire.BLOB) == 1
    finally:
        writer.join()


@pytest.mark.parametrize("runtime", ["lua54", "lua5.4", "luajit"])
def test_an_encode_error_in_a_big_reply_is_a_clean_error_reply(start_agent, runtime):
    a = _started(start_agent, runtime)
    a.values("set", name="s", value=_binary(2 * T))
    reply = a.request("eval", code="return s, {f = print}, s")
    assert reply["ok"] is False and reply["kind"] == "encode" and "value #2.f" in reply["error"]
    assert a.last_frames == [wire.REPLY]  # the blobs collected before the error never went out
    assert a.values("get", name="s") == [_binary(2 * T)]


@pytest.mark.parametrize("runtime", ["lua54", "lua5.4", "luajit"])
def test_without_blobs_in_configure_replies_carry_big_strings_inline(start_agent, runtime):
    a = start_agent(runtime)
    a.configure(blobs=False)
    assert a.eval("string.rep('z', ...)", 2 * T) == ["z" * 2 * T] and a.last_frames == [wire.REPLY]
    b = start_agent(runtime)  # unconfigured: the agent's defaults
    assert b.eval("string.rep('z', ...)", 2 * T) == ["z" * 2 * T] and b.last_frames == [wire.REPLY]
    with pytest.raises(AgentError) as info:
        start_agent(runtime).configure(blobs="yes")
    assert info.value.kind == "protocol" and "configure.blobs" in info.value.message


def _wait_readable(fd: int, timeout: float = PATIENCE) -> None:
    ready, _, _ = select.select([fd], [], [], timeout)
    assert ready, "no data from the agent"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_interrupt_while_a_big_reply_is_being_produced(start_agent, runtime, tmp_path):
    a = _started(start_agent, runtime, tmp_path)
    # 1. In user code: a loop building big strings is stopped; its output came first.
    a.send("eval", code="print('building') io.stdout:flush() local t = {} "
                        "while true do t[#t % 64 + 1] = string.rep('b', 65536) .. #t end")
    out = b""
    while not out.endswith(b"\n"):  # the loop runs once "building\n" has come out
        kind, payload = a.read_frame()
        assert kind == wire.OUTPUT
        out += payload
    assert out == b"building\n"
    _interrupt(a)
    reply, _ = a.recv()
    assert reply["ok"] is False and reply["kind"] == "interrupted"
    # 2. While the agent writes the reply (blocked on the full pipe): the interrupt is not for
    #    user code, the reply arrives whole, and the next call does not see the interrupt.
    big = _binary(32 * T, 3)
    a.values("set", name="big", value=big)
    a.send("eval", code="return big, #big")
    _wait_readable(a.rfd)
    head = os.read(a.rfd, 64)  # the agent is now writing frames it cannot finish: 32 MiB
    _interrupt(a)
    a.frames.extend(a.reader.feed(head))
    reply, _ = a.recv()
    assert reply["ok"] and reply["values"] == [big, len(big)] and a.last_frames[-2:] == [wire.BLOB, wire.REPLY]
    assert a.eval("local n = 0 for i = 1, 2e6 do n = n + 1 end return n") == [2000000]
    assert a.eval("big == ...", big) == [True]
