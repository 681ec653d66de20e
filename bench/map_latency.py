"""vm.map over a pool of SSH VMs behind a slow link: what the map costs in the link's round trips.

    python bench/map_latency.py [N_VMS] [ONE_WAY_MS] [RUNS]      (default 4 VMs, 5 ms, 20 runs)

Starts a private OpenSSH server on 127.0.0.1 (tests/remote/sshd_fixture.py: stock
/usr/sbin/sshd, its own keys), and in front of it a TCP relay that holds every chunk
ONE_WAY_MS in each direction, as a distant host's link would (loopback itself answers in
~0.1 ms, which hides what a map does per round trip).  N_VMS SSH VMs (stock ``luajit`` agents)
connect through the relay.  Measured in the same run, medians of RUNS:

* the link's floor: one ``eval('return 1')`` round trip on one VM;
* ``vm.map`` of a trivial function over N_VMS items on the pool (the function is defined in
  each VM, called once there, and removed again);
* the same work done one VM after the other (define, call, remove on each in turn), which is
  what a map that talks to its VMs in turn costs.
"""
from __future__ import annotations

import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _vmbench import ms, table

from bioxen_shell.vm import protocol
from bioxen_shell.vm.manager import Manager
from bioxen_shell.vm.mapper import MAP_FN, run_map
from bioxen_shell.vm.profiles import load_profile
from tests.remote.sshd_fixture import start_sshd

SOURCE = "function(x) return x * 2 end"


def start_delaying_relay(target_port: int, one_way: float) -> int:
    """A loopback TCP relay to ``target_port`` that delivers each chunk ``one_way`` seconds
    after it arrived, in order, in both directions; returns the port it listens on."""
    listener = socket.create_server(("127.0.0.1", 0))

    def forward(src: socket.socket, dst: socket.socket) -> None:
        due: list[tuple[float, bytes]] = []
        ready = threading.Condition()

        def deliver() -> None:
            while True:
                with ready:
                    ready.wait_for(lambda: due)
                    at, data = due.pop(0)
                time.sleep(max(0.0, at - time.monotonic()))
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)

        threading.Thread(target=deliver, daemon=True).start()
        while True:
            data = src.recv(1 << 16)
            with ready:
                due.append((time.monotonic() + one_way, data))
                ready.notify()
            if not data:
                return

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            server = socket.create_connection(("127.0.0.1", target_port))
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=forward, args=(client, server), daemon=True).start()
            threading.Thread(target=forward, args=(server, client), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def one_after_another(pool: list, items: list[bytes]) -> list:
    """The map's work, one VM at a time: define, call, remove."""
    out = []
    for h, item in zip(pool, items):
        h.eval(f"{MAP_FN} = {SOURCE}")
        out.append(protocol.decode(protocol.first_item(
            h.request_encoded("call", {"fn": MAP_FN}, {"args": protocol.list_parts([item])}))))
        h.set(MAP_FN, None)
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    one_way = (float(sys.argv[2]) if len(sys.argv) > 2 else 5.0) / 1000
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    server = start_sshd(Path(tempfile.mkdtemp(prefix="bioxen-bench-sshd-")))
    port = start_delaying_relay(server.port, one_way)
    known_hosts = Path(tempfile.mkdtemp(prefix="bioxen-bench-kh-")) / "known_hosts"
    known_hosts.write_text(f"[{server.host}]:{port} {server.host_public}\n")
    manager = Manager()
    try:
        pool = manager.create("lat", count=n, profile=load_profile("standard"), type="ssh",
                              host=f"{server.user}@{server.host}:{port}", key=str(server.client_key),
                              known_hosts=str(known_hosts), agent=False, interpreter="luajit",
                              cache_dir=tempfile.mkdtemp(prefix="bioxen-bench-cache-"))
        items = [protocol.encode(i) for i in range(1, n + 1)]
        want = [2 * i for i in range(1, n + 1)]
        samples: dict[str, list[float]] = {"rtt": [], "map": [], "turns": []}
        for _ in range(runs):  # interleaved, so the machine's drift hits all three
            t = time.perf_counter()
            pool[0].eval("return 1")
            samples["rtt"].append(time.perf_counter() - t)
            t = time.perf_counter()
            got = run_map(manager, SOURCE, items, vms=pool)
            samples["map"].append(time.perf_counter() - t)
            assert [protocol.decode(v) for v in got.results] == want, got.results
            t = time.perf_counter()
            assert one_after_another(pool, items) == want
            samples["turns"].append(time.perf_counter() - t)
        rtt = statistics.median(samples["rtt"])
        rows = [(label, ms(statistics.median(samples[key])), f"{statistics.median(samples[key]) / rtt:.1f}")
                for label, key in (("the link's floor: one eval round trip", "rtt"),
                                   (f"vm.map over the pool, {n} items", "map"),
                                   ("the same, one VM after another", "turns"))]
        table(f"{n} SSH VMs behind a {one_way * 2000:.0f} ms round trip (relay on loopback), medians of {runs}",
              ("run", "wall", "round trips"), rows)
    finally:
        manager.destroy_all()
        server.stop()


if __name__ == "__main__":
    main()
