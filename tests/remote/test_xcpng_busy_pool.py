"""On a busy pool (hundreds of other VMs whose guest agents keep reporting) a VM's IP wait
listens to that VM's own objects only: its VM record and its VM_guest_metrics."""
from __future__ import annotations

import pytest
import XenAPI

from bioxen_shell.remote import xcpng
from bioxen_shell.remote.xcpng import XCPngBackend
from bioxen_shell.vm.profiles import load_profile
from tests.waiting import PATIENCE, wait_for
from tests.xapi_sim.busy import BusyPool, agent_reports_address_late
from tests.xapi_sim.fixtures import SIM_PASSWORD, SIM_USER

BUSY_VMS = 300


@pytest.fixture(autouse=True)
def _fresh_password_cache():
    xcpng.forget_passwords()
    yield
    xcpng.forget_passwords()


def test_busy_pool_emits_events_for_its_vms(xapi_test_pool):
    """The simulator's busy pool: its VMs run, their metrics change, and a whole-class
    subscription hears about them."""
    sim = xapi_test_pool.sim
    s = XenAPI.Session(xapi_test_pool.url)
    s.xenapi.login_with_password(SIM_USER, SIM_PASSWORD, "1.0", "test")
    try:
        with BusyPool(sim, vms=BUSY_VMS) as busy:
            assert len(sim.vms()) == BUSY_VMS
            assert all(v["power_state"] == "Running" for v in sim.vms().values())
            token = s.xenapi.event_from(["vm_guest_metrics"], "", 0.0)["token"]
            reply = s.xenapi.event_from(["vm_guest_metrics"], token, PATIENCE)
            assert reply["events"] and {e["ref"] for e in reply["events"]} <= busy.refs
            assert all(e["operation"] == "mod" for e in reply["events"])
            assert busy.events_about_them()  # recorded as delivered
    finally:
        s.xenapi.session.logout()


def test_ip_wait_hears_only_about_its_own_vm_on_a_busy_pool(xapi_sim, xcpng_settings):
    """The agent starts (its metrics object appears) and only writes the address once the
    wait watches that object: the wait must follow it there, and hear nothing else."""
    with BusyPool(xapi_sim, vms=BUSY_VMS) as busy:
        agent_reports_address_late(xapi_sim, lambda metrics: any(  # watched: as an object,
            f"vm_guest_metrics/{metrics}" in subs or "vm_guest_metrics" in subs  # or a class
            for subs in busy.subscriptions))
        wait_for(lambda: busy.updates >= BUSY_VMS, "the busy pool's guests to report")
        b = XCPngBackend("quiet", {"pool": dict(xcpng_settings)}, load_profile(None))
        proc = b.start()
        try:
            deliveries = list(busy.deliveries)
        finally:
            proc.kill()
            proc.close()
            b.destroy()
    assert busy.events_about_them() == [], "the IP wait was sent the other VMs' events"
    subscriptions = {sub for subs, _ in deliveries for sub in subs}
    assert subscriptions and all("/" in sub for sub in subscriptions)  # objects, not classes
    assert any(sub.startswith("vm_guest_metrics/") for sub in subscriptions)
