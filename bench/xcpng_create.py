"""Time from ``vm.create{type="xcpng"}`` to the first eval, against the XAPI simulator.

What is measured (wall clock, median of ``--runs``):

* **bioxen** — ``Manager().create(type="xcpng", …)`` then ``vm.eval("return 1")``: login,
  clone, provision, memory/vCPUs, VIF, key injection, ``Async.VM.start`` (task waited on with
  ``event.from``), guest IP (``event.from`` on the VM and its guest metrics), SSH to the
  loopback sshd, agent start, first eval.  Then destroy (not timed).
* **bioxen count=4** — four VMs created in parallel by the manager, until all answer.
* **prior-art strategy** (reference line, measured in the same run against the same
  simulator): the same XAPI provisioning with synchronous calls, then what
  pylua-bioxen-vm-lib does: poll for the IP every 5 s (``_wait_for_network``), sleep 1 s +
  0.5 s on connect, and run ``lua -e`` over SSH followed by its 0.1 s read sleep.

The simulated guest needs ``--boot-delay`` seconds (default 1.0 and 3.0) after start before
its guest tools report an IP; real guests need 10-60 s, which both sides pay alike.

Run: ``python bench/xcpng_create.py`` (needs sshd and lua5.4/luajit; ~1 minute).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEMPLATE = "Debian Bookworm 12 (bioxen)"
NETWORK = "Pool-wide network associated with eth0"


def _setup(tmp: Path):
    from tests.remote.sshd_fixture import start_sshd, write_keypair
    from tests.xapi_sim import start_pool
    from tests.xapi_sim.fixtures import install_injected_key_hook, pool_settings

    sshd = start_sshd(tmp / "sshd")
    pool = start_pool(tmp / "sim")
    key = tmp / "id_ed25519"
    write_keypair(key, "bench")
    pw = tmp / "pw"
    pw.write_text("xapi-sim-password\n")
    pw.chmod(0o600)
    install_injected_key_hook(pool.sim, sshd.directory / "authorized_keys")
    settings = pool_settings(pool, pw, sshd, key)
    settings["ip_timeout"] = 60
    return sshd, pool, settings, key


def bioxen_once(settings: dict, count: int | None = None) -> float:
    from bioxen_shell.vm.manager import Manager
    manager = Manager()
    t0 = time.perf_counter()
    created = manager.create("bench", type="xcpng", pool=settings, memory="512MiB", vcpus=1,
                             count=count)
    vms = created if isinstance(created, list) else [created]
    for vm in vms:
        assert vm.eval("return 1") == [1]
    elapsed = time.perf_counter() - t0
    manager.destroy_all()
    return elapsed


def prior_art_once(pool, sshd, key: Path) -> float:
    """The prior art's waiting strategy over the same XAPI steps (see module docstring)."""
    import paramiko
    import XenAPI
    t0 = time.perf_counter()
    s = XenAPI.Session(pool.url)
    s.xenapi.login_with_password("root", "xapi-sim-password", "1.0", "prior-art")
    x = s.xenapi
    vm = x.VM.clone(x.VM.get_by_name_label(TEMPLATE)[0], "prior-art")
    x.VM.provision(vm)
    x.VM.add_to_xenstore_data(vm, "vm-data/bioxen/authorized_keys",
                              key.with_name(key.name + ".pub").read_text().strip())
    net = x.network.get_by_name_label(NETWORK)[0]
    x.VIF.create({"device": "0", "network": net, "VM": vm, "MAC": "", "MTU": "1500",
                  "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
    x.VM.start(vm, False, False)
    while True:  # _wait_for_network: poll every 5 s
        metrics = x.VM.get_guest_metrics(vm)
        if metrics != "OpaqueRef:NULL" and x.VM_guest_metrics.get_networks(metrics).get("0/ip"):
            break
        time.sleep(5)
    time.sleep(1.0)  # fixed sleeps in its SSH connect path
    client = paramiko.SSHClient()
    client.load_host_keys(str(sshd.known_hosts))
    client.connect(sshd.host, sshd.port, sshd.user, key_filename=str(key),
                   look_for_keys=False, allow_agent=False)
    time.sleep(0.5)
    _in, out, _err = client.exec_command("lua5.4 -e 'print(1)'")
    time.sleep(0.1)  # execute_string's read sleep
    assert out.read().strip() == b"1"
    elapsed = time.perf_counter() - t0
    client.close()
    x.VM.hard_shutdown(vm)
    vdis = [x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm)]
    x.VM.destroy(vm)
    for vdi in vdis:
        x.VDI.destroy(vdi)
    x.session.logout()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--boot-delay", type=float, action="append",
                        help="simulated guest boot time in seconds (repeatable)")
    args = parser.parse_args()
    delays = args.boot_delay or [1.0, 3.0]
    with tempfile.TemporaryDirectory(prefix="bioxen-bench-") as tmp:
        os.environ.setdefault("BIOXEN_STATE_DIR", str(Path(tmp) / "state"))
        os.environ.setdefault("BIOXEN_CONFIG_DIR", str(Path(tmp) / "config"))
        os.environ.setdefault("BIOXEN_CACHE_DIR", str(Path(tmp) / "cache"))
        sshd, pool, settings, key = _setup(Path(tmp))
        rows = []
        try:
            bioxen_once(settings)  # warm-up: agent upload to the host cache, imports
            for delay in delays:
                pool.sim.guest.boot_delay = delay
                single = [bioxen_once(settings) for _ in range(args.runs)]
                many = [bioxen_once(settings, count=4) for _ in range(max(1, args.runs - 1))]
                prior = [prior_art_once(pool, sshd, key) for _ in range(max(1, args.runs - 1))]
                rows.append((delay, statistics.median(single), statistics.median(many),
                             statistics.median(prior)))
        finally:
            pool.stop()
            sshd.stop()
    print(f"vm.create{{type=\"xcpng\"}} → first eval, XAPI simulator on loopback, median of "
          f"{args.runs} (count=4 and prior art: {max(1, args.runs - 1)})")
    print(f"{'guest boot delay':>16} | {'bioxen':>9} | {'bioxen count=4':>14} | "
          f"{'prior-art strategy':>18} | {'bioxen overhead':>15}")
    print("-" * 86)
    for delay, single, many, prior in rows:
        print(f"{delay:>14.1f} s | {single:>7.2f} s | {many:>12.2f} s | {prior:>16.2f} s | "
              f"{single - delay:>13.2f} s")
    print("prior-art strategy = same XAPI steps, IP polled every 5 s, 1.5 s fixed connect "
          "sleeps, lua -e + 0.1 s read sleep (pylua-bioxen-vm-lib 0.1.22)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
