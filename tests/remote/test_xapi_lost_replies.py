"""No XAPI call runs twice: lost replies, reset connections and repeated calls.

The simulator's lost-reply mode (``SimServer.lose_reply_next``) runs a call and then closes
the connection without answering — what a reset after the pool did the work looks like.  The
stock SDK transport re-sends the request then (xmlrpc.client's retry); bioxen's never does:
reads are asked again, everything else is recovered by looking for its effect.
"""
from __future__ import annotations

import contextlib

import pytest
import XenAPI

from bioxen_shell.remote import registry as registry_mod
from bioxen_shell.remote import xcpng
from bioxen_shell.remote.xapi import TLSSettings, XapiReplyLost, XapiSession, safe_to_resend
from bioxen_shell.remote.xcpng import OWNER_KEY, TAG, XCPngBackend, start_vm
from bioxen_shell.vm.profiles import load_profile
from bioxen_shell.vm.transport import BackendError
from tests.waiting import wait_for
from tests.xapi_sim.fixtures import SIM_PASSWORD, SIM_USER


@pytest.fixture(autouse=True)
def _fresh_password_cache():
    xcpng.forget_passwords()
    yield
    xcpng.forget_passwords()


def session_for(pool) -> XapiSession:
    return XapiSession(pool.url, SIM_USER, SIM_PASSWORD, label="pool 'sim'")


def backend(settings: dict, name: str = "t1", **options) -> XCPngBackend:
    return XCPngBackend(name, {"pool": dict(settings), **options}, load_profile(None))


@contextlib.contextmanager
def created(settings: dict):
    """A created, running VM whose agent is gone (the test drives the VM); destroyed after."""
    b = backend(settings)
    b.start().close()  # (close kills it first)
    try:
        yield b
    finally:
        b.destroy()


def labelled(sim, prefix: str) -> dict[str, dict]:
    return {r: v for r, v in sim.table("VM").items() if v["name_label"].startswith(prefix)}


# ------------------------------------------------------------------------------ the simulator
def test_lost_reply_mode_runs_the_call_and_the_stock_sdk_runs_it_twice(xapi_test_pool):
    """What the issue saw: after a reset the SDK's transport re-sends VM.clone, and the pool,
    which had made the VM already, makes a second one."""
    sim = xapi_test_pool.sim
    stock = XenAPI.Session(xapi_test_pool.url)
    stock.xenapi.login_with_password(SIM_USER, SIM_PASSWORD, "1.0", "test")
    try:
        xapi_test_pool.http.lose_reply_next["VM.clone"] = 1
        stock.xenapi.VM.clone(sim.template, "twice")
    finally:
        stock.xenapi.session.logout()
    assert len(sim.calls("VM.clone")) == 2 and len(labelled(sim, "twice")) == 2


def test_dropped_request_never_runs(xapi_test_pool):
    sim = xapi_test_pool.sim
    with session_for(xapi_test_pool) as s:
        xapi_test_pool.http.drop_next["VM.clone"] = 1
        with pytest.raises(XapiReplyLost):
            s.call("VM.clone", sim.template, "never")
    assert sim.calls("VM.clone") == [] and labelled(sim, "never") == {}


# ------------------------------------------------------------------------------ the session
def test_a_call_that_creates_is_not_sent_again_after_a_lost_reply(xapi_test_pool):
    sim = xapi_test_pool.sim
    with session_for(xapi_test_pool) as s:
        xapi_test_pool.http.lose_reply_next["VM.clone"] = 1
        with pytest.raises(XapiReplyLost) as exc:
            s.call("VM.clone", sim.template, "once")
        assert exc.value.method == "VM.clone" and "may have run" in str(exc.value)
        assert s.call("pool.get_all") == [sim.pool]  # the session goes on, on a new connection
    assert len(sim.calls("VM.clone")) == 1 and len(labelled(sim, "once")) == 1


def test_a_lost_reply_over_tls_is_a_lost_reply_too(xapi_test_pool):
    sim = xapi_test_pool.sim
    tls = TLSSettings(ca_bundle=str(xapi_test_pool.certs.ca_file))
    with XapiSession(xapi_test_pool.https.url, SIM_USER, SIM_PASSWORD, tls=tls) as s:
        xapi_test_pool.https.lose_reply_next["VM.clone"] = 1
        with pytest.raises(XapiReplyLost):
            s.call("VM.clone", sim.template, "tls")
        xapi_test_pool.https.lose_reply_next["VM.get_all"] = 1
        assert sim.template in s.call("VM.get_all")  # and a read is asked again
    assert len(sim.calls("VM.clone")) == 1 and len(labelled(sim, "tls")) == 1


def test_a_read_is_asked_again_after_a_lost_reply(xapi_test_pool):
    sim = xapi_test_pool.sim
    with session_for(xapi_test_pool) as s:
        xapi_test_pool.http.lose_reply_next["VM.get_all"] = 1
        assert sim.template in s.call("VM.get_all")
    assert len(sim.calls("VM.get_all")) == 2


@pytest.mark.parametrize("method, resend", [
    ("VM.get_record", True), ("VM.get_all_records", True), ("event_from", True),
    ("VM.set_name_label", True), ("VM.set_memory_limits", True),
    ("VM.remove_from_other_config", True), ("VM.add_tags", True),
    ("VM.destroy", True), ("VDI.destroy", True), ("task.destroy", True),
    ("VM.hard_shutdown", True),
    ("VM.clone", False), ("VM.copy", False), ("VIF.create", False), ("VM.start", False),
    ("VM.clean_shutdown", False), ("VM.provision", False), ("VM.add_to_other_config", False),
    ("Async.VM.start", False), ("Async.VM.hard_shutdown", False),
    ("session.login_with_password", False)])
def test_which_calls_are_safe_to_send_again(method, resend):
    assert safe_to_resend(method) == resend


def test_a_connection_the_pool_closed_while_idle_is_replaced_before_sending(xapi_test_pool):
    """The kept-alive connection died between two calls: the next call goes out on a new
    connection, so it runs once and succeeds (no false "lost reply")."""
    sim = xapi_test_pool.sim
    with session_for(xapi_test_pool) as s:
        xapi_test_pool.http.close_after_reply["pool.get_all"] = 1
        s.call("pool.get_all")
        wait_for(lambda: xapi_test_pool.http.hang_ups == 1, "the pool to close the connection")
        vm = s.call("VM.clone", sim.template, "fresh")
    assert list(labelled(sim, "fresh")) == [vm]


def test_call_or_find_finds_what_a_lost_call_made(xapi_test_pool):
    sim = xapi_test_pool.sim
    with session_for(xapi_test_pool) as s:
        def made():
            return next(iter(s.call("VM.get_by_name_label", "found")), None)
        xapi_test_pool.http.lose_reply_next["VM.clone"] = 1
        vm = s.call_or_find("VM.clone", sim.template, "found", find=made)
        # a request lost before it ran: nothing found, so it is sent again, once
        xapi_test_pool.http.drop_next["VM.clone"] = 1
        other = s.call_or_find("VM.clone", sim.template, "again",
                               find=lambda: next(iter(s.call("VM.get_by_name_label", "again")),
                                                 None))
    assert list(labelled(sim, "found")) == [vm] and list(labelled(sim, "again")) == [other]
    assert len(sim.calls("VM.clone")) == 2  # one each: "found" once, "again" once (dropped+1)


def test_set_map_key_survives_a_lost_reply(xapi_test_pool):
    sim = xapi_test_pool.sim
    with session_for(xapi_test_pool) as s:
        vm = s.call("VM.clone", sim.template, "m")
        xapi_test_pool.http.lose_reply_next["VM.add_to_other_config"] = 1
        s.set_map_key("VM", vm, "other_config", "k", "v")
        s.set_map_key("VM", vm, "other_config", "k", "w")  # replacing is fine too
        assert s.call("VM.get_other_config", vm)["k"] == "w"
    assert len(sim.calls("VM.add_to_other_config")) == 2  # the lost one was not re-sent


def test_an_async_call_refused_as_busy_inside_its_task_runs_again(xapi_test_pool):
    sim = xapi_test_pool.sim
    with session_for(xapi_test_pool) as s:
        vm = s.call("VM.clone", sim.template, "busy")
        s.call("VM.provision", vm)
        sim.fail_next("VM.start", "OTHER_OPERATION_IN_PROGRESS", "VM", vm, "clean_shutdown",
                      "OpaqueRef:other")
        s.run_async("VM.start", vm, False, False, timeout=60, what="start")
        assert s.call("VM.get_power_state", vm) == "Running"
    assert len(sim.calls("Async.VM.start")) == 2


def test_an_async_call_whose_reply_is_lost_is_not_sent_again_without_a_way_to_check(
        xapi_test_pool):
    sim = xapi_test_pool.sim
    with session_for(xapi_test_pool) as s:
        vm = s.call("VM.clone", sim.template, "p")
        xapi_test_pool.http.lose_reply_next["Async.VM.provision"] = 1
        with pytest.raises(XapiReplyLost):
            s.run_async("VM.provision", vm, timeout=60, what="provision")
    assert len(sim.calls("Async.VM.provision")) == 1


def test_a_repeated_start_of_a_vm_that_is_running_is_not_an_error(xapi_test_pool):
    sim = xapi_test_pool.sim
    with session_for(xapi_test_pool) as s:
        vm = s.call("VM.clone", sim.template, "dup")
        s.call("VM.provision", vm)
        s.call("VM.start", vm, False, False)
        start_vm(s, vm, timeout=60, what="VM dup to start")  # a duplicate: VM_BAD_POWER_STATE
        assert s.call("VM.get_power_state", vm) == "Running"
    assert sim.table("task") == {}


# ------------------------------------------------------------------------------ the backend
def assert_one_good_vm(sim, name: str = "t1") -> str:
    """Exactly one VM for ``name``: named, tagged, owned, recorded, started once."""
    vms = {r: v for r, v in sim.vms().items() if v["name_label"].startswith(f"bioxen-{name}")}
    ((ref, vm),) = vms.items()
    assert vm["name_label"] == f"bioxen-{name}"
    assert TAG in vm["tags"] and OWNER_KEY in vm["other_config"]
    assert vm["power_state"] == "Running" and len(vm["VIFs"]) == 1
    (record,) = registry_mod.Registry().all()
    assert record.uuid == vm["uuid"] and not record.pending
    return ref


def assert_all_gone(sim, lost_task: str = "") -> None:
    """Nothing left; except, after a lost reply to ``lost_task`` (``Async.VM.start``), the
    finished record of the task nobody could name (XAPI removes it an hour later)."""
    assert sim.vms() == {} and registry_mod.Registry().all() == []
    assert sim.open_sessions() == []
    left = [t for t in sim.table("task").values()
            if not (t["name_label"] == lost_task and t["status"] == "success")]
    assert left == []


_CREATING = ["VM.clone", "Async.VM.provision", "VIF.create", "Async.VM.start",
             "VM.add_to_other_config", "VM.add_to_xenstore_data"]
_SAFE = ["VM.add_tags", "VM.get_record", "VM.set_name_label"]


@pytest.mark.parametrize("method, lost", [(m, n) for m in _CREATING for n in (1, 2)]
                         + [(m, 1) for m in _SAFE])
def test_create_survives_lost_replies(xapi_sim, xapi_test_pool, xcpng_settings, method, lost):
    """Calls that must not run twice are found by their effect (twice in a row too: the
    second loss is never reached, as nothing is sent again); safe ones are asked again."""
    xapi_test_pool.http.lose_reply_next[method] = lost
    b = backend(xcpng_settings)
    proc = b.start()
    try:
        assert xapi_test_pool.http.hang_ups >= 1  # the fault did happen
        assert_one_good_vm(xapi_sim)
        for once in ("VM.clone", "VIF.create", "Async.VM.start", "Async.VM.provision"):
            assert len(xapi_sim.calls(once)) == 1, f"{once} was sent again"
    finally:
        proc.kill()
        proc.close()
        b.destroy()
    assert_all_gone(xapi_sim, method)


@pytest.mark.parametrize("method", ["VM.hard_shutdown", "VM.destroy", "VDI.destroy"])
def test_destroy_survives_lost_replies(xapi_sim, xapi_test_pool, xcpng_settings, method):
    """Asked again, a destroy or hard shutdown that had run answers "already gone/halted",
    which destroy takes as done: the VM and its disks are gone and nothing is reported."""
    disks = set(xapi_sim.table("VDI"))
    with created(xcpng_settings) as b:
        xapi_test_pool.http.lose_reply_next[method] = 1
        b.destroy()
        assert xapi_test_pool.http.hang_ups == 1
    assert set(xapi_sim.table("VDI")) == disks
    assert_all_gone(xapi_sim)


def test_copy_whose_reply_is_lost_is_found_not_copied_again(xapi_sim, xapi_test_pool,
                                                            xcpng_settings):
    xapi_test_pool.http.lose_reply_next["Async.VM.copy"] = 1
    b = backend(xcpng_settings, template="Alpine 3.20 cloud (disk)", sr="Fast SSD")
    proc = b.start()
    try:
        assert_one_good_vm(xapi_sim)
        assert len(xapi_sim.calls("Async.VM.copy")) == 1
    finally:
        proc.kill()
        proc.close()
        b.destroy()
    assert_all_gone(xapi_sim, "Async.VM.copy")


def test_clone_lost_and_pool_unreachable_keeps_the_pending_record(xapi_sim, xapi_test_pool,
                                                                  xcpng_settings):
    """The clone ran but its reply was lost, and then no lookup gets an answer either: bioxen
    cannot know the VM, so the record written before the clone stays (naming the VM's
    per-create label) for gc, and the error says so."""
    template_uuid = xapi_sim.table("VM")[xapi_sim.template]["uuid"]  # (found by uuid)
    xapi_test_pool.http.lose_reply_next["VM.clone"] = 1
    xapi_test_pool.http.drop_next["VM.get_by_name_label"] = 100
    with pytest.raises(BackendError) as exc:
        backend(xcpng_settings, template=template_uuid).start()
    ((ref, vm),) = labelled(xapi_sim, "bioxen-t1").items()  # (still a template: a clone)
    (record,) = registry_mod.Registry().all()
    assert record.pending and record.name_label == vm["name_label"]
    assert vm["name_label"].startswith("bioxen-t1 (creating ")
    assert "bioxen vm gc" in str(exc.value) and vm["name_label"] in str(exc.value)
    assert len(xapi_sim.calls("VM.clone")) == 1


def test_failure_after_a_lost_clone_reply_rolls_the_found_vm_back(xapi_sim, xapi_test_pool,
                                                                  xcpng_settings):
    """The clone's reply is lost and the pool then refuses the uuid lookup: the VM the pool
    did make is found by its label and destroyed with the rollback, the record dropped."""
    xapi_test_pool.http.lose_reply_next["VM.clone"] = 1
    xapi_sim.fail_next("VM.get_uuid", "INTERNAL_ERROR", "boom")
    with pytest.raises(BackendError) as exc:
        backend(xcpng_settings).start()
    assert "rolled back" in str(exc.value)
    assert_all_gone(xapi_sim)


def test_a_read_lost_twice_fails_the_create_cleanly(xapi_sim, xapi_test_pool, xcpng_settings):
    """A read is asked again once; lost again, the create fails and rolls back."""
    xapi_test_pool.http.lose_reply_next["VM.add_tags"] = 2
    with pytest.raises(BackendError) as exc:
        backend(xcpng_settings).start()
    assert "VM.add_tags" in str(exc.value) and "rolled back" in str(exc.value)
    assert len(xapi_sim.calls("VM.add_tags")) == 2
    assert_all_gone(xapi_sim)


def test_restart_survives_a_lost_start_reply(xapi_sim, xapi_test_pool, xcpng_settings):
    with created(xcpng_settings) as b:
        b.stop()
        xapi_test_pool.http.lose_reply_next["Async.VM.start"] = 1
        b.start().close()  # boots the same VM again
        assert xapi_test_pool.http.hang_ups == 1
        ref = assert_one_good_vm(xapi_sim)
        assert len([c for c in xapi_sim.calls("Async.VM.start") if c[0] == ref]) == 2  # 1 each
    assert_all_gone(xapi_sim, "Async.VM.start")


def test_two_vms_with_one_create_label_are_both_ours_one_is_kept(xapi_test_pool,
                                                                 xcpng_settings):
    """A clone still running when it was looked for, then sent again, makes two VMs under
    the create's own label: the lookup keeps one and destroys the other with its disks."""
    sim = xapi_test_pool.sim
    disks = set(sim.table("VDI"))
    label = "bioxen-t1 (creating 0123456789ab)"
    with session_for(xapi_test_pool) as s:
        first, second = (s.call("VM.clone", sim.template, label) for _ in range(2))
        for vm in (first, second):
            s.call("VM.provision", vm)  # each with its own disk
        kept = backend(xcpng_settings)._adopt_by_label(s, label)
    assert kept in (first, second) and list(labelled(sim, label)) == [kept]
    assert len(set(sim.table("VDI")) - disks) == 1  # the other one's disk went with it


def test_stop_survives_a_lost_shutdown_reply(xapi_sim, xapi_test_pool, xcpng_settings):
    with created(xcpng_settings) as b:
        xapi_test_pool.http.lose_reply_next["Async.VM.clean_shutdown"] = 1
        b.stop()
        assert xapi_test_pool.http.hang_ups == 1
        ((ref, vm),) = xapi_sim.vms().items()
        assert vm["power_state"] == "Halted"
        assert len(xapi_sim.calls("Async.VM.clean_shutdown")) == 1
    assert_all_gone(xapi_sim, "Async.VM.clean_shutdown")
