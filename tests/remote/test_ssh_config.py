"""``~/.ssh/config`` honoured as ``ssh`` does: Host aliases with HostName, User, Port,
IdentityFile and ProxyJump (through a real second OpenSSH server as the jump host)."""
from __future__ import annotations

import pytest

from bioxen_shell.remote import config as config_mod
from bioxen_shell.remote.config import ConfigError, resolve_host
from bioxen_shell.vm.profiles import load_profile
from tests.remote.sshd_fixture import start_sshd


@pytest.fixture(scope="module")
def jump_sshd(tmp_path_factory):
    """A second sshd that forwards TCP: the jump host."""
    server = start_sshd(tmp_path_factory.mktemp("sshd-jump"), forwarding=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def closed_jump_sshd(tmp_path_factory):
    """A jump host whose sshd refuses to forward (AllowTcpForwarding no)."""
    server = start_sshd(tmp_path_factory.mktemp("sshd-nojump"))
    yield server
    server.stop()


def _user_ssh_config(text: str):
    """Write the test's ~/.ssh/config (tests/conftest.py points bioxen at this file)."""
    from pathlib import Path

    path = Path(config_mod.USER_SSH_CONFIG)
    path.write_text(text)
    return path


def _host_block(alias, server, **extra):
    lines = [f"Host {alias}", "  HostName 127.0.0.1", f"  Port {server.port}", f"  User {server.user}",
             f"  IdentityFile {server.client_key}"]
    lines += [f"  {k} {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def _known_hosts(tmp_path, *servers):
    path = tmp_path / "known_hosts"
    path.write_text("".join(s.known_hosts_line() for s in servers))
    return str(path)


def _vm(manager, alias, tmp_path, known_hosts, **opts):
    return manager.create("cfg", profile=load_profile("standard"), type="ssh", host=alias,
                          known_hosts=known_hosts, agent=False, cache_dir=str(tmp_path / "cache"), **opts)


def test_a_host_alias_gives_hostname_user_port_and_identity_file(manager, sshd_server, tmp_path):
    _user_ssh_config("Host other\n  Port 1\n" + _host_block("lab-alias", sshd_server))
    vm = _vm(manager, "lab-alias", tmp_path, _known_hosts(tmp_path, sshd_server))
    assert vm.eval("return 6 * 7") == [42]
    assert vm.describe()["address"] == f"{sshd_server.user}@127.0.0.1:{sshd_server.port}"


def test_given_settings_win_over_the_ssh_config(sshd_server):
    _user_ssh_config("Host alias\n  HostName 10.1.2.3\n  Port 2222\n  User cfguser\n  IdentityFile ~/id_cfg\n")
    host = resolve_host("me@alias:2200", {"key": "~/mine"})
    assert (host.hostname, host.user, host.port, host.key) == ("10.1.2.3", "me", 2200, "~/mine")
    host = resolve_host("alias")
    assert (host.hostname, host.user, host.port) == ("10.1.2.3", "cfguser", 2222)
    assert host.identity_files[0].endswith("/id_cfg")
    assert resolve_host("alias", {"ssh_config": "none"}).hostname == "alias"


def test_server_alive_settings_become_keepalives():
    _user_ssh_config("Host *\n  ServerAliveInterval 30\n  ServerAliveCountMax 5\n")
    host = resolve_host("me@anyhost")
    assert (host.keepalive, host.keepalive_count) == (30.0, 5)
    assert resolve_host("me@anyhost", {"keepalive": 2}).keepalive == 2.0


def test_a_bad_port_in_the_ssh_config_names_the_file_and_host(tmp_path):
    path = _user_ssh_config("Host alias\n  Port ssh\n")
    with pytest.raises(ConfigError, match=rf"{path} \(Host alias\): port: expected an integer from 1 to 65535"):
        resolve_host("alias")


def test_proxycommand_is_refused_with_what_to_use():
    _user_ssh_config("Host alias\n  ProxyCommand nc %h %p\n")
    with pytest.raises(ConfigError, match="ProxyCommand: is not supported by bioxen; use ProxyJump"):
        resolve_host("alias")


def test_proxyjump_goes_through_the_jump_host(manager, sshd_server, jump_sshd, tmp_path):
    _user_ssh_config(_host_block("target", sshd_server, ProxyJump="jumpbox")
                     + _host_block("jumpbox", jump_sshd))
    jump_logins = jump_sshd.log_text().count("Accepted publickey")
    vm = _vm(manager, "target", tmp_path, _known_hosts(tmp_path, sshd_server, jump_sshd))
    assert vm.eval("return 'through'") == ["through"]
    # the jump host authenticated us and opened the forward to the target
    assert jump_sshd.log_text().count("Accepted publickey") == jump_logins + 1
    vm.destroy()


def test_a_jump_host_that_refuses_to_forward_is_named(manager, sshd_server, closed_jump_sshd, tmp_path):
    _user_ssh_config(_host_block("target", sshd_server, ProxyJump="closedjump")
                     + _host_block("closedjump", closed_jump_sshd))
    with pytest.raises(Exception) as info:
        _vm(manager, "target", tmp_path, _known_hosts(tmp_path, sshd_server, closed_jump_sshd))
    msg = str(info.value)
    assert f"through the jump host {closed_jump_sshd.user}@127.0.0.1:{closed_jump_sshd.port}" in msg
    assert "refused to forward" in msg and "AllowTcpForwarding" in msg


def test_an_unknown_jump_host_key_is_refused(manager, sshd_server, jump_sshd, tmp_path):
    _user_ssh_config(_host_block("target", sshd_server, ProxyJump="jumpbox")
                     + _host_block("jumpbox", jump_sshd))
    with pytest.raises(Exception, match=r"cannot reach the jump host jumpbox.*host key for \[127.0.0.1\]"):
        _vm(manager, "target", tmp_path, _known_hosts(tmp_path, sshd_server))
