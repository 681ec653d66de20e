"""SSH VMs against a real OpenSSH server on loopback, under the stock lua5.4 and luajit.

The sshd is the session fixture of tests/remote/sshd_fixture.py; the agent runs as a real
remote process (on this machine, which lets the tests look at it through /proc).
"""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bioxen_shell.remote import hostkeys, upload
from bioxen_shell.remote.ssh import SSHBackend
from bioxen_shell.vm.errors import VMCrashed, VMInterrupted
from bioxen_shell.vm.manager import VMCreateError

from bioxen_shell.vm.profiles import load_profile
from bioxen_shell.vm.transport import BackendError
from tests.remote.sshd_fixture import start_sshd, write_keypair
from tests.system import require_binary
from tests.waiting import PATIENCE, eventually, finishes, lua_touch, pid_gone, wait_for, when

INTERPRETERS = ["luajit", "lua5.4"]
ALL_STOCK = ["luajit", "lua5.4", "lua5.3", "lua5.2", "lua5.1"]


@pytest.fixture
def cache_dir(tmp_path):
    """A private remote cache per test, so upload behaviour is observable."""
    return tmp_path / "remote-cache"


def _options(ssh_vm_options, **changes):
    opts = dict(ssh_vm_options)
    opts.update(changes)
    return opts


def _pid_alive(pid: int) -> bool:
    return not pid_gone(pid)


def _wait_gone(pid: int, timeout: float = PATIENCE) -> bool:
    return eventually(lambda: pid_gone(pid), timeout)


def _interrupt_between_calls(vm) -> None:
    """``vm.interrupt()`` while nothing runs, and wait until it has reached the agent's interrupt
    file (the guard writes it), so the next call comes after it."""
    path = Path(vm._proc._interrupt_file)
    before = path.stat().st_size
    vm.interrupt()
    wait_for(lambda: path.stat().st_size > before, "the interrupt to reach the agent's interrupt file")


def _one(vm, code):
    """The single value ``code`` returns (``eval`` returns the list of values)."""
    values = vm.eval(code)
    assert len(values) == 1, values
    return values[0]


def _create(manager, opts, name="r1", profile="standard", **kw):
    return manager.create(name, profile=load_profile(profile), **opts, **kw)


# ----------------------------------------------------------------------------- running code

@pytest.mark.parametrize("interp", ALL_STOCK)
def test_eval_state_and_stdlib_under_each_stock_interpreter(manager, ssh_vm_options, cache_dir, interp):
    require_binary(interp)
    vm = _create(manager, _options(ssh_vm_options, interpreter=interp, cache_dir=str(cache_dir)))
    info = vm.describe()
    assert info["interpreter"] == interp and info["type"] == "ssh"
    expected = "LuaJIT" if interp == "luajit" else "Lua " + interp[3:]
    assert _one(vm, "return jit and jit.version or _VERSION").startswith(expected)
    vm.eval("counter = 41")
    assert _one(vm, "counter = counter + 1; return counter") == 42
    # bio_stdlib is requirable on the remote host (uploaded with the agent)
    assert _one(vm, 'return require("bio.seq").gc_fraction("GGCA")') == pytest.approx(0.75)


def test_child_process_output_cannot_corrupt_the_protocol(manager, ssh_vm_options, cache_dir):
    vm = _create(manager, _options(ssh_vm_options, cache_dir=str(cache_dir)))
    # A child writes a fake frame on its stdout: it must land on stderr, not in the protocol.
    res = _one(vm, "os.execute([[printf 'R5\\nhello']]); io.stdout:write('mine'); return 7")
    assert res == 7
    assert _one(vm, "return 1 + 1") == 2
    wait_for(lambda: "R5\nhello" in vm._proc.stderr_tail(), "the child's output on the agent's stderr")


def test_calls_whose_agent_writes_to_stderr_never_hang_the_host(manager, ssh_vm_options, cache_dir):
    """Every reply races a write on the agent's stderr, which another thread drains from the
    same channel.  Waiting on ``Channel.fileno()`` (one pipe that paramiko shares, unlocked,
    between the stdout and stderr buffers) made about one run in three of 3000 such calls
    block for ever in a second ``os.read`` of that pipe."""
    vm = _create(manager, _options(ssh_vm_options, cache_dir=str(cache_dir)))

    def calls() -> int:
        for i in range(8000):
            assert vm.eval("io.stderr:write('e') return ...", i) == [i]
        return i

    assert finishes(calls, "8000 calls that write to stderr") == 7999


def test_program_is_not_on_the_command_line(manager, ssh_vm_options, cache_dir):
    vm = _create(manager, _options(ssh_vm_options, cache_dir=str(cache_dir)))
    pid = vm.describe()["pid"]
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert any(arg.endswith(b"/lua/bioxen/agent.lua") for arg in cmdline)
    assert b"--in=/dev/fd/3" in cmdline and b"--out=/dev/fd/4" in cmdline
    assert not any(b"AGENT_VERSION" in arg or len(arg) > 1000 for arg in cmdline)


def test_runtime_of_profile_picks_the_binary(manager, ssh_vm_options, cache_dir):
    require_binary("lua5.4")
    vm = _create(manager, _options(ssh_vm_options, cache_dir=str(cache_dir)), runtime="lua54")
    assert vm.describe()["interpreter"] == "lua5.4"
    assert _one(vm, "return _VERSION") == "Lua 5.4"


def _lua_table(options: dict) -> str:
    """``options`` as a Lua table constructor (strings and booleans)."""
    def value(v):
        return ("true" if v else "false") if isinstance(v, bool) else "[==[" + str(v) + "]==]"
    return "{" + ", ".join(f"{k} = {value(v)}" for k, v in options.items()) + "}"


def test_runtime_aliases_pick_the_binary_from_the_one_table(manager, ssh_vm_options, cache_dir, tmp_path):
    require_binary("lua5.4")
    opts = _options(ssh_vm_options, cache_dir=str(cache_dir))
    (tmp_path / "p54.toml").write_text('runtime = "5.4"\n')
    assert _create(manager, opts, name="p54", profile=str(tmp_path / "p54.toml")).describe()["interpreter"] == "lua5.4"
    assert _create(manager, opts, name="v54", runtime="lua5.4").describe()["interpreter"] == "lua5.4"


def test_shell_runtime_alias_in_config_toml_works_for_the_shell_config_check_and_ssh_vms(
        ssh_vm_options, cache_dir):
    """The repro of issue 11: ``[shell] runtime = "5.4"``."""
    import os
    import subprocess
    import sys

    require_binary("lua5.4")
    config = Path(os.environ["BIOXEN_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text('[shell]\nruntime = "5.4"\n')
    bioxen = [sys.executable, "-m", "bioxen_shell"]
    check = subprocess.run([*bioxen, "config", "check"], capture_output=True, text=True, timeout=PATIENCE)
    assert check.returncode == 0 and "OK" in check.stdout, check.stderr
    opts = _options(ssh_vm_options, cache_dir=str(cache_dir), ssh_config="none", runtime="5.4")
    code = f"local v = vm.create({_lua_table(opts)}); print(_VERSION, v:eval('return _VERSION'))"
    run = subprocess.run([*bioxen, "-e", code], capture_output=True, text=True, timeout=PATIENCE)
    assert (run.returncode, run.stdout) == (0, "Lua 5.4\tLua 5.4\n"), run.stderr


def test_profile_paths_are_uploaded_with_the_bundle(manager, ssh_vm_options, cache_dir, tmp_path):
    mods, other = tmp_path / "mods", tmp_path / "other"
    (mods / "pkg").mkdir(parents=True)
    other.mkdir()
    (mods / "mymod.lua").write_text("return {answer = 42}\n")
    (mods / "pkg" / "init.lua").write_text("return 'pkg'\n")
    (other / "mymod.lua").write_text("return {answer = 0}\n")  # the first directory wins, as locally
    (other / "extra.lua").write_text("return 'extra'\n")
    (tmp_path / "mods.toml").write_text(f'paths = ["{mods}", "{other}"]\n')
    opts = _options(ssh_vm_options, cache_dir=str(cache_dir))
    vm = _create(manager, opts, name="m1", profile=str(tmp_path / "mods.toml"))
    assert _one(vm, 'return require("mymod").answer') == 42
    assert _one(vm, 'return require("pkg") .. require("extra")') == "pkgextra"
    found = _one(vm, 'return package.searchpath("mymod", package.path)')
    assert found.startswith(str(cache_dir)) and found.endswith("/lib/mymod.lua"), found  # the uploaded copy
    assert str(mods) not in _one(vm, "return package.path")  # never this machine's directory
    (mods / "mymod.lua").write_text("return {answer = 43}\n")  # a changed module: a new bundle version
    assert _one(_create(manager, opts, name="m2", profile=str(tmp_path / "mods.toml")),
                'return require("mymod").answer') == 43


def test_profile_paths_over_the_module_cap_are_refused_naming_the_profile(manager, ssh_vm_options, cache_dir,
                                                                         tmp_path, monkeypatch):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "big.lua").write_text("return 1\n" * 10)
    (tmp_path / "p.toml").write_text(f'paths = ["{mods}"]\n')
    monkeypatch.setattr(upload, "MAX_MODULE_BYTES", 50)  # the cap, made small enough to reach
    with pytest.raises(VMCreateError, match=rf"^vm.create: r1: {tmp_path / 'p.toml'}: paths: {mods}: the "
                                            r"directories hold more than 50 bytes of Lua files"):
        _create(manager, _options(ssh_vm_options, cache_dir=str(cache_dir)), profile=str(tmp_path / "p.toml"))
    assert not cache_dir.exists() or not any(cache_dir.iterdir())  # nothing was uploaded


def test_missing_interpreter_is_a_clear_error(manager, ssh_vm_options, cache_dir):
    with pytest.raises(Exception, match=r"interpreter 'lua9\.9'.*not installed on the host; "
                                        r"Lua interpreters found there: luajit, lua5\.4"):
        _create(manager, _options(ssh_vm_options, interpreter="lua9.9", cache_dir=str(cache_dir)))
    with pytest.raises(Exception, match=r"has no lua5\.5 \(runtime lua55\); Lua interpreters found there: luajit"):
        _create(manager, _options(ssh_vm_options, cache_dir=str(cache_dir)), runtime="lua55")


# ----------------------------------------------------------------------------- upload

def test_agent_uploaded_once_per_version(manager, ssh_vm_options, cache_dir):
    opts = _options(ssh_vm_options, cache_dir=str(cache_dir))
    _create(manager, opts, name="u1")
    bundles = [p for p in cache_dir.iterdir() if p.name.startswith("agent-")]
    assert len(bundles) == 1 and (bundles[0] / ".complete").is_file()
    assert (bundles[0] / "bio_stdlib" / "bio" / "seq.lua").is_file()
    marker = (bundles[0] / ".complete").stat().st_mtime_ns
    vm2 = _create(manager, opts, name="u2")
    assert _one(vm2, "return 5") == 5
    assert [p.name for p in cache_dir.iterdir()] == [bundles[0].name]  # no second copy, no tmp dirs
    assert (bundles[0] / ".complete").stat().st_mtime_ns == marker   # not uploaded again


def test_concurrent_first_starts_share_one_upload(ssh_vm_options, cache_dir):
    opts = _options(ssh_vm_options, cache_dir=str(cache_dir))
    del opts["type"]  # the manager takes "type" off before a backend sees the options
    backends = [SSHBackend(f"c{i}", opts, load_profile("standard")) for i in range(3)]
    procs, errors = [], []

    def start(b):
        try:
            procs.append(b.start())
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=start, args=(b,)) for b in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PATIENCE)
    try:
        assert not errors and len(procs) == 3
        assert [p.name for p in cache_dir.iterdir()] == [f"agent-{upload.agent_bundle().version}"]
        for p in procs:
            assert p.recv(4, PATIENCE).startswith(b"H")
    finally:
        for p in procs:
            p.close()
        for b in backends:
            b.destroy()


@pytest.fixture(scope="module")
def sshd_without_sftp(tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd-nosftp"), sftp=False)
    yield server
    server.stop()


def test_upload_falls_back_to_exec_without_sftp(manager, sshd_without_sftp, cache_dir):
    s = sshd_without_sftp
    opts = {"type": "ssh", "host": s.target, "key": str(s.client_key), "known_hosts": str(s.known_hosts),
            "agent": False, "cache_dir": str(cache_dir)}
    vm = _create(manager, opts)
    assert _one(vm, 'return require("bio.seq").reverse_complement("AACG")') == "CGTT"
    assert len([p for p in cache_dir.iterdir() if p.name.startswith("agent-")]) == 1


def test_status_line_skips_login_noise_and_keeps_the_stream(ssh_vm_options, sshd_server):
    """Some rc files print a banner on every session: the launcher skips it, and takes no byte
    of what follows its status line (the agent's frames)."""
    from bioxen_shell.remote import ssh
    from bioxen_shell.remote.config import resolve_host

    opts = dict(ssh_vm_options)
    del opts["type"]
    client = ssh.connect(resolve_host(opts.pop("host"), opts))
    try:
        chan = client.get_transport().open_session()
        chan.exec_command("printf 'Welcome to the lab\\nR3\\nbioxen-start luajit\\nH5\\nhello'")
        assert ssh._read_status_line(chan, PATIENCE) == "bioxen-start luajit"
        chan.settimeout(PATIENCE)
        rest = b""
        while data := chan.recv(100):
            rest += data
        assert rest == b"H5\nhello"
    finally:
        client.close()


# ----------------------------------------------------------------------------- interrupts, kills, drops

@pytest.mark.parametrize("interp", INTERPRETERS)
def test_interrupt_reaches_the_remote_agent(manager, ssh_vm_options, cache_dir, interp):
    require_binary(interp)
    vm = _create(manager, _options(ssh_vm_options, interpreter=interp, cache_dir=str(cache_dir)))
    pid = vm.describe()["pid"]
    looping = cache_dir / "looping"  # the agent runs on this machine: its marker is visible here
    with when(looping.exists, vm.interrupt, "the remote loop to start"):
        with pytest.raises(VMInterrupted) as info:
            _one(vm, lua_touch(looping) + "while true do end")  # only the interrupt ends it
    assert not isinstance(info.value, VMCrashed)  # stopped by the agent, not killed and restarted
    assert _one(vm, "return 'still serving'") == "still serving"
    assert vm.describe()["pid"] == pid


@pytest.mark.parametrize("interp", ["lua5.4", "lua5.1", "luajit"])
def test_repeated_interrupts_never_kill_the_remote_agent(manager, ssh_vm_options, cache_dir, interp):
    # Stock PUC lua resets SIGINT to the default action after the first one, so a second SIGINT
    # would kill the interpreter; bioxen interrupts remote agents through their interrupt file.
    require_binary(interp)
    vm = _create(manager, _options(ssh_vm_options, interpreter=interp, cache_dir=str(cache_dir)))
    pid = vm.describe()["pid"]
    for i in range(3):
        looping = cache_dir / f"looping{i}"
        with when(looping.exists, vm.interrupt, "the remote loop to start"):
            with pytest.raises(VMInterrupted):
                _one(vm, lua_touch(looping) + "while true do end")
    _interrupt_between_calls(vm)  # an interrupt between calls must not kill the agent either
    assert _one(vm, "return 'still serving'") == "still serving"
    assert vm.describe()["pid"] == pid


def test_kill_leaves_no_remote_process(manager, ssh_vm_options, cache_dir):
    vm = _create(manager, _options(ssh_vm_options, cache_dir=str(cache_dir)))
    pid = vm.describe()["pid"]
    assert _pid_alive(pid)
    vm.eval("return 1")
    vm.destroy()
    assert _wait_gone(pid), "the remote agent outlived its VM"


def test_dropped_connection_mid_call(manager, ssh_vm_options, sshd_server, cache_dir):
    vm = _create(manager, _options(ssh_vm_options, cache_dir=str(cache_dir)))
    pid = vm.describe()["pid"]
    client_port = vm.backend._link.transport.sock.getsockname()[1]
    looping = cache_dir / "looping"
    with when(looping.exists, lambda: sshd_server.kill_connection(client_port), "the remote loop to start"):
        with pytest.raises(VMCrashed, match="VM lost .connection lost.*restart"):
            _one(vm, lua_touch(looping) + "local x = 0; while true do x = x + 1 end")
    assert vm.status == "lost"
    assert vm.describe()["status"] == "lost"
    # the guard saw its input end and killed the busy agent: nothing is left behind
    assert _wait_gone(pid), "the remote agent outlived the dropped connection"
    vm.restart()
    assert _one(vm, "return 'back'") == "back"
    assert vm.describe()["pid"] != pid


def test_agent_exit_reason_is_reported(manager, ssh_vm_options, cache_dir):
    vm = _create(manager, _options(ssh_vm_options,
                                   cache_dir=str(cache_dir)))
    with pytest.raises(VMCrashed, match=r"exit status 3"):
        _one(vm, "os.exit(3)")


# ----------------------------------------------------------------------------- host keys

def test_unknown_host_key_is_refused_with_instructions(sshd_server, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    backend = SSHBackend("k1", {"host": sshd_server.target, "key": str(sshd_server.client_key),
                                "known_hosts": str(empty), "agent": False}, load_profile("standard"))
    with pytest.raises(BackendError) as err:
        backend.start()
    msg = str(err.value)
    assert f"[127.0.0.1]:{sshd_server.port}" in msg and "not known" in msg
    assert "SHA256:" in msg and "ssh-keyscan -p" in msg and 'trust="tofu"' in msg
    assert str(hostkeys.bioxen_known_hosts()) in msg
    assert not hostkeys.bioxen_known_hosts().exists()  # nothing recorded without consent


def test_trust_on_first_use_records_the_key(manager, sshd_server, tmp_path, cache_dir):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    opts = {"type": "ssh", "host": sshd_server.target, "key": str(sshd_server.client_key),
            "known_hosts": str(empty), "agent": False, "cache_dir": str(cache_dir)}
    vm = _create(manager, dict(opts, trust="tofu"), name="t1")
    assert _one(vm, "return 1") == 1
    recorded = hostkeys.bioxen_known_hosts().read_text()
    assert recorded == sshd_server.known_hosts_line()
    assert oct(hostkeys.bioxen_known_hosts().stat().st_mode & 0o777) == "0o600"
    # from now on the default (verify) mode accepts it
    assert _one(_create(manager, opts, name="t2"), "return 2") == 2


def test_changed_host_key_is_refused_even_with_tofu(sshd_server, tmp_path):
    other = write_keypair(tmp_path / "other_host_key")
    bogus = tmp_path / "known_hosts"
    bogus.write_text(f"[127.0.0.1]:{sshd_server.port} {' '.join(other.split()[:2])}\n")
    backend = SSHBackend("k2", {"host": sshd_server.target, "key": str(sshd_server.client_key),
                                "known_hosts": str(bogus), "agent": False, "trust": "tofu"},
                         load_profile("standard"))
    with pytest.raises(BackendError, match="HOST KEY MISMATCH.*ssh-keygen -R"):
        backend.start()


# ----------------------------------------------------------------------------- credentials, timeouts

def test_wrong_key_is_refused(sshd_server, tmp_path):
    write_keypair(tmp_path / "stranger")
    backend = SSHBackend("c1", {"host": sshd_server.target, "key": str(tmp_path / "stranger"),
                                "known_hosts": str(sshd_server.known_hosts), "agent": False},
                         load_profile("standard"))
    with pytest.raises(BackendError, match=r"authentication failed for .*tried key .*stranger"):
        backend.start()


def test_wrong_password_is_refused_and_never_shown(sshd_server, tmp_path, monkeypatch):
    monkeypatch.setenv("BIOXEN_TEST_SSH_PW", "hunter2-not-the-password")
    write_keypair(tmp_path / "stranger")
    backend = SSHBackend("c2", {"host": sshd_server.target, "key": str(tmp_path / "stranger"),
                                "known_hosts": str(sshd_server.known_hosts), "agent": False,
                                "password_env": "BIOXEN_TEST_SSH_PW"}, load_profile("standard"))
    with pytest.raises(BackendError) as err:
        backend.start()
    assert "authentication failed" in str(err.value)
    assert "password (password_env BIOXEN_TEST_SSH_PW)" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_password_file_with_open_permissions_is_refused(sshd_server, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    pw.chmod(0o644)
    backend = SSHBackend("c3", {"host": sshd_server.target, "known_hosts": str(sshd_server.known_hosts),
                                "agent": False, "password_file": str(pw)}, load_profile("standard"))
    with pytest.raises(BackendError, match=r"accessible by group or others \(mode 0644\).*chmod 600"):
        backend.start()


def test_connection_refused_names_the_host(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = SSHBackend("c4", {"host": f"bio@127.0.0.1:{port}", "agent": False, "connect_timeout": 2},
                         load_profile("standard"))
    with pytest.raises(BackendError, match=rf"cannot connect to bio@127.0.0.1:{port} \(Connection refused\)"):
        backend.start()


def test_silent_server_hits_the_banner_timeout(tmp_path):
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts (kernel backlog) but never says a word
    port = listener.getsockname()[1]
    try:
        backend = SSHBackend("c5", {"host": f"bio@127.0.0.1:{port}", "agent": False,
                                    "banner_timeout": 0.5, "connect_timeout": 2}, load_profile("standard"))
        # The server never speaks: only the banner timeout can end start() (else it hangs).
        with pytest.raises(BackendError, match=r"no SSH banner within 0.5 s"):
            finishes(backend.start, "start() against a silent server")
    finally:
        listener.close()


def test_missing_host_option_and_bad_option_are_named():
    with pytest.raises(BackendError, match=r'needs host='):
        SSHBackend("o1", {}, load_profile("standard"))
    with pytest.raises(BackendError, match=r"port: expected an integer from 1 to 65535"):
        SSHBackend("o2", {"host": "lab", "port": "ssh"}, load_profile("standard"))
    with pytest.raises(BackendError, match=r"colour: unknown key"):
        SSHBackend("o3", {"host": "lab", "colour": "red"}, load_profile("standard"))


def test_configured_host_by_name(manager, sshd_server, cache_dir):
    from bioxen_shell import paths
    cfg = paths.config_dir() / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        f'[hosts.loop]\nhostname = "127.0.0.1"\nport = {sshd_server.port}\nuser = "{sshd_server.user}"\n'
        f'key = "{sshd_server.client_key}"\nknown_hosts = "{sshd_server.known_hosts}"\nagent = false\n'
        f'interpreter = "lua5.4"\ncache_dir = "{cache_dir}"\n'
    )
    vm = _create(manager, {"type": "ssh", "host": "loop"})
    assert vm.describe()["interpreter"] == "lua5.4"
    assert _one(vm, "return 6 * 7") == 42


def test_bad_config_file_stops_vm_create_with_file_and_key(manager):
    from bioxen_shell import paths
    cfg = paths.config_dir() / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('[hosts.loop]\nhostname = "127.0.0.1"\nkeepalive = "often"\n')
    with pytest.raises(Exception, match=rf"{cfg}: hosts.loop.keepalive: expected a number of seconds"):
        _create(manager, {"type": "ssh", "host": "loop"})


def test_agent_killed_on_the_host_is_reported_as_a_crash(manager, ssh_vm_options):
    """The OOM killer (or an admin) kills the remote agent: the VM reports the signal."""
    import os
    import signal

    vm = _create(manager, dict(ssh_vm_options))
    pid = vm.describe()["pid"]
    looping = Path(ssh_vm_options["cache_dir"]) / f"looping-{pid}"
    with when(looping.exists, lambda: os.kill(pid, signal.SIGKILL), "the remote loop to start"):
        with pytest.raises(VMCrashed, match=r"VM crashed \(signal 9\)"):
            _one(vm, lua_touch(looping) + "while true do end")
    assert vm.status == "crashed"
    vm.restart()
    assert _one(vm, "return 'ok'") == "ok"


@pytest.fixture
def ssh_agent_with_key(sshd_server, tmp_path, monkeypatch):
    """A real ssh-agent holding the test client key (SSH_AUTH_SOCK points at it)."""
    import subprocess

    agent_bin = require_binary("ssh-agent")
    add_bin = require_binary("ssh-add")
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen([agent_bin, "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(sock.exists, "ssh-agent's socket")
        env = {"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"}
        subprocess.run([add_bin, "-q", str(sshd_server.client_key)], env=env, check=True,
                       stdin=subprocess.DEVNULL, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        proc.terminate()
        proc.wait(PATIENCE)


def test_authentication_through_ssh_agent(manager, sshd_server, ssh_agent_with_key, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on: only the agent can succeed
    opts = {"type": "ssh", "host": sshd_server.target, "known_hosts": str(sshd_server.known_hosts),
            "cache_dir": str(sshd_server.directory / "remote-cache")}
    vm = _create(manager, opts)
    assert _one(vm, "return 'via agent'") == "via agent"
    # and agent=false really turns it off
    with pytest.raises(Exception, match=r"no way to authenticate to .*ssh-agent turned off .*set key ="):
        _create(manager, dict(opts, agent=False), name="r2")


def test_retry_for_waits_for_a_booting_host(tmp_path, monkeypatch):
    """A fresh guest: nothing listens yet, then sshd comes up — retry_for bridges the gap."""
    import socket

    from bioxen_shell.remote.config import HostConfig
    from bioxen_shell.remote.ssh import SSHConnectError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    directory = tmp_path / "late-sshd"
    directory.mkdir()
    # the server's keys are made up front so the client can trust them before it exists
    host_public = " ".join(write_keypair(directory / "host_ed25519", "late").split()[:2])
    write_keypair(directory / "client_ed25519", "late-client")
    (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_public}\n")
    host = HostConfig(name="late", hostname="127.0.0.1", port=port, agent=False,
                      key=str(directory / "client_ed25519"), known_hosts=str(directory / "known_hosts"),
                      cache_dir=str(tmp_path / "remote-cache"))
    with pytest.raises(SSHConnectError, match="Connection refused"):
        SSHBackend.for_host("late", host, load_profile("standard")).start()

    # sshd comes up only after the backend has been refused once: retry_for must bridge that.
    refused = []
    real_connect = socket.create_connection

    def connect(address, *args, **kwargs):
        try:
            return real_connect(address, *args, **kwargs)
        except ConnectionRefusedError:
            if address[1] == port:
                refused.append(address)
            raise

    monkeypatch.setattr(socket, "create_connection", connect)
    started = {}

    def boot():
        started["server"] = start_sshd(directory, port=port, keep_keys=True)

    backend = SSHBackend.for_host("late", host, load_profile("standard"), retry_for=PATIENCE)
    try:
        with when(lambda: refused, boot, "a refused first attempt"):
            proc = backend.start()
        assert proc.recv(1, PATIENCE) == b"H"
        proc.close()
    finally:
        backend.destroy()
        if "server" in started:
            started["server"].stop()
