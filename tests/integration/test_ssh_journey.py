"""An SSH VM used the way the docs show: a [hosts.NAME] table in config.toml, a script that
uses it, and a shell killed with -9 while the remote agent is busy — no agent survives."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.remote.sshd_fixture import sshd_server  # noqa: F401  (session fixture)
from tests.system import require_binary
from tests.waiting import PATIENCE, eventually, lua_touch, wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path, sshd_server):  # noqa: F811
    require_binary("sshd", also_in="/usr/sbin:/usr/local/sbin:/sbin")
    e = dict(os.environ)
    for var in ("CONFIG", "STATE", "CACHE"):
        d = tmp_path / var.lower()
        d.mkdir()
        e[f"BIOXEN_{var}_DIR"] = str(d)
    (tmp_path / "config" / "config.toml").write_text(
        "[hosts.loop]\n"
        f'hostname = "{sshd_server.host}"\nport = {sshd_server.port}\nuser = "{sshd_server.user}"\n'
        f'key = "{sshd_server.client_key}"\nknown_hosts = "{sshd_server.known_hosts}"\n'
        f'agent = false\ncache_dir = "{sshd_server.directory / "qa-remote-cache"}"\n'
    )
    return e


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is as good as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_config_host_from_a_script_then_kill_9_leaves_no_remote_agent(env, tmp_path):
    script = tmp_path / "remote.lua"
    looping = tmp_path / "looping"  # the "remote" agent runs on this machine: the test sees it
    script.write_text(
        'local r = vm.create{type = "ssh", host = "loop", name = "r1"}\n'
        'print(r:eval("return require(\'bio.seq\').gc_fraction(\'GGCA\')"), r:info().type)\n'
        'print(r:info().pid)\n'
        'io.stdout:flush()\n'
        f'r:eval([[{lua_touch(looping)}while true do end]])\n'
    )
    proc = subprocess.Popen([sys.executable, "-m", "bioxen_shell", "run", str(script)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        first = proc.stdout.readline()
        assert first == "0.75\tssh\n", first + proc.stderr.read() if not first else first
        remote_pid = int(proc.stdout.readline())
        assert alive(remote_pid)
        wait_for(looping.exists, "the remote agent to be busy")
        proc.kill()
        proc.wait(PATIENCE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    eventually(lambda: not alive(remote_pid))
    assert not alive(remote_pid), "the remote agent outlived a shell killed with -9"
