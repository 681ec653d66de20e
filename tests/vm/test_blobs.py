"""Big strings as blob frames, both ways, through the VM handle: the Python API and the shell's
Lua side (docs/protocol.md, "Blobs").  Local lupa workers here; stock interpreters over SSH in
tests/remote/test_ssh_blobs.py and, for the bare agent, tests/agent/test_blobs.py.

A spy on the handle's stream records the frames that really crossed, so each test also shows
that the big strings went as B frames (and nothing else did).  No sleeps: waits are for events.
"""
from __future__ import annotations

import io

import pytest

from bioxen_shell.engine import Engine
from bioxen_shell.vm import protocol as wire
from bioxen_shell.vm.errors import VMError, VMInterrupted
from bioxen_shell.vm.protocol import inline_blobs
from tests.vm.conftest import profile
from tests.waiting import PATIENCE

T = wire.BLOB_THRESHOLD
MiB = 1 << 20
ALL_BYTES = bytes(range(256))


def _binary(n: int, salt: int = 0) -> bytes:
    pattern = bytes((b + salt) % 256 for b in ALL_BYTES)
    return (pattern * (n // 256 + 1))[:n]


class Spy:
    """The kinds of the frames a handle sent and received (payloads are not kept)."""

    def __init__(self, h) -> None:
        self.sent: list = []
        self.got: list = []
        reader = wire.FrameReader()
        proc = h._proc
        send = proc.send

        def spy_send(data):
            self.sent.extend(k for k, _ in reader.feed(data))
            return send(data)

        proc.send = spy_send
        dispatch = h._dispatch

        def spy_dispatch(kind, payload):
            if not (kind == wire.OUTPUT and not payload):  # liveness probes
                self.got.append(kind)
            return dispatch(kind, payload)

        h._dispatch = spy_dispatch

    def take(self) -> tuple[list, list]:
        sent, got = self.sent, self.got
        self.sent, self.got = [], []
        return sent, got


def _blobs(kinds: list) -> int:
    return kinds.count(wire.BLOB)


@pytest.fixture(scope="module", params=["lua54", "luajit", "lua51"])
def big_vm(request, module_manager):
    h = module_manager.create(f"blobs-{request.param}", runtime=request.param)
    h.spy = Spy(h)
    yield h
    module_manager.destroy(h.name)


# =========================================================================== Python API

def test_python_api_round_trips_around_the_threshold(big_vm):
    h, spy = big_vm, big_vm.spy
    spy.take()
    values = [_binary(T - 1, 1), _binary(T, 2), _binary(T + 1, 3), "ACGT" * (T // 4), ALL_BYTES * (T // 256),
              "é" * (T // 2), "x" * (T - 1)]
    back = h.eval("return ...", *values)
    sent, got = spy.take()
    assert back == values
    assert _blobs(sent) == 5 and sent[-1] == wire.REQUEST      # all but the two of T - 1 bytes
    assert _blobs(got) == 5 and got[-1] == wire.REPLY
    assert [type(v) for v in back] == [bytes, bytes, bytes, str, bytes, str, str]


def test_python_api_set_get_call_nested_and_code_as_a_blob(big_vm):
    h, spy = big_vm, big_vm.spy
    x, y = _binary(T + 5, 4), _binary(3 * T, 5)
    value = {"seqs": [x, "small", {"deep": y}], "n": 3, "list": [None, x, None]}
    spy.take()
    h.set("v", value)
    assert _blobs(spy.take()[0]) == 3
    assert h.get("v") == value
    assert _blobs(spy.take()[1]) == 3
    h.eval("function twice(s) return s, s .. s end")
    assert h.call("twice", y) == [y, y + y]
    sent, got = spy.take()
    assert _blobs(sent) == 1 and _blobs(got) == 2
    # a big `code` field travels as a blob too
    code = "return '" + "A" * T + "'"
    assert h.eval(code) == ["A" * T]
    sent, got = spy.take()
    assert _blobs(sent) == 1 and _blobs(got) == 1


def test_python_api_output_comes_before_a_big_reply(big_vm):
    h, spy = big_vm, big_vm.spy
    spy.take()
    res = h.execute("print('before') return string.rep('y', ...)", 2 * T)
    assert res.output == b"before\n" and res.values == ["y" * 2 * T]
    got = spy.take()[1]
    assert got[-2:] == [wire.BLOB, wire.REPLY] and set(got[:-2]) == {wire.OUTPUT}


def test_python_api_pipelined_sends_with_big_arguments_and_replies(big_vm):
    h, spy = big_vm, big_vm.spy
    args = [_binary(2 * T + i, i) for i in range(4)]
    spy.take()
    for s in args:  # the VM answers while later requests are still being written
        h.send("print(#...) return ..., #...", s)
    results = [h.recv(PATIENCE) for _ in args]
    for res, s in zip(results, args):
        assert res.values == [s, len(s)] and res.output == b"%d\n" % len(s)
    sent, got = spy.take()
    assert _blobs(sent) == 4 and _blobs(got) == 4


def test_python_api_interrupt_while_a_big_reply_is_being_produced(big_vm):
    h = big_vm
    big = _binary(16 * T, 6)
    h.set("big", big)

    def on_output(data: bytes) -> None:  # the call runs: stop it
        h.interrupt()

    with pytest.raises(VMInterrupted):
        h.eval("print('building') local t = {} while true do t[#t % 64 + 1] = big:sub(#t % 7 + 1, 65536) end",
               on_output=on_output)
    assert h.get("big") == big
    assert h.eval("local n = 0 for i = 1, 2e6 do n = n + 1 end return n, #big") == [2000000, len(big)]


def test_python_api_encode_error_in_a_big_reply_keeps_the_vm(big_vm):
    h, spy = big_vm, big_vm.spy
    h.set("s", _binary(2 * T, 7))
    spy.take()
    with pytest.raises(VMError) as info:
        h.eval("return s, {f = print}")
    assert info.value.kind == "encode" and "value #2.f" in info.value.message
    assert spy.take()[1] == [wire.REPLY]
    assert h.get("s") == _binary(2 * T, 7)


def test_request_encoded_puts_the_blobs_back(big_vm):
    """request_encoded (vm.map's path) returns one self-contained encoding."""
    h = big_vm
    h.set("s", _binary(T, 8))
    encoded = h.request_encoded("eval", {"code": "return s, 1"}, {"args": b"{0;}"})
    assert encoded == wire.encode_list([_binary(T, 8), 1])
    assert inline_blobs(b"{2;S1;S1;}", 0, 10, [b"ab"]) == b"{2;s2:abs2:ab}"


def test_memory_limit_is_off_while_big_values_travel(manager):
    h = manager.create("blob-limit", profile=profile(memory_limit=48 * MiB))
    spy = Spy(h)
    s = _binary(32 * MiB, 9)
    h.set("s", s)                                   # 32 MiB in, under a 48 MiB limit
    assert h.get("s") == s                          # and out
    with pytest.raises(VMError) as info:
        h.eval("return s .. s")                     # 64 MiB: more than the user may allocate
    assert info.value.kind == "memory"
    assert h.eval("return #s") == [len(s)]
    sent, got = spy.take()
    assert _blobs(sent) == 1 and _blobs(got) == 1


# =========================================================================== the shell's Lua side

class Out(io.BytesIO):
    """The shell's stdout; ``on_write`` sees every piece of VM output as it arrives."""

    on_write = None

    def write(self, data):
        if self.on_write is not None:
            self.on_write(bytes(data))
        return super().write(data)


class Shell(Engine):
    def __init__(self, runtime: str):
        self.out = Out()
        super().__init__(runtime, stdout=self.out, extensions=["bioxen_shell.vm.bindings"])

    def show(self, line: str) -> str:
        r = self.eval_line(line)
        assert r.ok, r.error_text().decode()
        return r.output.decode()


@pytest.fixture(scope="module", params=["lua54", "luajit", "lua51"])
def shell(request):
    sh = Shell(request.param)
    sh.runtime = request.param
    sh.show("w = vm.create{name = 'lua-blobs'}")
    sh.spy = Spy(sh.vm_host.host.manager.get("lua-blobs"))
    sh.lua.execute(f"""
        T = {T}
        local bytes = {{}}
        for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
        all = table.concat(bytes)
        function binary(n, salt)
          local rotated = all:sub(salt + 1) .. all:sub(1, salt)
          return string.rep(rotated, math.floor(n / 256) + 1):sub(1, n)
        end
    """)
    yield sh
    sh.close()


def test_lua_side_round_trips_around_the_threshold(shell):
    spy = shell.spy
    shell.show("a, b, c, d = binary(T - 1, 1), binary(T, 2), binary(T + 1, 3), string.rep(all, T / 256)")
    spy.take()
    assert shell.show("local w1, w2, w3, w4 = w:eval('return ...', a, b, c, d) "
                      "return w1 == a, w2 == b, w3 == c, w4 == d") == "true\ttrue\ttrue\ttrue"
    sent, got = spy.take()
    assert _blobs(sent) == 3 and _blobs(got) == 3
    # set / get / call, nested values
    shell.show("w:set('x', {seqs = {b, 'small', {deep = c}}, again = b, list = {n = 2}})")
    sent, _ = spy.take()
    assert _blobs(sent) == 3
    assert shell.show("local x = w:get('x') return x.seqs[1] == b, x.again == b, x.seqs[3].deep == c, x.list.n") == \
        "true\ttrue\ttrue\t2"
    assert _blobs(spy.take()[1]) == 3
    shell.show("w:eval('function twice(s) return s, s .. s end')")
    assert shell.show("local p, q = w:call('twice', c) return p == c, q == c .. c") == "true\ttrue"
    sent, got = spy.take()
    assert _blobs(sent) == 1 and _blobs(got) == 2
    # nils around big strings keep the count
    assert shell.show("return select('#', w:eval('return nil, ..., nil', b))") == "3"
    # a big `code` goes as a blob too (only the reply's small number comes back inline)
    spy.take()
    assert shell.show("return w:eval('return #\"' .. string.rep('A', T) .. '\"')") == str(T)
    sent, got = spy.take()
    assert _blobs(sent) == 1 and _blobs(got) == 0


def test_lua_side_big_strings_leave_from_the_lua_strings_on_luajit(shell):
    """On LuaJIT the handle writes each big argument straight from the Lua string's memory
    (a view, no copy: docs/protocol.md, "Blobs"); elsewhere lupa's copy is written.  Either
    way the VM gets the very bytes, however many blobs one call has and whether or not the
    strings are temporaries that Lua may collect once the call returns."""
    proc = shell.vm_host.host.manager.get("lua-blobs")._proc
    send, written = proc.send, []

    def record(data):
        if len(data) >= T:
            written.append(data)
        return send(data)

    proc.send = record
    try:
        assert shell.show("local a, b = binary(3 * T, 7), binary(T + 5, 9) "
                          "local n, same = w:eval('local x, y, z = ... return #x + #y + #z, x .. z', "
                          "a, b, a .. 'tail') "
                          "collectgarbage() "
                          "return n == 7 * T + 9, same == a .. a .. 'tail'") == "true\ttrue"
        shell.show("w:set('kept', binary(2 * T, 11) .. 'end') collectgarbage()")
        assert shell.show("return w:eval('return kept') == binary(2 * T, 11) .. 'end'") == "true"
    finally:
        proc.send = send
    assert len(written) == 4
    if shell.runtime == "luajit":
        assert all(isinstance(d, memoryview) and not d.obj._b_needsfree_ for d in written)  # no copy
    else:
        assert all(isinstance(d, bytes) for d in written)


def test_lua_side_output_comes_before_a_big_reply(shell):
    spy = shell.spy
    shell.out.seek(0)
    shell.out.truncate()
    spy.take()
    assert shell.show("local s = w:eval('print(\"before\") return string.rep(\"y\", ...)', 2 * T) "
                      "return s == string.rep('y', 2 * T)") == "true"
    assert shell.out.getvalue() == b"before\n"
    got = spy.take()[1]
    assert got[-2:] == [wire.BLOB, wire.REPLY] and set(got[:-2]) == {wire.OUTPUT}


def test_lua_side_pipelined_send_recv_with_big_replies(shell):
    spy = shell.spy
    spy.take()
    shell.show("ids = {} for i = 1, 4 do ids[i] = vm.send(w, 'return ..., #...', binary(2 * T + i, i)) end")
    assert shell.show("local ok = true for i = 1, 4 do local s, n = vm.recv(w, 120) "
                      "ok = ok and s == binary(2 * T + i, i) and n == 2 * T + i end return ok") == "true"
    sent, got = spy.take()
    assert _blobs(sent) == 4 and _blobs(got) == 4


def test_lua_side_interrupt_while_a_big_reply_is_being_produced(shell):
    shell.show("big = binary(16 * T, 5) w:set('big', big)")
    shell.out.on_write = lambda data: shell.interrupt() if b"building" in data else None
    try:
        r = shell.eval_line("w:eval('print(\"building\") local t = {} "
                            "while true do t[#t % 64 + 1] = big:sub(#t % 7 + 1, 65536) end')")
    finally:
        shell.out.on_write = None
    assert r.kind == "interrupted"
    assert shell.show("return w:get('big') == big, w:eval('local n = 0 for i = 1, 2e6 do n = n + 1 end return n')") == \
        "true\t2000000"


def test_lua_side_encode_errors(shell):
    r = shell.eval_line("w:eval('return ...', binary(T, 1), print)")
    assert not r.ok and b"value #2" in r.message
    r = shell.eval_line("w:eval('return big, {f = print}')")
    assert not r.ok and b"value #2.f" in r.message
    assert shell.show("return #w:get('big')") == str(16 * T)
