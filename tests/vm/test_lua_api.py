"""The shell's `vm` table, :vms, :attach/:detach, vm.map — through a real Engine."""
from __future__ import annotations

import io
import os
import signal

import pytest

from bioxen_shell.engine import Engine
from bioxen_shell.runtimes import default_runtime
from tests.waiting import PATIENCE, lua_touch, pid_gone, wait_for, when

RUNTIMES = ["luajit", "lua51", "lua54"]  # the shell runs on any; the VMs are always separate


class Shell(Engine):
    def __init__(self, runtime: str):
        self.out = io.BytesIO()
        super().__init__(runtime, stdout=self.out, extensions=["bioxen_shell.vm.bindings"])

    def take(self) -> bytes:
        data = self.out.getvalue()
        self.out.seek(0)
        self.out.truncate()
        return data

    def show(self, line: str) -> str:
        r = self.eval_line(line)
        assert r.ok, r.error_text().decode()
        return r.output.decode()

    def fail(self, line: str):
        r = self.eval_line(line)
        assert not r.ok, r
        return r


@pytest.fixture(scope="module", params=RUNTIMES)
def shell(request):
    sh = Shell(request.param)
    sh.show("w = vm.create{name = 'w1'}")
    # Ctrl-C in these tests is answered by the VM's hook: the grace before a kill and restart
    # must not run out first while a loaded machine keeps the worker from a core.
    sh.vm_host.host.manager.get("w1").kill_grace = PATIENCE
    yield sh
    sh.close()
    assert sh.vm_host.host.manager.list() == []


def test_eval_values_keep_their_types_and_bytes(shell):
    assert shell.show("w:eval('return 1 + 1')") == "2"
    shell.show("a, b, c, d, e = w:eval('return 3, 2.5, \"a\\\\0b\", nil, {1, {x = 2}}')")
    assert shell.show("a, b, c, d") == '3\t2.5\t"a\\000b"\tnil'
    assert shell.show("e[2].x") == "2"
    # bytes above 127 pass both ways unchanged
    assert shell.show("w:eval('return ...', '\\255\\254') == '\\255\\254'") == "true"
    # integers stay integers in a VM that has them (Lua 5.3+; the default LuaJIT has doubles only)
    shell.show("w54 = vm.create{name = 'w54', runtime = 'lua54'}")
    try:
        assert shell.show("w54:eval('return math.type(...)', 7)") == '"integer"'
        assert shell.show("w54:eval('return math.type(...)', 7.5)") == '"float"'
    finally:
        shell.show("w54:destroy()")


def test_errors_are_lua_errors_with_the_vm_position(shell):
    r = shell.fail("w:eval('local x = 1\\nerror(\"boom\")')")
    assert r.message == b"w1:2: boom"
    assert shell.show("select(2, pcall(w.eval, w, 'error(\"x\")'))") == '"w1:1: x"'
    r = shell.fail("w:eval(42)")
    assert b"bad argument #1 to 'eval' (string expected" in r.message


def test_output_goes_to_the_shell(shell):
    shell.take()
    assert shell.show("w:eval('print(\"from vm\") return 1')") == "1"
    assert shell.take() == b"from vm\n"


def test_set_get_call_require_info(shell):
    shell.show("w:set('n', 41)")
    assert shell.show("w:get('n') + 1") == "42"
    shell.show("w:eval('function inc(x) return x + 1 end')")
    assert shell.show("w:call('inc', 1)") == "2"
    assert shell.show("w:require('bio.seq')") == "true"
    info = shell.show("w:info()")
    for key in ("name", "type", "profile", "status", "pid", "created", "uptime", "memory"):
        assert key + " =" in info, key


def test_send_recv_wait(shell, tmp_path):
    shell.show("vm.send(w, 'return ...', 'first'); w:send('print(\"out\") return \"second\"')")
    shell.take()
    assert shell.show("vm.recv(w)") == '"first"'
    assert shell.show("w:wait()") == '"second"'
    assert shell.take() == b"out\n"
    # nothing pending: w:wait() and w:recv() are one call, and both say so
    for call in ("w:wait()", "w:recv()", "vm.recv(w)", "w:wait(1)"):
        assert shell.fail(call).message == b"w1: nothing to receive (no vm.send pending)", call
    # The call waits for a file the test makes only after the short recv has timed out.
    go = tmp_path / "go"
    shell.show(f"w:send([[while not io.open({str(go)!r}) do end return 1]])")
    assert shell.show("vm.recv(w, 0.01)") == 'nil\t"timeout"'
    go.write_text("")
    assert shell.show("vm.recv(w, 120)") == "1"


def test_list_get_destroy(shell):
    shell.show("tmp = vm.create{name = 'tmp'}")
    assert shell.show("vm.get('tmp') == tmp") == "true"
    assert "vm tmp" in shell.show("vm.list()")
    shell.show("tmp:destroy()")
    assert shell.show("vm.get('tmp')") == "nil"
    r = shell.fail("tmp:eval('return 1')")
    assert b"destroyed" in r.message
    r = shell.fail("vm.create{name = 'w1'}")
    assert b"exists already" in r.message


def test_create_count_and_destroy_all():
    sh = Shell("lua54")
    try:
        assert sh.show("#vm.create{name = 'p', count = 3}") == "3"
        assert sh.show("vm.get('p3'):eval('return 3')") == "3"
        sh.show("vm.destroy_all()")
        assert sh.show("#vm.list()") == "0"
    finally:
        sh.close()


def test_stop_restart_and_crash_message(shell):
    shell.show("r = vm.create{name = 'r'}")
    shell.show("r:set('x', 1); r:stop()")
    assert shell.show("r:status()") == '"stopped"'
    shell.show("r:restart()")
    assert shell.show("r:get('x')") == "nil"
    pid = int(shell.show("r:info().pid"))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid_gone(pid), "the killed worker to die")
    r = shell.fail("r:eval('return 1')")
    assert b"VM crashed (signal 9)" in r.message
    assert "crashed (signal 9)" in shell.show(":vms")
    shell.show("r:restart()")
    assert shell.show("r:eval('return 5')") == "5"
    shell.show("r:destroy()")


def test_vms_table_and_toolbar(shell):
    out = shell.show(":vms")
    assert out.splitlines()[0].split() == ["NAME", "TYPE", "PROFILE", "RUNTIME", "STATUS", "CREATED", "UPTIME",
                                           "PID/HOST"]
    assert "w1" in out and "local" in out and "standard" in out and default_runtime() in out
    assert out.splitlines()[-1].endswith("running")
    assert any("running" in seg for seg in shell.status_segments())


def test_map_keeps_order_and_reports_failures(shell):
    assert shell.show("vm.map(function(x) return x * x end, {1, 2, 3, 4, 5, 6}, {vms = 2})") == \
        "{1, 4, 9, 16, 25, 36}\tnil"
    out = shell.show(
        "res, bad = vm.map(function(s)\n  if s == 'bad' then error('no good: ' .. s) end\n  return #s\nend,"
        " {'a', 'bb', 'bad', 'dddd'}, {vms = 2}); return res[1], res[2], res[3], res[4], bad[1].index, bad[1].error")
    vals = out.split("\t")
    assert vals[:5] == ["1", "2", "nil", "4", "3"]
    assert "no good: bad" in vals[5] and ":2:" in vals[5]  # the VM-side line of the function
    assert shell.show("vm.map('function(x) return x .. \"!\" end', {'a', 'b'})") == '{"a!", "b!"}\tnil'
    assert shell.show("#vm.list()") == "1"  # the map's own VMs are gone


def test_map_over_a_pool_and_upvalue_error(shell):
    shell.show("pool = vm.create{name = 'pool', count = 2}")
    assert shell.show("vm.map(function(x) return x + 1 end, {1, 2, 3}, {vms = pool})") == "{2, 3, 4}\tnil"
    assert shell.show("#vm.list()") == "3"
    r = shell.fail("(function() local k = 3 return vm.map(function(x) return x + k end, {1}) end)()")
    assert b"uses variables from outside it (k)" in r.message
    shell.show("for _, p in ipairs(pool) do p:destroy() end")


def test_map_runs_nothing_unless_every_vm_defines_the_function(shell):
    # The VMs define the function at once, each in its own thread; one VM that cannot (its
    # source text raises there) fails the whole map before any item runs on the others.
    shell.show("pool = vm.create{name = 'def', count = 3}")
    shell.show("pool[2]:set('refuse', true)")
    source = ("(function() if refuse then error('refused here') end "
              "return function(x) ran = (ran or 0) + 1 return x end end)()")
    r = shell.fail(f"vm.map([[{source}]], {{1, 2, 3, 4, 5, 6}}, {{vms = pool}})")
    assert b"could not be defined in VM def2" in r.message and b"refused here" in r.message
    assert shell.show("pool[1]:get('ran'), pool[2]:get('ran'), pool[3]:get('ran')") == "nil\tnil\tnil"
    shell.show("pool[2]:set('refuse', nil)")
    assert shell.show(f"vm.map([[{source}]], {{1, 2, 3, 4, 5, 6}}, {{vms = pool}})") == \
        "{1, 2, 3, 4, 5, 6}\tnil"
    # (a VM that was slow to start may have run none of the 6: whichever is idle takes the next)
    assert shell.show("local n = 0 for _, p in ipairs(pool) do n = n + (p:get('ran') or 0) end return n") == "6"
    # Each VM of the pool has the function removed again (after a failed map too).
    assert shell.show("local n = 0 for _, p in ipairs(pool) do if p:eval('return __bioxen_map_fn') then "
                      "n = n + 1 end end return n") == "0"
    r = shell.fail("vm.map('function(x) return x +', {1, 2}, {vms = 2})")  # a syntax error: no VM left
    assert b"could not be defined in VM map" in r.message
    names = shell.show("local t = {} for _, v in ipairs(vm.list()) do t[#t + 1] = v.name end return table.concat(t, ' ')")
    assert not any(n.startswith("map") for n in names.split()), names
    shell.show("for _, p in ipairs(pool) do p:destroy() end")


def test_attach_detach_complete_and_interrupt(shell, tmp_path):
    shell.show("w:set('answer', 42)")
    assert "attached to w1" in shell.show(":attach w1")
    assert shell.prompt_name() == "w1"
    assert shell.show("answer") == "42"          # evaluated inside the VM
    assert shell.show("local_to_vm = 7") == ""
    shell.take()
    assert shell.show("print('hi')") == ""
    assert shell.take() == b"hi\n"
    r = shell.eval_line("error('in vm')")
    assert not r.ok and b"in vm" in r.message
    items = [text for text, _, _ in shell.complete("ans")]
    assert "answer" in items
    looping = tmp_path / "looping"
    with when(looping.exists, shell.interrupt, "the loop in the VM to start"):
        r = shell.eval_line(lua_touch(looping) + "while true do end")
    assert r.kind == "interrupted"               # only the interrupt ends that loop
    assert shell.show("answer") == "42"          # the VM lives on, state and all
    assert "detached from w1" in shell.show(":detach")
    assert shell.prompt_name() is None
    assert shell.show("w:get('local_to_vm')") == "7"
    r = shell.fail(":attach nope")
    assert b"no VM named nope (VMs: " in r.message and r.traceback == b""
    r = shell.fail(":attach")
    assert r.message.startswith(b"usage: :attach NAME") and r.traceback == b""


def test_vm_code_cannot_reach_python(shell):
    for code in ("return python", "return debug.getregistry().python", "return package.loaded.python",
                 "return select(2, pcall(require, 'python'))"):
        r = shell.eval_line(f"w:eval([[{code}]])")
        assert r.ok, (code, r)
        if "require" in code:
            assert b"module 'python' not found" in r.output, (code, r.output)
        else:
            assert r.output == b"nil", (code, r.output)
    r = shell.fail("w:eval([[return require('python')]])")
    assert b"module 'python' not found" in r.message


def test_ctrl_c_stops_a_map_and_its_vms_go_away(shell, tmp_path):
    before = shell.show("#vm.list()")
    # Each item marks that it runs, then loops forever: Ctrl-C comes once both of the map's
    # VMs are busy, and only Ctrl-C can end the map.
    marks = tmp_path / "marks"
    marks.mkdir()
    items = "{" + ", ".join(repr(str(marks / str(i))) for i in range(1, 5)) + "}"
    with when(lambda: len(os.listdir(marks)) >= 2, shell.interrupt, "both VMs of the map to run an item"):
        r = shell.eval_line("vm.map(function(p) assert(io.open(p, 'w')):close() while true do end end, "
                            f"{items}, {{vms = 2}})")
    assert not r.ok and r.kind in ("interrupted", "error")
    assert b"interrupted" in r.message
    assert shell.show("#vm.list()") == before


def test_vms_with_a_name_shows_its_info(shell):
    out = shell.show(":vms w1")
    assert 'name = "w1"' in out and 'status = "running"' in out and "pid =" in out
    assert b"no VM named nope" in shell.fail(":vms nope").message


def test_ctrl_c_during_a_vm_call_is_the_shells_interrupt(shell, tmp_path):
    looping = tmp_path / "looping"
    with when(looping.exists, shell.interrupt, "the VM call's loop to start"):
        r = shell.eval_line(f"w:eval([[{lua_touch(looping)}while true do end]])")
    assert r.kind == "interrupted" and r.message == b"interrupted!"
    assert shell.show("w:eval('return 3')") == "3"
