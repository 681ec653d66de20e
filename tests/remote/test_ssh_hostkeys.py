"""bioxen's known_hosts: recording, forgetting, and keys filed under an alias (XCP-ng guests)."""
from __future__ import annotations

import base64
import subprocess

import paramiko
import pytest

from bioxen_shell.remote import hostkeys
from bioxen_shell.remote.config import HostConfig
from bioxen_shell.remote.ssh import SSHBackend
from bioxen_shell.vm.profiles import load_profile
from bioxen_shell.vm.transport import BackendError
from tests.remote.sshd_fixture import write_keypair
from tests.system import require_binary
from tests.waiting import PATIENCE


def _public_key(line: str) -> paramiko.PKey:
    kind, data = line.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def _server_key(sshd_server) -> paramiko.PKey:
    return _public_key(sshd_server.host_public)


def _assert_agent_says_hello(backend) -> None:
    """The connection was verified and the agent started: its first byte is the hello frame."""
    proc = backend.start()
    try:
        assert proc.recv(1, PATIENCE) == b"H"
    finally:
        proc.close()
        backend.destroy()


def test_record_and_forget_keep_other_entries(tmp_path):
    f = tmp_path / "known_hosts"
    k1 = _public_key(write_keypair(tmp_path / "k1"))
    hostkeys.record_host_key("xcpng-aaa", k1, f)
    hostkeys.record_host_key("[10.0.0.5]:2222", k1, f)
    hostkeys.record_host_key("xcpng-aaa", k1, f)
    assert oct(f.stat().st_mode & 0o777) == "0o600"
    assert hostkeys.forget_host("xcpng-aaa", f) == 2
    assert f.read_text().split()[0] == "[10.0.0.5]:2222"
    assert hostkeys.forget_host("nothing-here", f) == 0
    assert hostkeys.forget_host("x", tmp_path / "missing") == 0


def test_fingerprint_matches_openssh(sshd_server):
    key = _server_key(sshd_server)
    keygen = require_binary("ssh-keygen")
    out = subprocess.run([keygen, "-lf", str(sshd_server.directory / "host_ed25519.pub")],
                         capture_output=True, text=True, check=True).stdout
    assert hostkeys.fingerprint(key) in out


def test_key_filed_under_an_alias_verifies_the_first_connection(sshd_server):
    alias = "xcpng-1234-uuid"
    host = HostConfig(name="guest", hostname="127.0.0.1", port=sshd_server.port, user=sshd_server.user,
                      key=str(sshd_server.client_key), agent=False, host_key_alias=alias,
                      cache_dir=str(sshd_server.directory / "remote-cache"))
    backend = SSHBackend.for_host("guest", host, load_profile("standard"))
    # nothing recorded under the alias: refused, even though [127.0.0.1]:port is trusted elsewhere
    with pytest.raises(BackendError, match=f"host key for {alias} is not known"):
        backend.start()
    hostkeys.record_host_key(alias, _server_key(sshd_server))
    _assert_agent_says_hello(backend)
    assert hostkeys.forget_host(alias) == 1
    with pytest.raises(BackendError, match="not known"):
        SSHBackend.for_host("guest", host, load_profile("standard")).start()


def test_malformed_known_hosts_lines_are_skipped_as_openssh_does(sshd_server, tmp_path):
    # One bad line about some other host (truncated base64, a CA marker, stray bytes) must not
    # break connections to every host: the valid entry further down still verifies the server.
    known = tmp_path / "known_hosts"
    name = hostkeys.known_hosts_name("127.0.0.1", sshd_server.port)
    known.write_bytes(
        b"otherhost ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ\n"
        b"@cert-authority *.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE\n"
        b"\xff\xfe not utf-8 at all\n"
        + f"{name} {sshd_server.host_public.split()[0]} {sshd_server.host_public.split()[1]}\n".encode()
    )
    host = HostConfig(name="lab", hostname="127.0.0.1", port=sshd_server.port, user=sshd_server.user,
                      key=str(sshd_server.client_key), agent=False, known_hosts=str(known),
                      cache_dir=str(sshd_server.directory / "remote-cache"))
    backend = SSHBackend.for_host("lab", host, load_profile("standard"))
    _assert_agent_says_hello(backend)
