"""XCPngBackend against the XAPI simulator through the unmodified XenAPI SDK, ending on the
loopback sshd: the full lifecycle, a XAPI failure injected at each provisioning step (nothing
left behind), template/network errors, IP timeout, stop fallback, destroy keeping a disk
another VM uses, snapshots, parallel creation, session expiry, pool redirects, and secrets."""
from __future__ import annotations

import json
import logging

import pytest

from bioxen_shell.remote import registry as registry_mod
from bioxen_shell.remote import xcpng
from bioxen_shell.remote.xcpng import AUTHORIZED_KEYS_KEY, OWNER_KEY, TAG, XCPngBackend
from bioxen_shell.vm.profiles import load_profile
from bioxen_shell.vm.transport import BackendError
from tests.waiting import PATIENCE
from tests.xapi_sim import GiB, MiB
from tests.xapi_sim.fixtures import SIM_PASSWORD, TEMPLATE


@pytest.fixture(autouse=True)
def _fresh_password_cache():
    xcpng.forget_passwords()
    yield
    xcpng.forget_passwords()


def backend(settings: dict, name: str = "t1", **options) -> XCPngBackend:
    return XCPngBackend(name, {"pool": dict(settings), **options}, load_profile(None))


def baseline(sim) -> dict:
    """What the pristine pool holds, to compare with after a failure."""
    return {cls: set(sim.table(cls)) for cls in ("VM", "VDI", "VBD", "VIF")}


def assert_nothing_left(sim, before: dict) -> None:
    after = {cls: set(sim.table(cls)) for cls in ("VM", "VDI", "VBD", "VIF")}
    assert after == before, f"left behind: { {c: after[c] - before[c] for c in after} }"
    assert sim.open_sessions() == [], "a session was not logged out"
    assert sim.table("task") == {}, "a task was not destroyed"
    assert registry_mod.Registry().all() == []


def the_vm(sim) -> tuple[str, dict]:
    (item,) = sim.vms().items()
    return item


# ------------------------------------------------------------------------------ lifecycle
def test_full_lifecycle(xapi_sim, xcpng_settings):
    from bioxen_shell.vm.manager import Manager
    disks_before = set(xapi_sim.table("VDI"))
    manager = Manager()
    vm = manager.create("life", type="xcpng", pool=xcpng_settings, memory="1GiB", vcpus=2)
    try:
        assert vm.eval("return 6 * 7") == [42]
        ref, rec = the_vm(xapi_sim)
        assert rec["name_label"] == "bioxen-life"
        assert TAG in rec["tags"] and rec["other_config"][OWNER_KEY].count(":") == 2
        assert rec["power_state"] == "Running" and not rec["is_a_template"]
        assert rec["memory_static_max"] == rec["memory_dynamic_max"] == str(GiB)
        assert (rec["VCPUs_max"], rec["VCPUs_at_startup"]) == ("2", "2")
        (vif,) = rec["VIFs"]
        assert xapi_sim.table("VIF")[vif]["network"] == xapi_sim.network
        public = open(xcpng_settings["ssh_key"] + ".pub").read().strip()
        assert rec["xenstore_data"][AUTHORIZED_KEYS_KEY] == public
        assert [r.uuid for r in registry_mod.Registry().all()] == [rec["uuid"]]
        facts = vm.describe()
        assert facts["type"] == "xcpng" and facts.get("template") == TEMPLATE
        assert xapi_sim.logins and {l["originator"] for l in xapi_sim.logins} == {"bioxen"}
        assert xapi_sim.open_sessions() == []  # no session held while the VM just runs

        vm.stop()
        assert xapi_sim.table("VM")[ref]["power_state"] == "Halted"
        vm.start()  # boots the same guest again
        assert vm.eval("return 1 + 1") == [2]
        assert xapi_sim.table("VM")[ref]["power_state"] == "Running"
    finally:
        manager.destroy_all()
    assert xapi_sim.vms() == {}
    assert set(xapi_sim.table("VDI")) == disks_before  # the provisioned disk went with the VM
    assert xapi_sim.open_sessions() == [] and xapi_sim.table("task") == {}
    assert registry_mod.Registry().all() == []


@pytest.mark.parametrize("lost_clone_replies", [0, 2])
def test_parallel_count_creates_distinct_vms(xapi_sim, xapi_test_pool, xcpng_settings,
                                             lost_clone_replies):
    """count=3; with clone replies lost, each create finds its own VM by its own token."""
    from bioxen_shell.vm.manager import Manager
    xapi_test_pool.http.lose_reply_next["VM.clone"] = lost_clone_replies
    manager = Manager()
    vms = manager.create("par", type="xcpng", pool=xcpng_settings, count=3)
    try:
        assert sorted(v.eval("return ...", v.name)[0] for v in vms) == ["par1", "par2", "par3"]
        labels = sorted(r["name_label"] for r in xapi_sim.vms().values())
        assert labels == ["bioxen-par1", "bioxen-par2", "bioxen-par3"]
        assert len(registry_mod.Registry().all()) == 3
        assert len(xapi_sim.calls("VM.clone")) == 3
        assert xapi_test_pool.http.hang_ups == lost_clone_replies
    finally:
        manager.destroy_all()
    assert xapi_sim.vms() == {} and xapi_sim.open_sessions() == []


# ------------------------------------------------------------------------------ failures
STEPS = [
    ("VM.clone", ("SR_FULL", "4294967296", "0"), "clone the template"),
    ("VM.add_tags", ("INTERNAL_ERROR", "db locked"), "tag the VM"),
    ("VM.provision", ("PROVISION_FAILED_OUT_OF_SPACE",), "provision disks"),
    ("VM.set_memory_limits", ("MEMORY_CONSTRAINT_VIOLATION_ORDER",), "set memory and vCPUs"),
    ("VM.set_VCPUs_max", ("INVALID_VALUE", "VCPUs_max", "2"), "set memory and vCPUs"),
    ("VIF.create", ("DEVICE_ALREADY_EXISTS", "0"), "attach the network"),
    ("VM.add_to_xenstore_data", ("MAP_DUPLICATE_KEY", "VM", "xenstore_data", "u", "k"),
     "inject the SSH key"),
    ("VM.start", ("NO_HOSTS_AVAILABLE",), "start the VM"),
    ("VM_guest_metrics.get_networks", ("INTERNAL_ERROR", "boom"),
     "wait for the guest's IP address"),
]


@pytest.mark.parametrize("method,error,step", STEPS, ids=[s[0] for s in STEPS])
def test_failure_at_each_step_rolls_back(xapi_sim, xcpng_settings, method, error, step):
    before = baseline(xapi_sim)
    xapi_sim.fail_next(method, *error)
    b = backend(xcpng_settings, memory="1GiB", vcpus=2)
    with pytest.raises(BackendError) as exc:
        b.start()
    message = str(exc.value)
    assert error[0] in message and f"step '{step}'" in message
    if method != "VM.clone":
        assert "rolled back" in message
    assert_nothing_left(xapi_sim, before)
    b.destroy()  # idempotent after a failed start


@pytest.mark.parametrize("failing_step", ["VIF.create", "VM.add_tags"])
def test_failed_rollback_says_what_is_left(xapi_sim, xcpng_settings, failing_step):
    """Creating fails and so does VM.destroy in the rollback: the message names the VM that
    really stayed (its uuid, state, disks, and that it is untagged when the failure came
    before tagging); its record stays, so :destroy() or gc can still remove it."""
    before = baseline(xapi_sim)
    xapi_sim.fail_next(failing_step, "INTERNAL_ERROR", "boom")
    xapi_sim.fail_next("VM.destroy", "INTERNAL_ERROR", "db locked")
    b = backend(xcpng_settings)
    with pytest.raises(BackendError) as exc:
        b.start()
    message = str(exc.value)
    # (until it is tagged the clone carries its create's label, "bioxen-t1 (creating …)")
    (rec,) = [v for v in xapi_sim.table("VM").values() if v["name_label"].startswith("bioxen-t1")]
    assert "rolling back failed" in message and "db locked" in message
    # (before VM.provision the clone is still a template without disks)
    disks = ", 1 of its disk(s)" if failing_step == "VIF.create" else ""
    assert f"VM {rec['uuid']} ({rec['name_label']}; Halted{disks}" in message
    assert "is still on the pool" in message and "bioxen vm gc --yes" in message
    assert ("not tagged 'bioxen'" in message) == (failing_step == "VM.add_tags")
    assert "nothing was left" not in message and exc.value.left_on_pool
    assert [r.uuid for r in registry_mod.Registry().all()] == [rec["uuid"]]
    b.destroy()
    assert_nothing_left(xapi_sim, before)


@pytest.mark.parametrize("destroy_failures", [1, 2])
def test_vm_create_reports_what_is_really_left(xapi_sim, xcpng_settings, destroy_failures):
    """Through vm.create, a failed rollback is retried once: the final message says either
    that the retry removed everything, or what the pool still holds."""
    from bioxen_shell.vm.manager import Manager, VMCreateError
    before = baseline(xapi_sim)
    xapi_sim.fail_next("VIF.create", "INTERNAL_ERROR", "boom")
    xapi_sim.fail_next("VM.destroy", "INTERNAL_ERROR", "db locked", count=destroy_failures)
    manager = Manager()
    with pytest.raises(VMCreateError) as exc:
        manager.create("rb", type="xcpng", pool=xcpng_settings, count=2)
    message = str(exc.value)
    if destroy_failures == 1:
        assert "removing it once more worked: nothing is left" in message
        assert "(all 2 were removed)" in message
        assert_nothing_left(xapi_sim, before)
        return
    (rec,) = xapi_sim.vms().values()
    assert "1 could not be removed completely" in message and "all 2" not in message
    assert "cleaning up also failed" in message
    assert f"VM {rec['uuid']} (bioxen-rb" in message and "is still on the pool" in message
    # still recorded as ours: `bioxen vm gc --yes` takes it once this process has exited
    assert [r.uuid for r in registry_mod.Registry().all()] == [rec["uuid"]]
    from bioxen_shell.remote.xapi import XapiSession
    with XapiSession(xcpng_settings["url"], "root", SIM_PASSWORD) as s:
        xcpng.destroy_vm(s, s.call("VM.get_by_uuid", rec["uuid"]))


def test_rollback_that_leaves_a_disk_names_it(xapi_sim, xcpng_settings):
    xapi_sim.fail_next("VIF.create", "INTERNAL_ERROR", "boom")
    xapi_sim.fail_next("VDI.destroy", "INTERNAL_ERROR", "SR backend failed")
    before = baseline(xapi_sim)
    b = backend(xcpng_settings)
    with pytest.raises(BackendError) as exc:
        b.start()
    message = str(exc.value)
    assert xapi_sim.vms() == {}
    (disk,) = set(xapi_sim.table("VDI")) - before["VDI"]
    uuid = xapi_sim.table("VDI")[disk]["uuid"]
    assert f"the VM is gone, but disk {uuid}" in message and "stayed on the pool" in message
    b.destroy()  # what vm.create does next: the disk goes too
    assert_nothing_left(xapi_sim, before)


def test_start_failure_inside_the_task_rolls_back(xapi_sim, xcpng_settings):
    """Not enough memory: the Async.VM.start task fails with the code and its params."""
    before = baseline(xapi_sim)
    xapi_sim.host_memory = 256 * MiB
    with pytest.raises(BackendError) as exc:
        backend(xcpng_settings, memory="1GiB").start()
    assert "HOST_NOT_ENOUGH_FREE_MEMORY" in str(exc.value)
    assert f"needed={GiB}" in str(exc.value)
    assert_nothing_left(xapi_sim, before)


def test_ip_timeout_says_guest_tools_may_be_missing(xapi_sim, xcpng_settings):
    before = baseline(xapi_sim)
    xapi_sim.guest.tools = False
    with pytest.raises(BackendError) as exc:
        backend(xcpng_settings, ip_timeout=0.5).start()
    assert "guest tools" in str(exc.value) and "ip_timeout" in str(exc.value)
    assert_nothing_left(xapi_sim, before)


def test_ssh_failure_after_boot_rolls_back(xapi_sim, xcpng_settings):
    """The guest boots but never installs bioxen's key: SSH refuses; the VM is removed."""
    before = baseline(xapi_sim)
    xapi_sim.guest.on_boot.clear()
    xapi_sim.guest.ip = "127.0.0.1"
    # ip_timeout bounds the wait for the IP and then, once more, SSH's retries (what this test
    # waits out).  The guest has its IP when VM.start returns, so only SSH can time out.
    xapi_sim.guest.boot_delay = None
    settings = dict(xcpng_settings, ssh_user="no-such-user-bioxen", ip_timeout=3)
    with pytest.raises(BackendError) as exc:
        backend(settings).start()
    assert "installs the injected key" in str(exc.value) and "rolled back" in str(exc.value)
    assert_nothing_left(xapi_sim, before)


def test_missing_template_lists_the_templates(xapi_sim, xcpng_settings):
    with pytest.raises(BackendError) as exc:
        backend(xcpng_settings, template="Nope 1.0").start()
    assert "'Nope 1.0' not found" in str(exc.value) and TEMPLATE in str(exc.value)
    assert xapi_sim.vms() == {} and xapi_sim.open_sessions() == []


def test_ambiguous_template_asks_for_a_uuid(xapi_sim, xcpng_settings):
    xapi_sim.db.create("VM", name_label=TEMPLATE, is_a_template=True)
    with pytest.raises(BackendError, match="2 templates .* give template=<uuid>"):
        backend(xcpng_settings).start()
    assert xapi_sim.vms() == {}


def test_unknown_network_is_named(xapi_sim, xcpng_settings):
    before = baseline(xapi_sim)
    with pytest.raises(BackendError, match="network 'lan9' not found"):
        backend(xcpng_settings, network="lan9").start()
    assert_nothing_left(xapi_sim, before)


def test_bad_credentials_create_nothing(xapi_sim, xcpng_settings, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    with pytest.raises(BackendError) as exc:
        backend(dict(xcpng_settings, password_file=str(wrong))).start()
    assert "SESSION_AUTHENTICATION_FAILED" in str(exc.value)
    assert "not-the-password" not in str(exc.value)
    assert xapi_sim.vms() == {}


@pytest.mark.parametrize("options,needle", [
    ({"memory": "1KiB"}, "at least 128MiB"),
    ({"memory": "lots"}, "memory"),
    ({"vcpus": 0}, r"vm.create\{…\}: vcpus: expected an integer from 1 to 64, got 0"),
    ({"vcpus": True}, "vcpus"),
    ({"ip_timeout": -1}, "ip_timeout"),
    ({"colour": "red"}, "colour"),              # unknown: named before any VM exists
    ({"interpreter": "lua 5.4; rm"}, "interpreter"),
    ({"hostname": "elsewhere"}, "not for XCP-ng VMs"),
    ({"host_keys": "yolo"}, "host_keys"),
])
def test_bad_options_are_named(xcpng_settings, options, needle):
    with pytest.raises(BackendError, match=needle):
        backend(xcpng_settings, **options).settings()


def test_pool_table_rejects_a_password_and_unknown_keys(xcpng_settings):
    with pytest.raises(BackendError, match="pool.password: bioxen does not keep passwords"):
        backend(dict(xcpng_settings, password="x")).settings()
    with pytest.raises(BackendError, match="pool.colour: unknown key"):
        backend(dict(xcpng_settings, colour="red")).settings()
    with pytest.raises(BackendError, match="fingerprint"):
        backend(dict(xcpng_settings, fingerprint="sha256:zz")).settings()


# ------------------------------------------------------------------------------ stop / destroy
def _started(settings, name="t1", **options) -> tuple[XCPngBackend, object]:
    b = backend(settings, name, **options)
    proc = b.start()
    return b, proc


def test_stop_falls_back_to_hard_shutdown_when_the_guest_ignores_it(xapi_sim, xcpng_settings):
    b, proc = _started(dict(xcpng_settings, shutdown_timeout=0.5))
    try:
        proc.kill()
        proc.close()
        xapi_sim.guest.clean_shutdown_hangs = True
        b.stop()
        ref, rec = the_vm(xapi_sim)
        assert rec["power_state"] == "Halted"
        assert xapi_sim.calls("Async.VM.clean_shutdown") and xapi_sim.calls("VM.hard_shutdown")
        assert xapi_sim.table("task") == {} and xapi_sim.open_sessions() == []
    finally:
        b.destroy()
    assert xapi_sim.vms() == {}


def test_stop_without_guest_agent_uses_hard_shutdown(xapi_sim, xcpng_settings):
    b, proc = _started(xcpng_settings)
    try:
        proc.kill()
        proc.close()
        ref, _ = the_vm(xapi_sim)
        xapi_sim.fail_next("VM.clean_shutdown", "VM_LACKS_FEATURE", ref)
        b.stop()
        assert xapi_sim.table("VM")[ref]["power_state"] == "Halted"
        assert xapi_sim.calls("VM.hard_shutdown")
    finally:
        b.destroy()


@pytest.mark.parametrize("guest,code", [
    ({"shutdown_ack": False}, "VM_FAILED_SHUTDOWN_ACK"),      # a frozen guest
    ({"clean_shutdown_hangs": True, "shutdown_timeout": 0.3}, "VM_SHUTDOWN_TIMEOUT"),
], ids=["no-ack", "xapi-timeout"])
def test_stop_forces_off_a_guest_xapi_could_not_shut_down(xapi_sim, xcpng_settings, guest,
                                                          code):
    """XAPI's own answers when a clean shutdown fails: the guest never acknowledged the
    request, or acknowledged it and did not halt before XAPI's timeout.  Both end in a hard
    shutdown, and :stop() returns only once the pool shows the VM Halted."""
    b, proc = _started(xcpng_settings)  # bioxen's own shutdown_timeout is long
    try:
        proc.kill()
        proc.close()
        for key, value in guest.items():
            setattr(xapi_sim.guest, key, value)
        b.stop()
        ref, rec = the_vm(xapi_sim)
        assert rec["power_state"] == "Halted"
        (task,) = [t for t in _finished_tasks(xapi_sim) if t["name_label"] ==
                   "Async.VM.clean_shutdown"]
        assert task["error_info"][0] == code
        assert xapi_sim.calls("VM.hard_shutdown")
        assert b.describe()["power_state"] == "Halted"
        assert xapi_sim.table("task") == {} and xapi_sim.open_sessions() == []
    finally:
        b.destroy()
    assert xapi_sim.vms() == {}


def _finished_tasks(sim) -> list[dict]:
    """Every task's last record (bioxen destroys its tasks; the deletions keep them)."""
    return [d.snapshot for d in sim.db.deletions if d.cls == "task"]


def test_vm_whose_stop_failed_is_not_shown_stopped(xapi_sim, xcpng_settings):
    from bioxen_shell.vm.manager import Manager
    manager = Manager()
    vm = manager.create("st", type="xcpng", pool=xcpng_settings)
    try:
        xapi_sim.guest.shutdown_ack = False
        xapi_sim.fail_next("VM.hard_shutdown", "INTERNAL_ERROR", "xenopsd unreachable")
        with pytest.raises(BackendError, match="the pool shows it Running"):
            vm.stop()
        info = vm.describe()
        assert info["status"] == "lost" and info["power_state"] == "Running"
        assert "stop failed" in info["exit_reason"]
        vm.stop()  # the pool answers again: now it is stopped, and says so
        info = vm.describe()
        assert info["status"] == "stopped" and info["power_state"] == "Halted"
    finally:
        manager.destroy_all()
    assert xapi_sim.vms() == {}


def test_stop_that_fails_says_what_the_pool_shows(xapi_sim, xcpng_settings):
    """The guest never acknowledges and the hard shutdown fails too: :stop() raises, names
    both, says the pool shows the VM Running — and never claims it stopped."""
    b, proc = _started(xcpng_settings)
    try:
        proc.kill()
        proc.close()
        xapi_sim.guest.shutdown_ack = False
        ref, _ = the_vm(xapi_sim)
        xapi_sim.fail_next("VM.hard_shutdown", "INTERNAL_ERROR", "xenopsd unreachable")
        with pytest.raises(BackendError) as exc:
            b.stop()
        message = str(exc.value)
        assert "INTERNAL_ERROR" in message and "xenopsd unreachable" in message
        assert "the pool shows it Running" in message
        assert xapi_sim.table("VM")[ref]["power_state"] == "Running"
        assert b.describe()["power_state"] == "Running"
        assert xapi_sim.open_sessions() == []
    finally:
        b.destroy()
    assert xapi_sim.vms() == {}


def test_failed_destroy_says_what_is_left_and_can_be_repeated(xapi_sim, xcpng_settings):
    before = baseline(xapi_sim)
    b, proc = _started(xcpng_settings)
    proc.kill()
    proc.close()
    ref, rec = the_vm(xapi_sim)
    xapi_sim.fail_next("VDI.destroy", "INTERNAL_ERROR", "SR backend failed")
    with pytest.raises(BackendError) as exc:
        b.destroy()
    message = str(exc.value)
    (disk,) = set(xapi_sim.table("VDI")) - before["VDI"]
    assert f"the VM is gone, but disk {xapi_sim.table('VDI')[disk]['uuid']}" in message
    assert "it stays in bioxen's record" in message
    assert [r.uuid for r in registry_mod.Registry().all()] == [rec["uuid"]]
    b.destroy()  # the VM is gone by now; this removes the disk the first attempt left
    assert disk not in xapi_sim.table("VDI")
    assert_nothing_left(xapi_sim, before)


def test_destroy_keeps_a_disk_attached_to_another_vm_and_removes_snapshots(xapi_sim,
                                                                           xcpng_settings):
    b, proc = _started(xcpng_settings)
    proc.kill()
    proc.close()
    ref, rec = the_vm(xapi_sim)
    (own_vbd,) = [v for v in rec["VBDs"]]
    own_disk = xapi_sim.table("VBD")[own_vbd]["VDI"]
    # a data disk of ours that another VM also uses
    db = xapi_sim.db
    shared = db.create("VDI", name_label="shared reference data", SR=xapi_sim.sr,
                       virtual_size=str(GiB))
    db.create("VBD", VM=ref, VDI=shared, userdevice="1", type="Disk")
    other = db.create("VM", name_label="someone else")
    db.create("VBD", VM=other, VDI=shared, userdevice="0", type="Disk")
    # a snapshot of our VM, with its own disk copies
    from bioxen_shell.remote.xapi import XapiSession
    with XapiSession(xcpng_settings["url"], "root", SIM_PASSWORD) as s:
        snap = s.call("VM.snapshot", ref, "before")
    snap_disks = [xapi_sim.table("VBD")[v]["VDI"] for v in xapi_sim.table("VM")[snap]["VBDs"]]
    assert snap_disks

    b.destroy()
    vms, vdis = xapi_sim.table("VM"), xapi_sim.table("VDI")
    assert ref not in vms and snap not in vms and other in vms
    assert own_disk not in vdis and not set(snap_disks) & set(vdis)
    assert shared in vdis  # still used by "someone else"
    assert [xapi_sim.table("VBD")[v]["VM"] for v in vdis[shared]["VBDs"]] == [other]
    b.destroy()  # idempotent


def test_destroy_of_a_vm_removed_behind_our_back(xapi_sim, xcpng_settings):
    b, proc = _started(xcpng_settings)
    proc.kill()
    proc.close()
    ref, _ = the_vm(xapi_sim)
    xapi_sim.db.update("VM", ref, power_state="Halted")
    xapi_sim.db.delete("VM", ref)
    b.destroy()  # "already gone" is fine
    assert registry_mod.Registry().all() == []


def test_session_expiry_during_create_is_survived(xapi_sim, xcpng_settings):
    """Sessions expire while we wait for the guest (idle 0.3 s, boot 1 s): the SDK logs in
    again and provisioning carries on; every session is logged out in the end."""
    xapi_sim.session_idle_timeout = 0.3
    xapi_sim.guest.boot_delay = 1.0
    try:
        b, proc = _started(xcpng_settings)
        proc.kill()
        proc.close()
        assert len(xapi_sim.logins) > 1
        assert the_vm(xapi_sim)[1]["power_state"] == "Running"
        assert xapi_sim.open_sessions() == []
        xapi_sim.expire_sessions()
        b.stop()
        assert the_vm(xapi_sim)[1]["power_state"] == "Halted"
    finally:
        xapi_sim.session_idle_timeout = None
        b.destroy()
    assert xapi_sim.vms() == {} and xapi_sim.open_sessions() == []


def test_pool_member_url_redirects_to_the_coordinator(xapi_test_pool, xcpng_settings):
    sim = xapi_test_pool.sim
    settings = dict(xcpng_settings, url=xapi_test_pool.member_http.url)
    b, proc = _started(settings)
    try:
        assert the_vm(sim)[1]["power_state"] == "Running"
    finally:
        proc.kill()
        proc.close()
        b.destroy()
    assert sim.vms() == {}


def test_tls_pinned_pool(xapi_test_pool, xcpng_settings):
    settings = dict(xcpng_settings, url=xapi_test_pool.https.url,
                    fingerprint=xapi_test_pool.certs.fingerprint)
    b, proc = _started(settings)
    proc.kill()
    proc.close()
    b.destroy()
    assert xapi_test_pool.sim.vms() == {}


def test_tls_unverified_certificate_is_refused_before_anything_happens(xapi_test_pool,
                                                                       xcpng_settings):
    settings = dict(xcpng_settings, url=xapi_test_pool.https.url)
    with pytest.raises(BackendError, match="not trusted"):
        backend(settings).start()
    assert xapi_test_pool.sim.logins == []


# ------------------------------------------------------------------------------ secrets
def test_secrets_never_in_logs_errors_or_records(xapi_sim, xcpng_settings, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    wrong = tmp_path / "wrong"
    wrong.write_text("Wr0ng-Secret-xyz\n")
    wrong.chmod(0o600)
    with pytest.raises(BackendError) as exc:
        backend(dict(xcpng_settings, password_file=str(wrong))).start()
    xcpng.forget_passwords()
    b, proc = _started(xcpng_settings)
    proc.kill()
    proc.close()
    record_file = registry_mod.registry_path().read_text()
    on_the_pool = json.dumps(xapi_sim.table("VM"))  # names, tags, other_config, xenstore
    b.destroy()
    for secret in (SIM_PASSWORD, "Wr0ng-Secret-xyz"):
        assert secret not in caplog.text
        assert secret not in str(exc.value)
        assert secret not in record_file
        assert secret not in on_the_pool
    assert xapi_sim.logins  # the logins did happen


def test_password_in_the_pool_url_is_refused(xapi_sim, xcpng_settings, capsys):
    """https://root:PW@host would show in v:info().url, in errors and in the record: it is
    refused (inline and in the config file) by a message naming the credential options and
    never repeating the password."""
    from bioxen_shell.remote import config as config_mod
    secret = "Url-Secret-42"
    url = xcpng_settings["url"].replace("://", f"://root:{secret}@")
    with pytest.raises(BackendError) as exc:
        backend(dict(xcpng_settings, url=url)).start()
    message = str(exc.value)
    assert "password_file, password_command or password_env" in message
    assert "url" in message and secret not in message
    _write_config(dict(xcpng_settings, url=url))
    assert config_mod.cli_main(["check"]) == 2
    err = capsys.readouterr().err
    assert "pools.sim.url" in err and "password_file" in err and secret not in err
    with pytest.raises(BackendError, match='user = "NAME"'):
        backend(dict(xcpng_settings, url=xcpng_settings["url"].replace("://", "://root@"))).settings()
    assert xapi_sim.logins == [] and xapi_sim.vms() == {}


def test_http_is_refused_unless_allowed_and_then_warns(xapi_sim, xcpng_settings, capsys):
    from bioxen_shell.remote import config as config_mod
    plain = {k: v for k, v in xcpng_settings.items() if k != "allow_http"}
    with pytest.raises(BackendError) as exc:
        backend(plain).start()
    assert "http://" in str(exc.value) and "allow_http = true" in str(exc.value)
    _write_config(plain)
    assert config_mod.cli_main(["check"]) == 2
    assert "pools.sim.url" in capsys.readouterr().err
    assert xapi_sim.logins == []
    _write_config(xcpng_settings)  # allow_http = true: accepted, with a warning
    assert config_mod.cli_main(["check"]) == 0
    assert "warning" in capsys.readouterr().err
    xcpng._http_warned.clear()  # noqa: SLF001 - once per pool and process
    with pytest.warns(xcpng.InsecureHTTPWarning, match="password crosses the network in clear"):
        with backend(xcpng_settings)._open_session() as s:  # noqa: SLF001
            assert s.call("pool.get_all")


def test_a_killed_bioxen_leaves_no_session_behind(xapi_sim, xcpng_settings):
    """XAPI keeps a session nobody logged out for 24 h.  A bioxen killed mid-create cannot
    log out; the next bioxen to log in on that pool logs its session out."""
    import signal
    from tests.remote.test_xcpng_gc import _spawn_creator, _wait
    xapi_sim.guest.boot_delay = 600  # the child waits for the IP until it is killed
    child = _spawn_creator(xcpng_settings, "killed")
    try:
        _wait(lambda: any(v["power_state"] == "Running" for v in xapi_sim.vms().values()),
              PATIENCE, "the child's VM to be started")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(PATIENCE)
    (left,) = xapi_sim.open_sessions()
    assert [r.uuid for r in registry_mod.Registry().sessions()] == [left["uuid"]]
    with backend(xcpng_settings)._open_session() as s:  # noqa: SLF001 - any next start
        assert [x["uuid"] for x in xapi_sim.open_sessions()] == [
            s.call("session.get_uuid", s.ref)]
    assert xapi_sim.open_sessions() == [] and registry_mod.Registry().sessions() == []
    from tests.remote.test_xcpng_gc import run_gc
    assert run_gc("--yes")[0] == 0  # the child's VM
    assert xapi_sim.vms() == {}


def test_registry_records_owner_before_provisioning(xapi_sim, xcpng_settings):
    """The record is written right after the clone, so a crash during provisioning is
    still found by gc."""
    seen = {}

    def check(sim, vm):  # runs when the guest boots, i.e. after provisioning
        seen["records"] = registry_mod.Registry().all()

    xapi_sim.guest.on_boot.append(check)
    b, proc = _started(xcpng_settings)
    proc.kill()
    proc.close()
    try:
        (record,) = seen["records"]
        assert record.owner == registry_mod.current_owner()
        assert record.uuid == the_vm(xapi_sim)[1]["uuid"]
    finally:
        b.destroy()



def test_lua_numbers_as_floats_are_accepted(xcpng_settings):
    """Under LuaJIT/Lua 5.1 every Lua number reaches Python as a float."""
    b = backend(dict(xcpng_settings, ssh_port=float(xcpng_settings["ssh_port"])),
                vcpus=2.0, memory=float(GiB))
    assert (b.vcpus, b.memory) == (2, GiB)
    assert b.settings().ssh_port == xcpng_settings["ssh_port"]
    with pytest.raises(BackendError, match="vcpus"):
        backend(xcpng_settings, vcpus=1.5)


def _write_config(settings: dict, name: str = "sim") -> None:
    import os
    from pathlib import Path
    lines = [f"[pools.{name}]"]
    for key, value in settings.items():
        lines.append(f"{key} = {json.dumps(value)}")
    path = Path(os.environ["BIOXEN_CONFIG_DIR"]) / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_pool_from_the_config_file(xapi_sim, xcpng_settings):
    _write_config(xcpng_settings)
    b = XCPngBackend("cfg", {"pool": "sim", "vcpus": 2}, load_profile(None))
    s = b.settings()
    assert (s.name, s.url.rstrip("/"), s.template) == (
        "sim", xcpng_settings["url"].rstrip("/"), TEMPLATE)
    assert "config.toml [pools.sim]" in s.where
    with pytest.raises(BackendError, match=r"pool 'nope' is not in .*config.toml.*pools defined: sim"):
        XCPngBackend("x", {"pool": "nope"}, load_profile(None)).settings()
    with pytest.raises(BackendError, match="needs pool="):
        XCPngBackend("x", {}, load_profile(None))


def test_vm_on_a_configured_pool_end_to_end(xapi_sim, xcpng_settings):
    from bioxen_shell.remote.config import cli_main as config_check
    from bioxen_shell.vm.manager import Manager
    _write_config(xcpng_settings)
    assert config_check(["check"]) == 0
    manager = Manager()
    vm = manager.create("conf", type="xcpng", pool="sim", vcpus=2)
    try:
        assert vm.eval("return 2 ^ 10") == [1024.0]
        assert the_vm(xapi_sim)[1]["VCPUs_at_startup"] == "2"
    finally:
        manager.destroy_all()
    assert xapi_sim.vms() == {} and xapi_sim.open_sessions() == []


def test_world_readable_password_file_is_refused(xapi_sim, xcpng_settings):
    import os
    os.chmod(xcpng_settings["password_file"], 0o644)
    with pytest.raises(BackendError) as exc:
        backend(xcpng_settings).start()
    assert "chmod 600" in str(exc.value) and SIM_PASSWORD not in str(exc.value)
    assert xapi_sim.logins == [] and xapi_sim.vms() == {}


def test_password_from_env_and_command(xapi_sim, xcpng_settings, monkeypatch):
    from bioxen_shell.remote.xapi import XapiSession
    for source in ({"password_env": "BIOXEN_TEST_XAPI_PW"},
                   {"password_command": f"cat {xcpng_settings['password_file']}"}):
        xcpng.forget_passwords()
        monkeypatch.setenv("BIOXEN_TEST_XAPI_PW", SIM_PASSWORD)
        settings = {k: v for k, v in xcpng_settings.items() if k != "password_file"}
        b = backend({**settings, **source})
        with b._open_session() as s:  # noqa: SLF001 - the login is what is under test
            assert isinstance(s, XapiSession) and s.call("pool.get_all")
    assert len(xapi_sim.logins) == 2 and xapi_sim.open_sessions() == []


# ------------------------------------------------------------------------------ host keys
def test_injected_host_key_gives_a_verified_first_connection(xapi_sim, xcpng_guest_settings):
    """Default host_keys="inject": bioxen generates the guest's host key, injects it, files
    it under the VM's uuid in its own known_hosts, and connects with RejectPolicy semantics —
    each guest its own sshd at its own address, no trust-on-first-use."""
    from bioxen_shell.remote import hostkeys
    from bioxen_shell.vm.manager import Manager
    settings, guests = xcpng_guest_settings
    manager = Manager()
    vms = manager.create("hk", type="xcpng", pool=settings, count=2)
    try:
        assert sorted(v.eval("return 1")[0] for v in vms) == [1, 1]
        assert guests.running() == 2
        addresses = {v.describe().get("host") for v in vms}
        assert len(addresses) == 2 and all("127.0.0." in a for a in addresses)
        known = hostkeys.bioxen_known_hosts().read_text()
        uuids = [r["uuid"] for r in xapi_sim.vms().values()]
        assert all(f"xcpng-{u} ssh-ed25519 " in known for u in uuids)
        # the guests took the private key: it is gone from the pool, and snapshots
        for record in xapi_sim.vms().values():
            assert xcpng.HOST_KEY_KEY not in record["xenstore_data"]
            assert xcpng.AUTHORIZED_KEYS_KEY in record["xenstore_data"]  # public: it stays
        vms[0].restart()  # a reboot keeps the installed key: still verified
        assert vms[0].eval("return 2") == [2]
    finally:
        manager.destroy_all()
    assert guests.running() == 0
    assert "xcpng-" not in hostkeys.bioxen_known_hosts().read_text()  # forgotten on destroy


def test_guest_presenting_another_host_key_is_refused(xapi_sim, xcpng_guest_settings):
    settings, guests = xcpng_guest_settings
    guests.honour_host_key = False  # a template without the convention: its own random key
    before = baseline(xapi_sim)
    with pytest.raises(BackendError) as exc:
        backend(dict(settings, ip_timeout=PATIENCE)).start()  # a mismatch is not retried
    assert "xcpng-" in str(exc.value) or "host key" in str(exc.value).lower()
    assert_nothing_left(xapi_sim, before)
    assert guests.running() == 0


@pytest.mark.parametrize("sr", [None, "Fast SSD"])
def test_template_with_its_own_disk_clone_or_copy(xapi_sim, xcpng_settings, sr):
    """A template that already has a disk (an imported image): cloned (fast) when no SR is
    asked for, copied onto the SR when one is; either way destroy removes only the VM's copy."""
    before = baseline(xapi_sim)
    options = {"template": "Alpine 3.20 cloud (disk)"}
    if sr:
        options["sr"] = sr
    b, proc = _started(xcpng_settings, **options)
    proc.kill()
    proc.close()
    ref, rec = the_vm(xapi_sim)
    (vbd,) = rec["VBDs"]
    vdi = xapi_sim.table("VBD")[vbd]["VDI"]
    assert xapi_sim.table("VDI")[vdi]["SR"] == (xapi_sim.sr_fast if sr else xapi_sim.sr)
    assert bool(xapi_sim.calls("Async.VM.copy")) == bool(sr)
    b.destroy()
    assert_nothing_left(xapi_sim, before)


def test_guest_powered_off_behind_our_back_is_lost_then_restarts(xapi_sim, xcpng_guest_settings):
    """Someone hard-shuts the guest down in XAPI while a call runs: the call fails as a lost
    VM (not a hang), and :restart() boots the same guest again."""
    from bioxen_shell.remote.xapi import XapiSession
    from bioxen_shell.vm.errors import VMCrashed
    from bioxen_shell.vm.manager import Manager
    settings, guests = xcpng_guest_settings
    manager = Manager()
    vm = manager.create("victim", type="xcpng", pool=settings)
    try:
        vm.send("while true do end")
        ref, _ = the_vm(xapi_sim)
        with XapiSession(settings["url"], "root", SIM_PASSWORD) as s:
            s.call("VM.hard_shutdown", ref)
        with pytest.raises(VMCrashed):
            vm.recv(PATIENCE)
        vm.restart()
        assert vm.eval("return 'back'") == ["back"]
        assert the_vm(xapi_sim)[0] == ref  # the same VM, booted again
    finally:
        manager.destroy_all()
    assert guests.running() == 0 and xapi_sim.vms() == {}
