"""bioxen's record of the XCP-ng VMs it created (``<state dir>/xcpng-vms.json``), and of the
XAPI sessions it holds open (by uuid: a later bioxen logs out those of a killed process).

Why a local record when every VM is also tagged on the pool: the tag tells *that* a VM is
bioxen's, the record tells *whose* — which process on which machine created it — so
``bioxen vm gc`` can tell a VM in use by a running shell from one left behind by a crash.

Each entry names its owner as ``host``, ``boot_id`` and ``pid`` plus the process start time
(``/proc/<pid>/stat`` field 22): a reused pid or a reboot never makes a dead owner look alive.
The owner also names the local *user* and this *installation* (a random id kept in the state
directory, ``installation-id``): a pool is shared, and ``bioxen vm gc`` may only ever destroy
what this user's bioxen, with this state directory, created.

Crash safety: every change is read-modify-write under an exclusive ``flock`` on a side lock
file, written to a temporary file in the same directory, fsync'ed and renamed over the old one
(then the directory is fsync'ed), so a crash leaves either the old or the new file, never a
torn one.  An unreadable file is never overwritten: the error names it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import re
import socket
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .. import paths

__all__ = ["Owner", "VMRecord", "SessionRecord", "Registry", "RegistryError", "current_owner",
           "registry_path", "installation_id"]

FILE_NAME = "xcpng-vms.json"
INSTALLATION_FILE = "installation-id"
FORMAT = 1


class RegistryError(Exception):
    """The record file cannot be read or written (the message names the file)."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """Process start time in clock ticks since boot, or "" when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 else ""


def installation_id() -> str:
    """This installation's id (created on first use; it never changes afterwards).

    Stored in the state directory beside the record, so a damaged or moved-aside record does
    not change it.  Several processes may race to create it: the first link wins.
    """
    path = paths.state_dir() / INSTALLATION_FILE
    try:
        return _read_installation_id(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".installation-id.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(uuid.uuid4().hex + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # atomic, and never replaces an id another process wrote
    finally:
        os.unlink(tmp)
    return _read_installation_id(path)


def _read_installation_id(path: Path) -> str:
    text = path.read_text().strip()
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise RegistryError(f"{path} is damaged (expected 32 hex digits); bioxen will not "
                            f"replace it, since the VMs it created carry that id. Restore it, "
                            f"or delete it to become a new installation (gc then leaves the "
                            f"old VMs alone)")
    return text


def _user() -> str:
    """The local account (by uid: $USER/$LOGNAME can say anything)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


@dataclass(frozen=True)
class Owner:
    """The bioxen process that created a VM, and the user and installation it ran as."""

    host: str
    boot_id: str
    pid: int
    start_time: str
    user: str = ""           # "" in records written before owners named them
    installation: str = ""

    def token(self) -> str:
        """A compact form for the VM's ``other_config``:
        ``user@installation/host:pid:start_time``."""
        return f"{self.user}@{self.installation}/{self.host}:{self.pid}:{self.start_time}"

    @classmethod
    def from_token(cls, token: str) -> "Owner | None":
        """Parse :meth:`token`; also the older ``host:pid:start_time`` (no user or
        installation: never counted as ours)."""
        ident, _, process = token.rpartition("/")
        user, _, installation = ident.partition("@")
        try:
            host, pid, start = process.rsplit(":", 2)
            return cls(host, "", int(pid), start, user, installation)
        except ValueError:
            return None

    def is_ours(self) -> bool:
        """Created by this user's bioxen with this installation (state directory)."""
        return bool(self.installation) and self.user == _user() \
            and self.installation == installation_id()

    def is_local(self) -> bool:
        return self.host == socket.gethostname()

    def is_alive(self) -> bool:
        """True if this exact process still runs on this machine (pid reuse and reboots
        excluded).  An owner on another machine is never "alive" from here: check there."""
        if not self.is_local():
            return False
        if self.boot_id and self.boot_id != _boot_id():
            return False
        current = _start_time(self.pid)
        if current:
            return current == self.start_time
        try:  # no /proc: fall back to "some process has this pid"
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def current_owner() -> Owner:
    pid = os.getpid()
    return Owner(socket.gethostname(), _boot_id(), pid, _start_time(pid), _user(),
                 installation_id())


class _JsonRecord:
    """A record dataclass with an ``owner``, as kept in the file."""

    def to_json(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, data: dict) -> Any:
        data = dict(data)
        data["owner"] = Owner(**data["owner"])
        return cls(**data)


@dataclass
class VMRecord(_JsonRecord):
    """One VM bioxen created on a pool."""

    uuid: str
    pool: str          # pool name from the config ("lab"), or the URL for inline pools
    url: str           # where it was created (for messages; gc reconnects via the pool config)
    name: str          # the bioxen VM name
    name_label: str    # the VM's name on the pool
    owner: Owner
    created: float = field(default_factory=time.time)
    # For pools given inline (vm.create{pool={…}}): the settings, so gc can reconnect.  Only
    # references to secrets (password_file/command/env) can be in them, never a password.
    settings: dict | None = None
    # Written *before* VM.clone (uuid = "pending-…"), replaced by the real record right after:
    # a crash between the clone and the tag still leaves a trace gc can follow (by name_label).
    pending: bool = False



def registry_path() -> Path:
    return paths.state_dir() / FILE_NAME


@dataclass
class SessionRecord(_JsonRecord):
    """An XAPI session a bioxen process holds, so a later bioxen can log it out when that
    process was killed (XAPI keeps an idle session for 24 h).  Only the session's uuid is
    kept: it is no credential (a ref is, and is never written)."""

    uuid: str
    url: str           # the pool (coordinator) URL it was opened on
    owner: Owner
    created: float = field(default_factory=time.time)



@dataclass
class _Contents:
    vms: dict[str, VMRecord]
    sessions: dict[str, SessionRecord]


class Registry:
    """The record file; every method is safe across threads and processes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or registry_path()

    # -- public operations ---------------------------------------------------------------
    def add(self, record: VMRecord) -> None:
        self._put("vms", record)

    def replace(self, old_uuid: str, record: VMRecord) -> None:
        """Swap one record for another in a single write (pending → real)."""
        with self._locked() as contents:
            contents.vms.pop(old_uuid, None)
            contents.vms[record.uuid] = record

    def remove(self, uuid: str) -> None:
        self._drop("vms", uuid)

    def all(self) -> list[VMRecord]:
        return self._list("vms")

    def get(self, uuid: str) -> VMRecord | None:
        with self._locked(write=False) as contents:
            return contents.vms.get(uuid)

    def add_session(self, record: SessionRecord) -> None:
        self._put("sessions", record)

    def remove_session(self, uuid: str) -> None:
        self._drop("sessions", uuid)

    def sessions(self) -> list[SessionRecord]:
        return self._list("sessions")

    def _put(self, table: str, record: VMRecord | SessionRecord) -> None:
        with self._locked() as contents:
            getattr(contents, table)[record.uuid] = record

    def _drop(self, table: str, uuid: str) -> None:
        with self._locked() as contents:
            getattr(contents, table).pop(uuid, None)

    def _list(self, table: str) -> list:
        with self._locked(write=False) as contents:
            return sorted(getattr(contents, table).values(), key=lambda r: r.created)

    # -- file handling ------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, write: bool = True) -> Iterator[_Contents]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            try:
                contents = self._read()
                yield contents
                if write:
                    self._write(contents)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> _Contents:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return _Contents({}, {})
        except OSError as e:
            raise RegistryError(f"cannot read {self.path}: {e.strerror}") from None
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}, expected {FORMAT}")
            return _Contents(
                {r["uuid"]: VMRecord.from_json(r) for r in data["vms"]},
                {r["uuid"]: SessionRecord.from_json(r) for r in data.get("sessions", [])})
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise RegistryError(
                f"{self.path} is damaged ({e}); bioxen will not overwrite it. Move it aside "
                f"to start a new record (the VMs stay findable by their 'bioxen' tag)."
            ) from None

    def _write(self, contents: _Contents) -> None:
        data = {"format": FORMAT, "vms": [r.to_json() for r in contents.vms.values()],
                "sessions": [r.to_json() for r in contents.sessions.values()]}
        fd, tmp = tempfile.mkstemp(prefix=".xcpng-vms.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
