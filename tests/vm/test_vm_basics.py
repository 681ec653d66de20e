"""A local VM through the handle: values, errors, output, state, pipelining, lifecycle."""
from __future__ import annotations

import math
import os

import pytest

from bioxen_shell.vm.errors import VMError, VMStateError
from bioxen_shell.vm.manager import VMCreateError
from bioxen_shell.runtimes import default_runtime
from tests.waiting import PATIENCE


@pytest.fixture(scope="module")
def vm54(module_manager):
    """A Lua 5.4 VM: integers and floats are distinct types there (LuaJIT has doubles only)."""
    return module_manager.create("shared54", runtime="lua54")


def test_values_round_trip_exactly(vm54):
    vm = vm54
    args = [None, True, False, 0, -42, 2**53, 1.5, -0.0, math.inf, "héllo", b"\x00\xff\xfe", [1, 2, [3]],
            {"a": 1, "b": {"c": "d"}}]
    got = vm.eval("return ...", *args)
    assert got[:6] == args[:6]
    assert isinstance(got[5], int) and isinstance(got[6], float) and got[6] == 1.5
    assert math.copysign(1, got[7]) == -1 and got[8] == math.inf
    assert got[9] == "héllo" and got[10] == b"\x00\xff\xfe"
    assert got[11] == [1, 2, [3]] and got[12] == {"a": 1, "b": {"c": "d"}}


def test_integer_and_float_stay_apart(vm54):
    vm = vm54
    assert vm.eval("return 3, 3.0, math.type(...)", 7) == [3, 3.0, "integer"]
    assert vm.eval("return math.type(...)", 7.0) == ["float"]


def test_nils_in_value_lists_are_kept(vm):
    assert vm.eval("return nil, 2, nil") == [None, 2, None]
    assert vm.eval("return select('#', ...)", None, None, None) == [3]


def test_expression_and_statement_chunks(vm):
    assert vm.eval("1 + 1") == [2]
    assert vm.eval("local x = 1") == []


def test_error_has_vm_chunkname_and_line(vm):
    with pytest.raises(VMError) as info:
        vm.eval("local a = 1\nerror('boom')", chunkname="=job")
    assert info.value.kind == "error"
    assert str(info.value) == "job:2: boom"
    assert "job:2" in info.value.traceback


def test_syntax_error(vm):
    with pytest.raises(VMError) as info:
        vm.eval("x = = 1")
    assert info.value.kind == "syntax" and "vm:1:" in str(info.value)


def test_function_values_are_refused_with_a_path(vm):
    with pytest.raises(VMError) as info:
        vm.eval("return {seqs = {1, print}}")
    assert info.value.kind == "encode" and "seqs" in str(info.value)


def test_output_is_captured_with_its_call(vm):
    res = vm.execute("print('a', 1) io.write('b\\n') return 7")
    assert res.output == b"a\t1\nb\n" and res.values == [7]
    chunks = []
    assert vm.eval("print('streamed')", on_output=chunks.append) == []
    assert b"".join(chunks) == b"streamed\n"


def test_state_persists_set_get_call_require(vm):
    vm.set("seq", "ACGT")
    assert vm.get("seq") == "ACGT"
    vm.eval("function count(s, c) local n = 0 for _ in s:gmatch(c) do n = n + 1 end return n end")
    assert vm.call("count", "AACGA", "A") == [3]
    assert vm.call("string.rep", "ab", 2) == ["abab"]
    assert vm.require("bio.seq") is not None
    assert vm.eval("return require('bio.seq').reverse_complement('AACG')") == ["CGTT"]


def test_pipelined_send_recv_keeps_order_and_output(vm):
    ids = [vm.send("print('job', ...) return ... * 10", i) for i in range(1, 6)]
    assert ids == sorted(ids)
    results = [vm.recv(PATIENCE) for _ in ids]
    assert [r.values for r in results] == [[10], [20], [30], [40], [50]]
    assert results[2].output == b"job\t3\n"
    # a synchronous call in between does not steal a pending result
    vm.send("return 'late'")
    assert vm.eval("return 'now'") == ["now"]
    assert vm.recv(PATIENCE).values == ["late"]


def test_recv_timeout_returns_none_and_keeps_the_request(vm, tmp_path):
    # The call cannot end before the test makes its file, after the short recv.
    go = tmp_path / "go"
    vm.send(f"while not io.open({str(go)!r}) do end return 'done'")
    assert vm.recv(0.01) is None
    go.write_text("")
    assert vm.wait(PATIENCE).values == ["done"]
    with pytest.raises(VMStateError, match="nothing to receive"):
        vm.recv(0.01)


def test_recv_raises_the_request_error(vm):
    vm.send("print('before') error('async boom')")
    with pytest.raises(VMError, match="async boom") as info:
        vm.recv(PATIENCE)
    assert info.value.output == b"before\n"


def test_info_describes_the_vm(vm):
    info = vm.info()
    for key in ("name", "type", "profile", "status", "pid", "created", "uptime", "memory"):
        assert key in info, key
    assert info["type"] == "local" and info["status"] == "running" and info["memory"] > 0
    assert info["pid"] == vm.pid and info["runtime"] == default_runtime()
    if default_runtime() == "luajit":
        assert info["lua_version"] == "Lua 5.1" and info["jit"].startswith("LuaJIT")
    else:
        assert info["lua_version"] == "Lua 5.4"


def test_stop_restart_destroy(manager):
    h = manager.create("life")
    pid = h.pid
    h.set("x", 1)
    h.stop()
    assert h.status == "stopped"
    with pytest.raises(VMStateError, match="stopped"):
        h.eval("return 1")
    h.restart()
    assert h.status == "running" and h.pid != pid
    assert h.get("x") is None  # a fresh state
    h.destroy()
    assert h.status == "destroyed"
    with pytest.raises(VMStateError):
        h.eval("return 1")
    manager.forget(h)
    assert manager.get("life") is None


def test_names_counts_and_errors(manager):
    a = manager.create()
    b = manager.create()
    assert a.name != b.name
    with pytest.raises(VMCreateError, match="exists already"):
        manager.create(a.name)
    with pytest.raises(VMCreateError, match="not valid"):
        manager.create("bad name!")
    with pytest.raises(VMCreateError, match="type 'nope' is not known"):
        manager.create("x", type="nope")
    with pytest.raises(VMCreateError, match=r"^vm.create\{…\}: hostt: unknown key for type='local' \(expected one of: name, profile"):
        manager.create("x", hostt="lab")
    with pytest.raises(VMCreateError, match="profile 'nope' not found"):
        manager.create("x", profile="nope")
    assert manager.get("x") is None
    many = manager.create("w", count=4)
    assert [h.name for h in many] == ["w1", "w2", "w3", "w4"]
    assert len({h.pid for h in many}) == 4
    assert manager.summary() == "6 VMs: 6 running"


def test_runtime_option(manager):
    h = manager.create("jit", runtime="luajit")
    assert h.eval("return jit and jit.version ~= nil") == [True]
    h51 = manager.create("five1", runtime="lua51")
    assert h51.eval("return _VERSION") == ["Lua 5.1"]


def test_runtime_aliases_name_the_same_runtimes(manager):
    assert manager.create("a54", runtime="5.4").eval("return _VERSION") == ["Lua 5.4"]
    assert manager.create("a53", runtime="lua5.3").info()["runtime"] == "lua53"
    assert manager.create("aj", runtime="luajit2.1").eval("return jit ~= nil") == [True]
    with pytest.raises(VMCreateError, match=r"^vm.create\{…\}: runtime: expected one of lua51, .*luajit2.1.*, "
                                            r'got "lua9"$'):
        manager.create("bad", runtime="lua9")


def test_package_path_has_each_entry_once(manager, tmp_path):
    """The worker starts with bioxen's own path; configure adds only the profile's directories."""
    from bioxen_shell import paths
    from tests.vm.conftest import profile

    (tmp_path / "mine.lua").write_text("return 'mine'\n")
    dirs = (str(tmp_path), str(tmp_path), str(paths.bio_stdlib_dir()))  # repeated, and one of bioxen's
    h = manager.create("pp", profile=profile(paths=dirs))
    entries = h.eval("return package.path")[0].split(";")
    assert len(entries) == len(set(entries)), entries
    assert entries[:2] == [f"{tmp_path}/?.lua", f"{tmp_path}/?/init.lua"]  # the profile's first
    assert f"{paths.bio_stdlib_dir()}/?.lua" in entries
    assert h.eval("return require('mine')") == ["mine"]


def test_missing_preload_module_is_a_clear_error(manager, tmp_path):
    from tests.vm.conftest import profile

    with pytest.raises(VMError, match=r"could not be applied.*bio\.nope"):
        manager.create("pre", profile=profile("standard", preload=("bio.nope",)))
    assert manager.get("pre") is None


def test_bioinformatics_profile_preloads(manager):
    h = manager.create("bio", profile="bioinformatics")
    assert h.eval("return package.loaded['bio.seq'] ~= nil") == [True]
    # preloaded modules are reachable by their dotted names, as the docs' examples use them
    assert h.eval("return bio.seq.gc_fraction(...)", "ACGTGG") == [4 / 6]
    assert h.call("bio.seq.gc_fraction", "GGCA") == [0.75]


def test_preloaded_modules_become_globals_by_their_dotted_names(manager, tmp_path):
    from tests.vm.conftest import profile

    (tmp_path / "lab" / "io").mkdir(parents=True)
    (tmp_path / "lab" / "io" / "csv.lua").write_text("return {name = 'csv'}\n")
    h = manager.create("pre2", profile=profile(preload=("lab.io.csv",), paths=(str(tmp_path),)))
    assert h.eval("return lab.io.csv.name, lab.io.csv == require('lab.io.csv')") == ["csv", True]


def test_worker_has_only_its_protocol_fds(vm):
    # 0 = /dev/null, 1 and 2 = the shell's stderr, 3/4 = the protocol pipes; anything else must
    # be the agent's own reopening of /dev/fd/3 and /dev/fd/4 -- never another VM's pipe or
    # the zygote's control socket.
    links = {int(x): os.readlink(f"/proc/{vm.pid}/fd/{x}") for x in os.listdir(f"/proc/{vm.pid}/fd")}
    assert links[0] == "/dev/null"
    assert links[1] == links[2]
    assert links[3].startswith("pipe:") and links[4].startswith("pipe:") and links[3] != links[4]
    extra = {fd: link for fd, link in links.items() if fd > 4}
    own = {links[3], links[4]}
    for fd, link in extra.items():
        assert not link.startswith("socket:"), (fd, link)  # e.g. the zygote's control socket
        assert not link.startswith("pipe:") or link in own, (fd, link)  # another VM's pipe


def test_worker_has_an_address_space_backstop(manager):
    from tests.vm.conftest import profile

    h = manager.create("rlimit", profile=profile(memory_limit=64 * 1024 * 1024))
    limits = open(f"/proc/{h.pid}/limits").read()
    line = next(l for l in limits.splitlines() if l.startswith("Max address space"))
    soft = int(line.split()[3])
    assert 3 * 64 * 1024 * 1024 < soft < 64 * 1024**3  # set, above the Lua budget, finite
    unlimited = manager.create("nolimit", profile=profile(memory_limit=0))
    line = next(l for l in open(f"/proc/{unlimited.pid}/limits").read().splitlines()
                if l.startswith("Max address space"))
    assert "unlimited" in line


def test_completion_never_waits_for_a_busy_vm(manager, tmp_path):
    h = manager.create("comp")
    h.set("answer", 1)
    assert "answer" in h.complete("ans")
    go = tmp_path / "go"  # the job runs until the test makes this file
    h.send(f"while not io.open({str(go)!r}) do end")
    assert h.complete("ans") == []
    assert len(h._inflight) == 1  # the job's reply was not waited for
    go.write_text("")
    h.recv(PATIENCE)
    assert "answer" in h.complete("ans")


def test_a_local_vm_works_in_the_shells_directory(manager, tmp_path, monkeypatch):
    (tmp_path / "reads.txt").write_text("ACGT\n")
    monkeypatch.chdir(tmp_path)
    h = manager.create("cwd")
    assert h.eval("local f = assert(io.open('reads.txt')) local s = f:read('*l') f:close() return s") == ["ACGT"]


def test_a_failed_count_create_leaves_nothing_behind(manager):
    from tests.vm.conftest import profile

    with pytest.raises(VMCreateError, match=r"3 of 3 VMs failed to start \(all 3 were removed\); first: .*bio\.nope"):
        manager.create("bad", count=3, profile=profile(preload=("bio.nope",)))
    assert manager.list() == [] and manager.get("bad1") is None
    assert len(manager.create("bad", count=2)) == 2  # the names are free again


def test_lua54_vms_made_together_draw_different_random_numbers(manager):
    """Local VMs are forked from one loaded agent (zygote.py): Lua 5.4 seeds math.random per
    state, so each worker must be seeded again, or every VM of a map would draw the same."""
    vms = manager.create("rnd", count=3, runtime="lua54")
    draws = [tuple(h.eval("local t = {} for i = 1, 4 do t[i] = math.random(1 << 40) end return table.unpack(t)"))
             for h in vms]
    assert len(set(draws)) == 3, draws


def test_luajit_vms_keep_luajits_fixed_random_sequence(manager):
    """Stock LuaJIT starts every state with the same seed; a forked VM is no different."""
    a, b = manager.create("fixed", count=2, runtime="luajit")
    code = "return math.random(1000000), math.random(1000000)"
    assert a.eval(code) == b.eval(code)


def test_a_profiles_bioxen_path_reaches_the_vms_module_search(manager, tmp_path):
    """A VM whose environment sets BIOXEN_PATH loads the agent after that is set (it is not
    forked from the zygote's loaded agent), so its package.path has the directory."""
    from tests.vm.conftest import profile

    (tmp_path / "labmod.lua").write_text("return {where = 'BIOXEN_PATH'}\n")
    h = manager.create("bp", profile=profile(env={"BIOXEN_PATH": str(tmp_path)}))
    assert h.eval("return require('labmod').where, os.getenv('BIOXEN_PATH')") == ["BIOXEN_PATH", str(tmp_path)]


def test_vms_forked_from_one_agent_keep_their_own_state(manager):
    a, b = manager.create("own", count=2)
    a.eval("shared_name = 'a'")
    assert b.eval("return shared_name, package.loaded['bioxen.wire'] ~= nil") == [None, True]
    assert a.pid != b.pid
