"""What a cloud-init config drive costs: building the seed, and vm.create → first eval.

Measured in one run, each beside its peer:

* **seed build** — bioxen's ``cloudinit.build_image`` (pycdlib, in process, padded to 1 MiB)
  against ``genisoimage -volid cidata -joliet -rock`` (what ``cloud-localds`` runs) on the same
  ``user-data``/``meta-data`` files; median of ``--builds``.
* **create → first eval** against the XAPI simulator, each guest its own sshd:
  ``inject = "cloud-init"`` (VDI.create, VBD.create, ``/import_raw_vdi`` upload on a task,
  the guest reading its drive) against ``inject = "xenstore"`` (two xenstore keys), same
  template and boot delay; median of ``--runs``.

Run: ``python bench/config_drive.py`` (needs sshd, a Lua interpreter, genisoimage).
"""
from __future__ import annotations

import argparse
import getpass
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _seed():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from bioxen_shell.remote import cloudinit
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()).decode()
    return cloudinit.Seed("0e5c7a4e-bench", "bioxen-bench", "bioxen",
                          "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGQm bench", key)


def build_times(tmp: Path, n: int) -> tuple[float, float]:
    from bioxen_shell.remote import cloudinit
    seed = _seed()
    (tmp / "user-data").write_text(cloudinit.user_data(seed))
    (tmp / "meta-data").write_text(cloudinit.meta_data(seed))
    genisoimage = shutil.which("genisoimage")

    def ours() -> None:
        cloudinit.build_image(seed)

    def theirs() -> None:
        subprocess.run([genisoimage, "-quiet", "-output", str(tmp / "seed.iso"), "-volid",
                        "cidata", "-joliet", "-rock", str(tmp / "user-data"),
                        str(tmp / "meta-data")], check=True)

    result = []
    for fn in (ours, theirs):
        fn()  # warm-up
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        result.append(statistics.median(samples))
    return result[0], result[1]


def _pool(tmp: Path, key: Path, inject: str):
    from tests.xapi_sim import start_pool
    from tests.xapi_sim.config_drive import CloudInitGuestSSHDs
    from tests.xapi_sim.guest_sshd import GuestSSHDs
    pool = start_pool(tmp / f"sim-{inject}")
    kind = CloudInitGuestSSHDs if inject == "cloud-init" else GuestSSHDs
    guests = kind(tmp / f"guests-{inject}").install(pool.sim)
    pw = tmp / "pw"
    pw.write_text("xapi-sim-password\n")
    pw.chmod(0o600)
    settings = {"url": pool.url, "user": "root", "password_file": str(pw),
                "template": "Debian Bookworm 12 (bioxen)",
                "network": "Pool-wide network associated with eth0",
                "ssh_user": getpass.getuser(), "ssh_key": str(key), "ssh_port": guests.port,
                "ip_timeout": 60, "inject": inject}
    return pool, guests, settings


def create_once(settings: dict) -> float:
    from bioxen_shell.vm.manager import Manager
    manager = Manager()
    t0 = time.perf_counter()
    vm = manager.create("bench", type="xcpng", pool=settings)
    assert vm.eval("return 1") == [1]
    elapsed = time.perf_counter() - t0
    manager.destroy_all()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--boot-delay", type=float, default=1.0)
    args = parser.parse_args()
    if not shutil.which("genisoimage"):
        print("genisoimage is not installed (apt-get install genisoimage)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bioxen-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for var in ("BIOXEN_STATE_DIR", "BIOXEN_CONFIG_DIR", "BIOXEN_CACHE_DIR"):
            os.environ.setdefault(var, str(tmp / var.lower()))
        ours, theirs = build_times(tmp, args.builds)
        from tests.remote.sshd_fixture import write_keypair
        key = tmp / "id_ed25519"
        write_keypair(key, "bench")
        medians = {}
        for inject in ("xenstore", "cloud-init"):
            pool, guests, settings = _pool(tmp, key, inject)
            pool.sim.guest.boot_delay = args.boot_delay
            try:
                create_once(settings)  # warm-up: agent upload to the host cache, imports
                medians[inject] = statistics.median(create_once(settings)
                                                    for _ in range(args.runs))
            finally:
                guests.stop_all()
                pool.stop()
    print(f"seed build, median of {args.builds}: bioxen (pycdlib) {ours * 1000:.1f} ms | "
          f"genisoimage {theirs * 1000:.1f} ms")
    print(f"vm.create → first eval, simulator, guest boot {args.boot_delay:g} s, median of "
          f"{args.runs}: inject=xenstore {medians['xenstore']:.2f} s | inject=cloud-init "
          f"{medians['cloud-init']:.2f} s | drive costs "
          f"{medians['cloud-init'] - medians['xenstore']:+.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
