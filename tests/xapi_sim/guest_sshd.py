"""Simulated guests with their own OpenSSH server.

Each booted VM gets a stock ``sshd`` on its own loopback address (127.0.0.10, .11, …; the
same port for all, as real guests all listen on 22), configured from what bioxen put into the
VM's xenstore — exactly the template convention of docs/xcpng.md:

* ``vm-data/bioxen/ssh_host_ed25519_key`` becomes the server's host key (a guest that
  ignores it — ``honour_host_key = False`` — generates its own, as a template without the
  convention would);
* ``vm-data/bioxen/authorized_keys`` becomes its only authorized key.

The guest metrics then report that address.  Halting the VM stops its sshd.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

from tests.remote.sshd_fixture import _CONFIG, _find_sshd, write_keypair

from .simulator import XapiSimulator

HOST_KEY_KEY = "vm-data/bioxen/ssh_host_ed25519_key"
AUTHORIZED_KEYS_KEY = "vm-data/bioxen/authorized_keys"


def _port_free_everywhere() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            for last in (10, 40, 70):
                with socket.socket() as probe:
                    probe.bind((f"127.0.0.{last}", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on the guests' loopback addresses")


class GuestSSHDs:
    """The sshd of every running simulated guest of one simulator."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.sshd = _find_sshd()
        self.port = _port_free_everywhere()
        self.honour_host_key = True
        self._procs: dict[str, subprocess.Popen] = {}
        self._next = 10
        self._lock = threading.Lock()

    def install(self, sim: XapiSimulator) -> "GuestSSHDs":
        sim.guest.on_boot.append(self.boot)
        sim.guest.on_halt.append(self.halt)
        return self

    def seed(self, sim: XapiSimulator, vm: str) -> tuple[str | None, str]:
        """What the guest was given: its host key (or None) and its authorized_keys lines.
        This guest reads the template convention (xenstore); config_drive.py's reads a drive."""
        data = sim.db.row("VM", vm)["xenstore_data"]
        return data.get(HOST_KEY_KEY), data.get(AUTHORIZED_KEYS_KEY, "")

    def boot(self, sim: XapiSimulator, vm: str) -> str:
        record = sim.db.row("VM", vm)
        given_host_key, authorized = self.seed(sim, vm)
        with self._lock:
            ip = f"127.0.0.{self._next}"
            self._next = 10 + (self._next - 9) % 200
        d = self.directory / f"{record['uuid']}-{ip}"
        d.mkdir(parents=True, exist_ok=True)
        # The host key lives on the guest's "disk", which outlasts a boot: the guest installs
        # the key it was given when there is one (bioxen removes it from xenstore once the
        # guest took it) and otherwise keeps the key it has.
        on_disk = self.directory / record["uuid"] / "host_ed25519"
        on_disk.parent.mkdir(parents=True, exist_ok=True)
        if self.honour_host_key and given_host_key:
            on_disk.write_text(given_host_key)
        elif not on_disk.exists():
            write_keypair(on_disk, "guest-own-key")
        host_key = d / "host_ed25519"
        host_key.write_bytes(on_disk.read_bytes())
        host_key.chmod(0o600)
        (d / "authorized_keys").write_text(authorized + "\n")
        config = _CONFIG.format(port=self.port, dir=d,
                                subsystem="Subsystem sftp internal-sftp")
        config = config.replace(f"ListenAddress 127.0.0.1:{self.port}",
                                f"ListenAddress {ip}:{self.port}")
        (d / "sshd_config").write_text(config)
        proc = subprocess.Popen([self.sshd, "-D", "-E", str(d / "sshd.log"), "-f",
                                 str(d / "sshd_config")], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        with self._lock:
            old = self._procs.pop(vm, None)
            self._procs[vm] = proc
        if old is not None:
            self._kill(old)
        return ip

    def halt(self, sim: XapiSimulator, vm: str) -> None:
        with self._lock:
            proc = self._procs.pop(vm, None)
        if proc is not None:
            self._kill(proc)

    def running(self) -> int:
        with self._lock:
            return sum(1 for p in self._procs.values() if p.poll() is None)

    @staticmethod
    def _descendants(pid: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    @classmethod
    def _kill(cls, proc: subprocess.Popen) -> None:
        """Power the guest off: everything that runs "in" it (sshd, its sessions, the agent)
        dies at once, as in a real guest."""
        for pid in cls._descendants(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def stop_all(self) -> None:
        with self._lock:
            procs, self._procs = list(self._procs.values()), {}
        for proc in procs:
            self._kill(proc)
