"""SSH VMs on loopback: start, eval round trip and 100 MB each way, beside a local VM and
beside the prior art's approach (a new ``ssh host lua -e`` per call), all in the same run.
The bulk transfer also runs its peers: ``ssh host cat`` (OpenSSH's own client, both ways) and
raw paramiko (one exec channel running ``cat``), alternating with the VMs over ROUNDS rounds;
the best round of each is shown (the machine is shared: the best is the least disturbed), with
the VM's share of the faster ``ssh host cat`` (its time less that of ``ssh host true``: the
VMs' connection is already open).

    python bench/ssh_vm.py [N_EVALS] [MB] [ROUNDS]

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


def _ssh_cli(server, *remote: str, stdin: bytes | None = None, options: tuple = ()) -> bytes:
    """The prior art's shape: a fresh `ssh` connection and a fresh `lua -e` per call."""
    cmd = ["ssh", "-q", *options, "-p", str(server.port), "-i", str(server.client_key), "-o", "BatchMode=yes",
           "-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
           "-o", "IdentitiesOnly=yes", f"{server.user}@{server.host}", *remote]
    r = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, check=True)
    return r.stdout


def _mb_per_s(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e6:.0f} MB/s ({seconds:.2f} s)"


def _ssh_cat_peer(server, path: Path, size: int, payload: bytes, options: tuple = ()) -> tuple[float, float]:
    """``ssh host cat`` each way: the data into ``cat > FILE`` and ``cat FILE`` out (seconds),
    less what ``ssh host true`` takes (a new connection and login each time, which the VMs,
    whose connection is open, do not pay)."""
    t = time.perf_counter()
    _ssh_cli(server, "true", options=options)
    setup = time.perf_counter() - t
    t = time.perf_counter()
    _ssh_cli(server, "cat", ">", str(path), stdin=payload, options=options)
    up = time.perf_counter() - t - setup
    t = time.perf_counter()
    out = _ssh_cli(server, "cat", str(path), options=options)
    down = time.perf_counter() - t - setup
    assert len(out) == size
    return up, down


#: OpenSSH with the cipher bioxen prefers, so the peer is not slowed by chacha20-poly1305.
_GCM_PEER = "ssh -c aes128-gcm@openssh.com host cat"


def _raw_paramiko_peer(client, path: Path, size: int, payload: bytes) -> tuple[float, float]:
    """The same over one paramiko exec channel each way (bioxen's window and packet size)."""
    from bioxen_shell.remote.channel import MAX_PACKET, WINDOW

    def channel(command: str):
        chan = client.get_transport().open_session(window_size=WINDOW, max_packet_size=MAX_PACKET)
        chan.exec_command(command)
        return chan

    t = time.perf_counter()
    chan = channel(f"cat > {path}")
    view = memoryview(payload)
    while view:
        view = view[chan.send(view[:32768]):]
    chan.shutdown_write()
    chan.recv_exit_status()
    up = time.perf_counter() - t
    t = time.perf_counter()
    chan = channel(f"cat {path}")
    got = bytearray()
    while data := chan.recv(1 << 30):
        got += data
    down = time.perf_counter() - t
    assert len(got) == size
    return up, down


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    mb = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
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

        # ---- bulk transfer: VMs and peers alternate, best round of each
        payload = b"ACGT" * (size // 4)
        remote_file = Path(ssh_opts["cache_dir"]) / "bulk-peer"
        from bioxen_shell.remote import ssh
        from bioxen_shell.remote.config import resolve_host
        raw_client = ssh.connect(resolve_host(server.target, {k: v for k, v in ssh_opts.items()
                                                              if k not in ("type", "host")}))
        best: dict[str, list[float]] = {}

        def keep(label: str, up: float, down: float) -> None:
            b = best.setdefault(label, [float("inf"), float("inf")])
            b[0], b[1] = min(b[0], up), min(b[1], down)

        for vm in vms.values():  # "from the VM" moves a string already built, as cat moves a file
            vm.eval(f"function take(s) return #s end; big = string.rep('ACGT', {size // 4})")
        for _round in range(rounds):
            keep("ssh host cat (OpenSSH client, its default cipher)",
                 *_ssh_cat_peer(server, remote_file, size, payload))
            keep(_GCM_PEER, *_ssh_cat_peer(server, remote_file, size, payload, ("-c", "aes128-gcm@openssh.com")))
            keep("raw paramiko (exec cat)", *_raw_paramiko_peer(raw_client, remote_file, size, payload))
            for label, vm in vms.items():
                t = time.perf_counter()
                got = vm.call("take", payload)
                up = time.perf_counter() - t
                assert got == [size], got
                t = time.perf_counter()
                back = vm.eval("return big")
                down = time.perf_counter() - t
                assert len(back[0]) == size
                del back
                keep(label, up, down)
        raw_client.close()
        t = time.perf_counter()
        out = _ssh_cli(server, "lua5.4", "-e", "'io.write(#io.read(\"a\"))'", stdin=payload)
        up = time.perf_counter() - t
        assert int(out) == size
        t = time.perf_counter()
        out = _ssh_cli(server, "lua5.4", "-e", f"'io.write(string.rep(\"ACGT\", {size // 4}))'")
        down = time.perf_counter() - t
        assert len(out) == size
        keep("prior art: ssh host lua5.4 -e (stdin/stdout)", up, down)
        # the share is of the faster ssh run of each direction (the stricter peer)
        cat_up = min(best[_GCM_PEER][0], best["ssh host cat (OpenSSH client, its default cipher)"][0])
        cat_down = min(best[_GCM_PEER][1], best["ssh host cat (OpenSSH client, its default cipher)"][1])
        for label, (up, down) in best.items():
            share = "" if label.startswith(("ssh", "prior")) else \
                f"{cat_up / up:.0%} / {cat_down / down:.0%}"
            bulk_rows.append((label, _mb_per_s(size, up), _mb_per_s(size, down), share))
        table(f"bulk transfer, {mb} MiB string, best of {rounds} rounds (higher is better)",
              ("path", "to the VM", "from the VM", "share of the faster ssh host cat (to / from)"), bulk_rows)
    finally:
        manager.destroy_all()
        server.stop()


if __name__ == "__main__":
    main()
