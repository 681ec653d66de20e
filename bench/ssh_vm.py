"""SSH VMs on loopback: start, eval round trip and 100 MB each way, beside a local VM and
beside the prior art's approach (a new ``ssh host lua -e`` per call), all in the same run.

    python bench/ssh_vm.py [N_EVALS] [MB]

Starts a private OpenSSH server on 127.0.0.1 (tests/remote/sshd_fixture.py: stock
/usr/sbin/sshd, its own keys) and runs the remote agent under the stock luajit and lua5.4.
Numbers include everything a user waits for: encryption, sshd, the pipes, the agent, the codec.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _vmbench import ms, percentile, table, timed, us

from bioxen_shell.vm.manager import Manager
from bioxen_shell.vm.profiles import load_profile
from tests.remote.sshd_fixture import start_sshd


def _ssh_cli(server, *remote: str, stdin: bytes | None = None) -> bytes:
    """The prior art's shape: a fresh `ssh` connection and a fresh `lua -e` per call."""
    cmd = ["ssh", "-q", "-p", str(server.port), "-i", str(server.client_key), "-o", "BatchMode=yes",
           "-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
           "-o", "IdentitiesOnly=yes", f"{server.user}@{server.host}", *remote]
    r = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, check=True)
    return r.stdout


def _mb_per_s(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e6:.0f} MB/s ({seconds:.2f} s)"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    mb = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    size = mb * 1024 * 1024
    server = start_sshd(Path(tempfile.mkdtemp(prefix="bioxen-bench-sshd-")))
    manager = Manager()
    ssh_opts = {"type": "ssh", "host": server.target, "key": str(server.client_key),
                "known_hosts": str(server.known_hosts), "agent": False,
                "cache_dir": tempfile.mkdtemp(prefix="bioxen-bench-cache-")}
    start_rows, rtt_rows, bulk_rows = [], [], []
    try:
        # ---- start to first eval
        vms = {}
        kinds = [("local VM", {"type": "local"})]
        kinds += [(f"SSH VM ({i})", dict(ssh_opts, interpreter=i)) for i in ("luajit", "lua5.4") if shutil.which(i)]
        for label, opts in kinds:
            samples = []
            for k in range(4):
                t = time.perf_counter()
                vm = manager.create(f"b{len(vms)}-{k}", profile=load_profile("standard"), **opts)
                vm.eval("return 1")
                samples.append(time.perf_counter() - t)
                if k < 3:
                    vm.destroy()
            vms[label] = vm
            # the first SSH start also uploads the agent bundle; show it apart
            start_rows.append((label, ms(samples[0]), ms(percentile(samples[1:], 50))))
        t = time.perf_counter()
        _ssh_cli(server, "lua5.4", "-e", "'print(1)'")
        cli_once = time.perf_counter() - t
        start_rows.append(("prior art: ssh host lua5.4 -e (new connection per call)", ms(cli_once), ms(cli_once)))
        table("start → first eval result", ("VM", "first (SSH: incl. upload)", "later (median)"), start_rows)

        # ---- eval round trip
        for label, vm in vms.items():
            s = timed(lambda: vm.eval("return 1"), n)
            rtt_rows.append((label + ": vm.eval('return 1')", us(percentile(s, 50)), us(percentile(s, 95)), n))
        k = 20
        s = timed(lambda: _ssh_cli(server, "lua5.4", "-e", "'print(1)'"), k, warmup=2)
        rtt_rows.append(("prior art: ssh host lua5.4 -e 'print(1)' per call", us(percentile(s, 50)),
                         us(percentile(s, 95)), k))
        table("eval round trip (lower is better)", ("path", "p50", "p95", "N"), rtt_rows)

        # ---- bulk transfer
        payload = b"ACGT" * (size // 4)
        for label, vm in vms.items():
            vm.eval("function take(s) return #s end")
            t = time.perf_counter()
            got = vm.call("take", payload)
            up = time.perf_counter() - t
            assert got == [size], got
            t = time.perf_counter()
            back = vm.eval(f"return string.rep('ACGT', {size // 4})")
            down = time.perf_counter() - t
            assert len(back[0]) == size
            del back
            bulk_rows.append((label, _mb_per_s(size, up), _mb_per_s(size, down)))
        t = time.perf_counter()
        out = _ssh_cli(server, "lua5.4", "-e", "'io.write(#io.read(\"a\"))'", stdin=payload)
        up = time.perf_counter() - t
        assert int(out) == size
        t = time.perf_counter()
        out = _ssh_cli(server, "lua5.4", "-e", f"'io.write(string.rep(\"ACGT\", {size // 4}))'")
        down = time.perf_counter() - t
        assert len(out) == size
        bulk_rows.append(("prior art: ssh host lua5.4 -e (stdin/stdout)", _mb_per_s(size, up), _mb_per_s(size, down)))
        table(f"bulk transfer, {mb} MiB string (higher is better)", ("path", "to the VM", "from the VM"), bulk_rows)
    finally:
        manager.destroy_all()
        server.stop()


if __name__ == "__main__":
    main()
