"""SSH VMs at scale and on hosts that stop answering, against real OpenSSH servers on loopback.

* Many VMs on one host share a few connections (sshd's default MaxStartups 10 and MaxSessions 10
  hold), and a handshake the server cuts off is retried.
* A frozen host (its sshd processes SIGSTOPped: the kernel still ACKs, nothing answers) ends
  the call with "VM lost" through keepalives, and the profile's call_timeout holds too.
"""
from __future__ import annotations

import os
import signal
import socket

import pytest

from bioxen_shell.remote import ssh
from bioxen_shell.remote.config import resolve_host
from bioxen_shell.vm.errors import VMCrashed, VMRestarted
from bioxen_shell.vm.profiles import load_profile
from bioxen_shell.vm.transport import BackendError
from tests.remote.sshd_fixture import start_sshd
from tests.waiting import eventually, lua_touch, pid_gone, wait_for, when


@pytest.fixture(scope="module")
def stock_sshd(tmp_path_factory):
    """An sshd with the stock MaxStartups (10:30:100) and MaxSessions (10)."""
    server = start_sshd(tmp_path_factory.mktemp("sshd-stock"), stock_limits=True)
    yield server
    server.stop()


def _options(server, tmp_path, **changes):
    opts = {"type": "ssh", "host": server.target, "key": str(server.client_key),
            "known_hosts": str(server.known_hosts), "agent": False,
            "cache_dir": str(tmp_path / "remote-cache")}
    opts.update(changes)
    return opts


def _accepted_logins(server) -> int:
    return server.log_text().count("Accepted publickey")


def test_24_vms_on_one_stock_sshd_share_four_connections(manager, stock_sshd, tmp_path):
    before = _accepted_logins(stock_sshd)
    vms = manager.create("many", profile=load_profile("standard"), count=24, **_options(stock_sshd, tmp_path))
    assert len(vms) == 24
    assert all(vm.status == "running" for vm in vms)
    # every VM runs in its own agent: state is per VM
    for i, vm in enumerate(vms):
        vm.eval(f"x = {i}")
    assert [vm.eval("return x")[0] for vm in vms] == list(range(24))
    pids = {vm.describe()["pid"] for vm in vms}
    assert len(pids) == 24
    links = {id(vm.backend._link) for vm in vms}
    assert len(links) == 4  # 7 agents per connection, under sshd's MaxSessions 10
    assert _accepted_logins(stock_sshd) - before == 4
    for vm in vms:
        vm.destroy()
    for pid in pids:
        assert eventually(lambda: pid_gone(pid)), f"agent {pid} outlived its VM"


def _hog_startups(server, n: int) -> list[socket.socket]:
    """``n`` connections that never say a word: each counts against MaxStartups until
    LoginGraceTime, as slow or hostile clients do."""
    socks: list[socket.socket] = []

    def one_more() -> bool:
        s = socket.create_connection((server.host, server.port))
        if s.recv(100).startswith(b"SSH-"):  # accepted, unauthenticated: it counts
            socks.append(s)
            return True
        s.close()  # dropped itself ("Exceeded MaxStartups": start_sshd's probe still counted)
        return False

    for _ in range(n):
        wait_for(one_more, "sshd to accept a connection that holds a MaxStartups slot")
    return socks


@pytest.fixture
def limited_sshd(tmp_path):
    """``limited_sshd(lines)``: an sshd with the stock limits plus these sshd_config lines
    (the first setting of a keyword wins), stopped after the test."""
    servers = []

    def start(lines: str):
        servers.append(start_sshd(tmp_path / f"sshd-{len(servers)}", stock_limits=True, extra_config=lines))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def crowded_sshd(limited_sshd):
    """An sshd that admits one unauthenticated connection at a time (MaxStartups 1)."""
    return limited_sshd("MaxStartups 1\n")


def test_a_handshake_cut_off_by_maxstartups_is_retried(manager, crowded_sshd, tmp_path):
    hogs = _hog_startups(crowded_sshd, 1)

    def let_in():
        for s in hogs:
            s.close()

    dropped = lambda: "past MaxStartups" in crowded_sshd.log_text()  # noqa: E731
    with when(dropped, let_in, "sshd to drop a connection past MaxStartups"):
        vm = manager.create("crowd", profile=load_profile("standard"), **_options(crowded_sshd, tmp_path))
    assert vm.eval("return 1 + 1") == [2]


def test_a_handshake_cut_off_every_time_names_maxstartups(crowded_sshd, tmp_path):
    hogs = _hog_startups(crowded_sshd, 1)
    try:
        opts = _options(crowded_sshd, tmp_path)
        del opts["type"]
        backend = ssh.SSHBackend("crowd2", opts, load_profile("standard"))
        with pytest.raises(BackendError) as info:
            backend.start()
        msg = str(info.value)
        assert f"cannot connect to {crowded_sshd.target}" in msg
        assert "closed the connection during the SSH handshake" in msg
        assert "6 attempts" in msg and "MaxStartups" in msg
        assert "is this an SSH server" not in msg
    finally:
        for s in hogs:
            s.close()


# ----------------------------------------------------------------------------- a frozen host

class _Frozen:
    """SIGSTOP the sshd processes of one connection (a host that stops answering: the kernel
    still ACKs every packet, so TCP never notices) and SIGCONT them afterwards."""

    def __init__(self, server, vm) -> None:
        self.port = vm.backend._link.transport.sock.getsockname()[1]
        self.pids = server.connection_pids(self.port)
        assert self.pids, "no sshd process found for the VM's connection"

    def freeze(self) -> None:
        for pid in self.pids:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def test_a_frozen_host_ends_the_call_with_vm_lost(manager, sshd_server, tmp_path):
    vm = manager.create("frozen", profile=load_profile("standard"),
                        **_options(sshd_server, tmp_path, keepalive=0.5, keepalive_count=2))
    pid = vm.describe()["pid"]
    frozen = _Frozen(sshd_server, vm)
    looping = tmp_path / "looping"
    try:
        with when(looping.exists, frozen.freeze, "the remote loop to start"):
            with pytest.raises(VMCrashed, match=r"VM lost \(connection lost\); the host did not answer 2 "
                                                r"keepalives in .* s \(keepalive 0.5 s, keepalive_count 2\); "
                                                r":restart\(\) reconnects"):
                vm.eval(lua_touch(looping) + "while true do end")
        assert vm.status == "lost"
    finally:
        frozen.thaw()
    # once the host answers again it sees the connection gone, and the guard kills the agent
    assert eventually(lambda: pid_gone(pid)), "the agent outlived its lost connection"
    vm.restart()
    assert vm.eval("return 'back'") == ["back"]


def test_call_timeout_holds_on_a_frozen_host(manager, sshd_server, tmp_path):
    # keepalives off: only the call's own deadline can end it
    vm = manager.create("frozen2", profile=load_profile("standard").replace(call_timeout=1.0),
                        **_options(sshd_server, tmp_path, keepalive=0, connect_timeout=2))
    vm.kill_grace = 0.5
    pid = vm.describe()["pid"]
    frozen = _Frozen(sshd_server, vm)
    looping = tmp_path / "looping"
    try:
        with when(looping.exists, frozen.freeze, "the remote loop to start"):
            with pytest.raises(VMRestarted) as info:
                vm.eval(lua_touch(looping) + "while true do end")
        assert info.value.kind == "timeout" and "killed and restarted" in str(info.value)
        # the restart gave up on the frozen connection and opened a new one
        assert vm.status == "running" and vm.eval("return 2") == [2]
        assert vm.describe()["pid"] != pid
    finally:
        frozen.thaw()
    assert eventually(lambda: pid_gone(pid)), "the frozen connection's agent outlived it"


def test_keepalive_count_is_checked(tmp_path):
    with pytest.raises(Exception, match=r"keepalive_count: expected an integer from 1 to 1000"):
        resolve_host("me@127.0.0.1", {"keepalive_count": 0})


def test_a_host_that_freezes_during_a_big_upload_ends_it_with_vm_lost(manager, sshd_server, tmp_path):
    vm = manager.create("frozen3", profile=load_profile("standard"),
                        **_options(sshd_server, tmp_path, keepalive=0.5, keepalive_count=2))
    vm.eval("function take(s) return #s end")
    frozen = _Frozen(sshd_server, vm)
    frozen.freeze()  # the 64 MiB argument stops at the windows and socket buffers: send blocks
    try:
        with pytest.raises(VMCrashed, match=r"VM lost \(connection lost\)"):
            vm.call("take", b"x" * (64 << 20))
        assert vm.status == "lost"
    finally:
        frozen.thaw()
    vm.restart()  # a fresh agent (its globals are gone) on a fresh connection
    assert vm.eval("return 'back'") == ["back"]


def test_a_server_with_fewer_sessions_gets_more_connections(manager, limited_sshd, tmp_path):
    few_sessions_sshd = limited_sshd("MaxSessions 4\n")  # below bioxen's 7 agents + the guard
    vms = manager.create("few", profile=load_profile("standard"), count=12,
                         **_options(few_sessions_sshd, tmp_path))
    assert [vm.eval("return 1")[0] for vm in vms] == [1] * 12
    assert len({vm.describe()["pid"] for vm in vms}) == 12
    assert len({id(vm.backend._link) for vm in vms}) >= 4  # 3 agents + the guard per connection
