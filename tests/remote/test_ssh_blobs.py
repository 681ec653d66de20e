"""Big strings as blob frames, both ways, with stock interpreters behind SSH (loopback sshd):
the Python API and the shell's Lua side, through a transport without ``recv_into``.
See tests/vm/test_blobs.py for the same on local lupa workers."""
from __future__ import annotations

import pytest

from bioxen_shell.vm import protocol as wire
from bioxen_shell.vm.errors import VMError, VMInterrupted
from bioxen_shell.vm.manager import Manager
from bioxen_shell.vm.profiles import load_profile
from tests.system import require_binary
from tests.waiting import PATIENCE
from tests.vm.test_blobs import Shell, Spy, _binary, _blobs

T = wire.BLOB_THRESHOLD
INTERPRETERS = ["luajit", "lua5.4", "lua5.1"]


@pytest.fixture(scope="module")
def manager():
    m = Manager()
    yield m
    assert m.destroy_all() == []


@pytest.fixture(scope="module", params=INTERPRETERS)
def remote(request, manager, ssh_vm_options, tmp_path_factory):
    require_binary(request.param)
    opts = dict(ssh_vm_options, interpreter=request.param,
                cache_dir=str(tmp_path_factory.mktemp("remote-cache")))
    h = manager.create(f"blobs-{request.param.replace('.', '')}", profile=load_profile("standard"), **opts)
    h.spy = Spy(h)
    yield h
    manager.destroy(h.name)


def test_big_strings_both_ways_around_the_threshold(remote):
    h, spy = remote, remote.spy
    values = [_binary(T - 1, 1), _binary(T, 2), _binary(T + 1, 3), "ACGT" * (T // 4)]
    spy.take()
    assert h.eval("return ...", *values) == values
    sent, got = spy.take()
    assert _blobs(sent) == 3 and _blobs(got) == 3
    x = _binary(2 * T, 4)
    value = {"seqs": [x, "small", {"deep": x + b"!"}], "n": [None, x, None]}
    h.set("v", value)
    assert h.get("v") == value
    assert _blobs(spy.take()[1]) == 3


def test_output_before_a_big_reply_and_pipelined_big_replies(remote):
    h, spy = remote, remote.spy
    spy.take()
    res = h.execute("print('before') return string.rep('y', ...)", 2 * T)
    assert res.output == b"before\n" and res.values == ["y" * 2 * T]
    got = spy.take()[1]
    assert got[-2:] == [wire.BLOB, wire.REPLY] and set(got[:-2]) == {wire.OUTPUT}
    args = [_binary(T + i, i) for i in range(3)]
    for s in args:
        h.send("return ..., #...", s)
    assert [h.recv(PATIENCE).values for _ in args] == [[s, len(s)] for s in args]
    sent, got = spy.take()
    assert _blobs(sent) == 3 and _blobs(got) == 3


def test_interrupt_while_a_big_reply_is_being_produced(remote):
    h = remote
    big = _binary(8 * T, 5)
    h.set("big", big)
    with pytest.raises(VMInterrupted):
        h.eval("print('building') local t = {} while true do t[#t % 64 + 1] = big:sub(#t % 7 + 1, 65536) end",
               on_output=lambda data: h.interrupt())
    assert h.get("big") == big
    with pytest.raises(VMError) as info:
        h.eval("return big, {f = print}")
    assert info.value.kind == "encode"
    assert h.eval("return #big") == [len(big)]


def test_lua_side_through_ssh(ssh_vm_options, tmp_path):
    require_binary("lua5.4")
    sh = Shell("lua54")
    try:
        opts = dict(ssh_vm_options, interpreter="lua5.4", cache_dir=str(tmp_path / "cache"), name="lua-ssh")
        sh.lua.globals()[b"OPTS"] = sh.lua.table_from({k.encode(): v.encode() if isinstance(v, str) else v
                                                       for k, v in opts.items()})
        sh.show("w = vm.create(OPTS)")
        spy = Spy(sh.vm_host.host.manager.get("lua-ssh"))
        sh.show(f"s = string.rep('\\0\\255', {T // 2}) t = s .. 'x'")
        assert sh.show("local a, b = w:eval('return ...', s, t) return a == s, b == t") == "true\ttrue"
        sh.show("w:set('v', {s, {t}})")
        assert sh.show("local v = w:get('v') return v[1] == s, v[2][1] == t") == "true\ttrue"
        sh.show("vm.send(w, 'return v[2][1]')")
        assert sh.show("return vm.recv(w, 120) == t") == "true"
        sent, got = spy.take()
        assert _blobs(sent) == 4 and _blobs(got) == 5
    finally:
        sh.close()
