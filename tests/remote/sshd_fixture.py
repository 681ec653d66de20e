"""Pytest fixtures for a real OpenSSH server on loopback.

Loaded as a plugin by ``tests/conftest.py`` for the whole suite, so the conformance suite,
the SSH tests and the XCP-ng simulator (whose guests "get" this server's address) all reach
the same daemon.

* ``sshd_server`` (session) — a stock ``/usr/sbin/sshd -D -e -f <generated config>`` on
  ``127.0.0.1`` and a free port, with its own host key, a generated client key and an
  ``AuthorizedKeysFile`` in a temporary directory.  Works as root (CI) and as a normal user.
* ``ssh_vm_options`` (session) — the ``vm.create{…}`` options that reach that server, with
  its host key trusted in an isolated known_hosts file (never the user's own).

Both skip with a clear reason when sshd is not installed (``BIOXEN_REQUIRE_SYSTEM=1`` turns
that skip into a failure).
"""
from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.system import die_with_parent, require_binary
from tests.waiting import PATIENCE
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

__all__ = ["SSHDServer", "start_sshd", "write_keypair"]


def _find_sshd() -> str:
    """sshd lives in /usr/sbin, which a normal user's PATH often lacks."""
    return require_binary("sshd", also_in="/usr/sbin:/usr/local/sbin:/sbin")


def write_keypair(path: Path, comment: str = "bioxen-test") -> str:
    """Write a fresh ed25519 key in OpenSSH format at ``path`` (+ ``.pub``); return the public line."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode() + f" {comment}"
    path.write_bytes(private)
    path.chmod(0o600)
    path.with_name(path.name + ".pub").write_text(public + "\n")
    return public


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SSHDServer:
    """A running sshd and everything a client needs to reach it."""

    host: str
    port: int
    user: str
    client_key: Path          # private key whose public half is authorized
    host_public: str          # "ssh-ed25519 AAAA…" of the server's host key
    known_hosts: Path         # a known_hosts file trusting exactly this server
    directory: Path
    log: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def target(self) -> str:
        """``user@host:port`` as ``vm.create{host=…}`` takes it."""
        return f"{self.user}@{self.host}:{self.port}"

    def login_shell(self) -> str:
        import pwd
        return pwd.getpwnam(self.user).pw_shell

    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.host_public}\n"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    # -- fault injection -------------------------------------------------------------------
    def connection_pids(self, client_port: int) -> list[int]:
        """PIDs of the sshd processes serving the TCP connection from ``client_port``.

        Found through /proc/net/tcp (the server-side socket's inode) and the processes
        holding that socket, so other tests' connections are left alone.
        """
        inodes = set()
        want_local = f"{_hex_addr(self.host)}:{self.port:04X}"
        want_remote = f"{_hex_addr(self.host)}:{client_port:04X}"
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[1] == want_local and cols[2] == want_remote:
                inodes.add(cols[9])
        targets = {f"socket:[{i}]" for i in inodes}
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                for fd in (proc / "fd").iterdir():
                    if os.readlink(fd) in targets:
                        pids.append(int(proc.name))
                        break
            except OSError:
                continue
        return pids

    def kill_connection(self, client_port: int) -> list[int]:
        """SIGKILL the sshd processes of one connection (a dropped link, seen from the client)."""
        pids = self.connection_pids(client_port)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def _hex_addr(ipv4: str) -> str:
    """127.0.0.1 → 0100007F, as /proc/net/tcp writes it (little-endian)."""
    return "".join(f"{int(part):02X}" for part in reversed(ipv4.split(".")))


_CONFIG = """\
# generated by tests/remote/sshd_fixture.py
ListenAddress 127.0.0.1:{port}
HostKey {dir}/host_ed25519
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitEmptyPasswords no
MaxStartups 200
MaxSessions 200
MaxAuthTries 10
LoginGraceTime 30
PrintMotd no
X11Forwarding no
AllowTcpForwarding no
LogLevel VERBOSE
# bash sources ~/.bashrc for commands run by sshd, but only at shell level 1: SHLVL=1 makes
# the login shell level 2, so the test user's rc files (a pyenv init, a stale lock…) stay out
# of the tests, which then measure bioxen rather than this machine's dotfiles.
SetEnv SHLVL=1
{subsystem}
"""


def start_sshd(directory: Path, *, sftp: bool = True, extra_config: str = "",
               port: int | None = None, keep_keys: bool = False, stock_limits: bool = False,
               forwarding: bool = False) -> SSHDServer:
    """Start a private sshd in ``directory`` (keys, config, log) and wait until it listens.

    ``sftp=False`` leaves out the sftp subsystem (minimal images); ``extra_config`` is appended
    to the generated sshd_config; ``port`` asks for a given port (default: a free one);
    ``keep_keys`` reuses a host key and client key already in ``directory``;
    ``stock_limits`` keeps sshd's default MaxStartups (10:30:100) and MaxSessions (10);
    ``forwarding`` allows TCP forwarding (a jump host for ProxyJump).
    """
    sshd = _find_sshd()
    directory.mkdir(parents=True, exist_ok=True)
    if keep_keys and (directory / "host_ed25519.pub").exists():
        host_public = " ".join((directory / "host_ed25519.pub").read_text().split()[:2])
    else:
        host_public = " ".join(write_keypair(directory / "host_ed25519", "bioxen-test-host").split()[:2])
    if keep_keys and (directory / "client_ed25519.pub").exists():
        client_public = (directory / "client_ed25519.pub").read_text().strip()
    else:
        client_public = write_keypair(directory / "client_ed25519", "bioxen-test-client")
    (directory / "authorized_keys").write_text(client_public + "\n")
    if os.geteuid() == 0:
        # sshd running as root insists on its privilege separation directory, which
        # Debian's service unit normally creates (RuntimeDirectory=sshd).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    subsystem = "Subsystem sftp internal-sftp" if sftp else ""
    last_error = ""
    for _attempt in range(5):
        port = port or _free_port()
        config = directory / "sshd_config"
        text = _CONFIG.format(port=port, dir=directory, subsystem=subsystem)
        if stock_limits:  # else limits far above what the tests open, so none depends on them
            text = text.replace("MaxStartups 200\nMaxSessions 200\n", "")
        if forwarding:
            text = text.replace("AllowTcpForwarding no", "AllowTcpForwarding yes")
        config.write_text(text + extra_config)
        log = directory / "sshd.log"
        # -e would send the log to stderr; -E writes it to a file the tests can show.
        proc = subprocess.Popen(
            [sshd, "-D", "-E", str(log), "-f", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
            # Killed with the test run; not when started from a helper thread, whose exit would
            # deliver the parent-death signal early.
            preexec_fn=die_with_parent if threading.current_thread() is threading.main_thread() else None,
        )
        deadline = time.monotonic() + PATIENCE  # until it listens (or exits: port taken)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.settimeout(2)
                    if s.recv(4).startswith(b"SSH-"):
                        server = SSHDServer(
                            host="127.0.0.1", port=port, user=getpass.getuser(),
                            client_key=directory / "client_ed25519", host_public=host_public,
                            known_hosts=directory / "known_hosts", directory=directory,
                            log=log, process=proc,
                        )
                        server.known_hosts.write_text(server.known_hosts_line())
                        return server
            except OSError:
                time.sleep(0.05)
        err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        last_error = err + (log.read_text(errors="replace") if log.exists() else "")
    raise RuntimeError(f"sshd did not start on loopback: {last_error.strip()}")


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1, for the whole test session."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ssh_vm_options(sshd_server):
    """``vm.create`` options reaching ``sshd_server`` (host key trusted in an isolated file, the
    agent cached in the fixture's directory rather than the real ``~/.cache/bioxen``)."""
    return {
        "type": "ssh",
        "host": sshd_server.target,
        "key": str(sshd_server.client_key),
        "known_hosts": str(sshd_server.known_hosts),
        "agent": False,
        "cache_dir": str(sshd_server.directory / "remote-cache"),
    }
