"""An XAPI pool in a Python object: sessions, objects, VM lifecycle, tasks, events, faults.

``XapiSimulator`` holds the state and answers calls by wire name (``"VM.start"``,
``"Async.VM.start"``, ``"event_from"``) with XAPI's rules and error shapes; ``server.py`` puts
it behind XML-RPC over HTTP(S) so the unmodified XenAPI SDK talks to it.  Sources for the
semantics: ``ocaml/xapi/xapi_vm_lifecycle.ml`` (power states), ``xapi_vm.ml``/``xapi_templates.ml``
(provision), ``taskHelper.ml`` (tasks), ``xapi_event.ml`` (event.from), the datamodel's error
parameters (``/work/shared/notes/xapi-errors.tsv``).

Test controls (Python, in-process): ``fail_next``, ``expire_sessions``, ``guest`` (how the
simulated guests behave), ``journal`` (every call, passwords redacted), ``reset`` and the
object tables through ``db``.
"""
from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Callable
from xml.sax.saxutils import escape

from .model import (
    FIELDS, BACKREFS, NULL, SETTABLE, Database, XapiError, canonical_class, new_uuid,
)

GiB = 1024 ** 3
MiB = 1024 ** 2

# Power states each operation is allowed in (xapi_vm_lifecycle.ml allowed_power_states).
ALLOWED_POWER = {
    "start": ["Halted"], "provision": ["Halted"], "clone": ["Halted", "Suspended"],
    "copy": ["Halted", "Suspended"], "changing_memory_limits": ["Halted"],
    "changing_VCPUs": ["Halted"], "clean_shutdown": ["Running"], "clean_reboot": ["Running"],
    "hard_shutdown": ["Paused", "Suspended", "Running"], "hard_reboot": ["Paused", "Running"],
    "destroy": ["Halted", "Suspended"], "snapshot": ["Halted", "Paused", "Suspended", "Running"],
}


# Lifecycle calls that take a place in VM.current_operations, by their operation name.
VM_OPERATIONS = {f"VM.{op}": op for op in (
    "start", "clean_shutdown", "hard_shutdown", "clean_reboot", "hard_reboot", "clone",
    "copy", "provision", "destroy", "snapshot")}
_LONG_COPIES = {"clone", "copy", "snapshot"}  # may run side by side on one source
# VIF.create's record fields without a default (the datamodel's VIF constructor).
VIF_RECORD_FIELDS = ("device", "network", "VM", "MAC", "MTU", "other_config",
                     "qos_algorithm_type", "qos_algorithm_params")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def _allowed_concurrently(op: str, running: str) -> bool:
    """xapi_vm_lifecycle.ml is_allowed_concurrently: copies beside copies, and a hard
    shutdown (or hard reboot) beside anything but another hard one."""
    if op in _LONG_COPIES and running in _LONG_COPIES:
        return True
    if op == "hard_shutdown":
        return running != "hard_shutdown"
    if op == "hard_reboot":
        return running not in ("hard_shutdown", "hard_reboot")
    return False


def _stamp(t: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class GuestBehaviour:
    """How simulated guests behave once started.  Tests change it; ``reset`` restores it."""

    ip: str = "127.0.0.1"              # reported in VM_guest_metrics.networks "0/ip"
    boot_delay: float | None = 0.2     # seconds from start until the guest metrics appear
                                       # (None: booted before VM.start returns)
    tools: bool = True                 # guest agent present (IP reported, clean shutdown works)
    clean_shutdown_hangs: bool = False # the guest acknowledges a shutdown request, never halts
    shutdown_ack: bool = True          # False: a frozen guest never acknowledges the request
    shutdown_ack_timeout: float = 0.2  # xenopsd's wait for that acknowledgement (seconds)
    shutdown_timeout: float | None = None  # xenopsd's wait for the halt after it (None: until
                                           # the task is cancelled); then VM_SHUTDOWN_TIMEOUT
    # Hooks: on_boot(sim, vm) runs when the guest has booted, before its metrics appear, and
    # may return the IP the guest reports (else ``ip``); on_halt(sim, vm) when it stops.
    on_boot: list[Callable[["XapiSimulator", str], str | None]] = field(default_factory=list)
    on_halt: list[Callable[["XapiSimulator", str], None]] = field(default_factory=list)


@dataclass
class _Fault:
    code: str
    params: tuple
    count: int


class _CallContext:
    """What a running call knows: its session and, for Async calls, its task."""

    def __init__(self, sim: "XapiSimulator", session: str | None, task: str | None) -> None:
        self.sim, self.session, self.task = sim, session, task
        self.cancel_requested = threading.Event()

    def progress(self, value: float) -> None:
        if self.task:
            self.sim.db.update("task", self.task, progress=value)

    def check_cancelled(self) -> None:
        if self.cancel_requested.is_set():
            raise XapiError("TASK_CANCELLED", self.task or "")


class _Method:
    def __init__(self, fn: Callable, types: list[str], cancellable: bool = False) -> None:
        self.fn, self.types, self.cancellable = fn, types, cancellable


class XapiSimulator:
    """One pool (one coordinator host) with a template, a network and an SR."""

    def __init__(self, users: dict[str, str] | None = None, coordinator_address: str = "127.0.0.1",
                 session_idle_timeout: float | None = None) -> None:
        self.users = dict(users or {"root": "xapi-sim-password"})
        self.coordinator_address = coordinator_address
        self.session_idle_timeout = session_idle_timeout
        self.journal: list[tuple[str, tuple]] = []
        self.logins: list[dict[str, str]] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._running: dict[str, _CallContext] = {}  # task ref -> context
        self._last_active: dict[str, float] = {}
        self._boot_gen: dict[str, int] = {}
        self._vm_ops: dict[str, dict[str, tuple[str, _CallContext]]] = {}  # vm -> op ref -> op
        self._methods: dict[str, _Method] = {}
        self._register_methods()
        self.reset()

    # =================================================================== test controls
    def reset(self) -> None:
        """Fresh pool: one host, SR, network, template; no sessions, faults or journal."""
        self.db = Database()
        self.guest = GuestBehaviour()
        self.journal.clear()
        self.logins.clear()
        self._faults.clear()
        self._last_active.clear()
        self._boot_gen.clear()
        self.vdi_content: dict[str, bytes] = {}  # bytes written through /import_raw_vdi
        self._vm_ops.clear()
        self.host_memory = 16 * GiB
        self.delays: dict[str, float] = {"VM.start": 0.05, "VM.clean_shutdown": 0.05,
                                         "VM.hard_shutdown": 0.02, "VM.provision": 0.02}
        db = self.db
        self.host = db.create("host", name_label="xcp-sim-1", hostname="xcp-sim-1",
                              address=self.coordinator_address,
                              software_version={"product_brand": "XCP-ng",
                                                "product_version": "8.3.0"})
        self.sr = db.create("SR", name_label="Local storage", physical_size=str(200 * GiB))
        self.pool = db.create("pool", name_label="sim-pool", master=self.host, default_SR=self.sr)
        self.network = db.create("network", name_label="Pool-wide network associated with eth0",
                                 bridge="xenbr0")
        db.create("network", name_label="Host internal management network", bridge="xenapi")
        sr_uuid = db.row("SR", self.sr)["uuid"]
        disks = (f'<provision><disk device="0" size="{4 * GiB}" sr="{sr_uuid}" '
                 f'bootable="true" type="system"/></provision>')
        self.template = db.create(
            "VM", name_label="Debian Bookworm 12 (bioxen)", is_a_template=True,
            other_config={"disks": disks, "install-methods": "cdrom,http",
                          "mac_seed": new_uuid()},
            memory_static_max=str(GiB), memory_dynamic_min=str(GiB),
            memory_dynamic_max=str(GiB))
        # A template that already has its disk (an imported cloud image), and a second SR.
        self.sr_fast = db.create("SR", name_label="Fast SSD", physical_size=str(100 * GiB))
        self.disk_template = db.create("VM", name_label="Alpine 3.20 cloud (disk)",
                                       is_a_template=True)
        image = db.create("VDI", name_label="alpine root", SR=self.sr,
                          virtual_size=str(2 * GiB), physical_utilisation=str(2 * GiB))
        db.create("VBD", VM=self.disk_template, VDI=image, userdevice="0", bootable=True,
                  type="Disk")
        # A built-in style template with the empty SR xe/XO have to fill in.
        db.create("VM", name_label="Other install media", is_a_template=True,
                  is_default_template=True,
                  other_config={"disks": '<provision><disk device="0" size="1073741824" sr="" '
                                         'bootable="true" type="system"/></provision>'})

    def fail_next(self, method: str, code: str, *params: Any, count: int = 1) -> None:
        """Make the next ``count`` calls of ``method`` (``"VM.start"``; also reached through
        ``Async.VM.start``) fail with ``[code, *params]`` before doing anything."""
        self._faults.setdefault(method, []).append(_Fault(code, params, count))

    def expire_sessions(self) -> None:
        """Invalidate every session, as an xapi restart or a coordinator change does."""
        for ref in self.db.refs("session"):
            self.db.delete("session", ref)
        self._last_active.clear()

    def table(self, cls: str) -> dict[str, dict]:
        """``{ref: record}`` of one class, back-references included (for assertions)."""
        with self.db.lock:
            return {r: self.db.get_record(cls, r) for r in self.db.refs(cls)}

    def vms(self, include_templates: bool = False) -> dict[str, dict]:
        """Ordinary VMs (no templates, no snapshots unless asked)."""
        return {r: v for r, v in self.table("VM").items()
                if include_templates or not (v["is_a_template"] or v["is_a_snapshot"])}

    def calls(self, method: str) -> list[tuple]:
        """Parameters of every journalled call of ``method`` (session ref removed)."""
        return [params for name, params in self.journal if name == method]

    # =================================================================== dispatch
    def call(self, wire_name: str, params: tuple) -> Any:
        """Answer one XML-RPC call; returns the ``Status`` struct XAPI would send."""
        try:
            return {"Status": "Success", "Value": self._dispatch(wire_name, params)}
        except XapiError as e:
            return {"Status": "Failure", "ErrorDescription": e.details}

    def _dispatch(self, wire_name: str, params: tuple) -> Any:
        name = wire_name
        is_async = name.startswith("Async.")
        if is_async:
            name = name[len("Async."):]
        name = self._canonical_name(name)
        method = self._methods.get(name)
        if name.startswith("session.login"):
            self.journal.append((name, (params[0] if params else "", "<redacted>")))
            return self._login(name, params)
        if method is None:
            raise XapiError("MESSAGE_METHOD_UNKNOWN", wire_name)
        expected = len(method.types) + 1
        if len(params) != expected:
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", wire_name, expected, len(params))
        session = params[0]
        self._check_session(session)
        args = tuple(self._unmarshal(t, v) for t, v in zip(method.types, params[1:]))
        self.journal.append((wire_name, args))
        if is_async:
            return self._start_task(name, method, session, args)
        return self._run(name, method, _CallContext(self, session, None), args)

    @staticmethod
    def _canonical_name(name: str) -> str:
        """``VM_guest_metrics_get_networks`` / ``event_from`` → dotted form."""
        if "." in name:
            return name
        for cls in sorted(list(FIELDS) + ["event"], key=len, reverse=True):
            if name.startswith(cls + "_"):
                return f"{cls}.{name[len(cls) + 1:]}"
        return name

    def _run(self, name: str, method: _Method, ctx: _CallContext, args: tuple) -> Any:
        faults = self._faults.get(name)
        if faults:
            fault = faults[0]
            fault.count -= 1
            if fault.count <= 0:
                faults.pop(0)
            raise XapiError(fault.code, *fault.params)
        with self._vm_operation(name, ctx, args):
            delay = self.delays.get(name, 0.0)
            if delay:
                if ctx.cancel_requested.wait(delay):
                    ctx.check_cancelled()
            result = method.fn(ctx, *args)
        return "" if result is None else result

    @staticmethod
    def _unmarshal(kind: str, value: Any) -> Any:
        """XAPI's type rules: Int as int or decimal string; strict booleans; no nil."""
        def bad(expected: str) -> XapiError:
            return XapiError("XMLRPC_UNMARSHAL_FAILURE", expected, repr(value))
        if value is None:
            raise bad(kind)
        if kind in ("ref", "string"):
            if not isinstance(value, str):
                raise bad(kind)
        elif kind == "int":
            if isinstance(value, bool):
                raise bad("int")
            try:
                return int(value)
            except (TypeError, ValueError):
                raise bad("int") from None
        elif kind == "bool":
            if not isinstance(value, bool):
                raise bad("bool")
        elif kind == "float":
            try:
                return float(value)
            except (TypeError, ValueError):
                raise bad("float") from None
        elif kind == "map":
            if not isinstance(value, dict):
                raise bad("map")
        elif kind == "set":
            if not isinstance(value, list):
                raise bad("set")
        elif kind == "record":
            if not isinstance(value, dict):
                raise bad("struct")
        return value

    # =================================================================== sessions
    def _login(self, name: str, params: tuple) -> str:
        if name not in ("session.login_with_password", "session.slave_local_login_with_password"):
            raise XapiError("MESSAGE_METHOD_UNKNOWN", name)
        if len(params) not in (2, 3, 4):
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", name, 4, len(params))
        uname, pwd = params[0], params[1]
        version = params[2] if len(params) > 2 else ""
        originator = params[3] if len(params) > 3 else ""
        faults = self._faults.get("session.login_with_password")
        if faults:
            fault = faults.pop(0)
            raise XapiError(fault.code, *fault.params)
        if self.users.get(uname) != pwd:
            raise XapiError("SESSION_AUTHENTICATION_FAILED", uname,
                            "Authentication failure")
        self.logins.append({"user": uname, "version": version, "originator": originator})
        ref = self.db.create("session", this_host=self.host, originator=originator,
                             auth_user_name=uname, last_active=_stamp())
        self._last_active[ref] = time.monotonic()
        return ref

    def _check_session(self, session: Any) -> None:
        if not isinstance(session, str) or not self.db.exists("session", session):
            raise XapiError("SESSION_INVALID", session)
        idle = self.session_idle_timeout
        now = time.monotonic()
        if idle is not None and now - self._last_active.get(session, now) > idle:
            self.db.delete("session", session)
            raise XapiError("SESSION_INVALID", session)
        self._last_active[session] = now

    def open_sessions(self) -> list[dict]:
        return list(self.table("session").values())

    # =================================================================== tasks
    def _start_task(self, name: str, method: _Method, session: str, args: tuple) -> str:
        task = self.db.create("task", name_label=f"Async.{name}", created=_stamp(),
                              resident_on=self.host,
                              allowed_operations=["cancel"] if method.cancellable else [])
        ctx = _CallContext(self, session, task)
        self._running[task] = ctx

        db = self.db  # (a reset meanwhile gives the simulator a new one: this task is not in it)

        def finish(**fields: Any) -> None:
            # The client may have destroyed the task while it ran (as bioxen does after
            # cancelling one that timed out): then there is nobody to tell, as in XAPI.
            with db.lock:
                if db.exists("task", task):
                    db.update("task", task, progress=1.0, finished=_stamp(), allowed_operations=[],
                              **fields)

        def work() -> None:
            try:
                result = self._run(name, method, ctx, args)
                encoded = "" if result == "" else f"<value>{escape(str(result))}</value>"
                finish(status="success", result=encoded)
            except XapiError as e:
                status = "cancelled" if e.details[0] == "TASK_CANCELLED" else "failure"
                finish(status=status, error_info=e.details)
            except Exception as e:  # a simulator bug: report it the way XAPI would
                finish(status="failure", error_info=["INTERNAL_ERROR", f"{type(e).__name__}: {e}"])
            finally:
                self._running.pop(task, None)

        threading.Thread(target=work, name=f"xapi-sim {name}", daemon=True).start()
        return task

    def _task_cancel(self, ctx: _CallContext, task: str) -> None:
        record = self.db.row("task", task)
        if "cancel" not in record["allowed_operations"] or task not in self._running:
            raise XapiError("OPERATION_NOT_ALLOWED", f"task {task} cannot be cancelled")
        self.db.update("task", task, status="cancelling")
        self._running[task].cancel_requested.set()

    def _task_destroy(self, ctx: _CallContext, task: str) -> None:
        self.db.row("task", task)
        self.db.delete("task", task)

    # =================================================================== events
    def _event_from(self, ctx: _CallContext, classes: list, token: str, timeout: float) -> dict:
        since = self._parse_token(token)
        subs = []
        for sub in classes:
            cls, _, ref = str(sub).partition("/")
            if cls == "*":
                subs.append((None, None))
                continue
            canonical = canonical_class(cls)
            if canonical is None:
                raise XapiError("EVENT_SUBSCRIPTION_PARSE_FAILURE", sub)
            subs.append((canonical, ref or None))

        def wanted(cls: str, ref: str) -> bool:
            return any((c is None or c == cls) and (r is None or r == ref) for c, r in subs)

        deadline = time.monotonic() + max(0.0, timeout)
        with self.db.changed:
            while True:
                events = self.db.events_since(since, wanted)
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    break
                self.db.changed.wait(remaining)
            counts = {c.lower(): str(len(self.db.tables[c])) for c in FIELDS
                      if wanted(c, "") or any(c == s[0] for s in subs)}
            return {"events": events, "valid_ref_counts": counts,
                    "token": f"{self.db.generation:020d},{0:020d}"}

    @staticmethod
    def _parse_token(token: str) -> int:
        if token == "":
            return 0
        try:
            first, second = token.split(",")
            return int(first)
        except ValueError:
            raise XapiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token) from None

    def _event_inject(self, ctx: _CallContext, cls: str, ref: str) -> str:
        canonical = canonical_class(cls)
        if canonical is None:
            raise XapiError("HANDLE_INVALID", cls, ref)
        self.db.row(canonical, ref)
        self.db.touch(canonical, ref)
        return f"{self.db.generation - 1:020d},{0:020d}"

    # =================================================================== VM lifecycle
    def _vm(self, ref: str) -> dict:
        return self.db.row("VM", ref)

    def _assert_power(self, ref: str, op: str) -> dict:
        vm = self._vm(ref)
        allowed = ALLOWED_POWER[op]
        if vm["power_state"] not in allowed:
            raise XapiError("VM_BAD_POWER_STATE", ref, ", ".join(s.lower() for s in allowed),
                            vm["power_state"].lower())
        blocked = vm["blocked_operations"].get(op)
        if blocked is not None:
            raise XapiError("OPERATION_BLOCKED", ref, blocked)
        return vm

    def _sr_free(self, sr: str) -> int:
        size = int(self.db.row("SR", sr)["physical_size"])
        used = sum(int(self.db.row("VDI", v)["virtual_size"]) for v in self.db.find("VDI", SR=sr))
        return size - used

    def _new_vdi(self, sr: str, size: int, **values: Any) -> str:
        free = self._sr_free(sr)
        if size > free:
            raise XapiError("SR_FULL", size, free)
        vdi = self.db.create("VDI", SR=sr, virtual_size=str(size),
                             physical_utilisation=str(size), **values)
        self._refresh_sr(sr)
        return vdi

    def _refresh_sr(self, sr: str) -> None:
        used = int(self.db.row("SR", sr)["physical_size"]) - self._sr_free(sr)
        self.db.update("SR", sr, physical_utilisation=str(used), virtual_allocation=str(used))

    def _copy_vm(self, src: str, new_name: str, target_sr: str = NULL, **overrides: Any) -> str:
        """The shared part of clone/copy/snapshot: the record, disks (new VDIs, on
        ``target_sr`` for VM.copy with an SR), VIFs."""
        with self.db.lock:
            source = self.db.get_record("VM", src)
            values = {k: v for k, v in source.items() if k in FIELDS["VM"]}
            values.update(name_label=new_name, is_default_template=False, is_a_snapshot=False,
                          snapshot_of=NULL, resident_on=NULL, guest_metrics=NULL, domid="-1",
                          current_operations={}, blocked_operations={})
            if values["power_state"] == "Running":
                values["power_state"] = "Halted"
            if not overrides.get("is_a_snapshot"):
                # xapi_vm_clone.ml: a clone's MACs must differ from its source's
                values["other_config"] = {**values["other_config"], "mac_seed": new_uuid()}
            values.update(overrides)
            new = self.db.create("VM", **values)
            try:
                for vbd in source["VBDs"]:
                    b = self.db.get_record("VBD", vbd)
                    vdi = b["VDI"]
                    if b["type"] == "Disk" and vdi != NULL:
                        d = self.db.row("VDI", vdi)
                        snap = overrides.get("is_a_snapshot", False)
                        vdi = self._new_vdi(
                            d["SR"] if target_sr == NULL else target_sr, int(d["virtual_size"]),
                            name_label=d["name_label"], type=d["type"], is_a_snapshot=snap,
                            snapshot_of=vdi if snap else NULL)
                    self.db.create("VBD", VM=new, VDI=vdi, userdevice=b["userdevice"],
                                   bootable=b["bootable"], mode=b["mode"], type=b["type"],
                                   empty=b["empty"])
                for vif in source["VIFs"]:
                    v = self.db.row("VIF", vif)
                    # a generated MAC follows the new VM's seed (a snapshot keeps its
                    # source's seed, so its MACs too); an explicit one is copied
                    mac = (self._mac_for(new, v["device"]) if v["MAC_autogenerated"]
                           else v["MAC"])
                    self.db.create("VIF", VM=new, network=v["network"], device=v["device"],
                                   MAC=mac, MTU=v["MTU"], MAC_autogenerated=v["MAC_autogenerated"])
            except XapiError:
                self._destroy_vm_and_disks(new)  # XAPI cleans up a failed clone itself
                raise
            return new

    def _destroy_vm_and_disks(self, vm: str) -> None:
        for vbd in self.db.find("VBD", VM=vm):
            vdi = self.db.row("VBD", vbd)["VDI"]
            self.db.delete("VBD", vbd)
            if vdi != NULL and self.db.exists("VDI", vdi) and not self.db.find("VBD", VDI=vdi):
                self.db.delete("VDI", vdi)
        for vif in self.db.find("VIF", VM=vm):
            self.db.delete("VIF", vif)
        self.db.delete("VM", vm)

    _mac_counter = 0

    def _mac(self) -> str:
        XapiSimulator._mac_counter += 1
        n = XapiSimulator._mac_counter
        return f"c2:1e:{(n >> 24) & 255:02x}:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"

    def _vm_clone(self, ctx, vm: str, new_name: str) -> str:
        self._assert_power(vm, "clone")
        return self._copy_vm(vm, new_name)

    def _vm_copy(self, ctx, vm: str, new_name: str, sr: str) -> str:
        self._assert_power(vm, "copy")
        if sr != NULL:
            self.db.row("SR", sr)
        return self._copy_vm(vm, new_name, target_sr=sr)

    def _vm_snapshot(self, ctx, vm: str, new_name: str) -> str:
        self._assert_power(vm, "snapshot")
        return self._copy_vm(vm, new_name, is_a_snapshot=True, is_a_template=True,
                             snapshot_of=vm, snapshot_time=_stamp(), power_state="Halted")

    def _vm_provision(self, ctx, vm: str) -> None:
        record = self._assert_power(vm, "provision")
        if not record["is_a_template"]:
            raise XapiError("PROVISION_ONLY_ALLOWED_ON_TEMPLATE")
        # XAPI clears the flag before anything else: a failed provision leaves an ordinary VM.
        self.db.update("VM", vm, is_a_template=False)
        spec = record["other_config"].get("disks")
        created: list[tuple[str, str]] = []
        try:
            for disk in (ET.fromstring(spec).iter("disk") if spec else ()):
                sr_uuid = disk.get("sr", "")
                if sr_uuid == "":
                    raise XapiError("UUID_INVALID", "sr", "")
                sr = self.db.by_uuid("SR", sr_uuid)
                ctx.check_cancelled()
                vdi = self._new_vdi(sr, int(disk.get("size", "0")),
                                    name_label=f"{record['name_label']} {disk.get('device')}",
                                    type=disk.get("type", "system"))
                vbd = self.db.create("VBD", VM=vm, VDI=vdi, userdevice=disk.get("device", "0"),
                                     bootable=disk.get("bootable") == "true", type="Disk")
                created.append((vbd, vdi))
        except XapiError:
            for vbd, vdi in created:  # provisioning deletes what it created on failure
                self.db.delete("VBD", vbd)
                self.db.delete("VDI", vdi)
            raise
        other = dict(record["other_config"])
        other.pop("disks", None)
        self.db.update("VM", vm, other_config=other)

    def _vm_set_memory_limits(self, ctx, vm: str, smin: int, smax: int, dmin: int,
                              dmax: int) -> None:
        self._assert_power(vm, "changing_memory_limits")
        self._set_memory(vm, smin, smax, dmin, dmax)

    def _set_memory(self, vm: str, smin: int, smax: int, dmin: int, dmax: int) -> None:
        if not (0 <= smin <= dmin <= dmax <= smax):
            raise XapiError("MEMORY_CONSTRAINT_VIOLATION_ORDER")
        self.db.update("VM", vm, memory_static_min=str(smin), memory_static_max=str(smax),
                       memory_dynamic_min=str(dmin), memory_dynamic_max=str(dmax))

    def _vm_set_memory_static_range(self, ctx, vm: str, lo: int, hi: int) -> None:
        r = self._assert_power(vm, "changing_memory_limits")
        self._set_memory(vm, lo, hi, int(r["memory_dynamic_min"]), int(r["memory_dynamic_max"]))

    def _vm_set_memory_dynamic_range(self, ctx, vm: str, lo: int, hi: int) -> None:
        r = self._vm(vm)
        self._set_memory(vm, int(r["memory_static_min"]), int(r["memory_static_max"]), lo, hi)

    def _vm_set_vcpus_max(self, ctx, vm: str, value: int) -> None:
        r = self._assert_power(vm, "changing_VCPUs")
        if value < 1 or value < int(r["VCPUs_at_startup"]) or value > 64:
            raise XapiError("INVALID_VALUE", "VCPUs_max", value)
        self.db.update("VM", vm, VCPUs_max=str(value))

    def _vm_set_vcpus_at_startup(self, ctx, vm: str, value: int) -> None:
        r = self._assert_power(vm, "changing_VCPUs")
        if value < 1 or value > int(r["VCPUs_max"]):
            raise XapiError("INVALID_VALUE", "VCPUs_at_startup", value)
        self.db.update("VM", vm, VCPUs_at_startup=str(value))

    def _vm_get_allowed_vif_devices(self, ctx, vm: str) -> list[str]:
        used = {self.db.row("VIF", v)["device"] for v in self.db.find("VIF", VM=vm)}
        return [str(n) for n in range(7) if str(n) not in used]

    def _vm_start(self, ctx, vm: str, start_paused: bool, force: bool) -> None:
        record = self._vm(vm)
        if record["is_a_template"]:
            raise XapiError("VM_IS_TEMPLATE", vm, "start")
        self._assert_power(vm, "start")
        for vbd in self.db.find("VBD", VM=vm):
            vdi = self.db.row("VBD", vbd)["VDI"]
            if vdi != NULL and not self.db.exists("VDI", vdi):
                raise XapiError("HANDLE_INVALID", "VDI", vdi)
        for vif in self.db.find("VIF", VM=vm):
            net = self.db.row("VIF", vif)["network"]
            if not self.db.exists("network", net):
                raise XapiError("VM_REQUIRES_NET", vm, net)
        needed = int(record["memory_static_max"])
        used = sum(int(self._vm(v)["memory_static_max"])
                   for v in self.db.find("VM", power_state="Running"))
        available = self.host_memory - used
        if needed > available:
            raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", needed, available)
        with self.db.lock:
            for vbd in self.db.find("VBD", VM=vm):
                self.db.update("VBD", vbd, currently_attached=True)
            for vif in self.db.find("VIF", VM=vm):
                self.db.update("VIF", vif, currently_attached=True)
            domid = str(len(self.db.find("VM", power_state="Running")) + 1)
            self.db.update("VM", vm, power_state="Paused" if start_paused else "Running",
                           resident_on=self.host, domid=domid)
            gen = self._boot_gen[vm] = self._boot_gen.get(vm, 0) + 1
        if not start_paused:
            self._schedule_guest_boot(vm, gen)

    def _schedule_guest_boot(self, vm: str, gen: int) -> None:
        behaviour = self.guest

        def boot() -> None:
            def still_booting() -> bool:
                return (self._boot_gen.get(vm) == gen and self.db.exists("VM", vm)
                        and self._vm(vm)["power_state"] == "Running")

            with self.db.lock:
                if not still_booting():
                    return
            ip = behaviour.ip
            for hook in list(behaviour.on_boot):
                ip = hook(self, vm) or ip
            with self.db.lock:
                if not still_booting() or not behaviour.tools:
                    return
                metrics = self.db.create(
                    "VM_guest_metrics", PV_drivers_detected=True, PV_drivers_up_to_date=True,
                    networks={"0/ip": ip, "0/ipv4/0": ip}, last_updated=_stamp(),
                    os_version={"name": "Debian GNU/Linux 12 (bookworm)", "distro": "debian"},
                    PV_drivers_version={"major": "8", "minor": "3"})
                self.db.update("VM", vm, guest_metrics=metrics)

        if behaviour.boot_delay is None:
            boot()
            return
        timer = threading.Timer(behaviour.boot_delay, boot)
        timer.daemon = True
        timer.start()

    def _halt(self, vm: str) -> None:
        with self.db.lock:
            record = self._vm(vm)
            if record["guest_metrics"] != NULL and self.db.exists("VM_guest_metrics",
                                                                  record["guest_metrics"]):
                self.db.delete("VM_guest_metrics", record["guest_metrics"])
            for vbd in self.db.find("VBD", VM=vm):
                self.db.update("VBD", vbd, currently_attached=False)
            for vif in self.db.find("VIF", VM=vm):
                self.db.update("VIF", vif, currently_attached=False)
            self._boot_gen[vm] = self._boot_gen.get(vm, 0) + 1
            self.db.update("VM", vm, power_state="Halted", resident_on=NULL, domid="-1",
                           guest_metrics=NULL)
        for hook in list(self.guest.on_halt):
            hook(self, vm)

    def _guest_has_tools(self, vm: str) -> bool:
        return self._vm(vm)["guest_metrics"] != NULL

    def _vm_clean_shutdown(self, ctx: _CallContext, vm: str) -> None:
        self._assert_power(vm, "clean_shutdown")
        self._guest_shuts_down(ctx, vm)
        self._halt(vm)

    def _vm_hard_shutdown(self, ctx, vm: str) -> None:
        self._assert_power(vm, "hard_shutdown")
        self._halt(vm)

    def _vm_clean_reboot(self, ctx, vm: str) -> None:
        self._assert_power(vm, "clean_reboot")
        self._guest_shuts_down(ctx, vm)
        self._halt(vm)
        self._vm_start(ctx, vm, False, False)

    def _vm_hard_reboot(self, ctx, vm: str) -> None:
        self._assert_power(vm, "hard_reboot")
        self._halt(vm)
        self._vm_start(ctx, vm, False, False)

    def _vm_destroy(self, ctx, vm: str) -> None:
        if self._vm(vm)["is_default_template"]:
            raise XapiError("VM_CANNOT_DELETE_DEFAULT_TEMPLATE", vm)
        self._assert_power(vm, "destroy")
        with self.db.lock:
            for cls in ("VBD", "VIF"):
                for ref in self.db.find(cls, VM=vm):
                    self.db.delete(cls, ref)
            metrics = self._vm(vm)["guest_metrics"]
            if metrics != NULL and self.db.exists("VM_guest_metrics", metrics):
                self.db.delete("VM_guest_metrics", metrics)
            self.db.delete("VM", vm)  # VDIs stay, as in XAPI

    # =================================================================== devices
    def _vdi_create(self, ctx, rec: dict) -> str:
        sr = self._required(rec, "SR")
        self.db.row("SR", sr)
        size = int(self._required(rec, "virtual_size"))
        return self._new_vdi(sr, size, name_label=str(rec.get("name_label", "")),
                             name_description=str(rec.get("name_description", "")),
                             type=str(rec.get("type", "user")), sharable=bool(rec.get("sharable")),
                             read_only=bool(rec.get("read_only")),
                             other_config=dict(rec.get("other_config", {})))

    def _vdi_destroy(self, ctx, vdi: str) -> None:
        record = self.db.get_record("VDI", vdi)
        for vbd in record["VBDs"]:
            if self.db.row("VBD", vbd)["currently_attached"]:
                raise XapiError("VDI_IN_USE", vdi, "destroy")
        with self.db.lock:
            for vbd in record["VBDs"]:
                self.db.delete("VBD", vbd)
            self.db.delete("VDI", vdi)
            self._refresh_sr(record["SR"])

    def _vbd_create(self, ctx, rec: dict) -> str:
        vm = self._required(rec, "VM")
        self._vm(vm)
        vdi = rec.get("VDI", NULL)
        if vdi != NULL:
            self.db.row("VDI", vdi)
        userdevice = str(self._required(rec, "userdevice"))
        if any(self.db.row("VBD", b)["userdevice"] == userdevice
               for b in self.db.find("VBD", VM=vm)):
            raise XapiError("DEVICE_ALREADY_EXISTS", userdevice)
        return self.db.create(
            "VBD", VM=vm, VDI=vdi, userdevice=userdevice, bootable=bool(rec.get("bootable")),
            mode=str(self._required(rec, "mode")), type=str(self._required(rec, "type")),
            empty=bool(rec.get("empty")), other_config=dict(rec.get("other_config", {})))

    def _vbd_destroy(self, ctx, vbd: str) -> None:
        if self.db.row("VBD", vbd)["currently_attached"]:
            raise XapiError("OPERATION_NOT_ALLOWED", "VBD is currently attached")
        self.db.delete("VBD", vbd)

    def _vif_create(self, ctx, rec: dict) -> str:
        for name in VIF_RECORD_FIELDS:
            self._required(rec, name)
        vm, network = rec["VM"], rec["network"]
        self._vm(vm)
        self.db.row("network", network)
        device = str(rec["device"])
        if not device.isdigit():
            raise XapiError("INVALID_DEVICE", device)  # xapi_vif_helpers.ml: int_of_string
        if any(self.db.row("VIF", v)["device"] == device for v in self.db.find("VIF", VM=vm)):
            raise XapiError("DEVICE_ALREADY_EXISTS", device)
        mac = str(rec["MAC"])
        if mac and not _MAC_RE.match(mac):
            raise XapiError("MAC_INVALID", mac)
        return self.db.create("VIF", VM=vm, network=network, device=device,
                              MAC=mac or self._mac_for(vm, device), MAC_autogenerated=not mac,
                              MTU=str(rec["MTU"]), other_config=dict(rec["other_config"]),
                              qos_algorithm_type=str(rec["qos_algorithm_type"]),
                              qos_algorithm_params=dict(rec["qos_algorithm_params"]),
                              currently_attached=False)

    def _vif_destroy(self, ctx, vif: str) -> None:
        if self.db.row("VIF", vif)["currently_attached"]:
            raise XapiError("OPERATION_NOT_ALLOWED", "VIF is currently attached")
        self.db.delete("VIF", vif)

    @staticmethod
    def _required(rec: dict, name: str) -> Any:
        if name not in rec:
            # XAPI reports a missing record field as an unmarshalling failure.
            raise XapiError("INTERNAL_ERROR", f"field {name} missing from the record")
        return rec[name]

    # =================================================================== XAPI's strictness
    # Rules the SDK cannot check for a client: concurrent operations on one VM, what a guest
    # answers a shutdown request with, and how VIF MACs come from the VM's mac_seed.

    @contextlib.contextmanager
    def _vm_operation(self, name: str, ctx: _CallContext, args: tuple):
        """Hold ``VM.current_operations`` for a lifecycle call; refuse a conflicting one with
        ``OTHER_OPERATION_IN_PROGRESS [VM, ref, op, op ref]`` (xapi_vm_lifecycle.ml)."""
        op = VM_OPERATIONS.get(name)
        if op is None or not args or not self.db.exists("VM", args[0]):
            yield
            return
        vm = args[0]
        op_ref = ctx.task or f"OpaqueRef:{new_uuid()}"
        with self.db.lock:
            running = self._vm_ops.setdefault(vm, {})
            for other_ref, (other, other_ctx) in running.items():
                if not _allowed_concurrently(op, other):
                    raise XapiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm, other, other_ref)
            if op in ("hard_shutdown", "hard_reboot"):
                for other, other_ctx in running.values():  # xapi_vm.ml: a hard op cancels
                    if other in ("clean_shutdown", "clean_reboot"):  # the clean ones
                        other_ctx.cancel_requested.set()
            running[op_ref] = (op, ctx)
            self._publish_operations(vm)
        try:
            yield
        finally:
            with self.db.lock:
                running.pop(op_ref, None)
                if self.db.exists("VM", vm):
                    self._publish_operations(vm)
                elif not running:
                    self._vm_ops.pop(vm, None)

    def _publish_operations(self, vm: str) -> None:
        self.db.update("VM", vm, current_operations={
            ref: op for ref, (op, _) in self._vm_ops.get(vm, {}).items()})

    def _guest_shuts_down(self, ctx: _CallContext, vm: str) -> None:
        """A clean shutdown request as xenopsd makes it: the guest's PV drivers must
        acknowledge it (else ``VM_FAILED_SHUTDOWN_ACK``), then the guest must halt within
        the shutdown timeout (else ``VM_SHUTDOWN_TIMEOUT``)."""
        behaviour = self.guest
        if not (self._guest_has_tools(vm) and behaviour.shutdown_ack):
            if ctx.cancel_requested.wait(behaviour.shutdown_ack_timeout):
                ctx.check_cancelled()
            raise XapiError("VM_FAILED_SHUTDOWN_ACK", vm)
        if not behaviour.clean_shutdown_hangs:
            return
        limit = behaviour.shutdown_timeout
        deadline = None if limit is None else time.monotonic() + limit
        while not ctx.cancel_requested.wait(0.05):
            if deadline is not None and time.monotonic() >= deadline:
                raise XapiError("VM_SHUTDOWN_TIMEOUT", vm, limit)
        ctx.check_cancelled()

    def _mac_for(self, vm: str, device: str) -> str:
        """The MAC XAPI derives from the VM's ``other_config:mac_seed`` and the device
        number (locally administered)."""
        seed = self._vm(vm)["other_config"].get("mac_seed")
        if not seed:  # every VM XAPI makes has one (VM.create and clones add it)
            raise XapiError("INTERNAL_ERROR", f"VM {vm} has no other_config:mac_seed to "
                            f"derive the MAC of VIF {device} from")
        digest = hashlib.sha256(f"{seed}/{device}".encode()).digest()
        return ":".join(f"{b:02x}" for b in (0x02 | (digest[0] & 0xfc), *digest[1:6]))

    # =================================================================== registration
    def _register_methods(self) -> None:
        m = self._methods
        for cls, fields in FIELDS.items():
            self._register_class(cls, fields)
        specials = {
            "session.logout": (self._logout, []),
            "session.get_this_host": (lambda ctx, s: self.db.row("session", s)["this_host"],
                                      ["ref"]),
            "event.from": (self._event_from, ["set", "string", "float"]),
            "event.inject": (self._event_inject, ["string", "ref"]),
            "event.get_current_id": (lambda ctx: str(self.db.generation), []),
            "task.cancel": (self._task_cancel, ["ref"]),
            "task.destroy": (self._task_destroy, ["ref"]),
            "VM.clone": (self._vm_clone, ["ref", "string"]),
            "VM.copy": (self._vm_copy, ["ref", "string", "ref"]),
            "VM.snapshot": (self._vm_snapshot, ["ref", "string"]),
            "VM.provision": (self._vm_provision, ["ref"]),
            "VM.start": (self._vm_start, ["ref", "bool", "bool"]),
            "VM.clean_shutdown": (self._vm_clean_shutdown, ["ref"]),
            "VM.hard_shutdown": (self._vm_hard_shutdown, ["ref"]),
            "VM.clean_reboot": (self._vm_clean_reboot, ["ref"]),
            "VM.hard_reboot": (self._vm_hard_reboot, ["ref"]),
            "VM.destroy": (self._vm_destroy, ["ref"]),
            "VM.set_memory_limits": (self._vm_set_memory_limits, ["ref", "int", "int", "int", "int"]),
            "VM.set_memory_static_range": (self._vm_set_memory_static_range, ["ref", "int", "int"]),
            "VM.set_memory_dynamic_range": (self._vm_set_memory_dynamic_range, ["ref", "int", "int"]),
            "VM.set_VCPUs_max": (self._vm_set_vcpus_max, ["ref", "int"]),
            "VM.set_VCPUs_at_startup": (self._vm_set_vcpus_at_startup, ["ref", "int"]),
            "VM.get_allowed_VIF_devices": (self._vm_get_allowed_vif_devices, ["ref"]),
            "VDI.create": (self._vdi_create, ["record"]),
            "VDI.destroy": (self._vdi_destroy, ["ref"]),
            "VBD.create": (self._vbd_create, ["record"]),
            "VBD.destroy": (self._vbd_destroy, ["ref"]),
            "VIF.create": (self._vif_create, ["record"]),
            "VIF.destroy": (self._vif_destroy, ["ref"]),
        }
        for name, (fn, types) in specials.items():
            m[name] = _Method(fn, types, cancellable=name in ("VM.clean_shutdown", "VM.provision"))
        from . import config_drive  # task.create, VM.get_allowed_VBD_devices (config drives)
        config_drive.register(self)

    def _logout(self, ctx: _CallContext) -> None:
        self.db.delete("session", ctx.session)
        self._last_active.pop(ctx.session, None)

    def _register_class(self, cls: str, fields: dict) -> None:
        m = self._methods
        db = self.db_proxy

        m[f"{cls}.get_all"] = _Method(lambda ctx: db().refs(cls), [])
        m[f"{cls}.get_all_records"] = _Method(
            lambda ctx: {r: db().get_record(cls, r) for r in db().refs(cls)}, [])
        m[f"{cls}.get_record"] = _Method(lambda ctx, ref: db().get_record(cls, ref), ["ref"])
        m[f"{cls}.get_by_uuid"] = _Method(lambda ctx, u: db().by_uuid(cls, u), ["string"])
        if "name_label" in fields:
            m[f"{cls}.get_by_name_label"] = _Method(
                lambda ctx, label: db().find(cls, name_label=label), ["string"])
        readable = ["uuid", *fields, *(f for (c, f) in BACKREFS if c == cls)]
        for fname in readable:
            m[f"{cls}.get_{fname}"] = _Method(
                lambda ctx, ref, f=fname: db().get_record(cls, ref)[f], ["ref"])
        for fname in SETTABLE.get(cls, ()):
            default = fields[fname]
            kind = ("map" if default is dict or (callable(default) and default() == {})
                    else "set" if default is list else "bool" if isinstance(default, bool)
                    else "string")
            m[f"{cls}.set_{fname}"] = _Method(
                lambda ctx, ref, value, f=fname: self._set_field(cls, ref, f, value),
                ["ref", kind])
            if kind == "map":
                m[f"{cls}.add_to_{fname}"] = _Method(
                    lambda ctx, ref, k, v, f=fname: self._add_to_map(cls, ref, f, k, v),
                    ["ref", "string", "string"])
                m[f"{cls}.remove_from_{fname}"] = _Method(
                    lambda ctx, ref, k, f=fname: self._remove_from_map(cls, ref, f, k),
                    ["ref", "string"])
        if "tags" in fields:
            m[f"{cls}.add_tags"] = _Method(
                lambda ctx, ref, tag: self._tags(cls, ref, tag, add=True), ["ref", "string"])
            m[f"{cls}.remove_tags"] = _Method(
                lambda ctx, ref, tag: self._tags(cls, ref, tag, add=False), ["ref", "string"])

    def db_proxy(self) -> Database:
        return self.db

    def _set_field(self, cls: str, ref: str, fname: str, value: Any) -> None:
        self.db.row(cls, ref)
        if isinstance(value, dict):
            value = {str(k): str(v) for k, v in value.items()}
        self.db.update(cls, ref, **{fname: value})

    def _add_to_map(self, cls: str, ref: str, fname: str, key: str, value: str) -> None:
        with self.db.lock:
            record = self.db.row(cls, ref)
            if key in record[fname]:
                raise XapiError("MAP_DUPLICATE_KEY", cls, fname, record["uuid"], key)
            record[fname][key] = value
            self.db.touch(cls, ref)

    def _remove_from_map(self, cls: str, ref: str, fname: str, key: str) -> None:
        with self.db.lock:
            self.db.row(cls, ref)[fname].pop(key, None)
            self.db.touch(cls, ref)

    def _tags(self, cls: str, ref: str, tag: str, add: bool) -> None:
        with self.db.lock:
            tags = self.db.row(cls, ref)["tags"]
            if add and tag not in tags:
                tags.append(tag)
            elif not add and tag in tags:
                tags.remove(tag)
            self.db.touch(cls, ref)


def method_arity(sim: XapiSimulator, name: str) -> int:
    """Number of parameters (session included) a method takes; for tests."""
    return len(sim._methods[name].types) + 1


__all__ = ["XapiSimulator", "GuestBehaviour", "XapiError", "NULL", "GiB", "MiB", "method_arity"]
