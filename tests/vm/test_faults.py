"""Faults and limits: memory, timeouts, kill -9, huge strings, huge output."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from bioxen_shell.vm.bindings import format_vms_table
from bioxen_shell.vm.errors import VMCrashed, VMError, VMRestarted, VMTimeout
from tests.vm.conftest import profile
from tests.waiting import PATIENCE, lua_touch, wait_for, when

MiB = 1024 * 1024


def test_memory_limit_gives_a_clear_error_and_the_vm_carries_on(manager):
    small = manager.create("small", profile=profile(memory_limit=32 * MiB))
    other = manager.create("other")
    with pytest.raises(VMError) as info:
        small.eval("local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(64) .. i end")
    assert info.value.kind == "memory" and "not enough memory" in str(info.value)
    assert small.eval("return 1 + 1") == [2]
    with pytest.raises(VMError, match="not enough memory"):
        small.eval("return ('x'):rep(64 * 1024 * 1024)")
    assert small.status == "running"
    assert other.eval("return #('x'):rep(64 * 1024 * 1024)") == [64 * MiB]


def test_call_timeout_stops_an_infinite_loop(manager):
    h = manager.create("loop", profile=profile(call_timeout=0.5))
    # The agent's hook is to stop these loops: however long a loaded machine keeps it from a
    # core, the grace before a kill and restart must not run out first.
    h.kill_grace = PATIENCE
    h.set("kept", "alive")
    pid = h.pid
    for code in ("while true do end",
                 "while true do pcall(function() while true do end end) end",
                 "coroutine.wrap(function() while true do end end)()"):
        with pytest.raises(VMTimeout, match="timed out after 0.5 s and was stopped") as info:
            h.eval(code)
        # stopped by the agent's hook: the same worker, its state kept (no kill and restart)
        assert not isinstance(info.value, VMRestarted)
        assert h.eval("return kept") == ["alive"] and h.pid == pid
    # a per-call timeout overrides the profile's
    with pytest.raises(VMTimeout, match="after 0.2 s"):
        h.eval("while true do end", timeout=0.2)


def test_call_stuck_in_c_is_killed_after_the_grace_period_and_restarted(manager):
    h = manager.create("stuck")
    h.kill_grace = 0.3
    h.set("kept", 1)
    old_pid = h.pid
    # exponential backtracking inside string.find: one C call, no hook point
    with pytest.raises(VMTimeout) as info:
        h.eval("return (('a'):rep(40)):find(('a*'):rep(40) .. 'b')", timeout=0.3)
    msg = str(info.value)
    assert "timed out after 0.3 s" in msg and "did not answer the interrupt within 0.3 s" in msg
    assert "killed and restarted" in msg and "state (globals) was lost" in msg
    assert isinstance(info.value, VMRestarted) and info.value.kind == "timeout"
    assert h.status == "running" and h.pid != old_pid
    assert h.eval("return kept") == [None] and h.eval("return 1") == [1]


def test_kill_9_pending_and_next_calls_crash_then_restart(manager, tmp_path):
    victim = manager.create("victim")
    bystander = manager.create("bystander")
    bystander.set("x", 42)
    looping = tmp_path / "looping"
    victim.send(lua_touch(looping) + "while true do end")  # pending while it dies
    errors = []

    def sync_call():
        try:
            victim.recv(PATIENCE)
        except VMCrashed as exc:
            errors.append(str(exc))

    t = threading.Thread(target=sync_call)
    t.start()
    wait_for(looping.exists, "the victim's loop to start")
    os.kill(victim.pid, signal.SIGKILL)
    t.join(PATIENCE)
    assert errors and "VM crashed (signal 9)" in errors[0]
    with pytest.raises(VMCrashed, match=r"victim: VM crashed \(signal 9\)"):
        victim.eval("return 1")
    assert victim.status == "crashed"
    table = format_vms_table(manager.list())
    assert "crashed (signal 9)" in table and "2 VMs: 1 running, 1 crashed" in table
    assert bystander.get("x") == 42  # others unaffected
    victim.restart()
    assert victim.eval("return 'back'") == ["back"] and victim.status == "running"


def test_kill_9_while_a_sync_call_waits(manager, tmp_path):
    h = manager.create("sync")
    looping = tmp_path / "looping"
    pid = h.pid
    with when(looping.exists, lambda: os.kill(pid, signal.SIGKILL), "the call's loop to start"):
        with pytest.raises(VMCrashed, match=r"VM crashed \(signal 9\)"):
            h.eval(lua_touch(looping) + "while true do end")


def test_100_mb_strings_in_and_out(manager):
    h = manager.create("big")
    data = bytes(range(256)) * (100 * MiB // 256)  # not UTF-8: stays bytes
    h.set("s", data)
    assert h.eval("return #s, s:byte(1), s:byte(-1)") == [100 * MiB, 0, 255]
    back = h.get("s")
    assert isinstance(back, bytes) and len(back) == len(data) and back == data
    text = "ACGT" * (25 * MiB)
    assert h.eval("return #(...)", text) == [100 * MiB]
    assert h.eval("return string.rep('A', 100 * 1024 * 1024)")[0] == "A" * (100 * MiB)


_PRINT_100MB = r"""
import resource, sys
from bioxen_shell.vm.manager import Manager
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
m = Manager()
h = m.create("printer")
seen = [0]
h.eval("return 1")
before = hwm()
h.eval("local line = ('y'):rep(1023) .. '\\n' for i = 1, 100 * 1024 do io.write(line) end",
       on_output=lambda b: seen.__setitem__(0, seen[0] + len(b)))
after = hwm()
print(seen[0], after - before)
m.destroy_all()
"""


def test_printing_100_mb_streams_in_bounded_memory():
    out = subprocess.run([sys.executable, "-c", _PRINT_100MB], capture_output=True, text=True, timeout=PATIENCE,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.returncode == 0, out.stderr
    seen, growth = map(int, out.stdout.split())
    assert seen == 100 * MiB
    assert growth < 20 * MiB, f"host memory grew by {growth / MiB:.1f} MiB while streaming 100 MiB"


def test_pipelined_big_request_behind_big_reply_does_not_deadlock(manager):
    h = manager.create("pipe")
    h.send("return string.rep('r', 20 * 1024 * 1024)")  # 20 MB reply ...
    h.send("return #(...)", b"q" * (20 * MiB))           # ... while we write a 20 MB request
    assert len(h.recv(PATIENCE).values[0]) == 20 * MiB
    assert h.recv(PATIENCE).values == [20 * MiB]


@pytest.mark.parametrize("action", ["destroy", "stop", "restart"])
def test_lifecycle_calls_do_not_wait_for_a_busy_vm(manager, action, tmp_path):
    h = manager.create(f"busy-{action}")
    looping = tmp_path / "looping"
    errors = []

    def endless():
        try:
            h.eval(lua_touch(looping) + "while true do end")
        except VMError as exc:
            errors.append(str(exc))

    t = threading.Thread(target=endless)
    t.start()
    wait_for(looping.exists, "the endless call to start")
    # The call never ends by itself: an action that waited for it would never return.
    acting = threading.Thread(target=getattr(h, action))
    acting.start()
    acting.join(PATIENCE)
    t.join(PATIENCE)
    assert not acting.is_alive(), f"{action}() waited for the busy call"
    assert not t.is_alive()
    past = {"destroy": "destroyed", "stop": "stopped", "restart": "restarted"}[action]
    assert errors == [f"busy-{action}: the VM was {past} while this call was running"]
    if action == "restart":
        assert h.eval("return 1") == [1]


def test_keyboard_interrupt_in_the_waiting_thread_interrupts_the_vm(manager, tmp_path):
    h = manager.create("ctrlc")
    h.kill_grace = PATIENCE  # the hook answers the interrupt: no kill, however slowly
    h.set("kept", "still here")
    pid = h.pid
    looping = tmp_path / "looping"
    main = threading.main_thread().ident
    with when(looping.exists, lambda: signal.pthread_kill(main, signal.SIGINT), "the call's loop to start"):
        with pytest.raises(KeyboardInterrupt):
            h.eval(lua_touch(looping) + "while true do end")
    assert h.status == "running" and h.eval("return kept") == ["still here"] and h.pid == pid


def test_an_interrupt_sent_before_the_call_starts_is_not_lost(manager):
    h = manager.create("early")
    pid = h.pid
    for _ in range(5):
        h.send("while true do end")
        h.interrupt()  # the request may not even have been read yet
        with pytest.raises(VMError) as info:
            h.recv(PATIENCE)  # a lost interrupt: the loop runs on, and this times out
        assert info.value.kind == "interrupted" and not isinstance(info.value, VMRestarted)
        assert h.eval("return 'ok'") == ["ok"]
    assert h.pid == pid


def test_status_notices_a_worker_killed_between_calls(manager):
    h = manager.create("quiet")
    os.kill(h.pid, signal.SIGKILL)
    wait_for(lambda: h.current_status() != "running", "the status to change")
    assert h.current_status() == "crashed" and h.describe()["exit_reason"] == "signal 9"
    assert manager.summary() == "1 VM: 1 crashed"
    assert "crashed (signal 9)" in format_vms_table(manager.list())


def test_ctrl_c_while_a_call_waits_behind_earlier_work_stops_it_once(manager, tmp_path):
    stop = threading.Event()
    h = manager.create("queue")
    h.interrupted = stop.is_set
    looping = tmp_path / "looping"
    h.send(lua_touch(looping) + "while true do end")
    assert h.recv(0.2) is None  # the send never ends by itself
    with when(looping.exists, stop.set, "the endless send to run"):
        with pytest.raises(VMError) as info:
            h.eval("return 1")  # queued behind the endless send
    assert info.value.kind == "interrupted"
    stop.clear()
    with pytest.raises(VMError) as info:
        h.recv(PATIENCE)  # the send itself was the call that got stopped
    assert info.value.kind == "interrupted"
    assert h.eval("return 2") == [2]
