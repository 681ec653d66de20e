"""One set of VM behaviour tests, run against every kind of VM.

``any_vm`` is parametrized over the backends: ``local`` (a forked worker), ``ssh`` (the agent
under a stock interpreter on a loopback OpenSSH server), ``xcpng`` (a guest of the XAPI
simulator reached over SSH) and ``slurm`` (a job step on a real one-node Slurm cluster).  The
remote fixtures ``ssh_vm_options`` / ``xcpng_vm_options`` / ``slurm_vm_options``
(tests/remote/sshd_fixture.py, tests/xapi_sim/fixtures.py, tests/slurm_fixture.py) give the
``vm.create`` options.
Every backend exists: one that does not import, or a missing fixture, is a failure.  Only a
missing system part (sshd) skips, through tests/system.py, saying why; under
``BIOXEN_REQUIRE_SYSTEM=1`` (CI) that skip is a failure too.
Everything here goes through the VM handle, exactly as the shell and the Python API do.
"""
from __future__ import annotations

import math
import os

import pytest

from bioxen_shell.vm.errors import VMCrashed, VMError, VMInterrupted, VMRestarted, VMTimeout
from bioxen_shell.vm.manager import resolve_backend
from bioxen_shell.vm.profiles import load_profile
from tests.waiting import PATIENCE, lua_touch, pid_gone, wait_for

BACKENDS = ["local", "ssh", "xcpng", "slurm"]


def _options(request, kind: str) -> dict:
    if kind == "local":
        return {"type": "local"}
    # A backend that does not import (VMCreateError) fails here, whatever the environment:
    # it is a bug of bioxen, not a missing part of the machine.
    resolve_backend(kind)
    # The fixture skips, through tests/system.py, only when a system part (sshd, Slurm) is missing.
    options = dict(request.getfixturevalue(f"{kind}_vm_options"))
    options.setdefault("type", kind)
    return options


@pytest.fixture(params=BACKENDS)
def backend_options(request):
    return _options(request, request.param)


@pytest.fixture
def make_vm(manager, backend_options):
    """``make_vm(**profile_changes)`` → a started VM of the parametrized kind."""
    counter = iter(range(1000))

    def make(profile: str = "standard", **changes):
        prof = load_profile(profile)
        if changes:
            prof = prof.replace(**changes)
        return manager.create(f"conf{next(counter)}", profile=prof, **backend_options)

    return make


@pytest.fixture
def any_vm(make_vm):
    return make_vm()


# ----------------------------------------------------------------------------- values

def test_values_round_trip(any_vm):
    args = [None, True, False, 7, -(2**40), 0.1, math.inf, "héllo", b"\x00\x01\xff", [1, [2, {"k": "v"}]]]
    got = any_vm.eval("return ...", *args)
    assert got[:5] == args[:5] and got[5] == 0.1 and got[6] == math.inf
    assert got[7] == "héllo" and got[8] == b"\x00\x01\xff" and got[9] == [1, [2, {"k": "v"}]]
    assert any_vm.eval("return nil, nil, 3") == [None, None, 3]


def test_integers_and_floats_kept_apart(any_vm):
    got = any_vm.eval("return 3, 3.5, 2^53")
    assert got[0] == 3 and isinstance(got[0], int) and got[1] == 3.5
    assert got[2] == 2**53


def test_unencodable_values_are_refused_clearly(any_vm):
    with pytest.raises(VMError) as info:
        any_vm.eval("local t = {} t.self = t return t")
    assert info.value.kind == "encode" and "cycle" in str(info.value)
    with pytest.raises(VMError, match="function"):
        any_vm.eval("return print")


# ----------------------------------------------------------------------------- errors

def test_runtime_error_message_and_traceback(any_vm):
    with pytest.raises(VMError) as info:
        any_vm.eval("local function f()\n  error('bad thing')\nend\nf()", chunkname="=job")
    assert info.value.kind == "error" and str(info.value) == "job:2: bad thing"
    assert "job:2" in info.value.traceback and "agent" not in info.value.traceback


def test_syntax_error(any_vm):
    with pytest.raises(VMError) as info:
        any_vm.eval("if then", chunkname="=job")
    assert info.value.kind == "syntax" and str(info.value).startswith("job:1:")


# ----------------------------------------------------------------------------- output

def test_output_belongs_to_its_call_and_streams(any_vm):
    res = any_vm.execute("print('one') io.write('two', 3, '\\n') return 'v'")
    assert res.output == b"one\ntwo3\n" and res.values == ["v"]
    chunks = []
    any_vm.eval("for i = 1, 2000 do io.write(string.rep('z', 1000), '\\n') end", on_output=chunks.append)
    assert sum(map(len, chunks)) == 2000 * 1001 and len(chunks) > 1  # flushed in pieces


# ----------------------------------------------------------------------------- state

def test_state_persists_and_requests_work(any_vm):
    any_vm.set("data", {"seqs": ["AC", "GT"]})
    assert any_vm.get("data") == {"seqs": ["AC", "GT"]}
    any_vm.eval("function join(t, sep) return table.concat(t, sep) end")
    assert any_vm.call("join", ["a", "b"], "-") == ["a-b"]
    assert any_vm.require("bio.seq") is not None
    assert any_vm.eval("return require('bio.seq').gc_fraction('GGCA')") == [0.75]


def test_pipelining_keeps_order(any_vm):
    for i in range(10):
        any_vm.send("return ...", i)
    assert [any_vm.recv(PATIENCE).values[0] for _ in range(10)] == list(range(10))


def test_info(any_vm):
    info = any_vm.info()
    assert info["status"] == "running" and info["memory"] > 0
    assert info.get("pid") or info.get("host")


# ----------------------------------------------------------------------------- limits

def test_interrupt_stops_the_call_and_the_vm_lives(any_vm, tmp_path):
    # Every backend's agent runs on this machine in the tests: the marker says the loop runs.
    looping = tmp_path / "looping"
    any_vm.set("kept", "alive")
    any_vm.send(lua_touch(looping) + "while true do end")
    wait_for(looping.exists, "the loop to start")
    any_vm.interrupt()
    with pytest.raises(VMInterrupted):
        any_vm.recv(PATIENCE)  # only the interrupt ends the loop
    assert any_vm.eval("return kept") == ["alive"]


def test_call_timeout(make_vm):
    vm = make_vm(call_timeout=1.0)  # the loop allocates nothing: the timeout is the only limit
    vm.kill_grace = PATIENCE  # and the agent's answer to it, not a kill, ends the call
    vm.set("kept", 1)
    with pytest.raises(VMTimeout) as info:
        vm.eval("while true do end")
    assert not isinstance(info.value, VMRestarted)  # the agent stopped it: same VM, same state
    assert vm.eval("return kept") == [1]


def test_memory_limit(make_vm):
    vm = make_vm(memory_limit=48 * 1024 * 1024)
    with pytest.raises(VMError) as info:
        vm.eval("local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(100) .. i end")
    assert info.value.kind == "memory"
    assert vm.eval("return 2") == [2]


def test_cpu_limit(make_vm):
    vm = make_vm(cpu_limit=0.5)
    with pytest.raises(VMError) as info:
        vm.eval("while true do end")
    assert info.value.kind == "cpu_limit"
    assert vm.eval("return 3") == [3]


def test_sandboxed_profile_closes_the_escapes(make_vm):
    vm = make_vm("sandboxed")
    for expr in ("os.execute", "io.popen", "io.open", "package.loadlib", "debug", "string.dump",
                 "require and package.loaded.ffi"):
        assert vm.eval(f"return {expr} == nil or {expr} == false") == [True], expr
    with pytest.raises(VMError):
        vm.eval("return load(string.char(27) .. 'LuaS')()")
    with pytest.raises(VMError):
        vm.eval("return require('ffi')")
    assert vm.eval("return os.time() > 0, math.floor(2.5), ('ab'):upper()") == [True, 2, "AB"]


# ----------------------------------------------------------------------------- crash

def test_crash_is_reported_and_restart_revives(any_vm):
    any_vm.set("x", 1)
    any_vm._proc.kill()  # as `kill -9` of the agent would
    with pytest.raises(VMCrashed, match="VM crashed|VM lost"):
        any_vm.eval("return 1")
    assert any_vm.status in ("crashed", "lost")
    any_vm.restart()
    assert any_vm.eval("return x") == [None] and any_vm.status == "running"


def test_killing_a_busy_vm_leaves_no_agent_running(any_vm, tmp_path):
    """``kill`` of a VM in the middle of an endless loop must end the agent process itself,
    not only the stream to it (a remote agent that never reads again would spin forever)."""
    pid = any_vm.describe().get("pid")
    # Every backend's agent runs on this machine in the tests (loopback sshd, simulated guests).
    assert pid and os.path.exists(f"/proc/{pid}"), f"the agent's pid is not known here: {pid!r}"
    looping = tmp_path / "looping"
    any_vm.send(lua_touch(looping) + "while true do end")
    wait_for(looping.exists, "the loop to start")
    any_vm.kill()
    wait_for(lambda: pid_gone(pid), f"agent process {pid} to end after kill()")
    with pytest.raises(VMCrashed):
        any_vm.recv(PATIENCE)


# ----------------------------------------------------------------------------- data-parallel maps

def test_map_over_file_shards_reads_each_range_in_the_vm(manager, make_vm, tmp_path):
    """Shards travel as descriptors; each VM reads its own range (a remote VM a staged copy)."""
    from bioxen_shell.vm import protocol as wire
    from bioxen_shell.vm.mapper import run_map
    from tests.bio.harness import run

    fa = tmp_path / "g.fa"
    fa.write_text("".join(f">r{i} rec\n" + "ACGTTGCA" * (i * 13 % 50) + "\n" for i in range(60)))
    shards = run("lupa:luajit21", f"return require('bio.fasta').shards({str(fa)!r}, 5)")
    assert len(shards) == 5
    pool = [make_vm(), make_vm()]
    source = """function(s)
      local n, total = 0, 0
      for rec in require("bio.fasta").records(s) do n, total = n + 1, total + #rec.seq end
      return {n, total}
    end"""
    res = run_map(manager, source, [wire.encode(s) for s in shards], vms=pool, progress=False)
    assert res.failures == []
    counts = res.values()
    assert sum(c[0] for c in counts) == 60
    assert sum(c[1] for c in counts) == sum(8 * (i * 13 % 50) for i in range(60))
