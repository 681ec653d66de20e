"""A new user's paths through bioxen, end to end through the real command.

Each test runs ``python -m bioxen_shell`` in a subprocess with private config/state/cache
directories, so nothing here depends on (or touches) the machine's own ~/.config/bioxen.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.waiting import PATIENCE, lua_touch, wait_for

REPO = Path(__file__).resolve().parents[2]
BIOXEN = [sys.executable, "-m", "bioxen_shell"]


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    for var in ("CONFIG", "STATE", "CACHE"):
        d = tmp_path / var.lower()
        d.mkdir()
        e[f"BIOXEN_{var}_DIR"] = str(d)
    e.pop("BIOXEN_PATH", None)
    e["LUA_PATH"] = ""
    return e


def bioxen(env, *args, cwd=None, timeout=PATIENCE):
    proc = subprocess.run([*BIOXEN, *args], capture_output=True, text=True, env=env,
                          cwd=cwd or REPO, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def run_lua(env, tmp_path, source, *args):
    script = tmp_path / "journey.lua"
    script.write_text(textwrap.dedent(source))
    return bioxen(env, "run", str(script), *args, cwd=tmp_path)


def test_library_works_from_any_directory(env, tmp_path):
    """The sequence library is found without a checkout as the cwd (no ./bio_stdlib)."""
    code, out, err = bioxen(env, "-e", 'print(require"bio.seq".gc_fraction("ACGT"))', cwd=tmp_path)
    assert (code, out, err) == (0, "0.5\n", "")


def test_example_gives_the_same_table_from_another_directory(env, tmp_path):
    sample = REPO / "examples" / "data" / "sample.fa"
    _, here, _ = bioxen(env, "run", "examples/gc_table.lua", "examples/data/sample.fa")
    code, there, err = bioxen(env, "run", str(REPO / "examples" / "gc_table.lua"), str(sample),
                              cwd=tmp_path)
    assert code == 0, err
    assert there == here and there.startswith("#id\tlength\tgc_percent\n")


SANDBOX_PROBES = [
    "return os.execute('id')", "return io.open('/etc/passwd')", "return io.popen('id')",
    "return package.loadlib('libc.so.6', 'x')", "return string.dump(print)",
    "return loadfile('/etc/passwd')", "return dofile('/etc/passwd')", "return os.getenv('HOME')",
    "return os.remove('/tmp/x')", "return require('ffi')", "return os.exit(3)",
]


def test_sandboxed_profile_refuses_escapes_from_a_script(env, tmp_path):
    code, out, err = run_lua(env, tmp_path, """
        local s = vm.create{name = "sb", profile = "sandboxed"}
        for _, probe in ipairs(PROBES) do
          local ok, res = pcall(s.eval, s, probe)
          print(ok and ("ESCAPED " .. probe .. " -> " .. tostring(res)) or "refused")
        end
        print("still", s:eval("1 + 1"), s:status())
        for _, p in ipairs({"debug", "setfenv", "loadstring", "getfenv"}) do
          print(p, s:eval("return type(" .. p .. ")"))
        end
    """.replace("PROBES", "{" + ", ".join(repr(p) for p in SANDBOX_PROBES) + "}"))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:len(SANDBOX_PROBES)] == ["refused"] * len(SANDBOX_PROBES), out
    assert "still\t2\trunning" in lines
    for p in ("debug", "setfenv", "getfenv"):
        assert f"{p}\tnil" in lines


def test_a_user_profile_sets_limits_and_the_vm_carries_on(env, tmp_path):
    # One limit per profile, so the limit each call expects is the only one that can fire:
    # the loop allocates nothing, and the allocation runs without a call timeout (however
    # slowly a loaded machine gets to 32 MiB).
    profiles = Path(env["BIOXEN_CONFIG_DIR"]) / "profiles"
    profiles.mkdir()
    (profiles / "quick.toml").write_text("call_timeout = 1\n")
    (profiles / "tight.toml").write_text('memory_limit = "32MiB"\n')
    code, out, err = run_lua(env, tmp_path, """
        local q = vm.create{name = "q1", profile = "quick"}
        print(pcall(q.eval, q, "while true do end"))
        print(q:eval("1 + 1"), q:status(), q:info().profile)
        local w = vm.create{name = "t1", profile = "tight"}
        print(pcall(w.eval, w, "local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(64) .. i end"))
        print(w:eval("1 + 1"), w:status(), w:info().profile)
    """)
    assert code == 0, err
    timeout_line, after_timeout, memory_line, after_memory = out.splitlines()
    assert timeout_line == "false\tq1: call timed out after 1 s and was stopped"
    assert after_timeout == "2\trunning\tquick"
    assert memory_line == "false\tnot enough memory"
    assert after_memory == "2\trunning\ttight"


def test_killed_worker_reports_signal_9_and_restarts(env, tmp_path):
    code, out, err = run_lua(env, tmp_path, """
        local w = vm.create{name = "k1"}
        w:set("x", 1)
        local pid = w:info().pid
        os.execute("kill -9 " .. pid)
        print(pcall(w.eval, w, "return x"))
        w:restart()
        print(w:eval("return x"), w:eval("1 + 1"), w:info().pid ~= pid)
    """)
    assert code == 0, err
    crashed, restarted = out.splitlines()
    assert crashed == "false\tk1: VM crashed (signal 9); :restart() starts it again"
    assert restarted == "nil\t2\ttrue"


def test_count_and_map_and_send_recv_from_a_script(env, tmp_path):
    code, out, err = run_lua(env, tmp_path, """
        local ws = vm.create{name = "p", count = 3}
        print(#ws, ws[1]:info().name, ws[3]:info().name)
        vm.send(ws[1], "print('from p1') return 1")
        vm.send(ws[1], "return 2")
        print(vm.recv(ws[1], 120)); print(vm.recv(ws[1], 120))
        local r, f = vm.map(function(x) if x == 2 then error("bad item") end return x * 10 end,
                            {1, 2, 3}, {vms = ws})
        print(r[1], r[2], r[3], #f, f[1].index)
        vm.destroy_all()
        print(#vm.list(), ws[2]:status())
    """)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "3\tp1\tp3"
    assert lines[1:4] == ["from p1", "1", "2"]
    assert lines[4] == "10\tnil\t30\t1\t2"
    assert lines[5] == "0\tdestroyed"


def test_config_check_names_the_problem_and_never_prints_the_password(env, tmp_path):
    secret = "hunter2-QA-SECRET"
    pw = tmp_path / "pw"
    pw.write_text(secret + "\n")
    pw.chmod(0o644)
    config = Path(env["BIOXEN_CONFIG_DIR"]) / "config.toml"
    config.write_text(f'[pools.lab]\nurl = "https://x.invalid"\npassword_file = "{pw}"\n')
    code, out, err = bioxen(env, "config", "check")
    assert code == 2
    assert f"{config}: pools.lab.password_file:" in err and "chmod 600" in err
    assert secret not in out + err
    pw.chmod(0o600)
    code, out, err = bioxen(env, "config", "check")
    assert code == 0, err
    assert secret not in out + err
    config.write_text('[hosts.lab1]\nhostname = "h"\nport = "ssh"\n')
    code, out, err = bioxen(env, "config", "check")
    assert code == 2 and f"{config}: hosts.lab1.port: expected an integer" in err
    config.write_text('[hosts.lab1]\nhostname = "h"\nport = \n')
    code, out, err = bioxen(env, "config", "check")
    assert code == 2 and "not valid TOML" in err and "line 3" in err


def test_readme_vm_example_runs_as_written(env, tmp_path):
    """The README's VM snippet (local part), verbatim."""
    code, out, err = run_lua(env, tmp_path, """
        local w = vm.create{name = "w1", profile = "bioinformatics"}       -- local worker process
        print(w:eval("return bio.seq.gc_fraction(...)", "ACGTGG"))
        w:set("k", 5); print(w:get("k"))
        local seqs = {"GGCC", "ATAT"}
        local gcs = vm.map(function(s) return require("bio.seq").gc_fraction(s) end, seqs, {vms = 2})
        print(gcs[1], gcs[2])
        vm.send(w, "return 6 * 7")
        print(vm.recv(w, 120))
    """)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["0.66666666666667", "5"] and lines[3] == "42"
    assert [float(x) for x in lines[2].split("\t")] == [1.0, 0.0]


def test_sigint_while_a_script_waits_on_a_vm_exits_130_without_shell_frames(env, tmp_path):
    import signal
    script = tmp_path / "wait.lua"
    looping = tmp_path / "looping"
    # The VM marks when its loop runs: Ctrl-C comes while the script waits on the VM, never
    # before the call has started.
    script.write_text('local w = vm.create{name = "a"}\n'
                      f'w:eval([[{lua_touch(looping)}while true do end]])\n')
    proc = subprocess.Popen([*BIOXEN, "run", str(script)], env=env, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: looping.exists() or proc.poll() is not None, "the VM's loop to start")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=PATIENCE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "wait.lua:2" in err
    assert "bioxen/vm.lua" not in err


def test_status_notices_a_killed_worker_without_a_call(env, tmp_path):
    # Polls status() (no call reaches the VM) until it changes; the deadline only matters
    # if it never does.
    code, out, err = run_lua(env, tmp_path, f"""
        local w = vm.create{{name = "s1"}}
        os.execute("kill -9 " .. w:info().pid)
        local deadline = os.time() + {PATIENCE:g}
        while w:status() == "running" and os.time() < deadline do os.execute("sleep 0.02") end
        print(w:status())
    """)
    assert (code, out) == (0, "crashed\n"), err
