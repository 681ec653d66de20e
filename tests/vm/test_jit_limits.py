"""LuaJIT is the local default, and limits hold with JIT-compiled code (real worker processes).

User chunks run interpreted (``jit.off``), so the agent's count hook stops them cleanly and the
VM keeps its state.  Library code stays JIT-compiled, and a loop in a trace never reaches that
hook: there the host enforces ``call_timeout`` and ``cpu_limit`` (and Ctrl-C) itself, kills
the worker after the grace period and restarts the VM, and the call says so.

Each test lets exactly one limit fire, and waits for events (the call's answer, output
arriving), never for a duration, so it holds on a loaded machine.
"""
from __future__ import annotations

import signal
import threading

import pytest

from bioxen_shell import paths
from bioxen_shell.runtimes import INTERPRETERS, default_runtime
from bioxen_shell.vm.errors import VMError, VMInterrupted, VMRestarted, VMTimeout
from bioxen_shell.vm.profiles import load_profile
from bioxen_shell.vm.transport import BackendError
from tests.waiting import PATIENCE

pytest.importorskip("lupa.luajit21")

#: A library module whose loops LuaJIT compiles: the count hook never fires inside them.
SPIN_MODULE = """
local M = {}
function M.forever()
  local n = 0
  while true do n = n + 1 end
end
return M
"""

#: The same loop from user code: load() gives an interpreted chunk, jit.on hands it back to
#: the compiler (what a module does implicitly).
JIT_ON_LOOP = "local f = load('local n = 0 while true do n = n + 1 end') jit.on(f, true) f()"

#: 64 KiB of output is flushed at once, before the loop starts: the host sees the call run.
ANNOUNCE = "io.write(string.rep('.', 65536)) "


def user_profile(name: str, **limits: float) -> str:
    """A profile in the user's directory whose ``paths`` hold the ``spin`` module."""
    d = paths.config_dir() / "profiles"
    (d / "lua").mkdir(parents=True, exist_ok=True)
    (d / "lua" / "spin.lua").write_text(SPIN_MODULE)
    body = ['paths = ["lua"]', f"call_timeout = {limits.get('call_timeout', 0)}",
            f"cpu_limit = {limits.get('cpu_limit', 0)}"]
    (d / f"{name}.toml").write_text("\n".join(body) + "\n")
    return name


def assert_restarted(h, exc: VMError, *, kind: str, limit_text: str, old_pid: int) -> None:
    msg = str(exc)
    assert isinstance(exc, VMRestarted) and exc.kind == kind, (type(exc), exc.kind, msg)
    assert limit_text in msg, msg
    assert "did not answer the interrupt" in msg, msg
    assert "restarted" in msg and "state (globals) was lost" in msg, msg
    assert h.status == "running" and h.pid != old_pid
    assert h.eval("return kept") == [None]          # the state went with the old worker
    assert h.eval("return 6 * 7") == [42]           # ... and the new one answers
    assert h.describe()["restarts"] >= 1


# --------------------------------------------------------------------------- the default


def test_luajit_is_the_local_default(manager):
    assert default_runtime() == "luajit"
    h = manager.create("dflt")
    info = h.info()
    assert info["runtime"] == "luajit" and info["lua_version"] == "Lua 5.1"
    assert h.hello["jit"].startswith("LuaJIT") and info["jit"].startswith("LuaJIT")
    # user chunks run interpreted (the hook fires there), library code keeps the JIT
    assert h.eval("return (jit.status())") == [True]


def test_without_lupa_luajit_local_vms_fall_back_to_lua54(monkeypatch):
    import sys

    from bioxen_shell import runtimes
    from bioxen_shell.vm.local import LocalBackend

    monkeypatch.setattr(runtimes, "_default", None)
    monkeypatch.setitem(sys.modules, "lupa.luajit21", None)  # "import lupa.luajit21" fails
    assert runtimes.default_runtime() == "lua54"
    assert LocalBackend("x", {}, load_profile("standard")).runtime == "lua54"
    assert LocalBackend("y", {}, load_profile("standard").with_runtime("luajit")).runtime == "luajit"
    monkeypatch.setattr(runtimes, "_default", None)  # forget the simulated answer


def test_remote_best_interpreter_prefers_luajit():
    assert INTERPRETERS[0] == "luajit"


def test_a_profile_can_still_pin_lua54(manager):
    d = paths.config_dir() / "profiles"
    d.mkdir(parents=True, exist_ok=True)
    (d / "plain54.toml").write_text('runtime = "lua54"\n')
    h = manager.create("p54", profile="plain54")
    assert h.info()["runtime"] == "lua54" and h.eval("return _VERSION") == ["Lua 5.4"]
    assert h.eval("return math.type(1)") == ["integer"]
    # vm.create{runtime=...} still overrides the default for one VM
    assert manager.create("r54", runtime="lua54").eval("return _VERSION") == ["Lua 5.4"]


def test_sandboxed_profile_runs_lua54_and_deep_gsub_recursion_is_an_error(manager):
    assert load_profile("sandboxed").runtime == "lua54"
    h = manager.create("untrusted", profile="sandboxed")
    assert h.info()["runtime"] == "lua54" and h.hello["runtime"] == "Lua 5.4" and "jit" not in h.hello
    # under LuaJIT this recursion kills the worker (signal 11); lua54 fails the call cleanly
    with pytest.raises(VMError, match="stack overflow"):
        h.eval("local function f(s) return (s:gsub('.', function(c) return f(c) end)) end return f('a')")
    assert h.status == "running" and h.eval("return 1") == [1]


# --------------------------------------------------------------------------- user code: the hook


def test_user_loop_under_call_timeout_is_stopped_by_the_hook_and_keeps_the_vm(manager):
    h = manager.create("hooked", profile=user_profile("t_hook", call_timeout=0.5))
    h.kill_grace = PATIENCE  # the hook stops it: the kill must not come first on a loaded machine
    h.set("kept", "still here")
    pid = h.pid
    with pytest.raises(VMTimeout) as info:
        h.eval("while true do end")
    assert info.value.kind == "timeout" and not isinstance(info.value, VMRestarted)
    assert "timed out after 0.5 s and was stopped" in str(info.value)
    assert h.pid == pid and h.eval("return kept") == ["still here"]


def test_user_loop_under_cpu_limit_is_stopped_by_the_hook_and_keeps_the_vm(manager):
    h = manager.create("hookcpu", profile=user_profile("c_hook", cpu_limit=0.5))
    h.kill_grace = PATIENCE  # the hook stops it: the kill must not come first on a loaded machine
    h.set("kept", "still here")
    pid = h.pid
    with pytest.raises(VMError) as info:
        h.eval("while true do pcall(function() while true do end end) end")
    assert info.value.kind == "cpu_limit" and not isinstance(info.value, VMRestarted)
    assert "CPU time limit exceeded (0.5 s)" in str(info.value)
    assert h.pid == pid and h.eval("return kept") == ["still here"]


# --------------------------------------------------------------------------- JIT code: the host


@pytest.mark.parametrize("code", ["require('spin').forever()", JIT_ON_LOOP], ids=["module", "jit.on"])
def test_jit_loop_under_call_timeout_restarts_the_vm(manager, code):
    h = manager.create("jt", profile=user_profile("t_jit", call_timeout=0.5))
    h.kill_grace = 0.5
    h.set("kept", "lost soon")
    pid = h.pid
    with pytest.raises(VMTimeout) as info:
        h.eval(code)
    assert_restarted(h, info.value, kind="timeout", limit_text="call_timeout 0.5 s", old_pid=pid)
    assert "timed out after 0.5 s" in str(info.value)


@pytest.mark.parametrize("code", ["require('spin').forever()", JIT_ON_LOOP], ids=["module", "jit.on"])
def test_jit_loop_under_cpu_limit_restarts_the_vm(manager, code):
    h = manager.create("jc", profile=user_profile("c_jit", cpu_limit=0.5))
    h.kill_grace = 0.5
    h.set("kept", "lost soon")
    pid = h.pid
    with pytest.raises(VMError) as info:
        h.eval(code)
    assert_restarted(h, info.value, kind="cpu_limit", limit_text="cpu_limit 0.5 s", old_pid=pid)
    # the restarted VM has its limits: the hook still stops user code there, keeping the VM
    h.kill_grace = PATIENCE
    with pytest.raises(VMError) as again:
        h.eval("while true do end")
    assert again.value.kind == "cpu_limit" and not isinstance(again.value, VMRestarted)


def test_pipelined_jit_loop_under_cpu_limit_fails_it_and_the_request_behind_it(manager):
    h = manager.create("jp", profile=user_profile("c_pipe", cpu_limit=0.5))
    h.kill_grace = 0.5
    h.set("kept", "lost soon")
    pid = h.pid
    h.send("require('spin').forever()")
    h.send("return 'queued'")
    # short recv() polls: the CPU count and the grace period carry over from one to the next
    while True:
        try:
            if h.recv(0.1) is not None:
                raise AssertionError("the endless send returned")
        except VMError as exc:
            first = exc
            break
    assert_restarted(h, first, kind="cpu_limit", limit_text="cpu_limit 0.5 s", old_pid=pid)
    with pytest.raises(VMRestarted) as second:
        h.recv(PATIENCE)
    assert second.value.kind == "cpu_limit" and h.pending == 0


def test_ctrl_c_on_a_jit_loop_restarts_the_vm(manager):
    h = manager.create("jctrlc", profile=user_profile("nolimits"))
    h.kill_grace = 0.5
    started = threading.Event()
    h.interrupted = started.is_set          # "Ctrl-C" as soon as the loop runs
    h.set("kept", "lost soon")
    pid = h.pid
    with pytest.raises(VMInterrupted) as info:
        h.eval(ANNOUNCE + "require('spin').forever()", on_output=lambda data: started.set())
    h.interrupted = None
    assert_restarted(h, info.value, kind="interrupted", limit_text="call was interrupted", old_pid=pid)


def test_keyboard_interrupt_on_a_jit_loop_restarts_the_vm_then_raises(manager):
    h = manager.create("jkbd", profile=user_profile("nolimits_kbd"))
    h.kill_grace = 0.5
    h.set("kept", "lost soon")
    pid = h.pid
    main = threading.main_thread().ident

    def ctrl_c(data):  # the loop runs: Ctrl-C in the waiting (main) thread, from another one
        threading.Thread(target=signal.pthread_kill, args=(main, signal.SIGINT)).start()

    with pytest.raises(KeyboardInterrupt):
        h.eval(ANNOUNCE + "require('spin').forever()", on_output=ctrl_c)
    assert h.restarts == 1 and "interrupted, no answer to the interrupt" in h.last_restart
    assert h.status == "running" and h.pid != pid
    assert h.eval("return kept") == [None] and h.eval("return 1") == [1]


def test_a_failed_restart_leaves_the_vm_crashed_with_both_reasons(manager):
    h = manager.create("jfail", profile=user_profile("t_fail", call_timeout=0.5))
    h.kill_grace = 0.5

    def no_more_workers():
        raise BackendError("local: cannot start a worker for VM 'jfail': no more workers (test)")

    h.backend.start = no_more_workers
    with pytest.raises(VMTimeout) as info:
        h.eval("require('spin').forever()")
    msg = str(info.value)
    assert not isinstance(info.value, VMRestarted)
    assert "call_timeout 0.5 s" in msg and "did not answer the interrupt" in msg
    assert "restarting it failed (local: cannot start a worker for VM 'jfail': no more workers (test))" in msg
    assert h.status == "crashed"
    reason = h.describe()["exit_reason"]
    assert "call_timeout 0.5 s" in reason and "restart failed: local: cannot start a worker" in reason
    del h.backend.start
    h.restart()
    assert h.eval("return 1") == [1]


def test_a_remote_vm_is_restarted_the_same_way(manager, ssh_vm_options):
    """The restart goes through the handle's restart machinery, so an SSH VM whose agent does
    not answer (one long C call: a pattern that backtracks for ages) comes back too.  Remote
    agents report no CPU time (``cpu_seconds``): their own hook enforces ``cpu_limit``."""
    from tests.system import require_binary

    require_binary("luajit")
    h = manager.create("rj", profile=user_profile("t_remote", call_timeout=0.5),
                       **dict(ssh_vm_options, interpreter="luajit"))
    h.kill_grace = 0.5
    assert getattr(h._proc, "cpu_seconds", lambda: None)() is None
    h.set("kept", "lost soon")
    pid = h.pid
    with pytest.raises(VMTimeout) as info:
        h.eval("return (('a'):rep(40)):find(('a*'):rep(40) .. 'b')")
    assert_restarted(h, info.value, kind="timeout", limit_text="call_timeout 0.5 s", old_pid=pid)
