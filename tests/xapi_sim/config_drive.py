"""Config drives in the simulator: XAPI's ``/import_raw_vdi`` handler and a stock cloud guest.

**The handler** (``PUT /import_raw_vdi?session_id=…&vdi=…&format=raw[&task_id=…]``), as
``ocaml/xapi/import_raw_vdi.ml`` does it, on the HTTP and HTTPS endpoints alike:

* no valid ``session_id`` → 401, nothing else happens;
* ``vdi`` (a ref or uuid) unknown → 404, the task untouched;
* ``task_id`` names the task the work is recorded on (else the handler makes its own);
  it must be a pending task;
* an unknown ``format`` → 404 and the task fails ``INTERNAL_ERROR [Unknown format …]``;
* a ``Transfer-Encoding`` header → 403 and the task fails (XAPI never implemented it);
* ``sim.fail_next("import_raw_vdi", code, …)`` makes the next write fail with that error;
* otherwise 200 with a ``task-id`` header *before* the body is judged, as XAPI answers before
  ``vhd-tool`` reads the stream: a body that does not fit the VDI, a VDI attached to a running
  VM, or a format other than raw (not modelled) fails the *task*, not the HTTP exchange.
  The raw bytes are kept in ``sim.vdi_content[vdi]`` (only for these imports).

**The guest** (:class:`CloudInitGuestSSHDs`): a stock cloud image with cloud-init's NoCloud
datasource.  At boot it looks at its disks for an ISO 9660 filesystem labelled ``cidata`` (or
``CIDATA``), reads ``meta-data`` (YAML with ``instance-id``) and ``user-data``
(``#cloud-config``), as a Linux mount shows them (Rock Ridge, else Joliet names), and only then
starts its sshd with what the drive said: the ``ssh_keys`` ed25519 host key, and the
authorized keys that ``users``/``write_files`` give the one account it can serve (the sshd's
own user).  It ignores xenstore.  ``problems[vm]`` says what it could not use; a guest without
a usable drive still boots, with its own host key and no authorized key, as a real one does.
"""
from __future__ import annotations

import getpass
import io
import urllib.parse
from typing import TYPE_CHECKING, Any

from .guest_sshd import GuestSSHDs
from .model import NULL, XapiError

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler

    from .simulator import XapiSimulator

KNOWN_FORMATS = ("raw", "vhd", "tar", "qcow2")


# ----------------------------------------------------------------------------- API methods
def register(sim: "XapiSimulator") -> None:
    """The XML-RPC methods a config-drive client needs that the core does not model."""
    from .simulator import _Method, _stamp

    def task_create(ctx, label: str, description: str) -> str:
        return sim.db.create("task", name_label=label, name_description=description,
                             created=_stamp(), resident_on=sim.host)

    def allowed_vbd_devices(ctx, vm: str) -> list[str]:
        sim.db.row("VM", vm)
        used = {sim.db.row("VBD", b)["userdevice"] for b in sim.db.find("VBD", VM=vm)}
        return [str(n) for n in range(16) if str(n) not in used]

    sim._methods["task.create"] = _Method(task_create, ["string", "string"])
    sim._methods["VM.get_allowed_VBD_devices"] = _Method(allowed_vbd_devices, ["ref"])


# ----------------------------------------------------------------------------- the handler
def handle_put(handler: "BaseHTTPRequestHandler", sim: "XapiSimulator") -> None:
    """Answer one ``PUT`` on the coordinator (``server.py`` routes it here)."""
    url = urllib.parse.urlsplit(handler.path)
    query = dict(urllib.parse.parse_qsl(url.query))
    chunked_encoding = "Transfer-Encoding" in handler.headers
    body = b"" if chunked_encoding else handler.rfile.read(
        int(handler.headers.get("Content-Length") or 0))
    if url.path != "/import_raw_vdi":
        return _reply(handler, 404)
    try:
        sim._check_session(query.get("session_id"))
    except XapiError:
        return _reply(handler, 401)
    vdi = _vdi_of(sim, query.get("vdi", ""))
    if vdi is None:
        return _reply(handler, 404)
    task = query.get("task_id") or register_task(sim)
    if not sim.db.exists("task", task) or sim.db.row("task", task)["status"] != "pending":
        return _reply(handler, 400)
    sim.journal.append(("import_raw_vdi", (vdi, query.get("format", "raw"), len(body))))
    fmt = query.get("format", "raw")
    if fmt not in KNOWN_FORMATS:
        _finish(sim, task, ["INTERNAL_ERROR", f"Unknown format {fmt}"])
        return _reply(handler, 404)
    if chunked_encoding:
        _finish(sim, task, ["INTERNAL_ERROR", "Caught exception: Failure(\"import code cannot "
                            f"handle encoding: {handler.headers['Transfer-Encoding']}\")"])
        return _reply(handler, 403)
    _reply(handler, 200, {"task-id": task})
    _finish(sim, task, _injected_fault(sim) or _write(sim, vdi, fmt, "chunked" in query, body))


def _injected_fault(sim: "XapiSimulator") -> list[str] | None:
    """``sim.fail_next("import_raw_vdi", code, …)``: the write fails (as vhd-tool would)."""
    faults = sim._faults.get("import_raw_vdi")
    if not faults:
        return None
    fault = faults[0]
    fault.count -= 1
    if fault.count <= 0:
        faults.pop(0)
    return [fault.code, *(str(p) for p in fault.params)]


def register_task(sim: "XapiSimulator") -> str:
    from .simulator import _stamp
    return sim.db.create("task", name_label="VDI.import", created=_stamp(), resident_on=sim.host)


def _vdi_of(sim: "XapiSimulator", ref_or_uuid: str) -> str | None:
    if sim.db.exists("VDI", ref_or_uuid):
        return ref_or_uuid
    try:
        return sim.db.by_uuid("VDI", ref_or_uuid)
    except XapiError:
        return None


def _write(sim: "XapiSimulator", vdi: str, fmt: str, sparse_chunks: bool,
           body: bytes) -> list[str] | None:
    """Store the bytes; return the task's error_info, or None on success."""
    if fmt != "raw" or sparse_chunks:
        return ["INTERNAL_ERROR", f"the simulator models only plain raw imports, not {fmt}"
                                  f"{' (chunked)' if sparse_chunks else ''}"]
    for vbd in sim.db.find("VBD", VDI=vdi):
        if sim.db.row("VBD", vbd)["currently_attached"]:
            return ["VDI_IN_USE", vdi, "import"]
    size = int(sim.db.row("VDI", vdi)["virtual_size"])
    if len(body) > size:
        return ["INTERNAL_ERROR", f"Caught exception: vhd-tool: {len(body)} bytes do not fit "
                                  f"the VDI's {size}"]
    sim.vdi_content[vdi] = body
    return None


def _finish(sim: "XapiSimulator", task: str, error: list[str] | None) -> None:
    from .simulator import _stamp
    fields: dict[str, Any] = {"status": "success", "result": ""} if error is None else {
        "status": "failure", "error_info": error}
    with sim.db.lock:
        if sim.db.exists("task", task):
            sim.db.update("task", task, progress=1.0, finished=_stamp(), **fields)


def _reply(handler: "BaseHTTPRequestHandler", code: int, extra: dict | None = None) -> None:
    handler.send_response(code)
    for name, value in (extra or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", "0")
    handler.send_header("Connection", "close")  # keep_alive:false, as XAPI answers
    handler.end_headers()
    handler.close_connection = True


# ----------------------------------------------------------------------------- the guest
class DriveError(Exception):
    """Why cloud-init would not use a drive (recorded in ``problems``)."""


def read_drive(sim: "XapiSimulator", vm: str) -> tuple[dict, dict]:
    """``(meta_data, user_data)`` from the VM's ``cidata`` disk, as cloud-init reads them."""
    import pycdlib
    import yaml
    found = []
    for vbd in sim.db.find("VBD", VM=vm):
        record = sim.db.row("VBD", vbd)
        data = sim.vdi_content.get(record["VDI"]) if record["VDI"] != NULL else None
        if record["type"] == "Disk" and data:
            found.append(data)
    for image in found:
        iso = pycdlib.PyCdlib()
        try:
            iso.open_fp(io.BytesIO(image))
        except pycdlib.pycdlibexception.PyCdlibException:
            continue  # not an ISO 9660 filesystem: not a seed
        try:
            label = iso.pvd.volume_identifier.decode("ascii", "replace").strip()
            if label not in ("cidata", "CIDATA"):
                continue
            files = {name: _read_file(iso, name) for name in ("meta-data", "user-data")}
        finally:
            iso.close()
        missing = [name for name, text in files.items() if text is None]
        if missing:
            raise DriveError(f"the cidata drive lacks {', '.join(missing)}")
        meta = yaml.safe_load(files["meta-data"])
        if not isinstance(meta, dict) or not meta.get("instance-id"):
            raise DriveError("meta-data has no instance-id")
        text = files["user-data"]
        if not text.startswith("#cloud-config\n"):
            raise DriveError("user-data does not start with #cloud-config")
        user = yaml.safe_load(text)
        if not isinstance(user, dict):
            raise DriveError("user-data is not a YAML mapping")
        return meta, user
    raise DriveError("no disk labelled cidata")


def _read_file(iso: Any, name: str) -> str | None:
    """A root file by the name a Linux mount shows: Rock Ridge, else Joliet."""
    import pycdlib
    for kind, present in (("rr_path", iso.has_rock_ridge()), ("joliet_path", iso.has_joliet())):
        if not present:
            continue
        out = io.BytesIO()
        try:
            iso.get_file_from_iso_fp(out, **{kind: f"/{name}"})
        except pycdlib.pycdlibexception.PyCdlibException:
            continue
        return out.getvalue().decode()
    return None


def keys_for(user_data: dict, account: str) -> tuple[str | None, list[str]]:
    """The ed25519 host key and the authorized keys ``user_data`` gives ``account``."""
    home = "/root" if account == "root" else f"/home/{account}"
    keys: list[str] = []
    created = account == "root"
    for entry in user_data.get("users") or []:
        if isinstance(entry, dict) and entry.get("name") == account:
            created = True
            home = entry.get("homedir", home)
            keys += list(entry.get("ssh_authorized_keys") or [])
    if created:
        for item in user_data.get("write_files") or []:
            if item.get("path") == f"{home}/.ssh/authorized_keys":
                keys += [k for k in str(item.get("content", "")).splitlines() if k.strip()]
    host_key = (user_data.get("ssh_keys") or {}).get("ed25519_private")
    return host_key, keys


class CloudInitGuestSSHDs(GuestSSHDs):
    """Guests from a stock cloud image: their sshd is configured from the config drive."""

    def __init__(self, directory) -> None:
        super().__init__(directory)
        self.account = getpass.getuser()   # the one account the guest's sshd serves
        self.problems: dict[str, str] = {}
        self.seeds: dict[str, tuple[dict, dict]] = {}

    def seed(self, sim: "XapiSimulator", vm: str) -> tuple[str | None, str]:
        try:
            meta, user = read_drive(sim, vm)
        except DriveError as e:
            self.problems[vm] = str(e)
            return None, ""
        self.seeds[vm] = (meta, user)
        host_key, keys = keys_for(user, self.account)
        if not keys:
            self.problems[vm] = f"user-data gives account {self.account!r} no authorized key"
        return host_key, "\n".join(keys)
