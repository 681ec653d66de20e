"""A stalled or hostile agent on an SSH host, through a real OpenSSH server on loopback.

The same frame reader serves SSH channels and local pipes, so its deadlines, limits and stall
check work here too: a stopped remote agent ends at the call's deadline (restarted), or at
``stall_limit`` when it stopped in the middle of a frame; a malformed frame is a protocol error.
The hostile agent is tests/vm/fake_agent.py, started by the SSH wrapper as the "interpreter".
"""
from __future__ import annotations

import os
import signal
import time

import pytest

from bioxen_shell.vm.errors import VMProtocolError, VMRestarted

from bioxen_shell.vm.profiles import load_profile
from tests.vm import fake_agent

MiB = 1 << 20


def _create(manager, ssh_vm_options, name, tmp_path=None, **changes):
    opts = dict(ssh_vm_options)
    if tmp_path is not None:  # the hostile agent instead of lua
        opts["interpreter"] = fake_agent.write_script(tmp_path / "fake-lua")
    return manager.create(name, profile=load_profile("standard").replace(**changes), **opts)


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_a_remote_agent_that_stops_mid_frame_ends_at_the_stall_limit(manager, ssh_vm_options, tmp_path):
    vm = _create(manager, ssh_vm_options, "rstall", tmp_path, stall_limit=1.0)
    assert vm.eval("ok") == [True]
    t0 = time.monotonic()
    with pytest.raises(VMProtocolError) as info:
        vm.eval((b"R100\n" + b"{" * 10).hex())
    assert 1.0 <= time.monotonic() - t0 < 15
    msg = str(info.value)
    assert msg.startswith("rstall: protocol error: the agent stopped sending in the middle of a frame")
    assert "10 of 100 bytes of an R frame" in msg
    assert vm.status == "crashed"
    vm.restart()
    assert vm.eval("ok") == [True]


def test_a_stalled_remote_agent_ends_at_the_call_timeout(manager, ssh_vm_options, tmp_path):
    vm = _create(manager, ssh_vm_options, "rtimeout", tmp_path, stall_limit=120.0, call_timeout=0.5)
    vm.kill_grace = 0.5
    t0 = time.monotonic()
    with pytest.raises(VMRestarted) as info:
        vm.eval((b"R100\n" + b"{" * 10).hex())  # the fake never answers the interrupt
    assert time.monotonic() - t0 < 15
    assert info.value.kind == "timeout" and "killed and restarted" in str(info.value)
    assert vm.status == "running" and vm.eval("ok") == [True]


@pytest.mark.parametrize("data, what", [
    (b"R3000000000\n", "over the limit of 1 GiB for R frames"),
    (b"R1_0\n", "bad length b'1_0'"),
    (b"R-5\n", "bad length b'-5'"),
])
def test_malformed_frames_from_a_remote_agent_are_protocol_errors(manager, ssh_vm_options, tmp_path, data, what):
    vm = _create(manager, ssh_vm_options, "rbad", tmp_path)
    t0 = time.monotonic()
    with pytest.raises(VMProtocolError, match=what):
        vm.eval(data.hex())
    assert time.monotonic() - t0 < 10 and vm.status == "crashed"
    vm.restart()
    assert vm.eval("ok") == [True]


def test_a_real_remote_agent_stopped_mid_reply_ends_at_the_stall_limit(manager, ssh_vm_options):
    vm = _create(manager, ssh_vm_options, "rreal", stall_limit=2.0)
    pid = vm.describe()["pid"]
    vm.send("return ('y'):rep(64 * 1024 * 1024)")
    chan = vm._proc._chan
    deadline = time.monotonic() + 60
    # Nobody reads yet: the reply fills the channel's window (16 MiB) and the agent blocks
    # inside the frame's write, far from its end; stop it there.
    while len(chan.in_buffer) < 8 * MiB:
        assert time.monotonic() < deadline, "the reply never filled the channel"
        time.sleep(0.01)
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(VMProtocolError) as info:
            vm.recv()
        assert time.monotonic() - t0 < 30
        assert "stopped sending in the middle of a frame" in str(info.value)
        assert "of 67108864 bytes of a B frame" in str(info.value)
        assert vm.status == "crashed"
    finally:
        if _pid_alive(pid):
            os.kill(pid, signal.SIGCONT)
    vm.restart()
    assert vm.eval("return 'back'") == ["back"] and vm.describe()["pid"] != pid
