"""The XAPI simulator behaves as XAPI does, seen through the stock XenAPI SDK: reply shapes,
error codes with their parameters, type rules, power states, templates/provision, tasks,
event.from tokens, disks in use.  Other tests trust it, so it is tested on its own."""
from __future__ import annotations

import threading
import time
import urllib.request
import urllib.error

import pytest
import XenAPI

from tests.xapi_sim import NULL, GiB
from tests.xapi_sim.fixtures import SIM_PASSWORD, SIM_USER
from tests.waiting import PATIENCE, wait_for


@pytest.fixture
def x(xapi_test_pool):
    s = XenAPI.Session(xapi_test_pool.url)
    s.xenapi.login_with_password(SIM_USER, SIM_PASSWORD, "1.0", "test")
    yield s.xenapi
    s.xenapi.session.logout()


def failure(fn, *args) -> list[str]:
    with pytest.raises(XenAPI.Failure) as exc:
        fn(*args)
    return exc.value.details


def provisioned(x, sim, name="v") -> str:
    vm = x.VM.clone(sim.template, name)
    x.VM.provision(vm)
    return vm


def test_reply_shapes_and_unknown_methods(x, xapi_test_pool):
    assert failure(x.VM.fly, NULL) == ["MESSAGE_METHOD_UNKNOWN", "VM.fly"]
    assert failure(x.VM.start, NULL) == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.start", "4", "2"]
    assert failure(x.VM.get_record, "OpaqueRef:x") == ["HANDLE_INVALID", "VM", "OpaqueRef:x"]
    assert failure(x.VM.get_by_uuid, "u") == ["UUID_INVALID", "VM", "u"]
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(urllib.request.Request(xapi_test_pool.url + "nope", data=b"x"))
    assert exc.value.code == 404


def test_type_rules(x, xapi_test_pool):
    sim = xapi_test_pool.sim
    vm = provisioned(x, sim)
    assert failure(x.VM.start, vm, "false", False)[0] == "XMLRPC_UNMARSHAL_FAILURE"
    assert failure(x.VM.set_VCPUs_max, vm, None)[0] == "XMLRPC_UNMARSHAL_FAILURE"
    x.VM.set_VCPUs_max(vm, 2)        # Int as an XML-RPC int
    x.VM.set_VCPUs_max(vm, "3")      # Int as a decimal string, as XAPI sends them
    assert x.VM.get_VCPUs_max(vm) == "3"
    assert isinstance(x.VM.get_record(vm)["memory_static_max"], str)


def test_sessions(xapi_test_pool):
    s = XenAPI.Session(xapi_test_pool.url)
    assert failure(s.xenapi.login_with_password, SIM_USER, "bad", "1.0", "t") == [
        "SESSION_AUTHENTICATION_FAILED", SIM_USER, "Authentication failure"]
    raw = XenAPI.xmlrpclib.ServerProxy(xapi_test_pool.url)
    assert raw.VM.get_all("OpaqueRef:forged") == {
        "Status": "Failure", "ErrorDescription": ["SESSION_INVALID", "OpaqueRef:forged"]}


def test_power_state_rules(x, xapi_test_pool):
    sim = xapi_test_pool.sim
    vm = x.VM.clone(sim.template, "p")
    assert failure(x.VM.start, vm, False, False) == ["VM_IS_TEMPLATE", vm, "start"]
    x.VM.provision(vm)
    assert failure(x.VM.provision, vm) == ["PROVISION_ONLY_ALLOWED_ON_TEMPLATE"]
    assert failure(x.VM.clean_shutdown, vm) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    x.VM.start(vm, False, False)
    assert failure(x.VM.destroy, vm) == ["VM_BAD_POWER_STATE", vm, "halted, suspended", "running"]
    assert failure(x.VM.set_memory_limits, vm, "1", "2", "2", "2")[0] == "VM_BAD_POWER_STATE"
    assert failure(x.VM.clone, vm, "c") == ["VM_BAD_POWER_STATE", vm, "halted, suspended",
                                            "running"]
    x.VM.hard_shutdown(vm)
    x.VM.add_to_blocked_operations(vm, "destroy", "keep-me")
    assert failure(x.VM.destroy, vm) == ["OPERATION_BLOCKED", vm, "keep-me"]


def test_memory_and_vcpu_constraints(x, xapi_test_pool):
    vm = provisioned(x, xapi_test_pool.sim)
    assert failure(x.VM.set_memory_limits, vm, str(GiB), str(GiB), str(2 * GiB), str(2 * GiB)) \
        == ["MEMORY_CONSTRAINT_VIOLATION_ORDER"]
    assert failure(x.VM.set_VCPUs_at_startup, vm, "2") == ["INVALID_VALUE", "VCPUs_at_startup", "2"]
    x.VM.set_VCPUs_max(vm, "4")
    x.VM.set_VCPUs_at_startup(vm, "4")
    assert failure(x.VM.set_VCPUs_max, vm, "2") == ["INVALID_VALUE", "VCPUs_max", "2"]


def test_provision_with_empty_sr_and_clone_disks(x, xapi_test_pool):
    sim = xapi_test_pool.sim
    builtin = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(builtin, "b")
    assert failure(x.VM.provision, vm) == ["UUID_INVALID", "sr", ""]
    assert x.VM.get_VBDs(vm) == []  # nothing half-created
    good = provisioned(x, sim, "g")
    (vbd,) = x.VM.get_VBDs(good)
    vdi = x.VBD.get_VDI(vbd)
    copy = x.VM.clone(good, "g2")
    (vbd2,) = x.VM.get_VBDs(copy)
    assert x.VBD.get_VDI(vbd2) != vdi  # clones get their own disks
    assert x.VDI.get_SR(vdi) == sim.sr and vdi in x.SR.get_VDIs(sim.sr)


def test_vdi_destroy_rules(x, xapi_test_pool):
    sim = xapi_test_pool.sim
    vm = provisioned(x, sim)
    (vbd,) = x.VM.get_VBDs(vm)
    vdi = x.VBD.get_VDI(vbd)
    x.VM.start(vm, False, False)
    assert failure(x.VDI.destroy, vdi) == ["VDI_IN_USE", vdi, "destroy"]
    x.VM.hard_shutdown(vm)
    x.VM.destroy(vm)
    assert vdi in sim.table("VDI")  # VM.destroy keeps disks, as XAPI does
    x.VDI.destroy(vdi)
    assert vdi not in sim.table("VDI")


def test_maps_and_tags(x, xapi_test_pool):
    vm = provisioned(x, xapi_test_pool.sim)
    x.VM.add_to_other_config(vm, "k", "v")
    uuid = x.VM.get_uuid(vm)
    assert failure(x.VM.add_to_other_config, vm, "k", "w") == [
        "MAP_DUPLICATE_KEY", "VM", "other_config", uuid, "k"]
    x.VM.add_tags(vm, "bioxen")
    x.VM.add_tags(vm, "bioxen")
    assert x.VM.get_tags(vm) == ["bioxen"]


def test_async_tasks_and_synchronous_failures(x, xapi_test_pool):
    sim = xapi_test_pool.sim
    assert failure(x.Async.VM.start, NULL)[0] == "MESSAGE_PARAMETER_COUNT_MISMATCH"
    vm = x.VM.clone(sim.template, "t")
    task = x.Async.VM.start(vm, False, False)  # fails inside the task: still a template
    wait_for(lambda: x.task.get_status(task) != "pending", "the task to end")
    record = x.task.get_record(task)
    assert record["status"] == "failure" and record["error_info"] == ["VM_IS_TEMPLATE", vm, "start"]
    assert record["name_label"] == "Async.VM.start" and record["finished"]
    task = x.Async.VM.clone(sim.template, "t2")
    wait_for(lambda: x.task.get_status(task) != "pending", "the task to end")
    result = x.task.get_result(task)
    assert result.startswith("<value>OpaqueRef:") and result.endswith("</value>")
    x.task.destroy(task)
    assert failure(x.task.get_status, task) == ["HANDLE_INVALID", "task", task]


def test_task_cancel(x, xapi_test_pool):
    sim = xapi_test_pool.sim
    sim.guest.clean_shutdown_hangs = True
    sim.guest.boot_delay = 0.0
    vm = provisioned(x, sim)
    x.VM.start(vm, False, False)
    wait_for(lambda: x.VM.get_guest_metrics(vm) != NULL, "the guest to boot")
    task = x.Async.VM.clean_shutdown(vm)
    assert x.task.get_status(task) == "pending"  # the guest ignores the request: it never ends
    x.task.cancel(task)
    wait_for(lambda: x.task.get_status(task) not in ("pending", "cancelling"), "the cancelled task to end")
    assert x.task.get_record(task)["error_info"] == ["TASK_CANCELLED", task]
    assert x.task.get_status(task) == "cancelled"
    assert x.VM.get_power_state(vm) == "Running"


def test_event_from_tokens_and_blocking(x, xapi_test_pool):
    sim = xapi_test_pool.sim
    first = x.event_from(["vm"], "", 0.0)
    assert {e["operation"] for e in first["events"]} == {"add"}
    assert all(e["class"] == "vm" for e in first["events"])
    token = first["token"]
    assert len(token.split(",")[0]) == 20
    t0 = time.monotonic()
    assert x.event_from(["vm"], token, 0.3)["events"] == []  # blocks until the timeout
    assert time.monotonic() - t0 >= 0.25

    result = {}

    def wait():
        s = XenAPI.Session(xapi_test_pool.url)
        s.xenapi.login_with_password(SIM_USER, SIM_PASSWORD, "1.0", "t")
        result["r"] = s.xenapi.event_from(["vm"], token, PATIENCE)
        s.xenapi.session.logout()

    def calls_with_token():
        return [p for name in ("event_from", "event.from") for p in sim.calls(name) if token in p]

    before = len(calls_with_token())
    waiter = threading.Thread(target=wait)
    waiter.start()
    # the waiter's call has reached the simulator (it blocks there: nothing changed yet)
    wait_for(lambda: len(calls_with_token()) > before, "the blocking event.from")
    vm = x.VM.clone(sim.template, "ev")
    waiter.join(PATIENCE)
    (event,) = result["r"]["events"]
    assert (event["operation"], event["ref"], event["snapshot"]["name_label"]) == ("add", vm, "ev")
    token = result["r"]["token"]
    x.VM.set_name_label(vm, "ev2")
    (event,) = x.event_from([f"vm/{vm}"], token, PATIENCE)["events"]  # returns with the event
    assert (event["operation"], event["snapshot"]["name_label"]) == ("mod", "ev2")
    assert failure(x.event_from, ["vm"], "garbage", 0.0) == [
        "EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage"]


def test_guest_metrics_appear_after_boot_and_go_at_shutdown(x, xapi_test_pool):
    sim = xapi_test_pool.sim
    # Each boot waits in a hook until the test lets it go, so "not yet" is certain however
    # slowly the machine runs; the hook runs in the boot's thread, before the metrics appear.
    release, booting = threading.Event(), []

    def held_boot(sim, vm):
        booting.append(threading.current_thread())
        release.wait(PATIENCE)

    sim.guest.on_boot.append(held_boot)
    vm = provisioned(x, sim)
    x.VM.start(vm, False, False)
    wait_for(lambda: booting, "the guest to boot")
    assert x.VM.get_guest_metrics(vm) == NULL
    release.set()
    booting.pop().join(PATIENCE)
    metrics = x.VM.get_guest_metrics(vm)
    assert x.VM_guest_metrics.get_networks(metrics) == {"0/ip": sim.guest.ip,
                                                         "0/ipv4/0": sim.guest.ip}
    x.VM.clean_shutdown(vm)
    assert x.VM.get_guest_metrics(vm) == NULL and metrics not in sim.table("VM_guest_metrics")
    sim.guest.tools = False
    x.VM.start(vm, False, False)
    wait_for(lambda: booting, "the guest to boot again")
    booting.pop().join(PATIENCE)  # the boot is over: without tools, no metrics ever
    assert x.VM.get_guest_metrics(vm) == NULL
    assert failure(x.VM.clean_shutdown, vm) == ["VM_LACKS_FEATURE", vm]


def test_fault_injection_is_one_shot(x, xapi_test_pool):
    sim = xapi_test_pool.sim
    sim.fail_next("VM.clone", "OTHER_OPERATION_IN_PROGRESS", "VM", sim.template, "clone",
                  "OpaqueRef:t")
    assert failure(x.VM.clone, sim.template, "a")[0] == "OTHER_OPERATION_IN_PROGRESS"
    assert x.VM.clone(sim.template, "a")


def test_copy_puts_disks_on_the_given_sr(x, xapi_test_pool):
    sim = xapi_test_pool.sim
    clone = x.VM.clone(sim.disk_template, "c")
    copy = x.VM.copy(sim.disk_template, "k", sim.sr_fast)
    (cvbd,), (kvbd,) = x.VM.get_VBDs(clone), x.VM.get_VBDs(copy)
    assert x.VDI.get_SR(x.VBD.get_VDI(cvbd)) == sim.sr
    assert x.VDI.get_SR(x.VBD.get_VDI(kvbd)) == sim.sr_fast
