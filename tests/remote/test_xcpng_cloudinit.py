"""Stock cloud images through a cloud-init NoCloud config drive (``inject = "cloud-init"``).

The drive is checked with the real tools a guest uses (blkid finds it by label, libarchive
reads it as the kernel's Rock Ridge names show it, Debian 12's cloud-init validates the
user-data and reads the seed); the whole path runs against the XAPI simulator through the
unmodified SDK: ``VDI.create``, ``VBD.create``, the ``/import_raw_vdi`` upload on our task,
``VM.start``, and guests that read only the drive and only then run their own sshd.
"""
from __future__ import annotations

import getpass
import http.client
import shutil
import subprocess
import urllib.parse

import pytest
import yaml

from bioxen_shell.remote import cloudinit
from bioxen_shell.remote import registry as registry_mod
from bioxen_shell.remote import xcpng
from bioxen_shell.remote.config import ConfigError, load_config
from bioxen_shell.remote.xapi import XapiConnectionError, XapiError, XapiSession
from bioxen_shell.remote.xcpng import AUTHORIZED_KEYS_KEY, HOST_KEY_KEY, XCPngBackend
from bioxen_shell.vm.profiles import load_profile
from bioxen_shell.vm.transport import BackendError
from tests.system import require_binary
from tests.waiting import wait_for
from tests.xapi_sim.config_drive import keys_for
from tests.xapi_sim.fixtures import SIM_PASSWORD

PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGQm3TSz0BwaFbCFr0xv2cPa3oxW8mFkkE1YsBJ1UdlJ test@bioxen"


@pytest.fixture(autouse=True)
def _fresh_password_cache():
    xcpng.forget_passwords()
    yield
    xcpng.forget_passwords()


def _host_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()).decode()


def _tables(sim) -> dict:
    return {cls: set(sim.table(cls)) for cls in ("VM", "VDI", "VBD", "VIF")}


def assert_nothing_left(sim, before: dict) -> None:
    after = _tables(sim)
    assert after == before, f"left behind: { {c: after[c] - before[c] for c in after} }"
    assert sim.open_sessions() == [], "a session was not logged out"
    assert sim.table("task") == {}, "a task was not destroyed"
    assert registry_mod.Registry().all() == []


def backend(settings: dict, name: str = "c1", **options) -> XCPngBackend:
    return XCPngBackend(name, {"pool": dict(settings), **options}, load_profile(None))


# ------------------------------------------------------------------------------ the image
def test_drive_is_a_cidata_seed_that_real_cloud_init_accepts(tmp_path):
    """blkid (how cloud-init finds the drive) sees an iso9660 labelled CIDATA; bsdtar reads
    user-data and meta-data by their Rock Ridge names; Debian 12's cloud-init validates the
    user-data against its schema and reads the seed."""
    blkid = require_binary("blkid", also_in="/sbin:/usr/sbin")
    bsdtar = require_binary("bsdtar")
    cloud_init = require_binary("cloud-init")
    key = _host_key()
    seed = cloudinit.Seed(instance_id="8b1f0c2e-uuid", hostname="bioxen-w1", user="bio",
                          authorized_key=PUBLIC, host_key=key)
    image = tmp_path / "seed.iso"
    image.write_bytes(cloudinit.build_image(seed))
    assert image.stat().st_size % cloudinit.MiB == 0

    probe = subprocess.run([blkid, "-p", "-o", "export", str(image)], capture_output=True,
                           text=True, check=True).stdout
    assert "TYPE=iso9660" in probe.splitlines()
    assert any(line.lower() == "label=cidata" for line in probe.splitlines())

    out = tmp_path / "mounted"
    out.mkdir()
    subprocess.run([bsdtar, "-C", str(out), "-xf", str(image)], check=True)
    assert sorted(p.name for p in out.iterdir()) == ["meta-data", "user-data"]
    schema = subprocess.run([cloud_init, "schema", "--config-file", str(out / "user-data")],
                            capture_output=True, text=True)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    as_root = tmp_path / "user-data-root"  # the other shape: no users entry, disable_root off
    as_root.write_text(cloudinit.user_data(cloudinit.Seed("i", "h", "root", PUBLIC)))
    schema = subprocess.run([cloud_init, "schema", "--config-file", str(as_root)],
                            capture_output=True, text=True)
    assert schema.returncode == 0, schema.stdout + schema.stderr

    # cloud-init's own seed reader (the NoCloud datasource's), in cloud-init's interpreter
    python = open(shutil.which(cloud_init)).readline()[2:].strip().split()[0]
    read = subprocess.run([python, "-c", "import sys\nfrom cloudinit import util\n"
                           "md, ud, vd = util.read_seeded(sys.argv[1])\n"
                           "print(md['instance-id'], md['local-hostname'])\n"
                           "sys.stdout.write(ud.decode())", f"file://{out}/"],
                          capture_output=True, text=True, check=True).stdout
    first, _, user_text = read.partition("\n")
    assert first == "8b1f0c2e-uuid bioxen-w1"
    assert user_text.startswith("#cloud-config\n")
    config = yaml.safe_load(user_text)
    assert {"name": "bio", "homedir": "/home/bio"}.items() <= config["users"][1].items()
    assert config["ssh_keys"]["ed25519_private"].strip() == key.strip()
    assert config["ssh_keys"]["ed25519_public"].startswith("ssh-ed25519 ")
    (authorized,) = config["write_files"]
    assert authorized["path"] == "/home/bio/.ssh/authorized_keys"
    assert authorized["content"] == PUBLIC + "\n" and authorized["defer"] is True
    assert "lua5.4" in config["packages"]


def test_without_an_injected_host_key_the_drive_carries_none():
    """host_keys = "tofu"/"known-hosts": no ssh_keys (cloud-init then generates the guest's
    own); root gets /root and no users entry."""
    config = yaml.safe_load(cloudinit.user_data(cloudinit.Seed("i", "h", "root", PUBLIC)))
    assert "ssh_keys" not in config and "users" not in config
    assert config["disable_root"] is False
    assert config["write_files"][0]["path"] == "/root/.ssh/authorized_keys"
    assert cloudinit.hostname_for("bioxen-My_VM.01") == "bioxen-my-vm-01"


@pytest.mark.parametrize("volid,readable", [("cidata", True), ("CIDATA", True),
                                             ("config-2", False)])
def test_the_simulated_guest_reads_a_seed_made_by_genisoimage(xapi_sim, tmp_path, volid,
                                                              readable):
    """The guest's reader is not tailored to bioxen's images: a seed made the documented way
    (genisoimage -volid cidata -joliet -rock, as cloud-localds does) is read; another label
    is not a NoCloud seed."""
    from tests.xapi_sim.config_drive import DriveError, read_drive
    genisoimage = require_binary("genisoimage")
    (tmp_path / "user-data").write_text(cloudinit.user_data(
        cloudinit.Seed("i-1", "h", getpass.getuser(), PUBLIC)))
    (tmp_path / "meta-data").write_text("instance-id: i-1\nlocal-hostname: h\n")
    subprocess.run([genisoimage, "-quiet", "-output", str(tmp_path / "seed.iso"), "-volid",
                    volid, "-joliet", "-rock", str(tmp_path / "user-data"),
                    str(tmp_path / "meta-data")], check=True)
    vm = xapi_sim.db.create("VM", name_label="plain")
    vdi = xapi_sim.db.create("VDI", SR=xapi_sim.sr, virtual_size=str(cloudinit.MiB))
    xapi_sim.db.create("VBD", VM=vm, VDI=vdi, userdevice="1", mode="RO", type="Disk")
    xapi_sim.vdi_content[vdi] = (tmp_path / "seed.iso").read_bytes()
    if readable:
        meta, user = read_drive(xapi_sim, vm)
        assert meta["instance-id"] == "i-1"
        assert keys_for(user, getpass.getuser()) == (None, [PUBLIC])
    else:
        with pytest.raises(DriveError, match="no disk labelled cidata"):
            read_drive(xapi_sim, vm)


# ------------------------------------------------------------------------------ whole path
def test_stock_image_comes_up_from_its_config_drive(xapi_sim, xcpng_cloud_settings):
    """A stock cloud image (no bioxen template convention): the guest reads only the drive,
    takes its host key (the first connection is verified) and the user's key; nothing of it
    is in xenstore; destroy removes the drive with the VM."""
    from bioxen_shell.remote import hostkeys
    from bioxen_shell.vm.manager import Manager
    settings, guests = xcpng_cloud_settings
    before = _tables(xapi_sim)
    manager = Manager()
    vm = manager.create("cloud", type="xcpng", pool=settings)
    try:
        assert vm.eval("return 6 * 7") == [42]
        ((ref, rec),) = xapi_sim.vms().items()
        assert guests.problems == {}
        meta, _user = guests.seeds[ref]
        assert meta == {"instance-id": rec["uuid"], "local-hostname": "bioxen-cloud"}
        assert AUTHORIZED_KEYS_KEY not in rec["xenstore_data"]
        assert HOST_KEY_KEY not in rec["xenstore_data"]
        drives = [b for b in rec["VBDs"] if xapi_sim.table("VBD")[b]["mode"] == "RO"]
        (drive,) = drives
        vbd = xapi_sim.table("VBD")[drive]
        assert (vbd["type"], vbd["bootable"]) == ("Disk", False)
        vdi = xapi_sim.table("VDI")[vbd["VDI"]]
        assert vdi["other_config"][cloudinit.DRIVE_KEY] == rec["uuid"]
        root_vdi = next(xapi_sim.table("VBD")[b]["VDI"] for b in rec["VBDs"] if b != drive)
        assert vdi["SR"] == xapi_sim.table("VDI")[root_vdi]["SR"]  # beside the VM's disk
        assert [c[1] for c in xapi_sim.calls("import_raw_vdi")] == ["raw"]
        assert f"xcpng-{rec['uuid']} ssh-ed25519 " in hostkeys.bioxen_known_hosts().read_text()
        assert xapi_sim.open_sessions() == [] and xapi_sim.table("task") == {}

        vm.stop()   # the drive stays: the rebooted guest reads it again, same host key
        vm.start()
        assert vm.eval("return 'again'") == ["again"]
        assert len(xapi_sim.calls("import_raw_vdi")) == 1
    finally:
        manager.destroy_all()
    assert guests.running() == 0
    assert_nothing_left(xapi_sim, before)


def test_parallel_vms_each_get_their_own_drive(xapi_sim, xcpng_cloud_settings):
    from bioxen_shell.vm.manager import Manager
    settings, guests = xcpng_cloud_settings
    before = _tables(xapi_sim)
    manager = Manager()
    vms = manager.create("par", type="xcpng", pool=settings, count=3)
    try:
        assert sorted(v.eval("return 1")[0] for v in vms) == [1, 1, 1]
        seeds = list(guests.seeds.values())
        assert sorted(m["instance-id"] for m, _ in seeds) == sorted(
            r["uuid"] for r in xapi_sim.vms().values())
        assert len({u["ssh_keys"]["ed25519_private"] for _, u in seeds}) == 3
    finally:
        manager.destroy_all()
    assert_nothing_left(xapi_sim, before)


@pytest.mark.parametrize("method", ["VDI.create", "VBD.create"])
def test_a_lost_reply_while_making_the_drive_makes_one_drive(xapi_sim, xapi_test_pool,
                                                            xcpng_cloud_settings, method):
    """The pool made the drive (or attached it) but the reply never came: bioxen finds it by
    its key instead of making a second one, and destroy removes everything."""
    from bioxen_shell.vm.manager import Manager
    settings, _guests = xcpng_cloud_settings
    before = _tables(xapi_sim)
    xapi_test_pool.http.lose_reply_next[method] = 1
    manager = Manager()
    vm = manager.create("lost", type="xcpng", pool=settings)
    try:
        assert vm.eval("return 1") == [1]
        assert len(xapi_sim.calls(method)) == 1
        drives = [v for v in xapi_sim.table("VDI").values() if cloudinit.DRIVE_KEY in v["other_config"]]
        assert len(drives) == 1 and len(drives[0]["VBDs"]) == 1
    finally:
        manager.destroy_all()
    assert_nothing_left(xapi_sim, before)


@pytest.mark.parametrize("endpoint", ["https pinned", "pool member"])
def test_upload_goes_where_and_how_the_api_calls_go(xapi_sim, xapi_test_pool,
                                                    xcpng_cloud_settings, endpoint):
    """Over HTTPS pinned to the certificate fingerprint, and to the coordinator after a
    member's HOST_IS_SLAVE redirect (a member has no session to check)."""
    settings, guests = xcpng_cloud_settings
    if endpoint == "https pinned":
        settings = dict(settings, url=xapi_test_pool.https.url,
                        fingerprint=xapi_test_pool.certs.fingerprint)
    else:
        settings = dict(settings, url=xapi_test_pool.member_http.url)
    b = backend(settings)
    proc = b.start()
    try:
        assert guests.problems == {} and xapi_sim.calls("import_raw_vdi")
    finally:
        proc.kill()
        proc.close()
        b.destroy()
    assert xapi_sim.vms() == {}


def test_a_stock_image_given_xenstore_keys_never_lets_us_in(xapi_sim, xcpng_cloud_settings):
    """The guest really reads only its drive: with inject = "xenstore" there is none, so it
    presents its own host key; the create fails saying what to set, and is rolled back."""
    settings, guests = xcpng_cloud_settings
    before = _tables(xapi_sim)
    with pytest.raises(BackendError, match='set inject = "cloud-init" for a stock cloud image'):
        backend(dict(settings, inject="xenstore")).start()  # a key mismatch is not retried
    assert list(guests.problems.values()) == ["no disk labelled cidata"]
    assert_nothing_left(xapi_sim, before)


def test_a_drive_for_another_account_lets_nobody_in(xapi_sim, xcpng_cloud_settings):
    """The guest gives the authorized key only to the account the drive creates: bioxen
    asking for a user the image cannot serve fails with a hint on cloud-init, rolled back."""
    settings, guests = xcpng_cloud_settings
    before = _tables(xapi_sim)
    with pytest.raises(BackendError, match="runs cloud-init with its NoCloud datasource"):
        backend(dict(settings, ssh_user="someone-else", ip_timeout=2)).start()
    assert list(guests.problems.values()) == [
        f"user-data gives account {guests.account!r} no authorized key"]
    assert_nothing_left(xapi_sim, before)


@pytest.mark.parametrize("method,code,params", [
    ("VDI.create", "SR_FULL", ("1048576", "0")),
    ("VM.get_allowed_VBD_devices", "HANDLE_INVALID", ("VM", "x")),
    ("VBD.create", "DEVICE_ALREADY_EXISTS", ("1",)),
    ("import_raw_vdi", "VDI_IO_ERROR", ("Device I/O errors",)),
    ("VM.start", "HOST_NOT_ENOUGH_FREE_MEMORY", ("1", "0")),
])
def test_a_failure_around_the_drive_leaves_nothing(xapi_sim, xcpng_cloud_settings, method, code,
                                                   params):
    """Each step of the drive (and the start after it) failing: the error names the step and
    XAPI's code, and the drive's VDI goes with the rollback (destroyed at once if it was never
    attached)."""
    settings, guests = xcpng_cloud_settings
    before = _tables(xapi_sim)
    xapi_sim.fail_next(method, code, *params)
    with pytest.raises(BackendError) as exc:
        backend(settings).start()
    message = str(exc.value)
    assert code in message and "rolled back" in message
    step = "start the VM" if method == "VM.start" else "attach the cloud-init config drive"
    assert f"step '{step}'" in message
    assert_nothing_left(xapi_sim, before)
    assert guests.running() == 0


# ------------------------------------------------------------------------------ the handler
@pytest.fixture
def upload_target(xapi_sim, xapi_test_pool):
    """A logged-in session and a fresh 1 MiB VDI on the private pool."""
    session = XapiSession(xapi_test_pool.url, "root", SIM_PASSWORD)
    session.login()
    vdi = session.call("VDI.create", {
        "name_label": "target", "SR": xapi_sim.sr, "virtual_size": str(cloudinit.MiB),
        "type": "user", "sharable": False, "read_only": False, "other_config": {}})
    yield session, vdi
    session.logout()


def test_upload_stores_the_bytes_and_completes_our_task(xapi_sim, upload_target):
    session, vdi = upload_target
    data = b"\x01seed" + b"\0" * 100
    cloudinit.upload_raw(session, vdi, data, timeout=30, what="a test image")
    assert xapi_sim.vdi_content[vdi] == data
    assert xapi_sim.table("task") == {}  # watched to the end, then destroyed


def test_a_body_larger_than_the_vdi_fails_the_task_and_the_error_surfaces(xapi_sim,
                                                                          upload_target):
    session, vdi = upload_target
    with pytest.raises(XapiError) as exc:
        cloudinit.upload_raw(session, vdi, b"\0" * (cloudinit.MiB + 1), timeout=30, what="x")
    assert exc.value.code == "INTERNAL_ERROR" and "do not fit" in str(exc.value)
    assert vdi not in xapi_sim.vdi_content and xapi_sim.table("task") == {}


def test_an_invalid_session_is_refused_before_anything_happens(xapi_sim, xapi_test_pool,
                                                               upload_target):
    session, vdi = upload_target
    other = XapiSession(xapi_test_pool.url, "root", SIM_PASSWORD)
    other.login()
    task = other.call("task.create", "t", "")
    dead = other._sdk._session
    other.logout()
    response = _raw_put(xapi_test_pool, {"session_id": dead, "task_id": task, "vdi": vdi,
                                         "format": "raw"}, b"data")
    assert response.status == 401
    assert xapi_sim.table("task")[task]["status"] == "pending"
    assert vdi not in xapi_sim.vdi_content


def test_an_upload_the_pool_refuses_or_cuts_off_is_an_error_and_leaves_no_task(
        xapi_sim, xapi_test_pool, upload_target):
    session, vdi = upload_target
    with pytest.raises(XapiConnectionError, match="HTTP 404"):
        cloudinit.upload_raw(session, "OpaqueRef:no-such-vdi", b"x", timeout=30, what="x")
    assert xapi_sim.table("task") == {}
    xapi_test_pool.http.drop_next["import_raw_vdi"] = 1  # the pool hangs up on the upload
    with pytest.raises(XapiConnectionError, match=r"broke after PUT /import_raw_vdi was sent"):
        cloudinit.upload_raw(session, vdi, b"x", timeout=30, what="x")
    assert xapi_sim.table("task") == {} and vdi not in xapi_sim.vdi_content


def test_a_cut_off_upload_rolls_the_create_back(xapi_sim, xapi_test_pool,
                                                xcpng_cloud_settings):
    settings, guests = xcpng_cloud_settings
    before = _tables(xapi_sim)
    xapi_test_pool.http.drop_next["import_raw_vdi"] = 1
    with pytest.raises(BackendError) as exc:
        backend(settings).start()
    assert "step 'attach the cloud-init config drive'" in str(exc.value)
    assert "rolled back" in str(exc.value)
    assert_nothing_left(xapi_sim, before)


def _raw_put(pool, query: dict, body: bytes,
             headers: dict | None = None) -> http.client.HTTPResponse:
    parts = urllib.parse.urlsplit(pool.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("PUT", "/import_raw_vdi?" + urllib.parse.urlencode(query))
    for name, value in (headers or {"Content-Length": str(len(body))}).items():
        conn.putheader(name, value)
    conn.endheaders()
    if headers and headers.get("Transfer-Encoding") == "chunked":
        conn.send(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    else:
        conn.send(body)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


@pytest.mark.parametrize("case,status,error", [
    ("unknown format", 404, ["INTERNAL_ERROR", "Unknown format iso"]),
    ("chunked encoding", 403, "INTERNAL_ERROR"),
    ("unknown vdi", 404, None),
])
def test_the_handler_is_as_strict_as_xapi(xapi_sim, xapi_test_pool, upload_target, case, status,
                                          error):
    session, vdi = upload_target
    task = session.call("task.create", "t", "")
    query = {"session_id": session._sdk._session, "task_id": task, "vdi": vdi, "format": "raw"}
    headers = None
    if case == "unknown format":
        query["format"] = "iso"
    elif case == "chunked encoding":
        headers = {"Transfer-Encoding": "chunked"}
    else:
        query["vdi"] = "OpaqueRef:00000000-0000-0000-0000-000000000000"
    response = _raw_put(xapi_test_pool, query, b"data", headers)
    assert response.status == status
    record = xapi_sim.table("task")[task]
    if error is None:
        assert record["status"] == "pending"  # refused before the task was touched
    else:
        assert record["status"] == "failure"
        assert (record["error_info"] == error if isinstance(error, list)
                else record["error_info"][0] == error)
    assert vdi not in xapi_sim.vdi_content


def test_the_answer_comes_before_the_body_is_judged(xapi_sim, xapi_test_pool, upload_target):
    """XAPI answers 200 with the task id, then streams: a client that trusts the status
    alone misses a failed write; the task says it."""
    session, vdi = upload_target
    task = session.call("task.create", "t", "")
    response = _raw_put(xapi_test_pool, {"session_id": session._sdk._session, "task_id": task,
                                         "vdi": vdi, "format": "raw"}, b"\0" * (2 * cloudinit.MiB))
    assert response.status == 200 and response.getheader("task-id") == task
    status = wait_for(lambda: xapi_sim.table("task")[task]["status"] != "pending" and
                      xapi_sim.table("task")[task]["status"], "the import task to finish")
    assert status == "failure"


# ------------------------------------------------------------------------------ settings
def test_inject_option_is_checked_everywhere():
    good = xcpng.PoolSettings.from_mapping("p", {"url": "https://x", "user": "root",
                                                 "inject": "xenstore"}, "here")
    assert good.inject == "xenstore"
    # a stock cloud image is what most users have: the config drive is the default
    assert xcpng.PoolSettings.from_mapping("p", {"url": "https://x", "user": "root"},
                                           "here").inject == "cloud-init"
    with pytest.raises(BackendError, match=r'here: inject: expected "cloud-init"'):
        xcpng.PoolSettings.from_mapping("p", {"url": "https://x", "user": "root",
                                              "inject": "iso"}, "here")
    with pytest.raises(BackendError, match=r'vm.create\{…\}: inject: expected "cloud-init"'):
        XCPngBackend("v", {"pool": {"url": "https://x", "user": "root"}, "inject": "drive"},
                     load_profile(None)).settings()


def test_inject_in_the_config_file(tmp_path):
    from bioxen_shell import paths
    cfg = paths.config_dir() / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('[pools.lab]\nurl = "https://x"\ninject = "cloud-init"\n')
    assert load_config().pools["lab"].inject == "cloud-init"
    cfg.write_text('[pools.lab]\nurl = "https://x"\ninject = "cdrom"\n')
    with pytest.raises(ConfigError) as err:
        load_config()
    assert str(err.value).startswith(f"{cfg}: pools.lab.inject: ")
    assert "cloud-init" in str(err.value)

