"""A cloud-init NoCloud config drive for stock cloud images (``inject = "cloud-init"``).

Stock images (Debian/Ubuntu "genericcloud" and the like) run cloud-init at first boot; its
NoCloud datasource reads any filesystem labelled ``cidata`` holding ``user-data`` and
``meta-data``.  bioxen builds that filesystem locally as a small ISO 9660 image (with pycdlib;
Rock Ridge and Joliet names, so the guest sees ``user-data``, not ``USERDATA.;1``), and puts it
on the VM as its own disk:

1. ``VDI.create`` on the VM's SR (a round MiB size; ``other_config`` names the VM);
2. ``VBD.create`` as a read-only *disk* (XAPI allows one CD drive per VM, and the template may
   already have one) in a free slot — right after the VDI, so that from then on the drive is
   one of the VM's own disks and goes wherever the VM goes (``destroy_vm``, rollbacks, gc);
3. the bytes through XAPI's ``/import_raw_vdi`` HTTP handler (:meth:`XapiSession.put`: the
   session's TLS rules, ``session_id`` and ``task_id`` in the query), then the task is watched
   to completion and its error surfaces (the handler answers 200 before it reads the body).

The user-data creates ``ssh_user`` (sudo, no password), installs the Lua interpreter the agent
needs, pins the generated SSH host key (``ssh_keys``) and writes the user's authorized key
*last* (``write_files`` with ``defer: true`` runs in cloud-init's final stage, after the
packages): SSH lets bioxen in only once the guest is ready for the agent.  The private host
key lives on the drive until the VM is destroyed (docs/xcpng.md says who can read it).
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Any

from ..vm.transport import BackendError
from .xapi import XapiConnectionError, XapiError, XapiSession

__all__ = ["Seed", "user_data", "meta_data", "build_image", "attach_config_drive",
           "DRIVE_KEY", "LABEL", "DEFAULT_PACKAGES"]

LABEL = "cidata"
DRIVE_KEY = "bioxen-config-drive"   # VDI other_config: the uuid of the VM it seeds
DEFAULT_PACKAGES = ("lua5.4",)       # the agent's interpreter; a no-op where it is installed
MiB = 1024 * 1024


@dataclass(frozen=True)
class Seed:
    """What the guest learns from its drive."""

    instance_id: str                  # the VM's uuid: a new VM is always a first boot
    hostname: str
    user: str
    authorized_key: str               # an OpenSSH public key line
    host_key: str | None = None       # the guest's ed25519 host key, OpenSSH private format
    packages: tuple[str, ...] = field(default=DEFAULT_PACKAGES)


def hostname_for(label: str) -> str:
    """A valid host name (RFC 1123 label) from a VM's name label."""
    name = re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")[:63].strip("-")
    return name or "bioxen"


def _home(user: str) -> str:
    return "/root" if user == "root" else f"/home/{user}"


def _public_of(private_pem: str) -> str:
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_ssh_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def _yaml(data: dict) -> str:
    """YAML by PyYAML (every value quoted as YAML requires); multi-line strings (the host
    key) as literal blocks, as cloud-init's documentation writes them."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=4096)


def user_data(seed: Seed) -> str:
    """The ``#cloud-config`` document."""
    config: dict[str, Any] = {}
    if seed.user != "root":
        config["users"] = ["default", {
            "name": seed.user, "homedir": _home(seed.user), "shell": "/bin/bash",
            "lock_passwd": True, "sudo": "ALL=(ALL) NOPASSWD:ALL"}]
    else:
        config["disable_root"] = False  # else cloud-init turns root's key logins away
    config["ssh_pwauth"] = False
    if seed.host_key is not None:
        config["ssh_deletekeys"] = True
        config["ssh_keys"] = {"ed25519_private": seed.host_key.rstrip("\n") + "\n",
                              "ed25519_public": _public_of(seed.host_key)}
    if seed.packages:
        config["packages"] = list(seed.packages)
    config["write_files"] = [{
        "path": f"{_home(seed.user)}/.ssh/authorized_keys", "content": seed.authorized_key + "\n",
        "owner": f"{seed.user}:{seed.user}", "permissions": "0600", "append": True,
        "defer": True}]
    return "#cloud-config\n" + _yaml(config)


def meta_data(seed: Seed) -> str:
    return _yaml({"instance-id": seed.instance_id, "local-hostname": seed.hostname})


def build_image(seed: Seed) -> bytes:
    """The ISO 9660 image labelled ``cidata``, padded to a whole number of MiB."""
    import pycdlib
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=LABEL.upper(), rock_ridge="1.09", joliet=3)
    try:
        for name, text in (("user-data", user_data(seed)), ("meta-data", meta_data(seed))):
            data = text.encode()
            short = name.upper().replace("-", "_")  # ISO 9660's own name; Linux shows rr_name
            iso.add_fp(io.BytesIO(data), len(data), iso_path=f"/{short}.;1", rr_name=name,
                       joliet_path=f"/{name}")
        out = io.BytesIO()
        iso.write_fp(out)
    finally:
        iso.close()
    image = out.getvalue()
    size = -(-len(image) // MiB) * MiB
    return image + b"\0" * (size - len(image))


def attach_config_drive(session: XapiSession, vm: str, sr: str, seed: Seed, *,
                        timeout: float) -> str:
    """Create, attach and fill the VM's config drive; return the VDI ref.

    Only a failure of ``VBD.create`` itself can leave the VDI unattached: it is destroyed
    here.  Any later failure leaves it attached to ``vm``, so destroying the VM removes it.
    """
    image = build_image(seed)

    def made_vdi() -> str | None:  # a lost reply: the drive exists if the create ran
        records = session.call("VDI.get_all_records")
        return next((ref for ref, rec in records.items()
                     if rec.get("other_config", {}).get(DRIVE_KEY) == seed.instance_id), None)

    vdi = session.call_or_find("VDI.create", {
        "name_label": f"bioxen config drive ({seed.hostname})",
        "name_description": "cloud-init NoCloud seed; destroyed with the VM",
        "SR": sr, "virtual_size": str(len(image)), "type": "user", "sharable": False,
        "read_only": False, "other_config": {DRIVE_KEY: seed.instance_id}, "xenstore_data": {},
        "sm_config": {}, "tags": []}, find=made_vdi)

    def attached() -> str | None:
        return next((vbd for vbd in session.call("VM.get_VBDs", vm)
                     if session.call("VBD.get_VDI", vbd) == vdi), None)

    try:
        devices = session.call("VM.get_allowed_VBD_devices", vm)
        if not devices:
            raise BackendError(f"xcpng: VM {seed.hostname} has no free disk slot for its "
                               f"config drive")
        session.call_or_find("VBD.create", {
            "VM": vm, "VDI": vdi, "userdevice": devices[0], "bootable": False, "mode": "RO",
            "type": "Disk", "empty": False, "other_config": {DRIVE_KEY: seed.instance_id},
            "qos_algorithm_type": "", "qos_algorithm_params": {}}, find=attached)
    except BaseException:
        session.call_for_cleanup("VDI.destroy", vdi)
        raise
    upload_raw(session, vdi, image, timeout=timeout, what=f"the config drive of {seed.hostname}")
    return vdi


def upload_raw(session: XapiSession, vdi: str, data: bytes, *, timeout: float,
               what: str) -> None:
    """Write ``data`` into ``vdi`` through ``/import_raw_vdi``, on a task of our own, watched
    to the end (and destroyed, whatever happens)."""
    task = session.call("task.create", f"bioxen: upload {what}", "import_raw_vdi")
    try:
        status, reason = session.put("/import_raw_vdi",
                                     {"task_id": task, "vdi": vdi, "format": "raw"}, data)
        if status != 200:
            raise _refusal(session, task, f"uploading {what}", status, reason)
    except BaseException:
        session.call_for_cleanup("task.destroy", task)
        raise
    session.wait_task(task, timeout, f"uploading {what}")


def _refusal(session: XapiSession, task: str, what: str, status: int, reason: str) -> Exception:
    """Refused before the handler took the task (credentials, unknown VDI): the HTTP status;
    refused with the task failed (unknown format, chunked encoding): the task's error."""
    record = session.call("task.get_record", task)
    if record["status"] == "failure" and record.get("error_info"):
        info = [str(x) for x in record["error_info"]]
        return XapiError(info[0], info[1:], what)
    return XapiConnectionError(f"{session.label}: {what} through /import_raw_vdi: "
                               f"HTTP {status} {reason}")
