"""Host key verification for SSH hosts: known_hosts files and bioxen's own.

A connection is accepted only when the server's key is found in one of:

* the user's ``~/.ssh/known_hosts`` (read, never written by bioxen);
* an extra file named by ``known_hosts = …`` in the host's config (read only);
* bioxen's own file, ``paths.config_dir() / "known_hosts"`` — the only file bioxen writes: on an
  explicit trust-on-first-use (``trust = "tofu"``), and for XCP-ng guests whose host key bioxen
  generated itself (filed under the VM's uuid, an alias like OpenSSH's ``HostKeyAlias``).

An unknown key is refused with a message that shows its fingerprint and says how to trust it;
a key that differs from a recorded one is always refused (paramiko's ``BadHostKeyException``),
whatever the trust setting.  Entries use OpenSSH's format, so ``ssh-keygen -F``/``-R`` work on
bioxen's file too.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import shlex
from pathlib import Path
from typing import Iterable

import paramiko

from .. import paths

__all__ = [
    "HostKeyError",
    "UnknownHostKey",
    "HostKeyMismatch",
    "bioxen_known_hosts",
    "user_known_hosts",
    "fingerprint",
    "known_hosts_name",
    "HostKeyVerifier",
    "record_host_key",
    "forget_host",
]


class HostKeyError(Exception):
    """The server's host key could not be verified; the message says what to do."""


class UnknownHostKey(HostKeyError):
    """No known_hosts file has a key for this host."""


class HostKeyMismatch(HostKeyError):
    """The host presented a different key from the recorded one (possible attack, or reinstall)."""


def bioxen_known_hosts() -> Path:
    """bioxen's own known_hosts file (the only one it writes)."""
    return paths.config_dir() / "known_hosts"


def user_known_hosts() -> Path:
    return Path("~/.ssh/known_hosts").expanduser()


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:…`` as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(hostname: str, port: int) -> str:
    """The name a key is filed under: ``host`` on port 22, else ``[host]:port`` (OpenSSH's rule)."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def record_host_key(name: str, key: paramiko.PKey, file: Path | None = None) -> Path:
    """Append ``name key`` to bioxen's known_hosts (created 0600 in a 0700 directory)."""
    target = file or bioxen_known_hosts()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = f"{name} {key.get_name()} {key.get_base64()}\n"
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # two shells recording at once must not interleave lines
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return target


def forget_host(name: str, file: Path | None = None) -> int:
    """Remove every entry for ``name`` from bioxen's known_hosts; return how many went.

    Used when bioxen destroys a VM it created: the next VM may get the same address with a
    new key.
    """
    target = file or bioxen_known_hosts()
    try:
        fd = os.open(target, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "r+", encoding="utf-8") as f:
            lines = f.readlines()
            keep = [ln for ln in lines if name not in (ln.split(" ", 1)[0].split(","))]
            f.seek(0)
            f.writelines(keep)
            f.truncate()
        return len(lines) - len(keep)
    finally:
        os.close(fd)


class HostKeyVerifier:
    """Loads the known_hosts files for one connection and decides about unknown keys.

    ``trust`` is ``"known-hosts"`` (refuse unknown keys) or ``"tofu"`` (accept an unknown key
    once and record it in bioxen's file).  Mismatches are refused in both modes.
    """

    def __init__(self, *, extra_files: Iterable[str | os.PathLike[str]] = (), trust: str = "known-hosts",
                 use_user_file: bool = True, record_file: Path | None = None) -> None:
        self.trust = trust
        self.record_file = record_file or bioxen_known_hosts()
        files: list[Path] = []
        if use_user_file:
            files.append(user_known_hosts())
        files += [Path(f).expanduser() for f in extra_files]
        files.append(self.record_file)
        self.files = files

    def configure(self, client: paramiko.SSHClient) -> None:
        """Load every existing file into ``client`` (read only) and install the policy."""
        for f in self.files:
            if f.is_file():
                _load_known_hosts(client.get_host_keys(), f)
        client.set_missing_host_key_policy(_Policy(self))

    def files_text(self) -> str:
        return ", ".join(str(f) for f in self.files)

    def unknown_message(self, name: str, key: paramiko.PKey) -> str:
        host, _, port = name.partition("]:") if name.startswith("[") else (name, "", "22")
        host = host.lstrip("[")
        scan = "ssh-keyscan" + (f" -p {port}" if port != "22" else "") + f" -t {key.get_name()} {shlex.quote(host)}"
        return (
            f"ssh: host key for {name} is not known ({key.get_name()} {fingerprint(key)}); refusing to connect. "
            f"Looked in: {self.files_text()}. Check that fingerprint with the host's administrator "
            f"(on the host: ssh-keygen -lf /etc/ssh/ssh_host_{key.get_name().replace('ssh-', '')}_key.pub), then trust it: "
            f"`{scan} >> {self.record_file}`, or connect once with trust=\"tofu\" "
            f"(vm.create{{…, trust=\"tofu\"}} or trust = \"tofu\" in [hosts.NAME]) to record it."
        )

    def mismatch_message(self, name: str, got: paramiko.PKey, expected: paramiko.PKey) -> str:
        return (
            f"ssh: HOST KEY MISMATCH for {name}: the host presented {got.get_name()} {fingerprint(got)} but "
            f"{expected.get_name()} {fingerprint(expected)} is recorded (in one of: {self.files_text()}). "
            f"Someone may be intercepting the connection — or the host was reinstalled. If you know it was "
            f"reinstalled, remove the old entry (ssh-keygen -R '{name}' -f FILE) and trust the new key."
        )


def _load_known_hosts(keys: paramiko.HostKeys, file: Path) -> None:
    """Add every valid entry of ``file`` to ``keys``, skipping lines paramiko cannot parse.

    OpenSSH skips a malformed line (bad base64, an unknown key type, an ``@cert-authority``
    marker) and goes on; paramiko's ``HostKeys.load`` raises on the first one, which would make
    one bad line about some other host break every connection.  So each line is parsed on its
    own with paramiko's parser, and the bad ones are left out.
    """
    try:
        data = file.read_bytes()
    except OSError as e:
        raise HostKeyError(f"cannot read known_hosts file {file}: {e.strerror or e}") from None
    for lineno, raw in enumerate(data.splitlines(), 1):
        line = raw.decode("utf-8", errors="replace").strip()
        if not line or line.startswith("#") or line.startswith("@"):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, lineno)
        except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError, TypeError):
            entry = None
        if entry is None or entry.key is None:
            continue
        for name in entry.hostnames:
            keys.add(name, entry.key.get_name(), entry.key)


class _Policy(paramiko.MissingHostKeyPolicy):
    """paramiko calls this only for a host with no recorded key of the offered type."""

    def __init__(self, verifier: HostKeyVerifier) -> None:
        self.verifier = verifier

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if self.verifier.trust == "tofu":
            record_host_key(hostname, key, self.verifier.record_file)
            client.get_host_keys().add(hostname, key.get_name(), key)
            return
        raise UnknownHostKey(self.verifier.unknown_message(hostname, key))
