"""Process hygiene: no zombies, no leaked descriptors, no worker outliving the shell."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bioxen_shell.vm.forkserver import Zygote
from bioxen_shell.vm.zygote import SPARE_NAME, SPARES
from tests.system import require_binary
from tests.waiting import PATIENCE, eventually, lua_touch, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])  # state, ppid


def _name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


def children_of(ppid: int, *, spares: bool = False) -> list[tuple[int, str]]:
    """The processes whose parent is ``ppid`` (pid, state).  Of the zygote: its workers, and
    with ``spares=True`` also the spare workers it keeps forked ahead (zygote.SPARES), which
    belong to no VM."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st and st[1] == ppid and (spares or _name(int(entry)) != SPARE_NAME):
                out.append((int(entry), st[0]))
    return out


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def _wait_gone(pids, timeout=PATIENCE) -> list[int]:
    """The processes of ``pids`` still alive after waiting (up to ``timeout``) for all to end."""
    eventually(lambda: not any(_alive(p) for p in pids), timeout)
    return [p for p in pids if _alive(p)]


def _open_fds() -> dict[str, str]:
    """This process's open descriptors and what each refers to (``pipe:[123]``, a path…)."""
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return fds


def test_1000_create_destroy_cycles_leave_no_zombies_and_no_fds(manager):
    manager.create("warm").destroy()
    manager.forget(manager.get("warm")) if manager.get("warm") else None
    fds_before = _open_fds()
    for i in range(1000):
        h = manager.create(f"c{i}")
        if i % 100 == 0:
            assert h.eval("return ...", i) == [i]
        manager.destroy(h.name)
    assert manager.list() == []
    zygote = Zygote.instance().pid
    eventually(lambda: not children_of(zygote))
    assert children_of(zygote) == [], "workers (or zombies) left behind"
    # New descriptors only: one that an earlier test's object held may close meanwhile
    # (a shared SSH connection that lingers, say), which is no leak of these VMs.
    leaked = {fd: target for fd, target in _open_fds().items() if fds_before.get(fd) != target}
    assert leaked == {}, "descriptors left open by the create/destroy cycles"


_SCRIPT = """
local ws = vm.create{name = "w", count = 3}
local pids = {}
for i, w in ipairs(ws) do pids[i] = tostring(w:info().pid) end
io.write(table.concat(pids, " "), "\\n")
io.stdout:flush()
{tail}
"""


def _run_shell(tmp_path, tail: str) -> tuple[subprocess.Popen, list[int]]:
    bioxen = require_binary("bioxen")
    script = tmp_path / "vms.lua"
    script.write_text(_SCRIPT.replace("{tail}", tail))
    proc = subprocess.Popen([bioxen, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True)
    line = proc.stdout.readline().decode()
    pids = [int(p) for p in line.split()]
    assert len(pids) == 3, (line, proc.stderr.read1(4096) if proc.poll() is not None else "")
    assert all(_alive(p) for p in pids)
    return proc, pids


def _zygote_of(pid: int) -> int:
    st = _stat(pid)
    assert st is not None
    return st[1]


def _spares_of(zygote: int) -> list[int]:
    """The spare workers of ``zygote``, once it has all of them (it forks them when idle)."""
    wait_for(lambda: len(children_of(zygote, spares=True)) - len(children_of(zygote)) == SPARES,
             f"the zygote's {SPARES} spare workers")
    return sorted({p for p, _ in children_of(zygote, spares=True)} - {p for p, _ in children_of(zygote)})


def test_no_worker_outlives_a_normal_exit(tmp_path):
    # The script waits for a line on stdin so the test can find the zygote before the exit.
    proc, pids = _run_shell(tmp_path, "io.read()")
    zygote = _zygote_of(pids[0])
    spares = _spares_of(zygote)
    proc.stdin.close()
    assert proc.wait(PATIENCE) == 0
    assert _wait_gone(pids + spares + [zygote]) == []


def test_a_new_vm_takes_a_spare_worker_and_the_zygote_forks_another_when_idle(manager):
    manager.create("first").destroy()  # the zygote is running
    zygote = Zygote.instance().pid
    spares = _spares_of(zygote)
    h = manager.create("spare-vm")
    assert h.pid in spares and h.eval("return 1 + 1") == [2]
    assert _name(h.pid) == "bxvm:spare-vm"  # named as its VM from then on
    assert len(_spares_of(zygote)) == SPARES  # the one taken is replaced
    manager.destroy(h.name)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_worker_outlives_a_killed_shell(tmp_path, sig):
    # the shell is busy waiting on a VM call when it is killed
    looping = tmp_path / "looping"
    proc, pids = _run_shell(tmp_path, f"vm.get('w1'):eval([[{lua_touch(looping)}while true do end]])")
    zygote = _zygote_of(pids[0])
    wait_for(looping.exists, "the VM call to run")
    spares = _spares_of(zygote)
    os.kill(proc.pid, sig)
    proc.wait(PATIENCE)
    assert _wait_gone(pids + spares + [zygote]) == [], f"left alive after signal {sig}"


def test_killing_the_zygote_takes_its_workers_along(manager):
    h = manager.create("orphan-check")
    zygote = _zygote_of(h.pid)
    pid = h.pid
    spares = _spares_of(zygote)
    os.kill(zygote, signal.SIGKILL)
    assert _wait_gone([pid, *spares]) == []
    with pytest.raises(Exception, match="VM crashed"):
        h.eval("return 1")
    # a new zygote is started for the next VM
    h.restart()
    assert h.eval("return 2") == [2] and _zygote_of(h.pid) != zygote


def test_a_forked_child_of_the_shell_does_not_keep_the_zygote_alive(manager):
    h = manager.create("forker")
    zygote = _zygote_of(h.pid)
    sock = os.readlink(f"/proc/self/fd/{Zygote.instance()._sock.fileno()}")
    pid = os.fork()
    if pid == 0:  # the child must not hold the zygote's control socket
        links = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                 if os.path.exists(f"/proc/self/fd/{fd}")]
        os._exit(1 if sock in links else 0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _alive(zygote) and h.eval("return 1") == [1]


def test_zygote_reports_exit_status_and_installs_only_fds_0_to_4():
    """The zygote on its own, with a stand-in worker (tests/vm/echo_worker.py)."""
    from bioxen_shell.vm.local import LocalAgentProcess

    proc = LocalAgentProcess(Zygote.instance(), runtime="lua54", max_memory=0, env={}, name="echo",
                             target="tests.vm.echo_worker:run")
    hello = proc.recv(4096, PATIENCE)
    # fds of the echo worker: 0-2, the protocol pipes 3/4, and 5 = its own listdir of /proc/self/fd
    assert hello.startswith(b"hello lua54 ") and hello.rstrip().endswith(b"['0', '1', '2', '3', '4', '5']")
    proc.send(b"ping")
    assert proc.recv(10, PATIENCE) == b"ping"
    proc.send(b"exit 3")
    assert proc.recv(10, PATIENCE) == b""
    assert proc.wait_exit_reason(PATIENCE) == "exit status 3"
    proc.close()


# ----------------------------------------------------------------------------- what a VM starts

_START_GRANDCHILD = "local f = io.popen('sleep 999 >/dev/null 2>&1 & echo $!') local pid = f:read('*l') f:close() return tonumber(pid)"


def _grandchild(h) -> int:
    """A process the VM starts in the background (it outlives the shell command that ran it)."""
    (pid,) = h.eval(_START_GRANDCHILD)
    assert _alive(pid)
    return pid


def _reap_leftovers(pids) -> None:
    """Whatever a failed test left alive is killed here, so no process outlives the test."""
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.parametrize("action", ["destroy", "restart", "stop", "crash"])
def test_processes_a_vm_started_end_with_it(manager, action):
    h = manager.create(f"parent-{action}")
    kids = [_grandchild(h), _grandchild(h)]
    try:
        if action == "crash":
            os.kill(h.pid, signal.SIGKILL)
        else:
            getattr(h, action)()
        assert _wait_gone(kids, timeout=10) == [], f"left alive after {action}"
        if action != "destroy":
            if action != "restart":
                h.restart()
            kids.append(_grandchild(h))  # the fresh agent can start processes again
    finally:
        try:
            if action != "destroy":
                h.destroy()
        finally:
            left = _wait_gone(kids, timeout=10)
            _reap_leftovers(kids)
    assert left == []


_GRANDCHILD_SCRIPT = """
local w = vm.create{name = "w"}
local kid = w:eval("%s")
io.write(tostring(w:info().pid), " ", tostring(kid), "\\n")
io.stdout:flush()
{tail}
""" % _START_GRANDCHILD.replace("'", "\\'").replace('"', '\\"')


def _run_parent_shell(tmp_path, tail: str) -> tuple[subprocess.Popen, int, int]:
    bioxen = require_binary("bioxen")
    script = tmp_path / "kids.lua"
    script.write_text(_GRANDCHILD_SCRIPT.replace("{tail}", tail))
    proc = subprocess.Popen([bioxen, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True)
    line = proc.stdout.readline().decode()
    assert len(line.split()) == 2, (line, proc.stderr.read1(4096) if proc.poll() is not None else "")
    worker, kid = (int(x) for x in line.split())
    assert _alive(worker) and _alive(kid)
    return proc, worker, kid


def test_processes_a_vm_started_end_with_a_normal_exit(tmp_path):
    proc, worker, kid = _run_parent_shell(tmp_path, "io.read()")
    try:
        proc.stdin.close()
        assert proc.wait(30) == 0
        assert _wait_gone([worker, kid], timeout=10) == []
    finally:
        _reap_leftovers([proc.pid, worker, kid])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_processes_a_vm_started_end_with_a_killed_shell(tmp_path, sig):
    # the shell is busy waiting on a VM call when it is killed
    proc, worker, kid = _run_parent_shell(tmp_path, "vm.get('w'):eval('while true do end')")
    try:
        deadline = time.monotonic() + 10
        while (_stat(worker) or ("?",))[0] != "R" and time.monotonic() < deadline:  # the call runs
            time.sleep(0.01)
        os.kill(proc.pid, sig)
        proc.wait(30)
        assert _wait_gone([worker, kid], timeout=10) == [], f"left alive after signal {sig}"
    finally:
        _reap_leftovers([proc.pid, worker, kid])


def test_the_vms_a_map_created_are_gone_soon_after_it_returns(manager):
    # A map lets its own local VMs go without waiting for their processes' end (a big heap
    # takes the kernel milliseconds to tear down): they must still all end, and be reaped.
    from bioxen_shell.vm import protocol
    from bioxen_shell.vm.mapper import run_map

    own_pid = 'function(x) return tonumber(io.open("/proc/self/stat"):read("*l"):match("^%d+")) end'
    result = run_map(manager, own_pid, [protocol.encode(i) for i in range(6)], vms=2)
    pids = set(result.values())
    assert 1 <= len(pids) <= 2 and manager.list() == []
    assert _wait_gone(sorted(pids)) == []
    zygote = Zygote.instance().pid
    eventually(lambda: not children_of(zygote))
    assert children_of(zygote) == [], "workers (or zombies) left behind"
