"""Slurm from a login host: the cluster's commands run over SSH (``[clusters.NAME] login = …``).

The same steps as :mod:`.slurm` — ``salloc``, ``srun`` with the protocol on its stdin and stdout,
``scancel`` — run on the login host through one of the shared SSH connections of
:mod:`.ssh` (a channel per command and per agent).  The agent bundle is uploaded once per
version into ``shared_dir`` on the login host (the upload cache of the SSH backend, which the
compute nodes must share), and a data file for a map is staged there once per content.
"""
from __future__ import annotations

import shlex
import subprocess
import threading
from typing import Any

import paramiko

from ..vm.transport import BackendError
from . import ssh, upload
from .channel import MAX_PACKET, WINDOW, ChannelStream
from .config import ClusterConfig, ConfigError, resolve_host
from .slurm import _COMMAND_TIMEOUT, _StepControls, _slurm_said

__all__ = ["SSHCommands", "SSHSlurmStep"]

def _sh(command: str) -> str:
    """One line any login shell (bash, zsh, fish, tcsh) hands to sh unchanged."""
    return "exec sh -c " + shlex.quote(command)


class _ChannelProcess:
    """The part of ``subprocess.Popen`` that :class:`slurm._Allocation` uses, over a channel."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self.chan = chan
        self.stderr = chan.makefile_stderr("rb")

    def poll(self) -> int | None:
        return self.chan.exit_status if self.chan.exit_status_ready() else None

    def wait(self, timeout: float | None = None) -> int:
        if not self.chan.status_event.wait(timeout):
            raise subprocess.TimeoutExpired("salloc", timeout or 0)
        return self.chan.exit_status

    def kill(self) -> None:
        self.chan.close()


class SSHCommands:
    """Slurm's commands on a login host."""

    def __init__(self, cluster: ClusterConfig) -> None:
        self.cluster = cluster
        try:
            self.host = resolve_host(cluster.login, {"cache_dir": cluster.shared_dir})
        except ConfigError as e:
            raise BackendError(f"slurm: login host of cluster {cluster.name!r}: {e}") from None
        self.where = self.host.address
        self._link: Any = None
        self._lock = threading.Lock()
        self._installed: dict[str, str] = {}  # bundle version → its directory on the login host

    def _leased(self) -> Any:
        with self._lock:
            link = self._link
            if link is not None and link.alive():
                return link
            if link is not None:
                ssh.release_link(self.host, link)
            self._link = ssh.lease_link(self.host)
            return self._link

    def link_lost(self) -> bool:
        """Whether the connection the commands and steps ran on has died."""
        link = self._link
        return link is not None and not link.alive()

    def close(self) -> None:
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            ssh.release_link(self.host, link)

    def _command(self, argv: list[str]) -> str:
        words = " ".join(shlex.quote(a) for a in argv)
        if self.cluster.slurm_conf:
            conf = ssh._home_relative(self.cluster.slurm_conf)
            return f"SLURM_CONF={conf} exec {words}"
        return f"exec {words}"

    def run(self, argv: list[str], timeout: float = _COMMAND_TIMEOUT) -> tuple[int, str, str]:
        link = self._leased()
        try:
            status, out, err = upload.run(link.client, self._command(argv), timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as e:
            return 255, "", f"ssh: {self.where}: {e or type(e).__name__}"
        if status == 127 and b"not found" in err:
            raise BackendError(f"slurm: {argv[0]} is not installed on the login host {self.where} "
                               f"(is Slurm's bin directory on its PATH for non-interactive "
                               f"logins?)")
        return status, out.decode(errors="replace"), err.decode(errors="replace")

    def _exec(self, argv: list[str], **kwargs: Any) -> paramiko.Channel:
        link = self._leased()
        chan = link.open_channel(self.host, **kwargs)
        try:
            chan.exec_command(_sh(self._command(argv)))
        except (paramiko.SSHException, EOFError, OSError) as e:
            chan.close()
            raise BackendError(f"slurm: {self.where}: cannot run {argv[0]}: "
                               f"{e or type(e).__name__}") from None
        return chan

    def popen(self, argv: list[str], **_ignored: Any) -> _ChannelProcess:
        return _ChannelProcess(self._exec(argv))

    def start_step(self, job: str, argv: list[str]) -> "SSHSlurmStep":
        chan = self._exec(argv, window_size=WINDOW, max_packet_size=MAX_PACKET)
        return SSHSlurmStep(self, job, chan)

    def install_bundle(self, profile=None) -> str:  # noqa: ANN001
        """This version of the agent bundle (with ``profile``'s modules) in ``shared_dir`` on the
        login host (uploaded once)."""
        bundle = upload.agent_bundle(profile)
        known = self._installed.get(bundle.version)
        if known is not None:  # a restart: the bundle is where this VM's first start put it
            return known
        shared = ssh._home_relative(self.cluster.shared_dir)
        status, out, err = self.run(["sh", "-c", f'd={shared}; mkdir -p "$d" && cd "$d" && pwd -P && '
                                                 f'if [ -f agent-{bundle.version}/.complete ]; '
                                                 f'then echo have; else echo missing; fi'])
        lines = out.split()
        if status != 0 or len(lines) != 2:
            raise BackendError(f"slurm: cannot use shared_dir {self.cluster.shared_dir!r} on "
                               f"{self.where}: {_slurm_said(err)}")
        absolute, state = lines
        if state == "missing":
            self._leased().upload_once(self.host, absolute, bundle, "auto")
        final = self._installed[bundle.version] = upload.remote_bundle_dir(absolute, bundle)
        return final

    def stage_file(self, local_path: str) -> str:
        """A map's data file, staged once per content into ``shared_dir/data`` on the login host."""
        return ssh.stage_on_host(self.host, local_path)


class SSHSlurmStep(_StepControls, ChannelStream):
    """The byte stream to an agent whose srun runs on a login host (``transport.AgentProcess``)."""

    def __init__(self, cmds: SSHCommands, job: str, chan: paramiko.Channel) -> None:
        self._init_step(cmds, job, cmds.where)
        self._init_channel(chan, cmds.where)
        self._reader = threading.Thread(target=self._take_stderr, args=(self._chunks(),),
                                        name=f"srun-stderr-{job}", daemon=True)
        self._reader.start()

    def _chunks(self):
        while True:
            try:
                data = self._chan.recv_stderr(65536)
            except (OSError, EOFError):
                return
            if not data:
                return
            yield data

    def _srun_status(self) -> int | None:
        chan = self._chan
        if chan.exit_status_ready():
            return chan.exit_status
        if chan.closed or self._eof:
            chan.status_event.wait(1.0)  # the exit status follows the end of the stream
            if chan.exit_status_ready():
                return chan.exit_status
            return -1 if chan.closed else None
        return None

    def exit_reason(self) -> str | None:
        if not self._killed and self._cmds.link_lost():
            return "connection lost"
        if not self._killed and self._srun_status() == -1:
            return "connection lost"  # closed without a status: srun's fate is unknown
        return super().exit_reason()

    def _end_srun(self) -> None:
        self._wake()
        try:
            self._chan.close()
        except Exception:
            pass

    def close(self) -> None:
        if self._closed:
            return
        if self._srun_status() is None:
            self.kill()
        self._reader.join(2.0)
        self._close_channel()
