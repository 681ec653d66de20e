"""While output flows: deadlines and Ctrl-C are seen on every read, a half-read reply survives
Ctrl-C, what a ``send`` prints is bounded in host memory, ``count`` is bounded."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bioxen_shell.vm.errors import VMInterrupted, VMTimeout
from bioxen_shell.vm.manager import MAX_COUNT, Manager, VMCreateError
from tests.system import require_binary
from tests.vm.conftest import profile

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20
#: prints without pause: far more than 64 KiB per 50 ms
CHATTY = 'while true do print(("y"):rep(1000)) end'


class Counter:
    def __init__(self, then=None, after=MiB):
        self.n, self.then, self.after, self.fired = 0, then, after, False

    def __call__(self, data: bytes) -> None:
        self.n += len(data)
        if self.then is not None and not self.fired and self.n >= self.after:
            self.fired = True
            self.then()


# ----------------------------------------------------------------------------- item 2

def test_a_vm_printing_without_pause_is_still_timed_out(manager):
    h = manager.create("chatty", profile=profile(call_timeout=0.5, stall_limit=120.0))
    out = Counter()
    t0 = time.monotonic()
    with pytest.raises(VMTimeout, match="chatty: call timed out after 0.5 s and was stopped"):
        h.eval(CHATTY, on_output=out)
    assert time.monotonic() - t0 < 10
    assert out.n > 10 * 64 * 1024, "the VM did not print fast enough for this test to mean anything"
    assert h.eval("return 'alive'") == ["alive"] and h.status == "running"


def test_the_shells_ctrl_c_stops_a_vm_printing_without_pause():
    stop = threading.Event()
    m = Manager(interrupted=stop.is_set)  # how the shell passes its Ctrl-C to VM waits
    try:
        h = m.create("chatty2")
        out = Counter(then=stop.set)
        t0 = time.monotonic()
        with pytest.raises(VMInterrupted):
            h.eval(CHATTY, on_output=out)
        assert time.monotonic() - t0 < 10 and out.n >= MiB
        stop.clear()
        assert h.eval("return 'alive'") == ["alive"] and h.status == "running"
    finally:
        assert m.destroy_all() == []


def test_sigint_in_the_python_api_stops_a_vm_printing_without_pause(manager):
    h = manager.create("chatty3")
    pid = h.pid
    out = Counter(then=lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGINT))
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        h.eval(CHATTY, on_output=out)
    assert time.monotonic() - t0 < 10
    assert h.status == "running" and h.pid == pid and h.eval("return 'alive'") == ["alive"]


def test_ctrl_c_in_the_shell_stops_a_script_whose_vm_prints_without_pause(tmp_path):
    bioxen = require_binary("bioxen")
    script = tmp_path / "chatty.lua"
    script.write_text('local w = vm.create{name = "c"}\nw:eval(\'' + CHATTY + '\')\n')
    proc = subprocess.Popen([bioxen, str(script)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        got = 0
        while got < MiB:  # the VM's output reaches the shell's stdout: it is flowing
            chunk = proc.stdout.read1(65536)
            assert chunk, proc.stderr.read().decode()
            got += len(chunk)
        proc.send_signal(signal.SIGINT)
        drain = threading.Thread(target=lambda: proc.stdout.read(), daemon=True)
        drain.start()
        assert proc.wait(20) == 130
        assert b"interrupted" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------- item 12

def _signal_main_when_mid_frame(h, done: threading.Event) -> threading.Thread:
    """SIGINT the main thread once the handle is in the middle of reading a big frame."""
    def watch():
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            big = h._reader._big
            if big is not None and big.filled > 0:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                return
            time.sleep(0.0005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


BIG_REPLY = "return ('z'):rep(192 * 1024 * 1024)"


def test_ctrl_c_during_a_big_reply_leaves_the_stream_in_step(manager):
    h = manager.create("bigreply")
    h.set("kept", 7)
    pid = h.pid
    done = threading.Event()
    watcher = _signal_main_when_mid_frame(h, done)
    try:
        with pytest.raises(KeyboardInterrupt):
            h.eval(BIG_REPLY)
    finally:
        done.set()
        watcher.join()
    # the reply was read to its end: the same agent serves the next calls, state kept
    assert h.status == "running" and h.pid == pid
    assert h.eval("return kept") == [7]
    assert h.eval("return 1 + 1") == [2]


def test_ctrl_c_during_a_big_reply_under_a_raising_handler_still_leaves_a_working_vm(manager):
    """With a SIGINT handler of the program's own that raises KeyboardInterrupt anywhere, the
    host either reads the reply to its end or, if Ctrl-C cut a read, restarts the VM."""
    def raising(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, raising)
    try:
        h = manager.create("bigreply2")
        for _ in range(3):
            done = threading.Event()
            watcher = _signal_main_when_mid_frame(h, done)
            try:
                with pytest.raises(KeyboardInterrupt):
                    h.eval(BIG_REPLY)
            finally:
                done.set()
                watcher.join()
            assert h.status == "running"
            assert h.eval("return 1 + 1") == [2]
    finally:
        signal.signal(signal.SIGINT, previous)


# ----------------------------------------------------------------------------- item 13

_SEND_100MB = r"""
import sys
sys.path.insert(0, {root!r})
from bioxen_shell.vm.manager import Manager
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
m = Manager()
h = m.create("printer")
h.eval("return 1")
before = hwm()
h.send("local line = ('y'):rep(1023) .. '\\n' for i = 1, 100 * 1024 do io.write(line) end return 'done'")
assert h.eval("return 2") == [2]   # waits behind the send: all its output is read meanwhile
kept = hwm() - before
seen = [0]
res = h.recv(60, on_output=lambda b: seen.__setitem__(0, seen[0] + len(b)))
print(seen[0], res.values[0], kept, hwm() - before)
m.destroy_all()
"""


def test_what_a_send_prints_is_not_kept_in_host_memory():
    out = subprocess.run([sys.executable, "-c", _SEND_100MB.format(root=str(ROOT))], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    seen, value, kept, total = out.stdout.split()
    assert int(seen) == 100 * MiB and value == "done"
    assert int(kept) < 20 * MiB, f"host memory grew by {int(kept) / MiB:.0f} MiB holding a send's output"
    assert int(total) < 20 * MiB, f"host memory grew by {int(total) / MiB:.0f} MiB handing it over"


_SHELL_SEND = r"""
local function hwm()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmHWM:%s+(%d+)")
    if kb then return tonumber(kb) * 1024 end
  end
end
local w = vm.create{name = "p"}
w:eval("return 1")
local before = hwm()
w:send("local line = ('y'):rep(1023) .. '\\n' for i = 1, 300 * 1024 do io.write(line) end return 'done'")
w:send("local line = ('z'):rep(1023) .. '\\n' for i = 1, 100 * 1024 do io.write(line) end return 'two'")
assert(w:recv() == "done")
assert(w:eval("return 3") == 3)       -- reads all of the second send's output meanwhile
assert(w:recv() == "two")
io.stderr:write(string.format("%d\n", hwm() - before))
"""


def test_vm_send_and_recv_in_the_shell_keep_memory_bounded(tmp_path):
    bioxen = require_binary("bioxen")
    script = tmp_path / "send.lua"
    script.write_text(_SHELL_SEND)
    out_file = tmp_path / "out.txt"
    with open(out_file, "wb") as out:
        proc = subprocess.run([bioxen, str(script)], cwd=tmp_path, stdout=out, stderr=subprocess.PIPE,
                              timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    growth = int(proc.stderr.decode().split()[-1])
    assert out_file.stat().st_size == 400 * MiB
    with open(out_file, "rb") as f:  # the second send's output comes after the first's
        f.seek(300 * MiB - 2)
        assert f.read(4) == b"y\nzz"
    assert growth < 40 * MiB, f"the shell's peak memory grew by {growth / MiB:.0f} MiB for 400 MiB printed"


def test_count_is_capped_with_a_clear_error(manager):
    for count in (MAX_COUNT + 1, 10**9, 1e9):
        with pytest.raises(VMCreateError, match=f"^vm.create\\{{…\\}}: count: expected a number of VMs from 1 to "
                                                f"{MAX_COUNT}, got "):
            manager.create("many", count=count)
    with pytest.raises(VMCreateError, match=f"count: expected a number of VMs from 1 to {MAX_COUNT}, got 2.5$"):
        manager.create("many", count=2.5)
    assert manager.list() == []
    with pytest.raises(ValueError, match=f"vms must be at most {MAX_COUNT}"):
        from bioxen_shell.vm.mapper import run_map, split_list
        from bioxen_shell.vm import protocol as wire

        run_map(manager, "function(x) return x end", split_list(wire.encode(list(range(2000)))), vms=2000,
                progress=False)
    assert manager.list() == []
    assert [h.name for h in manager.create("two", count=2.0)] == ["two1", "two2"]


def test_count_is_capped_in_the_shell(tmp_path):
    bioxen = require_binary("bioxen")
    proc = subprocess.run([bioxen, "-e", "print(pcall(vm.create, {name = 'x', count = 1e9})) print(#vm.list())"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"count: expected a number of VMs from 1 to {MAX_COUNT}, got 1000000000" in proc.stdout and proc.stdout.endswith("\n0\n"), proc.stdout


def test_a_maps_own_vm_goes_as_soon_as_nothing_is_left_for_it(manager, tmp_path):
    """The map destroys each of its own VMs once there is no item left for it, while the
    others still work (its memory goes back then, not after the last item); a pool the
    caller passed is kept."""
    from bioxen_shell.vm import protocol as wire
    from bioxen_shell.vm.mapper import run_map, split_list
    from tests.waiting import wait_for

    go = tmp_path / "go"
    # Item 1 answers at once; item 2 waits until the test creates `go`.
    fn = ("function(x, go) if x == 2 then while not io.open(go) do os.execute('sleep 0.01') end end "
          "return x end")
    seen = []

    def on_result(i, value):
        seen.append(i)
        if i == 1:  # item 2 is still running: one VM of the two is left, then we let it end
            wait_for(lambda: len(manager.list()) == 1, "the idle VM to be destroyed")
            go.write_text("")

    run_map(manager, fn, split_list(wire.encode([1, 2])), vms=2, progress=False, on_result=on_result,
            extra_args=[wire.encode(str(go))])
    assert seen == [1, 2] and manager.list() == []
    go.unlink()
    pool = manager.create("keep", count=2)
    run_map(manager, fn, split_list(wire.encode([1, 2, 3])), vms=pool, progress=False,
            extra_args=[wire.encode(str(go))], on_result=lambda i, v: go.write_text("") if i == 1 else None)
    assert [h.name for h in manager.list()] == ["keep1", "keep2"]
