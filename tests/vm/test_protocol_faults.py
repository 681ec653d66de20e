"""A hostile or broken agent cannot hang the host, make it allocate, or leave a VM busy.

The agent here is a real process on the VM's stream: tests/vm/fake_agent.py, forked by the
zygote as the VM's worker, writes the bytes each test gives it.  Every malformed frame must
end in a ``protocol`` VMError naming the VM and what was wrong, with the VM crashed (and
restartable), never ``busy``; a frame left half-sent ends the same way after ``stall_limit``.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import pytest

from bioxen_shell.vm import protocol as wire
from bioxen_shell.vm.errors import VMCrashed, VMError, VMProtocolError
from tests.vm.conftest import profile
from tests.vm.fake_agent import TARGET

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1 << 20


def frame(kind: bytes, payload: bytes) -> bytes:
    return kind + b"%d\n" % len(payload) + payload


def reply(rid: int, values: bytes = b"{1;i42;}") -> bytes:
    return b"{0;s2:idi%d;s2:okts6:values%s}" % (rid, values)


def fake(manager, name="fake", **changes):
    # stall_limit high: every case below is complete, so only the frame checks can fire
    changes.setdefault("stall_limit", 60.0)
    return manager.create(name, profile=profile(**changes), _target=TARGET)


def send_raw(h, data: bytes, deadline: float = 10.0) -> VMError:
    """Make the fake agent write ``data`` as the answer to an eval; return the error."""
    t0 = time.monotonic()
    with pytest.raises(VMError) as info:
        h.eval(data.hex())
    assert time.monotonic() - t0 < deadline, f"took {time.monotonic() - t0:.1f} s for {data[:60]!r}"
    return info.value


def assert_protocol_error(h, err: VMError, what: str | None = None) -> None:
    assert isinstance(err, VMProtocolError) and err.kind == "protocol", repr(err)
    assert str(err).startswith(f"{h.name}: protocol error: "), str(err)
    if what is not None:
        assert what in str(err), str(err)
    assert h.status == "crashed" and h.current_status() == "crashed"
    with pytest.raises(VMCrashed, match=f"{h.name}: VM crashed \\(protocol error: "):
        h.eval("ok")


def next_id(h) -> int:
    return h._next_id + 1  # the id of the next request (the fake answers with exactly what we give)


@pytest.mark.parametrize("data, what", [
    (b"R-5\n", "bad length b'-5'"),
    (b"R1_0\n", "bad length b'1_0'"),
    (b"R+5\nhello", "bad length b'+5'"),
    (b"R 5\n", "bad length b' 5'"),
    (b"R\n", "no length"),
    (b"R" + b"9" * 17, "more than 16 length digits"),
    (b"R99999999999999999\n", "more than 16 length digits"),
    (b"R9999999999999999\n", "length over 2^53"),
    (b"X5\nhello", "bad kind b'X'"),
    (b"Q5\nhello", "bad kind b'Q'"),
    (b"\x00\x00\x00", "bad kind b'\\x00'"),
    (b"R3000000000\n", "over the limit of 1 GiB for R frames"),
    (frame(b"R", b"i5;"), "a reply must be a table"),
    (frame(b"R", b"{0;s2:okt}"), "no 'id'"),
    (frame(b"H", wire.encode({"protocol": 1})), "H frame in the middle of request"),
])
def test_malformed_frames_crash_the_vm_with_a_protocol_error(manager, data, what):
    h = fake(manager)
    assert h.eval("ok") == [True]
    err = send_raw(h, data)
    assert_protocol_error(h, err, what)
    h.restart()
    assert h.eval("ok") == [True] and h.status == "running"


def test_malformed_payloads_crash_the_vm_with_a_protocol_error(manager):
    h = fake(manager)
    cases = [
        (lambda rid: reply(rid, b"{1;i1_0;}"), "bad number b'1_0'"),
        (lambda rid: reply(rid, b"{1;s-3:abc}"), "bad string length b'-3'"),
        (lambda rid: reply(rid, b"{1;s99:abc}"), "string runs past the end"),
        (lambda rid: reply(rid, b"{1;" * 300 + b"n" + b"}" * 300), "nesting deeper than 200"),
        (lambda rid: reply(rid, b"{1;S1;}"), "reference to a blob that did not come"),
        (lambda rid: reply(rid, b"{1;x}"), "unknown tag b'x'"),
        (lambda rid: reply(rid, b"i5;"), "'values' is not a table"),
        (lambda rid: reply(rid + 7), "the request was"),
        (lambda rid: reply(rid)[:-1], "cannot be decoded"),
        (lambda rid: reply(rid) + b"junk", "after the reply table"),
        (lambda rid: b"{0;s2:idi%d;s2:oki1;}" % rid, "'ok' is 1"),
    ]
    for build, what in cases:
        if h.status != "running":
            h.restart()
        err = send_raw(h, frame(b"R", build(next_id(h))))
        assert_protocol_error(h, err, what)


def test_a_bad_hello_fails_vm_create_and_leaves_nothing(manager):
    for hello, what in [(b"R5\nhello", "did not say hello"), (b"H3\ni5;", "is not a table"),
                        (b"H-1\n", "bad length"), (b"H99999999\n", "over the limit")]:
        with pytest.raises(VMError) as info:
            manager.create("hello", profile=profile(env={"FAKE_AGENT_HELLO": hello.hex()}), _target=TARGET)
        assert "protocol error" in str(info.value) and what in str(info.value), str(info.value)
        assert manager.get("hello") is None
    assert fake(manager).eval("ok") == [True]


# ----------------------------------------------------------------------------- the fuzz

_BAD_LENGTHS = [b"-5", b"+5", b"1_0", b" 5", b"5 ", b"0x10", b"1e3", b"\xd9\xa1", b"5\r", b"--", b"\t"]
_BAD_INTS = [b"1_0", b"+5", b" 5", b"", b"--1", b"1.5", b"0x1", b"5 "]
_BAD_FLOATS = [b"1_0.5", b" 1", b"abc", b"", b"1e", b".", b"1.5.5", b"infinity"]
_BAD_LENS = [b"-1", b"1_0", b" 3", b"+3", b"", b"x"]
_VALUES = [b"{1;i42;}", b"{2;s3:abct}", b"{1;{2;d1.5;s1:x}}", b"{0;}", b"{1;{0;s1:ki1;}}", b"{3;nft}"]


def _fuzz_case(rng: random.Random, rid: int, max_blob: int) -> bytes:
    """One byte sequence that is malformed by construction (each operator breaks a rule)."""
    good = reply(rid, rng.choice(_VALUES))
    op = rng.randrange(16)
    if op == 0:  # kind byte
        kind = bytes([rng.choice([b for b in range(256) if b not in b"HOBR"])])
        return kind + frame(b"R", good)[1:]
    if op == 1:  # length syntax
        return b"R" + rng.choice(_BAD_LENGTHS) + b"\n" + good
    if op == 2:  # no newline within the header
        return b"R" + bytes(rng.choice(b"0123456789") for _ in range(rng.randrange(17, 30)))
    if op == 3:  # a declared length over the kind's limit
        kind, limit = rng.choice([(b"R", wire.MAX_REPLY), (b"H", wire.MAX_HELLO), (b"B", max_blob)])
        return kind + b"%d\n" % rng.randrange(limit + 1, 2**53) + good
    if op == 4:  # a payload cut short (the header says exactly what is there)
        return frame(b"R", good[:rng.randrange(len(good))])
    if op == 5:  # a bad tag where a value starts
        return frame(b"R", reply(rid, b"{1;" + bytes([rng.choice(b"xyzZ!#%&|~")]) + b"}"))
    if op == 6:  # numbers spelled wrong
        if rng.random() < 0.5:
            return frame(b"R", reply(rid, b"{1;i" + rng.choice(_BAD_INTS) + b";}"))
        return frame(b"R", reply(rid, b"{1;d" + rng.choice(_BAD_FLOATS) + b";}"))
    if op == 7:  # string lengths spelled wrong or running past the end
        n = rng.choice(_BAD_LENS + [b"%d" % rng.randrange(10, 10**9)])
        return frame(b"R", reply(rid, b"{1;s" + n + b":abc}"))
    if op == 8:  # nesting deeper than the codec allows
        depth = rng.randrange(201, 5000)
        return frame(b"R", reply(rid, b"{1;" * depth + b"n" + b"}" * depth))
    if op == 9:  # array counts
        if rng.random() < 0.5:
            return frame(b"R", reply(rid, b"{" + rng.choice(_BAD_LENS) + b";}"))
        return frame(b"R", reply(rid, b"{%d;i1;}" % rng.randrange(2, 10**12)))
    if op == 10:  # blob references to blobs that did not come
        blobs = b"".join(frame(b"B", b"x" * rng.randrange(4)) for _ in range(rng.randrange(3)))
        return blobs + frame(b"R", reply(rid, b"{1;S%d;}" % rng.randrange(4, 100)))
    if op == 11:  # bytes after the reply
        return frame(b"R", good + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20))))
    if op == 12:  # envelopes that are no reply
        return frame(b"R", rng.choice([b"i5;", b"s3:abc", b"n", b"{0;}", b"{0;s2:idi%d;}" % rid,
                                       b"{0;s2:idi%d;s2:oki1;}" % rid,
                                       b"{0;s2:idi%d;s2:okts6:valuesi5;}" % rid,
                                       b"{0;s2:idi%d;s2:okfs4:kindi5;}" % rid,
                                       reply(rid + rng.randrange(1, 1000))]))
    if op == 13:  # random garbage
        return bytes([rng.choice([b for b in range(256) if b not in b"HOBR"])]) + rng.randbytes(rng.randrange(60))
    if op == 14:  # a hello in the middle of a call
        return frame(b"H", wire.encode({"protocol": 1}))
    # some valid output first, then one of the above
    prefix = b"".join(frame(b"O", rng.randbytes(rng.randrange(100))) for _ in range(rng.randrange(1, 4)))
    return prefix + _fuzz_case(rng, rid, max_blob)


def test_fuzzed_frames_all_end_in_a_protocol_error_and_a_crashed_vm(manager):
    rng = random.Random(20260909)  # fixed seed: the same cases every run
    max_blob = 64 * MiB
    h = fake(manager, max_blob=max_blob)
    for i in range(400):
        if h.status != "running":
            h.restart()
        data = _fuzz_case(rng, next_id(h), max_blob)
        t0 = time.monotonic()
        try:
            values = h.eval(data.hex())
        except VMError as exc:
            err = exc
        else:
            pytest.fail(f"case {i} {data[:80]!r} was accepted: {values!r}")
        assert time.monotonic() - t0 < 10, f"case {i} {data[:80]!r} took {time.monotonic() - t0:.1f} s"
        assert isinstance(err, VMProtocolError) and err.kind == "protocol", (i, data[:80], err)
        assert str(err).startswith("fake: protocol error: "), (i, str(err))
        assert h.status == "crashed", (i, h.status)
    h.restart()
    assert h.eval("ok") == [True]


# ----------------------------------------------------------------------------- lengths that lie

_LYING_HEADER = r"""
import sys, time
sys.path.insert(0, {root!r})
from bioxen_shell.vm.manager import Manager
from bioxen_shell.vm.errors import VMError
from tests.vm.conftest import profile
from tests.vm.fake_agent import TARGET
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
m = Manager()
h = m.create("liar", profile=profile(stall_limit={stall}), _target=TARGET)
h.eval("ok")
before = hwm()
t0 = time.monotonic()
try:
    h.eval((bytes.fromhex({header!r}) + b"x" * {filler}).hex())
except VMError as exc:
    print(type(exc).__name__, round(time.monotonic() - t0, 2), hwm() - before, h.status, str(exc), sep="|")
m.destroy_all()
"""


@pytest.mark.parametrize("header, filler, stall, what", [
    (b"R3000000000\n", 0, 60.0, "over the limit of 1 GiB for R frames"),
    # under the blob limit: believed only as far as the bytes go, then the stall limit ends it
    (b"B3000000000\n", MiB, 1.0, "stopped sending in the middle of a frame (1048576 of 3000000000"),
])
def test_a_length_that_lies_costs_no_memory(header, filler, stall, what):
    script = _LYING_HEADER.format(root=ROOT, stall=stall, header=header.hex(), filler=filler)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    cls, seconds, growth, status, message = out.stdout.strip().split("|")
    assert cls == "VMProtocolError" and status == "crashed" and what in message, out.stdout
    assert float(seconds) < stall + 10
    assert int(growth) < 40 * MiB, f"the host's peak memory grew by {int(growth) / MiB:.0f} MiB"


def test_max_blob_limits_what_a_vm_may_send(manager):
    h = manager.create("small-blobs", profile=profile(max_blob=4 * MiB))
    assert len(h.eval("return ('x'):rep(4 * 1024 * 1024)")[0]) == 4 * MiB
    with pytest.raises(VMProtocolError) as info:
        h.eval("return ('x'):rep(4 * 1024 * 1024 + 1)")
    assert "over the limit of 4 MiB for B frames (the profile's max_blob)" in str(info.value)
    assert h.status == "crashed"
    h.restart()
    assert h.eval("return 1") == [1]


# ----------------------------------------------------------------------------- stalls

def _pipe_bytes(h) -> int:
    """Bytes waiting in the pipe from the worker (FIONREAD on the host's end)."""
    import array
    import fcntl
    import termios

    buf = array.array("i", [0])
    fcntl.ioctl(h._proc._from_agent, termios.FIONREAD, buf)
    return buf[0]


def _stop_mid_reply(h) -> int:
    """Start a 64 MiB reply and SIGSTOP the worker in the middle of it: once the pipe is full
    the worker is blocked inside the frame's write, so the stop lands mid-frame."""
    import signal

    h.send("return ('y'):rep(64 * 1024 * 1024)")
    deadline = time.monotonic() + 30
    while _pipe_bytes(h) < 512 * 1024:  # the pipe holds 1 MiB; the frame is 64 MiB
        assert time.monotonic() < deadline, "the reply never filled the pipe"
        time.sleep(0.005)
    pid = h.pid
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_a_worker_stopped_mid_reply_ends_at_the_call_timeout(manager):
    h = manager.create("stopped", profile=profile(stall_limit=120.0))
    h.kill_grace = 0.5
    pid = _stop_mid_reply(h)
    t0 = time.monotonic()
    with pytest.raises(VMError) as info:
        h.eval("return 1", timeout=1.0)  # waits behind the stopped reply
    assert time.monotonic() - t0 < 20
    assert info.value.kind == "timeout" and "killed and restarted" in str(info.value), str(info.value)
    with pytest.raises(VMError, match="killed and restarted"):
        h.recv(5)  # the send that was cut off reports the same
    assert h.status == "running" and h.pid != pid and h.eval("return 2") == [2]


def test_a_worker_stopped_mid_reply_can_be_interrupted_without_a_timeout(manager):
    import threading

    stop = threading.Event()
    from bioxen_shell.vm.manager import Manager

    m = Manager(interrupted=stop.is_set)
    try:
        h = m.create("stopped2", profile=profile(stall_limit=120.0))
        h.kill_grace = 0.5
        pid = _stop_mid_reply(h)
        threading.Thread(target=lambda: (time.sleep(0.3), stop.set())).start()
        t0 = time.monotonic()
        with pytest.raises(VMError) as info:
            h.recv()
        assert time.monotonic() - t0 < 20
        assert info.value.kind == "interrupted" and "killed and restarted" in str(info.value)
        stop.clear()
        assert h.status == "running" and h.pid != pid and h.eval("return 3") == [3]
    finally:
        assert m.destroy_all() == []


def test_a_frame_left_half_sent_ends_at_the_stall_limit(manager):
    h = manager.create("stalled", profile=profile(stall_limit=1.0))
    pid = _stop_mid_reply(h)
    t0 = time.monotonic()
    with pytest.raises(VMProtocolError) as info:
        h.recv()
    assert 1.0 <= time.monotonic() - t0 < 15
    msg = str(info.value)
    assert msg.startswith("stalled: protocol error: the agent stopped sending in the middle of a frame")
    assert "of 67108864 bytes of a B frame" in msg and "stall_limit 1 s" in msg
    assert h.status == "crashed"
    h.restart()
    assert h.pid != pid and h.eval("return 4") == [4]


def test_a_fake_agent_that_stops_mid_frame_ends_at_the_stall_limit(manager):
    h = fake(manager, stall_limit=0.5)
    err = send_raw(h, b"R100\n" + b"{" * 10)
    assert_protocol_error(h, err, "10 of 100 bytes of an R frame arrived, then nothing for")


# ----------------------------------------------------------------------------- the shell's decoder

def test_the_shells_lua_decoder_reports_malformed_values_as_a_protocol_error():
    from tests.vm.test_lua_api import Shell

    sh = Shell("lua54")
    try:
        sh.show(f"f = vm.create{{name = 'f', _target = {TARGET!r}}}")
        assert sh.show("f:eval('ok')") == "true"
        h = sh.vm_host.host.manager.get("f")
        for values in (b"{1;x}", b"{2;i1;}", b"{1;s9:ab}", b"{1;" * 300 + b"n" + b"}" * 300):
            data = frame(b"R", reply(next_id(h), values)).hex()
            r = sh.fail(f"f:eval('{data}')")
            text = r.error_text().decode()
            assert "f: protocol error: the values of a reply cannot be decoded" in text, text
            assert sh.show("f:status()") == '"crashed"'
            sh.show("f:restart()")
        assert sh.show("f:eval('ok')") == "true"
    finally:
        sh.close()
