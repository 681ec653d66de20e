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
    # As in XAPI, the clone shows first on the template (its current_operations), so the
    # waiter may wake before the new VM exists; the add follows from the token it got.
    events, token = result["r"]["events"], result["r"]["token"]
    assert events[0]["ref"] in (sim.template, vm)
    while not any(e["ref"] == vm for e in events):
        reply = x.event_from(["vm"], token, PATIENCE)
        events, token = events + reply["events"], reply["token"]
    (event,) = [e for e in events if e["ref"] == vm]
    assert (event["operation"], event["snapshot"]["name_label"]) == ("add", "ev")
    while x.VM.get_current_operations(sim.template):  # the template's entry goes again
        token = x.event_from([f"vm/{sim.template}"], token, PATIENCE)["token"]
    token = x.event_from(["vm"], token, 0.0)["token"]
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
    # XAPI asks the guest anyway and nobody acknowledges (VM_LACKS_FEATURE shows only in
    # allowed_operations; it is not what the call answers)
    assert failure(x.VM.clean_shutdown, vm) == ["VM_FAILED_SHUTDOWN_ACK", vm]
    assert x.VM.get_power_state(vm) == "Running"


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


# ------------------------------------------------------------------------------ strictness
def test_default_templates_cannot_be_destroyed(x, xapi_test_pool):
    builtin = x.VM.get_by_name_label("Other install media")[0]
    assert failure(x.VM.destroy, builtin) == ["VM_CANNOT_DELETE_DEFAULT_TEMPLATE", builtin]
    assert builtin in xapi_test_pool.sim.table("VM")
    own = x.VM.clone(xapi_test_pool.sim.template, "my template")  # still a template
    x.VM.destroy(own)  # an ordinary template may go


def test_failed_provision_leaves_an_ordinary_vm(x, xapi_test_pool):
    """xapi_vm.ml clears is_a_template before provisioning anything: a failed provision
    leaves a VM that is no longer a template (and cannot be provisioned again)."""
    builtin = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(builtin, "b")
    assert x.VM.get_is_a_template(vm)
    assert failure(x.VM.provision, vm) == ["UUID_INVALID", "sr", ""]
    assert not x.VM.get_is_a_template(vm)
    assert failure(x.VM.provision, vm) == ["PROVISION_ONLY_ALLOWED_ON_TEMPLATE"]


def test_one_lifecycle_operation_at_a_time(x, xapi_test_pool):
    """A VM busy with a clean shutdown refuses another with OTHER_OPERATION_IN_PROGRESS
    [VM, ref, op, task] (shown in current_operations); a hard shutdown is allowed and
    cancels the clean one, as xapi_vm.ml does."""
    sim = xapi_test_pool.sim
    sim.guest.clean_shutdown_hangs = True
    sim.guest.boot_delay = None
    vm = provisioned(x, sim)
    x.VM.start(vm, False, False)
    task = x.Async.VM.clean_shutdown(vm)
    wait_for(lambda: x.VM.get_current_operations(vm), "the shutdown to be under way")
    assert x.VM.get_current_operations(vm) == {task: "clean_shutdown"}
    assert failure(x.VM.clean_shutdown, vm) == [
        "OTHER_OPERATION_IN_PROGRESS", "VM", vm, "clean_shutdown", task]
    assert failure(x.VM.clean_reboot, vm)[0] == "OTHER_OPERATION_IN_PROGRESS"
    x.VM.hard_shutdown(vm)
    wait_for(lambda: x.task.get_status(task) not in ("pending", "cancelling"), "the clean task")
    assert x.task.get_status(task) == "cancelled"
    assert x.VM.get_power_state(vm) == "Halted" and x.VM.get_current_operations(vm) == {}
    a, b = x.Async.VM.clone(vm, "c1"), x.Async.VM.clone(vm, "c2")  # copies side by side
    for t in (a, b):
        wait_for(lambda t=t: x.task.get_status(t) != "pending", "the clone")
        assert x.task.get_status(t) == "success"


def test_clean_shutdown_answers_of_a_guest_that_will_not_halt(x, xapi_test_pool):
    sim = xapi_test_pool.sim
    sim.guest.boot_delay = None
    vm = provisioned(x, sim)
    x.VM.start(vm, False, False)
    sim.guest.shutdown_ack = False  # frozen: xenopsd's request is never acknowledged
    assert failure(x.VM.clean_shutdown, vm) == ["VM_FAILED_SHUTDOWN_ACK", vm]
    sim.guest.shutdown_ack = True
    sim.guest.clean_shutdown_hangs, sim.guest.shutdown_timeout = True, 0.2
    assert failure(x.VM.clean_shutdown, vm) == ["VM_SHUTDOWN_TIMEOUT", vm, "0.2"]
    assert x.VM.get_power_state(vm) == "Running"


def _vif(x, sim, vm, **changes) -> dict:
    record = {"device": "0", "network": sim.network, "VM": vm, "MAC": "", "MTU": "1500",
              "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


def test_vif_create_checks_its_record_and_macs_come_from_the_mac_seed(x, xapi_test_pool):
    sim = xapi_test_pool.sim
    a, b = provisioned(x, sim, "a"), provisioned(x, sim, "b")
    seeds = {x.VM.get_other_config(v).get("mac_seed") for v in (a, b, sim.template)}
    assert None not in seeds and len(seeds) == 3  # each clone gets a fresh seed
    for field in ("MTU", "other_config", "qos_algorithm_params"):
        details = failure(x.VIF.create, _vif(x, sim, a, **{field: None}))
        assert details[0] == "INTERNAL_ERROR" and field in details[1]
    assert failure(x.VIF.create, _vif(x, sim, a, device="eth0")) == ["INVALID_DEVICE", "eth0"]
    assert failure(x.VIF.create, _vif(x, sim, a, MAC="zz:00")) == ["MAC_INVALID", "zz:00"]
    assert x.VM.get_VIFs(a) == []
    macs = [x.VIF.get_MAC(x.VIF.create(_vif(x, sim, v))) for v in (a, b)]
    assert macs[0] != macs[1]
    assert all(int(m.split(":")[0], 16) & 2 for m in macs)  # locally administered
    fixed = x.VIF.create(_vif(x, sim, a, device="1", MAC="02:00:00:00:00:07"))
    assert x.VIF.get_MAC(fixed) == "02:00:00:00:00:07"
    bare = sim.db.create("VM", name_label="no seed")  # not made through the API
    assert failure(x.VIF.create, _vif(x, sim, bare))[0] == "INTERNAL_ERROR"
    x.VIF.create(_vif(x, sim, bare, MAC="02:00:00:00:00:08"))  # an explicit MAC needs none
