"""The Python API: from bioxen_shell import VMManager, create_vm."""
from __future__ import annotations

import pytest

import bioxen_shell
from bioxen_shell import VMManager, create_vm
from bioxen_shell.vm.errors import VMError
from bioxen_shell.runtimes import default_runtime
from tests.waiting import PATIENCE

DEFAULT_LUA_VERSION = {"luajit": "Lua 5.1", "lua54": "Lua 5.4"}


def test_context_manager_creates_runs_and_destroys():
    with VMManager() as manager:
        vm = manager.create_vm("w1", config={"profile": "minimal"})
        assert vm.eval("return 1 + 1") == [2]
        assert manager.list_vms() == ["w1"]
        pid = vm.pid
    assert vm.status == "destroyed"
    import os
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_execute_string_returns_stdout_and_values():
    with VMManager() as manager:
        manager.create_vm("w1")
        res = manager.execute_string("w1", "print('hi') return 42, 'x'")
        assert res == {"stdout": "hi\n", "stderr": "", "values": [42, "x"], "success": True,
                       "return_code": 0, "error": None}
        # state persists between calls (the prior art started a new process per call)
        manager.execute_string("w1", "g = 42")
        assert manager.execute_string("w1", "return g")["values"] == [42]
        bad = manager.execute_string("w1", "error('nope')")
        assert bad["success"] is False and bad["return_code"] == 1 and bad["error"] == "vm:1: nope"


def test_send_input_read_output_interactive():
    with VMManager() as manager:
        manager.create_vm("w1")
        ids = [manager.send_input("w1", "x = 10"), manager.send_input("w1", "return x * 2"),
               manager.send_input("w1", "print('p') error('e')"), manager.send_input("w1", "return 'end'")]
        assert ids == sorted(ids)
        out = manager.read_output("w1", timeout=PATIENCE)  # returns once none is pending
        assert out == "20\np\nerror: w1:1: e\nend\n"
        assert manager.read_output("w1", timeout=0.01) == ""


def test_attach_callback_and_info_and_remove():
    with VMManager() as manager:
        vm = manager.create_vm("w1", vm_type="basic")  # the prior art's name for a local VM
        seen = []
        manager.attach_to_vm("w1", seen.append)
        vm.eval("print('streamed')")
        assert seen == ["streamed\n"]
        manager.detach_from_vm("w1")
        manager.detach_from_vm("w1")  # harmless when not attached
        info = manager.get_vm_info("w1")
        assert info["status"] == "running" and info["type"] == "local"
        manager.remove_vm("w1")
        manager.create_vm("w1")  # the name is free again
        with pytest.raises(KeyError, match="no VM named 'zz'"):
            manager.get_vm("zz")


def test_attach_callback_gets_send_input_output():
    with VMManager() as manager:
        manager.create_vm("w1")
        seen = []
        manager.attach_to_vm("w1", seen.append)
        manager.send_input("w1", "print('from send') return 1")
        manager.send_input("w1", "io.write('no newline') error('bad')")
        out = manager.read_output("w1", timeout=PATIENCE)
        # the printed text went to the callback, in order; read_output keeps values and errors
        assert "".join(seen) == "from send\nno newline"
        assert out == "1\nerror: w1:1: bad\n"
        manager.detach_from_vm("w1")
        manager.send_input("w1", "print('after')")
        assert manager.read_output("w1", timeout=PATIENCE) == "after\n"
        assert "".join(seen) == "from send\nno newline"
        # a character cut between two pieces of output arrives whole
        seen.clear()
        manager.attach_to_vm("w1", seen.append)
        manager.send_input("w1", "local _ = io.write('\\206')")  # two inputs: two pieces of output
        manager.send_input("w1", "local _ = io.write('\\177')")
        assert manager.read_output("w1", timeout=PATIENCE) == ""
        assert seen == ["\u03b1"]


def test_map_from_python():
    with VMManager() as manager:
        results, failures = manager.map("function(x) if x == 2 then error('two') end return x * 10 end",
                                        [1, 2, 3], vms=2)
        assert results == [10, None, 30]
        assert failures[0][0] == 2 and "two" in failures[0][1]
        assert manager.list_vms() == []


def test_module_level_create_vm():
    vm = create_vm("pyapi-default")
    try:
        assert vm.eval("return _VERSION") == [DEFAULT_LUA_VERSION[default_runtime()]]
        with pytest.raises(VMError, match="vm:1: x"):
            vm.eval("error('x')")
    finally:
        bioxen_shell.vm.api.default_manager().destroy(vm.name)
