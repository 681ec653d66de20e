"""What a VM's IP wait receives and does on a busy pool, against the XAPI simulator.

The pool runs ``--vms`` other VMs (default 300) whose guest agents report ``--rate`` times a
second in all (tests/xapi_sim/busy.py).  A VM is started whose agent reports its address
``--boot-delay`` seconds later (default 3).  Measured per wait, median of ``--runs``:
events delivered to the waiting client by ``event.from``, ``event.from`` calls, and
``VM.get_record`` calls, for

* **bioxen** — ``XCPngBackend._wait_for_ip``: subscribes to ``vm/<ref>``, then to the VM's
  own ``vm_guest_metrics/<ref>`` once it exists;
* **whole-class subscription** (the peer, measured in the same run on the same pool): the
  same check, subscribed to ``vm/<ref>`` and the whole ``vm_guest_metrics`` class, as
  bioxen did before.

Run: ``python bench/xcpng_ip_wait.py`` (no sshd needed; about 30 s).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def whole_class_wait(session, vm: str, timeout: float) -> str:
    from bioxen_shell.remote.xcpng import NULL_REF, pick_ip

    def ip_if_ready():
        metrics = session.call("VM.get_record", vm)["guest_metrics"]
        if metrics == NULL_REF:
            return None
        return pick_ip(session.call("VM_guest_metrics.get_networks", metrics))

    return session.wait_until([f"vm/{vm}", "vm_guest_metrics"], ip_if_ready, timeout, "the IP")


def measure(sim, busy, wait) -> dict:
    before = (len(busy.deliveries), len(sim.calls("VM.get_record")))
    t0 = time.perf_counter()
    wait()
    elapsed = time.perf_counter() - t0
    calls = busy.deliveries[before[0]:]
    return {"events": sum(len(events) for _, events in calls), "event.from": len(calls),
            "VM.get_record": len(sim.calls("VM.get_record")) - before[1], "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=300)
    parser.add_argument("--rate", type=float, default=300.0, help="agent reports per second")
    parser.add_argument("--boot-delay", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from bioxen_shell.remote.xapi import XapiSession
    from bioxen_shell.remote.xcpng import PoolSettings, XCPngBackend
    from bioxen_shell.vm.profiles import load_profile
    from tests.xapi_sim import start_pool
    from tests.xapi_sim.busy import BusyPool
    from tests.xapi_sim.fixtures import SIM_PASSWORD, SIM_USER, TEMPLATE

    with tempfile.TemporaryDirectory() as tmp:
        pool = start_pool(Path(tmp))
        sim = pool.sim
        sim.guest.boot_delay = args.boot_delay
        settings = PoolSettings.from_mapping("bench", {"url": pool.url, "user": SIM_USER,
                                                       "ip_timeout": 60}, "bench")
        backend = XCPngBackend("bench", {"pool": "bench"}, load_profile(None))
        results: dict[str, list[dict]] = {"bioxen": [], "whole-class subscription": []}
        try:
            with BusyPool(sim, vms=args.vms, reports_per_second=args.rate) as busy, \
                    XapiSession(pool.url, SIM_USER, SIM_PASSWORD) as session:
                vm = session.call("VM.clone", sim.template, "bench-ip")
                session.call("VM.provision", vm)
                for _ in range(args.runs):
                    for name, wait in (
                            ("bioxen", lambda: backend._wait_for_ip(session, vm, settings)),
                            ("whole-class subscription",
                             lambda: whole_class_wait(session, vm, 60))):
                        session.call("VM.start", vm, False, False)
                        results[name].append(measure(sim, busy, wait))
                        session.call("VM.hard_shutdown", vm)
        finally:
            pool.stop()

    print(f"IP wait on a pool with {args.vms} other VMs reporting {args.rate:g}/s; the "
          f"guest reports its address {args.boot_delay:g} s after start; median of "
          f"{args.runs} (template {TEMPLATE!r})")
    print(f"{'':26} {'events':>8} {'event.from':>11} {'VM.get_record':>14} {'seconds':>8}")
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name:26} {med['events']:8.0f} {med['event.from']:11.0f} "
              f"{med['VM.get_record']:14.0f} {med['seconds']:8.2f}")


if __name__ == "__main__":
    main()
