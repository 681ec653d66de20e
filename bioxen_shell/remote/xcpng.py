"""XCP-ng VMs: ``vm.create{type="xcpng", pool=…, template=…, memory=…, vcpus=…, network=…}``.

:class:`XCPngBackend` creates a guest on an XCP-ng pool through the XenAPI SDK, waits for its
IP address, and then runs the agent there exactly as an SSH host does, by delegating to
:class:`bioxen_shell.remote.ssh.SSHBackend`.  The provisioning steps follow ``xe vm-install``:

1. log in (``bioxen`` originator; TLS and pool redirects in :mod:`.xapi`);
2. find the template by name or uuid (an error if missing or ambiguous);
3. ``VM.clone`` under a per-create label (``bioxen-<name> (creating <token>)``, so that a
   clone whose reply was lost is found, not made twice); record it locally
   (:mod:`.registry`: a pending record before the clone, the uuid right after), tag it
   ``bioxen``, stamp ``other_config`` (``bioxen-owner``, ``bioxen-name``,
   ``bioxen-created``) so bioxen's VMs can always be found, and name it ``bioxen-<name>``;
4. point the template's disk spec at the chosen SR, ``VM.provision``;
5. memory (``VM.set_memory_limits``, one call, so the order constraint always holds) and
   vCPUs (``VCPUs_max`` first when growing, ``VCPUs_at_startup`` first when shrinking);
6. ``VIF.create`` on the chosen network;
7. give the guest its keys: with ``inject = "xenstore"`` as xenstore
   ``vm-data/bioxen/authorized_keys`` (the template convention in docs/xcpng.md); with
   ``inject = "cloud-init"`` on a NoCloud config drive (:mod:`.cloudinit`, stock cloud images);
8. ``Async.VM.start`` and wait for the task on ``event.from``;
9. wait for the guest's IP in ``VM_guest_metrics.networks``, watching only this VM's own
   objects (an error after ``ip_timeout`` says the guest tools may be missing);
10. connect over SSH (retrying while sshd comes up) and start the agent.

Any failure rolls back: the new VM, its disks and VIFs are destroyed and the record removed.
``stop()`` shuts the guest down cleanly, falling back to a hard shutdown; ``destroy()``
removes the VM, its own disks and its snapshots, never a disk another VM uses.

Threading: ``count=N`` runs N backends in parallel (the manager does that).  Each operation
opens its own XAPI session (the SDK's session object is not thread-safe) and logs out; one
backend's methods are serialised by a lock.  The password is fetched once per pool and
process and kept only in memory.
"""
from __future__ import annotations

import logging
import re
import threading
import time
import uuid as uuidlib
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .. import schema
from ..vm import profiles
from ..vm.transport import AgentProcess, BackendError
from . import config
from . import registry as registry_mod
from .xapi import (
    NULL_REF, InsecureTLSWarning, TLSSettings, XapiConnectionError, XapiError, XapiSession, XapiTimeout,
)

log = logging.getLogger(__name__)

__all__ = ["XCPngBackend", "PoolSettings", "destroy_vm", "find_bioxen_vms", "TAG",
           "OWNER_KEY", "AUTHORIZED_KEYS_KEY", "load_pool"]

TAG = "bioxen"
OWNER_KEY = "bioxen-owner"
NAME_KEY = "bioxen-name"
CREATED_KEY = "bioxen-created"
AUTHORIZED_KEYS_KEY = "vm-data/bioxen/authorized_keys"
SSH_USER_KEY = "vm-data/bioxen/user"
HOST_KEY_KEY = "vm-data/bioxen/ssh_host_ed25519_key"
NAME_PREFIX = "bioxen-"
MIN_MEMORY = 128 * 1024 * 1024
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

#: The pool settings a vm.create may override for its VM (checked as the config checks them).
_POOL_OVERRIDES = ("template", "network", "sr", "ssh_user", "ssh_key", "ssh_port", "ip_timeout",
                   "start_timeout", "shutdown_timeout", "host_keys", "inject")


def _memory(value: Any) -> int:
    size = profiles.size(value)
    if size < MIN_MEMORY:
        raise ValueError("expected at least 128MiB (a size like '2GiB' or '512MiB')")
    return size


#: vm.create options the XCP-ng backend itself consumes (the one schema); anything else goes to
#: SSHBackend, which checks it.
_OWN_OPTIONS: dict[str, Callable[[Any], Any]] = {
    **{k: config.POOL_KEYS[k] for k in _POOL_OVERRIDES},
    "memory": _memory, "vcpus": schema.integer(1, 64),
}


@dataclass(frozen=True)
class PoolSettings:
    """One pool's settings, validated, as the backend uses them; ``where`` names their source in
    messages.  Made from a :class:`config.PoolConfig` (:meth:`from_config`), which has the
    defaults."""

    name: str
    url: str
    user: str
    where: str
    password: dict[str, str]  # the password source keys only
    tls: TLSSettings
    allow_http: bool
    template: str | None
    network: str | None
    sr: str | None
    ssh_user: str
    ssh_key: str
    ssh_port: int
    ip_timeout: float
    start_timeout: float
    shutdown_timeout: float
    known_hosts: str | None
    host_keys: str  # how the guest's SSH host key becomes trusted (docs/xcpng.md)
    inject: str     # how the keys reach the guest: a config drive or xenstore_data

    @classmethod
    def from_mapping(cls, name: str, data: Any, where: str, prefix: str = "") -> "PoolSettings":
        """Settings from a table of pool keys (an inline ``pool = {…}``, a VM's record), checked
        by the config's one schema; ``where`` and ``prefix`` name the table in errors."""
        try:
            values = config.pool_values(data, where, prefix)
        except config.ConfigError as e:
            raise config.backend_error("xcpng", e) from None
        return cls.from_config(config.PoolConfig(name=name, source=where, **values))

    @classmethod
    def from_config(cls, pool: config.PoolConfig) -> "PoolSettings":
        """Settings from a checked pool (the config's :class:`PoolConfig`, which has the defaults)."""
        tls = TLSSettings(verify=pool.verify_tls, ca_bundle=pool.ca_bundle, fingerprint=pool.fingerprint)
        return cls(name=pool.name, url=pool.url, user=pool.user, where=pool.source,
                   password={k: v for k, v in pool.password_table().items() if v is not None},
                   tls=tls, allow_http=pool.allow_http,
                   **{k: getattr(pool, k) for k in (*_POOL_OVERRIDES, "known_hosts")})


def load_pool(pool: Any) -> PoolSettings:
    """``pool="lab"`` → the config file's ``[pools.lab]``; a table → inline settings."""
    if isinstance(pool, dict):
        return PoolSettings.from_mapping(str(pool.get("url", "inline")), pool, schema.VM_CREATE, "pool")
    if not isinstance(pool, str) or not pool:
        raise BackendError("xcpng: vm.create needs pool=<name of a [pools.NAME] section in the "
                           "config file> (or a table of pool settings)")
    try:
        cfg = config.load_config()
    except config.ConfigError as e:  # its errors name file, line and key already
        raise config.backend_error("xcpng", e) from None
    if pool not in cfg.pools:
        known = ", ".join(sorted(cfg.pools)) or "none"
        raise BackendError(f"xcpng: pool {pool!r} is not in {cfg.path} "
                           f"(pools defined: {known}); add a [pools.{pool}] section")
    return PoolSettings.from_config(cfg.pools[pool])


# ------------------------------------------------------------------------------ passwords
_passwords: dict[tuple, Any] = {}
_password_lock = threading.Lock()


def pool_password(settings: PoolSettings) -> Any:
    """The pool's password as a secret object (``.reveal()``), fetched once per process.

    Sources (``credentials`` module): password_file (refused if group/world readable),
    password_command, password_env, else an interactive prompt.
    """
    key = (settings.url, settings.user, tuple(sorted(settings.password.items())))
    with _password_lock:  # count=N: one prompt, not N
        if key not in _passwords:
            from . import credentials
            label = f"XCP-ng pool {settings.name} ({settings.user}@{_host(settings.url)})"
            try:
                _passwords[key] = credentials.resolve_password(settings.password, label,
                                                               prompt=True)
            except (credentials.CredentialError, OSError, EOFError) as e:
                # its messages name the source (file, command, variable), never the secret
                raise BackendError(f"xcpng: {settings.where}: {e}") from None
        return _passwords[key]


def forget_passwords() -> None:
    """Drop cached passwords (after a login failure, and in tests)."""
    with _password_lock:
        _passwords.clear()


def _host(url: str) -> str:
    return re.sub(r"^https?://", "", url).split("/")[0]


# ------------------------------------------------------------------------------ sessions
_http_warned: set[str] = set()
_http_lock = threading.Lock()


class InsecureHTTPWarning(InsecureTLSWarning):
    """A pool reached over plain http (``allow_http = true``): the password is sent in clear."""


def pool_session(settings: PoolSettings) -> "PoolSession":
    """A (not yet logged-in) session on the pool: how the backend and ``vm gc`` open one."""
    if settings.url.lower().startswith("http://"):
        _warn_http(settings)
    return PoolSession(settings, pool_password(settings))


def _warn_http(settings: PoolSettings) -> None:
    """Once per pool and process: the user opted in to http (allow_http), say what it costs."""
    with _http_lock:
        if settings.url in _http_warned:
            return
        _http_warned.add(settings.url)
    message = (f"pool {settings.name!r} ({_host(settings.url)}) is reached over http://: the "
               f"password crosses the network in clear (allow_http = true in {settings.where})")
    warnings.warn(message, InsecureHTTPWarning, stacklevel=3)
    log.warning("%s", message)


class PoolSession(XapiSession):
    """An :class:`XapiSession` that bioxen's record knows about while it is open.

    XAPI keeps a session that is never logged out for 24 h (and caps them per user).  A killed
    bioxen cannot log out, so each session is recorded (its uuid, which is no credential) at
    login and forgotten at logout; the next login on the pool logs out the sessions whose
    process is gone.
    """

    def __init__(self, settings: PoolSettings, password: Any) -> None:
        super().__init__(settings.url, settings.user, password, tls=settings.tls,
                         label=f"pool {settings.name!r}")
        self._pool_url = settings.url
        self._recorded: str | None = None
        self._registry = registry_mod.Registry()

    def login(self) -> None:
        super().login()
        try:
            uuid = self.call("session.get_uuid", self.ref)
            self._registry.add_session(registry_mod.SessionRecord(
                uuid=uuid, url=self._pool_url, owner=registry_mod.current_owner()))
            self._recorded = uuid
            self._log_out_abandoned()
        except (XapiError, registry_mod.RegistryError) as e:
            # bookkeeping only: the session works, it just could not be recorded
            log.info("%s: cannot record the session for cleanup after a crash: %s",
                     self.label, e)

    def logout(self) -> None:
        recorded, self._recorded = self._recorded, None
        super().logout()
        if recorded:
            try:
                self._registry.remove_session(recorded)
            except registry_mod.RegistryError as e:
                log.info("%s: %s", self.label, e)

    def _log_out_abandoned(self) -> None:
        for record in self._registry.sessions():
            owner = record.owner
            if (record.url != self._pool_url or not owner.is_ours() or not owner.is_local()
                    or owner.is_alive()):
                continue
            try:
                self.log_out_other(self.call("session.get_by_uuid", record.uuid))
                log.info("%s: logged out a session left open by bioxen process %d, which is "
                         "gone", self.label, owner.pid)
            except XapiError as e:
                if e.code not in ("UUID_INVALID", "HANDLE_INVALID", "SESSION_INVALID"):
                    log.info("%s: cannot log out the session of bioxen process %d: %s",
                             self.label, owner.pid, e)
                    continue  # (no permission?) try again at the next start
            self._registry.remove_session(record.uuid)


# ------------------------------------------------------------------------------ destroy
def destroy_vm(session: XapiSession, vm: str) -> list[str]:
    """Remove ``vm``, its snapshots and its own disks; return the disks that were kept.

    A disk is the VM's own when every VBD of its VDI belongs to the VM or one of its
    snapshots.  The disks are collected before ``VM.destroy`` (which removes the VBDs but
    keeps the VDIs).  Raises ``XapiError`` only for failures other than "already gone"; then
    :meth:`VMRemoval.left` says what stayed on the pool.
    """
    return VMRemoval(session, vm).run()


class VMRemoval:
    """Destroying one VM (see :func:`destroy_vm`), remembering what it meant to remove, so
    that after a failure :meth:`left` can ask the pool what really stayed."""

    def __init__(self, session: XapiSession, vm: str | None,
                 strays: list[str] | tuple = ()) -> None:
        """``vm`` None: it is gone already; ``strays``: disks an earlier attempt left."""
        self.session, self.vm = session, vm
        self.family: list[str] = [vm] if vm else []
        self.own: list[str] = list(strays)
        self.disks_left: list[str] = []  # after left(): the own disks still on the pool

    def run(self) -> list[str]:
        session, vm = self.session, self.vm
        if vm is None:
            for vdi in self.own:
                _ignore_gone(session.call, "VDI.destroy", vdi)
            return []
        record = session.call("VM.get_record", vm)
        self.family = [vm, *record.get("snapshots", [])]
        kept: list[str] = []
        for member in self.family:
            for vbd in session.call("VM.get_VBDs", member):
                b = session.call("VBD.get_record", vbd)
                vdi = b["VDI"]
                if b["type"] != "Disk" or vdi == NULL_REF or vdi in self.own:
                    continue
                users = {session.call("VBD.get_VM", v) for v in session.call("VDI.get_VBDs", vdi)}
                if users <= set(self.family):
                    self.own.append(vdi)
                else:
                    kept.append(session.call("VDI.get_name_label", vdi) or vdi)
        if record["power_state"] in ("Running", "Paused", "Suspended"):
            try:
                session.call("VM.hard_shutdown", vm)
            except XapiError as e:
                if not _already_halted(e):
                    raise
        for snapshot in self.family[1:]:
            _ignore_gone(session.call, "VM.destroy", snapshot)
        _ignore_gone(session.call, "VM.destroy", vm)
        for vdi in self.own:
            _ignore_gone(session.call, "VDI.destroy", vdi)
        return kept

    def left(self) -> str:
        """What of this VM the pool still holds, asked after a failed :meth:`run`, e.g.
        "VM 1234… (bioxen-w1; Running, 1 of its disk(s)) is still on the pool"."""
        def alive(cls: str, ref: str) -> dict | None:
            try:
                return self.session.call(f"{cls}.get_record", ref)
            except XapiError as e:
                if e.code == "HANDLE_INVALID":
                    return None
                raise

        try:
            vm = alive("VM", self.vm) if self.vm else None
            disks = {v: d for v in self.own if (d := alive("VDI", v)) is not None}
            snapshots = [r for r in (alive("VM", v) for v in self.family[1:]) if r is not None]
        except (XapiError, XapiConnectionError) as e:
            self.disks_left = list(self.own)
            return f"bioxen could not check what is left on the pool ({e})"
        self.disks_left = list(disks)
        if vm is not None:
            parts = [vm["power_state"]]
            if self.own:  # (unknown when the failure came before they were collected)
                parts.append(f"{len(disks)} of its disk(s)")
            if snapshots:
                parts.append(f"{len(snapshots)} snapshot(s)")
            if TAG not in vm.get("tags", ()):
                parts.append("not tagged 'bioxen'")
            return f"VM {vm['uuid']} ({vm['name_label']}; {', '.join(parts)}) is still on the pool"
        if disks or snapshots:
            items = [f"disk {d['uuid']} ({d['name_label']})" for d in disks.values()] + \
                [f"snapshot {r['uuid']} ({r['name_label']})" for r in snapshots]
            return (f"the VM is gone, but {', '.join(items)} stayed on the pool (remove "
                    f"with `xe vdi-destroy uuid=…` / `xe snapshot-uninstall uuid=…`)")
        return "nothing is left on the pool"


def _ignore_gone(call: Callable[..., Any], method: str, ref: str) -> None:
    try:
        call(method, ref)
    except XapiError as e:
        if e.code not in ("HANDLE_INVALID", "UUID_INVALID"):
            raise


# Clean-shutdown failures that mean "the guest will not do it", so it is forced off:
# the guest never acknowledged the request (no PV drivers listening, a frozen kernel), it
# acknowledged but did not halt in time, it lacks the feature (older XAPI, HVM without PV
# drivers), or our deadline cancelled the task.
CLEAN_SHUTDOWN_REFUSALS = ("VM_FAILED_SHUTDOWN_ACK", "VM_SHUTDOWN_TIMEOUT", "VM_LACKS_FEATURE",
                           "TASK_CANCELLED", "OPERATION_NOT_ALLOWED", "VM_BAD_POWER_STATE")


def _already_halted(e: XapiError) -> bool:
    return e.code == "VM_BAD_POWER_STATE" and e.param("actual") == "halted"


def find_bioxen_vms(session: XapiSession) -> dict[str, dict]:
    """``{ref: record}`` of every VM on the pool that bioxen created.

    A VM counts when it carries bioxen's tag or owner key.  A *template* counts only with the
    owner key (a clone is still a template until ``VM.provision``, so a crash in between
    leaves one; a user's own template merely tagged "bioxen" is never taken).  Snapshots go
    with their VM.
    """
    found = {}
    for ref, rec in session.call("VM.get_all_records").items():
        if rec.get("is_a_snapshot") or rec.get("is_default_template"):
            continue
        owned = OWNER_KEY in rec.get("other_config", {})
        if owned or (not rec.get("is_a_template") and TAG in rec.get("tags", [])):
            found[ref] = rec
    return found


# ------------------------------------------------------------------------------ backend
class _Step:
    """Names the provisioning step in progress, for error messages."""

    def __init__(self) -> None:
        self.name = "log in"

    def __call__(self, name: str) -> None:
        self.name = name
        log.debug("xcpng step: %s", name)


def _guest_host(target: str, options: dict[str, Any]) -> config.HostConfig:
    """A guest as an SSH host, its SSH options checked by the config's schema (never the
    config file's [hosts.*]: a guest is not one of them)."""
    try:
        return config.resolve_host(target, options, config=config.Config(path=Path("/nonexistent")))
    except config.ConfigError as e:
        raise config.backend_error("xcpng", e) from None


class XCPngBackend:
    """A bioxen VM on an XCP-ng pool.  See the module docstring for the steps."""

    kind = "xcpng"

    def __init__(self, name: str, options: dict[str, Any], profile: Any) -> None:
        self.name = name
        self.profile = profile
        options = dict(options)
        if "pool" not in options:
            raise BackendError("xcpng: vm.create{type=\"xcpng\"} needs pool=<pool name> "
                               "(a [pools.NAME] section of the config file)")
        self._pool_option = options.pop("pool")
        own = {k: options.pop(k) for k in list(options) if k in _OWN_OPTIONS}
        self._ssh_extra = options  # passed through to SSHBackend, which validates them
        try:
            self._own = config.check_settings(own, _OWN_OPTIONS, schema.VM_CREATE, "")
        except config.ConfigError as e:
            raise config.backend_error("xcpng", e) from None
        self.memory: int | None = self._own.get("memory")
        self.vcpus: int | None = self._own.get("vcpus")
        self._check_ssh_options()
        self._lock = threading.RLock()
        self._settings: PoolSettings | None = None
        self.vm_uuid: str | None = None
        self.ip: str | None = None
        self.power_state: str | None = None  # as the pool last confirmed it
        self._ssh: Any = None
        self._registry = registry_mod.Registry()
        if isinstance(self._pool_option, dict):
            self.settings()  # an inline pool table is checked before anything is made

    # ------------------------------------------------------------------ options
    def _check_ssh_options(self) -> None:
        """Reject a bad SSH option now, not after a VM was created for nothing."""
        extra = dict(self._ssh_extra)
        try:
            self._upload = config.upload_method(extra)
        except config.ConfigError as e:
            raise config.backend_error("xcpng", e) from None
        for key in ("hostname", "port", "user", "host"):
            if key in extra:
                raise BackendError(f"{schema.VM_CREATE}: {key}: not for XCP-ng VMs (the guest's "
                                   f"address comes from XAPI; use ssh_user / ssh_port)")
        _guest_host("check@127.0.0.1:22", extra)

    def settings(self) -> PoolSettings:
        """The pool settings with this VM's overrides applied (cached)."""
        if self._settings is None:
            base = load_pool(self._pool_option)
            overrides = {k: self._own[k] for k in _POOL_OVERRIDES if k in self._own}
            self._settings = replace(base, **overrides)
        return self._settings

    def _session(self) -> XapiSession:
        return pool_session(self.settings())

    def _open_session(self) -> XapiSession:
        """A logged-in session, with errors turned into BackendError."""
        session = self._session()
        try:
            session.login()
        except XapiError as e:
            if e.code.startswith("SESSION_AUTH"):
                forget_passwords()
            raise BackendError(f"xcpng: {e}") from None
        except XapiConnectionError as e:
            raise BackendError(f"xcpng: {e}") from None
        return session

    # ------------------------------------------------------------------ Backend API
    def start(self) -> AgentProcess:
        with self._lock:
            if self.vm_uuid is None:
                self._create()
            else:
                self._boot_existing()
            assert self.ip is not None
            try:
                proc = self._connect()
            except BackendError as e:
                if not self._created_now:
                    raise  # an existing VM stays; :restart() can try again
                raise self._failure(f"{e}{self._rollback_after_failure()}") from None
            self._withdraw_host_key()
            return proc

    def _withdraw_host_key(self) -> None:
        """The guest presented the injected host key, so it has installed it: remove the
        private key from the VM's xenstore_data, where pool users with read access could read
        it and every later snapshot would copy it."""
        if not self._host_key_in_pool:
            return
        try:
            session = self._open_session()
        except BackendError as e:
            log.warning("xcpng: the private host key of VM %s stays in its xenstore_data until "
                        "its next start (%s)", self.name, e)
            return
        try:
            vm = self._vm_ref(session)
            if vm is not None:
                session.call("VM.remove_from_xenstore_data", vm, HOST_KEY_KEY)
            self._host_key_in_pool = False
        except (XapiError, XapiConnectionError) as e:
            log.warning("xcpng: the private host key of VM %s stays in its xenstore_data until "
                        "its next start: %s", self.name, e)
        finally:
            session.logout()

    def stop(self) -> None:
        with self._lock:
            self._close_ssh()
            if self.vm_uuid is None:
                return
            session = self._open_session()
            vm = None
            try:
                vm = self._vm_ref(session)
                if vm is not None:
                    self._shutdown(session, vm)
                else:
                    self.power_state = None
            except (XapiError, XapiConnectionError, XapiTimeout) as e:
                raise BackendError(f"xcpng: stopping VM {self.name!r} (uuid {self.vm_uuid}) "
                                   f"failed: {e}{self._pool_shows(session, vm)}") from None
            finally:
                session.logout()
            self.ip = None

    def _pool_shows(self, session: XapiSession, vm: str | None) -> str:
        """"; the pool shows it Running" (what a failed operation left), or "" if unknown."""
        self.power_state = None
        if vm is None:
            return ""
        try:
            self.power_state = session.call("VM.get_power_state", vm)
        except (XapiError, XapiConnectionError):
            return ""
        return f"; the pool shows it {self.power_state}"

    def destroy(self) -> None:
        with self._lock:
            self._close_ssh(destroy=True)
            if self.vm_uuid is None:
                return
            try:
                session = self._open_session()
            except BackendError as e:
                raise BackendError(f"{e}; VM {self.vm_uuid} was left on the pool (`bioxen vm "
                                   f"gc --yes` removes it once this bioxen has exited)") from None
            removal = None
            try:
                vm = self._vm_ref(session)
                removal = VMRemoval(session, vm, strays=self._stray_disks)
                kept = removal.run()
            except (XapiError, XapiConnectionError) as e:
                left = removal.left() if removal is not None else "it may still be on the pool"
                self._stray_disks = removal.disks_left if removal is not None else []
                raise BackendError(
                    f"xcpng: destroying VM {self.name!r} (uuid {self.vm_uuid}) failed: {e}; "
                    f"{left}; it stays in bioxen's record: :destroy() again, or `bioxen vm gc "
                    f"--yes` once this bioxen has exited") from None
            finally:
                session.logout()
            for disk in kept:
                log.info("xcpng: kept disk %r of VM %s: another VM uses it", disk, self.name)
            self._forget_vm()

    def _forget_host_key(self) -> None:
        """Drop the known_hosts entry filed under this VM's uuid (injected or first-use)."""
        if not self.vm_uuid:
            return
        from . import hostkeys
        try:
            hostkeys.forget_host(self._host_key_alias())
        except OSError as e:
            log.debug("xcpng: forgetting the host key of %s: %s", self.name, e)

    def lua_path(self) -> str:
        """The ``package.path`` the handle configures: the SSH side knows the guest's layout."""
        return self._ssh.lua_path() if self._ssh is not None else ""

    def stage_file(self, local_path: str) -> str:
        """Put a local file in the guest's data cache over its SSH connection (once per guest;
        see ``SSHBackend.stage_file``); return its path in the guest."""
        ssh = self._ssh
        if ssh is None:
            from .upload import StageError
            raise StageError(f"xcpng: cannot stage {local_path} on VM {self.name!r}: "
                             f"it is not running (start it first)")
        return ssh.stage_file(local_path)

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"type": self.kind, "host": self.ip}
        try:
            s = self.settings()
            facts.update(pool=s.name, url=s.url, template=s.template, network=s.network)
        except BackendError:
            facts.update(pool=self._pool_option if isinstance(self._pool_option, str) else None)
        facts.update(vm_uuid=self.vm_uuid, power_state=self.power_state, memory=self.memory,
                     vcpus=self.vcpus)
        return facts

    # ------------------------------------------------------------------ creation
    _created_now = False
    _host_key_in_pool = False  # the private host key is in the VM's xenstore_data
    _stray_disks: list[str] = []  # own disks a failed destroy() left: the next one removes them
    _pending: str | None = None  # the pending record's id between writing it and the clone

    def _create(self) -> None:
        s = self.settings()
        if not s.template:
            raise BackendError(f"xcpng: no template: pass template=… or set template in "
                               f"{s.where}")
        public_key = self._public_key(s)
        step = _Step()
        session = self._open_session()
        vm: str | None = None
        creating_label = ""
        try:
            step("find the template")
            template = self._find_template(session, s)
            label = f"{NAME_PREFIX}{self.name}"
            # The clone is made under a label no other VM can have (a per-create token), so
            # a clone whose reply was lost is found again instead of cloned twice; it takes
            # its real name once it is recorded and tagged.
            creating_label = f"{label} (creating {uuidlib.uuid4().hex[:12]})"
            owner = registry_mod.current_owner()
            record = registry_mod.VMRecord(
                uuid=f"pending-{uuidlib.uuid4()}", pool=s.name, url=s.url, name=self.name,
                name_label=creating_label, owner=owner, pending=True,
                settings=dict(self._pool_option) if isinstance(self._pool_option, dict) else None)
            self._registry.add(record)  # before the clone: a crash right after it is traceable
            self._pending = record.uuid
            copy_to = self._copy_target(session, template, s)
            step("copy the template" if copy_to else "clone the template")
            vm = self._clone(session, template, creating_label, copy_to, s)
            self.vm_uuid = session.call("VM.get_uuid", vm)
            self._registry.replace(record.uuid, replace(record, uuid=self.vm_uuid, pending=False,
                                                        name_label=label))
            self._pending = None
            step("tag the VM")
            self._tag(session, vm, owner)
            session.call("VM.set_name_label", vm, label)
            step("provision disks")
            self._provision(session, vm, s)
            step("set memory and vCPUs")
            self._set_resources(session, vm)
            step("attach the network")
            self._attach_network(session, vm, s)
            if s.inject == "cloud-init":
                step("attach the cloud-init config drive")
                self._attach_config_drive(session, vm, public_key, s)
            else:
                step("inject the SSH key")
                self._inject_key(session, vm, public_key, s)
            step("start the VM")
            start_vm(session, vm, timeout=s.start_timeout, what=f"VM {label} to start")
            step("wait for the guest's IP address")
            self.ip = self._wait_for_ip(session, vm, s)
            self.power_state = "Running"  # _wait_for_ip saw it so
            self._created_now = True
        except BaseException as e:
            message = self._describe_failure(e, step.name)
            if vm is not None:
                leftover = self._rollback(session, vm)
            else:
                leftover = self._settle_pending(session, creating_label, e)
            session.logout()
            if isinstance(e, Exception):
                raise self._failure(message + leftover) from None
            raise
        session.logout()

    def _clone(self, session: XapiSession, template: str, creating_label: str,
               copy_to: str | None, s: PoolSettings) -> str:
        """``VM.clone`` (or ``VM.copy`` onto ``copy_to``) under the per-create label; after
        a lost reply the VM is looked up by that label rather than made again."""
        def made() -> str | None:
            return self._adopt_by_label(session, creating_label)

        if copy_to:  # a full copy onto the chosen SR, as xe vm-install does
            return session.run_async("VM.copy", template, creating_label, copy_to,
                                     timeout=s.start_timeout, what=f"copying to {s.sr}",
                                     find=made)
        # a fast clone: disks share the template's (copy-on-write)
        return session.call_or_find("VM.clone", template, creating_label, find=made)

    def _adopt_by_label(self, session: XapiSession, creating_label: str) -> str | None:
        """The VM this create made, by its per-create label; more than one (a clone still
        running when it was asked for again) are all ours: keep one, destroy the others."""
        refs = sorted(session.call("VM.get_by_name_label", creating_label))
        for extra in refs[1:]:
            destroy_vm(session, extra)
        return refs[0] if refs else None

    def _settle_pending(self, session: XapiSession, creating_label: str,
                        e: BaseException) -> str:
        """The create failed before it knew its VM (the clone's reply was lost, say): ask
        the pool for the per-create label.  A VM found is ours and rolled back; none found
        drops the pending record; if the pool cannot say, the record stays for gc."""
        if self._pending is None:
            return ""
        if isinstance(e, Exception):  # (after Ctrl-C, a clone may still be running)
            try:
                vm = self._adopt_by_label(session, creating_label)
            except (XapiError, XapiConnectionError):
                pass
            else:
                if vm is not None:
                    return self._rollback(session, vm)
                self._registry.remove(self._pending)
                self._pending = None
                return ""
        return (f" (the pool may have made the VM anyway, named {creating_label!r}; the local "
                f"record is kept so that `bioxen vm gc` finds and removes it)")

    def _describe_failure(self, e: BaseException, step: str) -> str:
        if isinstance(e, BackendError):
            return str(e)
        detail = str(e) if isinstance(e, Exception) else type(e).__name__
        return f"xcpng: creating VM {self.name!r} failed at step '{step}': {detail}"

    def _failure(self, message: str) -> BackendError:
        """The error a failed start raises; ``left_on_pool`` tells the caller that the
        rollback left the VM (its record too: ``destroy()`` and gc can still remove it)."""
        error = BackendError(message)
        error.left_on_pool = self.vm_uuid is not None  # type: ignore[attr-defined]
        return error

    def _rollback(self, session: XapiSession, vm: str) -> str:
        """Destroy the half-made VM; return a note saying what is really left on the pool."""
        removal = VMRemoval(session, vm)
        try:
            kept = removal.run()
        except (XapiError, XapiConnectionError) as cleanup:
            # The record stays, so destroy() and `bioxen vm gc` can still find the VM
            left = removal.left()
            self._stray_disks = removal.disks_left
            return (f" (rolling back failed: {cleanup}; {left}; it stays in bioxen's record, "
                    f"so `bioxen vm gc --yes` removes it once this bioxen has exited)")
        self._forget_vm()
        if kept:
            return (f" (rolled back: the VM is gone; its disk(s) {', '.join(kept)} stay on the "
                    f"pool because other VMs use them)")
        return " (rolled back: nothing was left on the pool)"

    def _forget_vm(self) -> None:
        """Drop everything bioxen keeps about a VM that is gone from the pool."""
        if self.vm_uuid:
            self._forget_host_key()
            self._registry.remove(self.vm_uuid)
        if self._pending:
            self._registry.remove(self._pending)
            self._pending = None
        self.vm_uuid = None
        self.ip = None
        self.power_state = None

    def _rollback_after_failure(self) -> str:
        """Roll back a VM created by this start() whose SSH side failed; return a note."""
        self._created_now = False
        unknown = (f"VM {self.vm_uuid} may still be on the pool; `bioxen vm gc --yes` removes "
                   f"it")
        try:
            session = self._open_session()
        except BackendError as e:
            return f" (rolling back failed: {e}; {unknown})"
        try:
            vm = self._vm_ref(session)
            if vm is None:
                self._forget_vm()
                return " (rolled back: the VM was already gone from the pool)"
            return self._rollback(session, vm)
        except (XapiError, XapiConnectionError) as e:
            return f" (rolling back failed: {e}; {unknown})"
        finally:
            session.logout()

    def _find_template(self, session: XapiSession, s: PoolSettings) -> str:
        wanted = s.template or ""
        if _UUID_RE.match(wanted):
            try:
                ref = session.call("VM.get_by_uuid", wanted)
            except XapiError as e:
                if e.code == "UUID_INVALID":
                    raise BackendError(f"xcpng: template uuid {wanted} is not on pool "
                                       f"{s.name!r}") from None
                raise
            candidates = [ref]
        else:
            candidates = session.call("VM.get_by_name_label", wanted)
        templates = [r for r in candidates if session.call("VM.get_is_a_template", r)
                     and not session.call("VM.get_is_a_snapshot", r)]
        if not templates:
            names = sorted(rec["name_label"] for rec in
                           session.call("VM.get_all_records").values()
                           if rec["is_a_template"] and not rec["is_a_snapshot"])
            shown = ", ".join(repr(n) for n in names[:12]) + (" …" if len(names) > 12 else "")
            raise BackendError(
                f"xcpng: template {wanted!r} not found on pool {s.name!r} "
                f"({'a VM, not a template, has that name; ' if candidates else ''}"
                f"templates there: {shown or 'none'})")
        if len(templates) > 1:
            uuids = ", ".join(session.call("VM.get_uuid", r) for r in templates)
            raise BackendError(f"xcpng: {len(templates)} templates on pool {s.name!r} are "
                               f"named {wanted!r} (uuids {uuids}); give template=<uuid>")
        return templates[0]

    def _copy_target(self, session: XapiSession, template: str, s: PoolSettings) -> str | None:
        """The SR to copy a template's existing disks to, or None to clone.

        Templates with a provisioning spec get their disks from ``VM.provision`` on the chosen
        SR (see :meth:`_disks_on_sr`), so a clone suffices.  A template that already has disks
        (an imported image) keeps them on its own SR when cloned: with ``sr`` set, copy.
        """
        if not s.sr:
            return None
        has_disks = any(session.call("VBD.get_type", vbd) == "Disk"
                        and session.call("VBD.get_VDI", vbd) != NULL_REF
                        for vbd in session.call("VM.get_VBDs", template))
        if not has_disks:
            return None
        return session.call("SR.get_by_uuid", self._sr_uuid(session, s))

    def _tag(self, session: XapiSession, vm: str, owner: registry_mod.Owner) -> None:
        session.call("VM.add_tags", vm, TAG)
        stamps = {OWNER_KEY: owner.token(), NAME_KEY: self.name,
                  CREATED_KEY: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        for key, value in stamps.items():  # (replacing keys a clone inherits)
            session.set_map_key("VM", vm, "other_config", key, value)
        session.call("VM.set_name_description", vm,
                     f"created by bioxen for VM {self.name!r}; destroyed with it")

    def _provision(self, session: XapiSession, vm: str, s: PoolSettings) -> None:
        if not session.call("VM.get_is_a_template", vm):
            return  # cloned from a snapshot/VM: nothing to provision
        other = session.call("VM.get_other_config", vm)
        spec = other.get("disks")
        if spec:
            rewritten = self._disks_on_sr(session, spec, s)
            if rewritten != spec:
                session.set_map_key("VM", vm, "other_config", "disks", rewritten)

        def provisioned() -> str | None:  # VM.provision turns the clone into a VM
            return None if session.call("VM.get_is_a_template", vm) else ""

        session.run_async("VM.provision", vm, timeout=s.start_timeout,
                          what=f"VM {self.name} to be provisioned", find=provisioned)

    def _disks_on_sr(self, session: XapiSession, spec: str, s: PoolSettings) -> str:
        """Point every ``<disk sr=…>`` of the provision spec at the chosen SR (as xe does)."""
        try:
            root = ET.fromstring(spec)
        except ET.ParseError:
            return spec  # not ours to fix; VM.provision reports it
        disks = list(root.iter("disk"))
        if not s.sr and all(d.get("sr") for d in disks):
            return spec
        sr_uuid = self._sr_uuid(session, s)
        for disk in disks:
            if s.sr or not disk.get("sr"):
                disk.set("sr", sr_uuid)
        return ET.tostring(root, encoding="unicode")

    def _sr_uuid(self, session: XapiSession, s: PoolSettings) -> str:
        if s.sr:
            if _UUID_RE.match(s.sr):
                try:
                    session.call("SR.get_by_uuid", s.sr)
                    return s.sr
                except XapiError as e:
                    if e.code != "UUID_INVALID":
                        raise
            refs = session.call("SR.get_by_name_label", s.sr)
            if len(refs) != 1:
                raise BackendError(f"xcpng: SR {s.sr!r} {'not found' if not refs else 'is ambiguous'}"
                                   f" on pool {s.name!r} (set sr in {s.where} to a name or uuid)")
            return session.call("SR.get_uuid", refs[0])
        pool = session.call("pool.get_all")[0]
        sr = session.call("pool.get_default_SR", pool)
        if sr == NULL_REF:
            raise BackendError(f"xcpng: pool {s.name!r} has no default SR and the template's "
                               f"disks name none; set sr in {s.where}")
        return session.call("SR.get_uuid", sr)

    def _set_resources(self, session: XapiSession, vm: str) -> None:
        if self.memory is not None:
            static_min = int(session.call("VM.get_memory_static_min", vm))
            mem = self.memory
            session.call("VM.set_memory_limits", vm, str(min(static_min, mem)), str(mem),
                         str(mem), str(mem))
        if self.vcpus is not None:
            current_max = int(session.call("VM.get_VCPUs_max", vm))
            if self.vcpus >= current_max:  # growing: raise the ceiling first
                session.call("VM.set_VCPUs_max", vm, str(self.vcpus))
                session.call("VM.set_VCPUs_at_startup", vm, str(self.vcpus))
            else:                          # shrinking: lower the start count first
                session.call("VM.set_VCPUs_at_startup", vm, str(self.vcpus))
                session.call("VM.set_VCPUs_max", vm, str(self.vcpus))

    def _attach_network(self, session: XapiSession, vm: str, s: PoolSettings) -> None:
        if not s.network:
            if session.call("VM.get_VIFs", vm):
                return  # the template brings its own VIFs
            raise BackendError(f"xcpng: no network for VM {self.name!r}: pass network=… or "
                               f"set network in {s.where}")
        if _UUID_RE.match(s.network):
            try:
                networks = [session.call("network.get_by_uuid", s.network)]
            except XapiError as e:
                if e.code != "UUID_INVALID":
                    raise
                networks = []
        else:
            networks = session.call("network.get_by_name_label", s.network)
        if len(networks) != 1:
            names = sorted(r["name_label"] for r in
                           session.call("network.get_all_records").values())
            problem = "not found" if not networks else f"is ambiguous ({len(networks)} match)"
            raise BackendError(f"xcpng: network {s.network!r} {problem} on pool {s.name!r} "
                               f"(networks there: {', '.join(repr(n) for n in names)})")
        devices = session.call("VM.get_allowed_VIF_devices", vm)
        if not devices:
            raise BackendError(f"xcpng: VM {self.name!r} has no free VIF device")

        def made() -> str | None:  # a lost reply: the VIF exists if the create ran
            return next((vif for vif in session.call("VM.get_VIFs", vm)
                         if session.call("VIF.get_device", vif) == devices[0]), None)

        session.call_or_find("VIF.create", {
            "device": devices[0], "network": networks[0], "VM": vm, "MAC": "", "MTU": "1500",
            "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
        }, find=made)

    def _public_key(self, s: PoolSettings) -> str:
        """The OpenSSH public key line matching ``ssh_key`` (its ``.pub`` file)."""
        private = Path(s.ssh_key).expanduser()
        public = private.with_name(private.name + ".pub")
        try:
            line = public.read_text().strip()
        except OSError as e:
            raise BackendError(
                f"xcpng: cannot read the public key {public} ({e.strerror}) for ssh_key in "
                f"{s.where}; bioxen injects it into the guest (create one with "
                f"`ssh-keygen -t ed25519 -f {private}`)") from None
        if not re.match(r"^(ssh-|ecdsa-|sk-)\S+ \S+", line):
            raise BackendError(f"xcpng: {public} does not look like an OpenSSH public key")
        return line

    def _inject_key(self, session: XapiSession, vm: str, public_key: str,
                    s: PoolSettings) -> None:
        entries = [(AUTHORIZED_KEYS_KEY, public_key), (SSH_USER_KEY, s.ssh_user)]
        if s.host_keys == "inject":
            entries.append((HOST_KEY_KEY, self._new_host_key()))
            self._host_key_in_pool = True  # until the guest has taken it (start())
        for key, value in entries:
            session.set_map_key("VM", vm, "xenstore_data", key, value)

    def _attach_config_drive(self, session: XapiSession, vm: str, public_key: str,
                             s: PoolSettings) -> None:
        """The keys on a NoCloud drive (stock cloud images); it is one of the VM's own disks
        from the moment it exists, so destroy_vm and every rollback remove it."""
        from . import cloudinit
        seed = cloudinit.Seed(
            instance_id=self.vm_uuid or "",
            hostname=cloudinit.hostname_for(NAME_PREFIX + self.name),
            user=s.ssh_user, authorized_key=public_key,
            host_key=self._new_host_key() if s.host_keys == "inject" else None)
        cloudinit.attach_config_drive(session, vm, self._drive_sr(session, vm, s), seed,
                                      timeout=s.start_timeout)

    def _drive_sr(self, session: XapiSession, vm: str, s: PoolSettings) -> str:
        """The SR of the VM's first disk (so the drive never ties the VM to another host's
        storage), else the chosen or default SR."""
        for vbd in session.call("VM.get_VBDs", vm):
            vdi = session.call("VBD.get_VDI", vbd)
            if session.call("VBD.get_type", vbd) == "Disk" and vdi != NULL_REF:
                return session.call("VDI.get_SR", vdi)
        return session.call("SR.get_by_uuid", self._sr_uuid(session, s))

    def _new_host_key(self) -> str:
        """Generate the guest's SSH host key and trust it in advance, filed under the VM's
        uuid: the first connection is verified, no trust-on-first-use, and a recycled IP can
        never vouch for another guest.  Returns the private key for the guest (OpenSSH PEM)."""
        import base64

        import paramiko
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        from . import hostkeys
        key = ed25519.Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
        kind, b64 = public.split()[:2]
        self._forget_host_key()  # a previous attempt's entry, if any
        hostkeys.record_host_key(self._host_key_alias(),
                                 paramiko.PKey.from_type_string(kind, base64.b64decode(b64)))
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption()).decode()

    def _wait_for_ip(self, session: XapiSession, vm: str, s: PoolSettings) -> str:
        # Only this VM's own objects are watched: the VM (its guest_metrics ref appears when
        # the guest agent starts) and then that VM_guest_metrics object (the address is
        # written there later).  Every guest-metrics object of the pool would be hundreds of
        # events a second on a busy pool.
        watched = [f"vm/{vm}"]

        def ip_if_ready() -> str | None:
            record = session.call("VM.get_record", vm)
            if record["power_state"] != "Running":
                raise BackendError(f"xcpng: VM {self.name!r} is {record['power_state']} while "
                                   f"booting (it shut itself down or crashed)")
            metrics = record["guest_metrics"]
            watched[1:] = [] if metrics == NULL_REF else [f"vm_guest_metrics/{metrics}"]
            if metrics == NULL_REF:
                return None
            try:
                networks = session.call("VM_guest_metrics.get_networks", metrics)
            except XapiError as e:
                if e.code == "HANDLE_INVALID":
                    return None
                raise
            return pick_ip(networks)

        try:
            return session.wait_until(lambda: watched, ip_if_ready,
                                      s.ip_timeout, f"the IP address of VM {self.name}")
        except XapiTimeout:
            raise BackendError(
                f"xcpng: VM {self.name!r} (uuid {self.vm_uuid}) reported no IP address within "
                f"{s.ip_timeout:g} s. The guest tools (xe-guest-utilities or xen-guest-agent) may "
                f"be missing from template {s.template!r} or not running, or the guest got no "
                f"address on network {s.network!r}. Raise ip_timeout in {s.where} if it only "
                f"boots slowly.") from None

    # ------------------------------------------------------------------ restart / stop
    def _vm_ref(self, session: XapiSession) -> str | None:
        try:
            return session.call("VM.get_by_uuid", self.vm_uuid)
        except XapiError as e:
            if e.code in ("UUID_INVALID", "HANDLE_INVALID"):
                return None
            raise

    def _boot_existing(self) -> None:
        """``:restart()`` / start after ``:stop()``: boot the VM if halted, find its IP."""
        self._created_now = False
        s = self.settings()
        session = self._open_session()
        try:
            vm = self._vm_ref(session)
            if vm is None:
                raise BackendError(f"xcpng: VM {self.name!r} (uuid {self.vm_uuid}) no longer "
                                   f"exists on pool {s.name!r}")
            state = session.call("VM.get_power_state", vm)
            if state == "Halted":
                start_vm(session, vm, timeout=s.start_timeout, what=f"VM {self.name} to start")
            elif state == "Paused":
                session.call("VM.unpause", vm)
            elif state == "Suspended":
                session.run_async("VM.resume", vm, False, False, timeout=s.start_timeout,
                                  what=f"VM {self.name} to resume")
            self.ip = self._wait_for_ip(session, vm, s)
            self.power_state = "Running"  # _wait_for_ip saw it so
        except (XapiError, XapiConnectionError, XapiTimeout) as e:
            raise BackendError(f"xcpng: starting VM {self.name!r} again failed: {e}") from None
        finally:
            session.logout()

    def _shutdown(self, session: XapiSession, vm: str) -> None:
        """Clean shutdown with a deadline; hard shutdown when the guest cannot or will not.
        Returns only once the pool itself shows the VM Halted."""
        s = self.settings()
        state = session.call("VM.get_power_state", vm)
        if state == "Halted":
            self.power_state = state
            return
        if state == "Running":
            try:
                session.run_async("VM.clean_shutdown", vm, timeout=s.shutdown_timeout,
                                  what=f"VM {self.name} to shut down",
                                  find=lambda: _halted(session, vm))
            except XapiError as e:
                if not _already_halted(e):
                    if e.code not in CLEAN_SHUTDOWN_REFUSALS:
                        raise
                    log.info("xcpng: clean shutdown of %s failed (%s); forcing it",
                             self.name, e.code)
            except XapiTimeout:
                log.info("xcpng: %s ignored the shutdown request for %g s; forcing it",
                         self.name, s.shutdown_timeout)
        if session.call("VM.get_power_state", vm) != "Halted":
            try:
                session.call("VM.hard_shutdown", vm)
            except XapiError as e:
                if not _already_halted(e):
                    raise
        self._confirm_power_state(session, vm, "Halted", s.shutdown_timeout)

    def _confirm_power_state(self, session: XapiSession, vm: str, wanted: str,
                             timeout: float) -> None:
        """Wait until the pool shows ``wanted``; never claim a state it does not confirm."""
        def reached() -> bool | None:
            self.power_state = session.call("VM.get_power_state", vm)
            return True if self.power_state == wanted else None

        try:
            session.wait_until([f"vm/{vm}"], reached, timeout, f"VM {self.name} to be {wanted}")
        except XapiTimeout:
            raise BackendError(
                f"xcpng: VM {self.name!r} (uuid {self.vm_uuid}) is still {self.power_state} on "
                f"pool {self.settings().name!r} after a hard shutdown; it was not "
                f"stopped") from None

    # ------------------------------------------------------------------ SSH
    def _ssh_host(self) -> Any:
        """The guest as an SSH host: ``ssh_user@ip:ssh_port`` with the pool's key and
        known_hosts, plus any SSH option given to vm.create (checked by the config module)."""
        s = self.settings()
        options: dict[str, Any] = {"key": s.ssh_key, "agent": False}
        if s.known_hosts:
            options["known_hosts"] = s.known_hosts
        if s.host_keys == "inject":
            options["host_key_alias"] = self._host_key_alias()   # recorded at creation
        elif s.host_keys == "tofu":
            options.update(trust="tofu", host_key_alias=self._host_key_alias())
        options.update({k: v for k, v in self._ssh_extra.items() if k != "upload"})
        target = f"{s.ssh_user}@{'[' + self.ip + ']' if ':' in (self.ip or '') else self.ip}" \
                 f":{s.ssh_port}"
        return replace(_guest_host(target, options), name=f"xcpng:{self.name}", source=s.where)

    def _host_key_alias(self) -> str:
        return f"xcpng-{self.vm_uuid}"

    def _connect(self) -> AgentProcess:
        """Start the agent over SSH; sshd may still be starting and the injected key may not
        be installed yet, so connection failures are retried until ``ip_timeout``."""
        from . import ssh as ssh_mod
        s = self.settings()
        deadline = time.monotonic() + s.ip_timeout
        host = self._ssh_host()
        # The SSH backend retries refused connections, missing banners and failed auth
        # (sshd or the injected key not there yet) until the deadline.
        backend = ssh_mod.SSHBackend.for_host(self.name, host, self.profile,
                                              retry_for=max(1.0, deadline - time.monotonic()),
                                              upload_method=self._upload)
        try:
            proc = backend.start()
        except BackendError as e:
            backend.destroy()
            hint = self._connect_hint(e, s)
            raise BackendError(f"xcpng: VM {self.name!r} at {self.ip}: {e}{hint}") from None
        self._ssh = backend
        return proc

    def _connect_hint(self, e: BackendError, s: PoolSettings) -> str:
        """What to check when the guest booted but SSH failed, by how its keys were sent."""
        from . import ssh as ssh_mod
        drive = s.inject == "cloud-init"
        if isinstance(e, getattr(ssh_mod, "SSHConnectError", ())):
            given = ("runs cloud-init with its NoCloud datasource (the config drive creates "
                     f"{s.ssh_user!r}, installs lua5.4, then the key)" if drive
                     else "installs the injected key")
            return (f" The guest booted and reported its address, but SSH did not let "
                    f"{s.ssh_user!r} in within ip_timeout: check that the image runs sshd on "
                    f"port {s.ssh_port} and {given} (docs/xcpng.md).")
        if s.host_keys == "inject" and "MISMATCH" in str(e).upper():
            if drive:
                return (" The guest did not take the host key from its cloud-init config drive "
                        "(ssh_keys); is cloud-init installed in the image (docs/xcpng.md)? Or set "
                        f"host_keys = \"tofu\" in {s.where}.")
            return (f" The template probably does not install the host key bioxen injects "
                    f"(xenstore {HOST_KEY_KEY}, see docs/xcpng.md); prepare it, set "
                    f"inject = \"cloud-init\" for a stock cloud image, or set "
                    f"host_keys = \"tofu\" in {s.where}.")
        return ""

    def _close_ssh(self, destroy: bool = False) -> None:
        ssh, self._ssh = self._ssh, None
        if ssh is None:
            return
        try:
            ssh.destroy() if destroy else ssh.stop()
        except Exception as e:  # noqa: BLE001 - the guest itself is what we release next
            log.debug("xcpng: releasing the SSH side of %s: %s", self.name, e)


def _halted(session: XapiSession, vm: str) -> str | None:
    """Whether a shutdown whose reply was lost had run: ``""`` (done) or None."""
    return "" if session.call("VM.get_power_state", vm) == "Halted" else None


def start_vm(session: XapiSession, vm: str, *, timeout: float, what: str) -> None:
    """``Async.VM.start`` that a lost reply or a duplicate cannot fail.

    After a lost reply the VM's power state says whether the start ran; if not it is sent
    again.  A start that finds the VM already running (a duplicate of one that did the work)
    is a success, not an error.
    """
    def started() -> str | None:
        return "" if session.call("VM.get_power_state", vm) in ("Running", "Paused") else None

    try:
        session.run_async("VM.start", vm, False, False, timeout=timeout, what=what,
                          find=started)
    except XapiError as e:
        if not (e.code == "VM_BAD_POWER_STATE" and e.param("actual") == "running"):
            raise
        log.info("xcpng: %s was already running (a repeated start)", what)


def pick_ip(networks: dict[str, str]) -> str | None:
    """The address to SSH to from ``VM_guest_metrics.networks``.

    Keys look like ``"0/ip"``, ``"0/ipv4/0"``, ``"0/ipv6/0"`` (device/family/index).  Prefer
    the first device's IPv4, then any IPv4, then a global IPv6; skip link-local addresses.
    """
    import ipaddress

    def usable(value: str) -> bool:
        try:
            addr = ipaddress.ip_address(value.split("%")[0])
        except ValueError:
            return False
        return not (addr.is_link_local or addr.is_unspecified or addr.is_multicast)

    def order(key: str) -> tuple:
        device, _, rest = key.partition("/")
        family = 0 if rest in ("ip",) or rest.startswith("ipv4") else 1
        return (family, int(device) if device.isdigit() else 99, key)

    for key in sorted(networks, key=order):
        value = networks[key]
        if (key.endswith("/ip") or "/ipv4/" in key or "/ipv6/" in key) and usable(value):
            return value
    return None
