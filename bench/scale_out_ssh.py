"""The GC-table job of bench/scale_out.py on two SSH VMs on loopback, staging included,
beside the same job on two local VMs and one process, all in the same run.

    python bench/scale_out_ssh.py [--copies 100] [--runs 3]

Starts a private OpenSSH server on 127.0.0.1 (tests/remote/sshd_fixture.py: the stock sshd,
its own keys); the remote agents run under the stock ``luajit``.  The first SSH map stages
the genome into the host's upload cache (content-addressed, verified); later maps find it
there.  Rows: staging + map (first run, empty cache), map with the file already staged
(median), the same map on 2 local VMs (median), and ``gc_table.lua``'s scan in this process's
terms (one local VM over the whole file, one shard).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _vmbench import table
from scale_out import genome_copies

from bioxen_shell.vm import protocol as wire
from bioxen_shell.vm.manager import Manager
from bioxen_shell.vm.mapper import run_map
from tests.bio.harness import run as run_lua
from tests.remote.sshd_fixture import start_sshd

GC_FN = """function(shard)
  local out, n = {}, 0
  for id, length, gc in require("bio.fasta").gc_records(shard) do
    n = n + 1
    out[n] = string.format("%s\\t%d\\t%.2f\\n", id, length, 100 * gc)
  end
  return table.concat(out)
end"""


def shards_of(path: Path, n: int) -> list[bytes]:
    return [wire.encode(s) for s in run_lua("lupa:luajit21", f"return require('bio.fasta').shards({str(path)!r}, {n})")]


def timed_map(manager: Manager, pool, items) -> tuple[float, str]:
    t = time.perf_counter()
    res = run_map(manager, GC_FN, items, vms=pool, progress=False)
    dt = time.perf_counter() - t
    assert not res.failures, res.failures
    return dt, "".join(res.values())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    opts = ap.parse_args()
    big = genome_copies(opts.copies)
    mb = big.stat().st_size / 1e6
    items = shards_of(big, 8)
    server = start_sshd(Path(tempfile.mkdtemp(prefix="bioxen-bench-sshd-")))
    manager = Manager()
    ssh = {"type": "ssh", "host": server.target, "key": str(server.client_key),
           "known_hosts": str(server.known_hosts), "agent": False,
           "cache_dir": tempfile.mkdtemp(prefix="bioxen-bench-cache-"), "runtime": "luajit"}
    try:
        remote = manager.create("r", count=2, **ssh)
        local = manager.create("l", count=2)
        first, text_remote = timed_map(manager, remote, items)
        reference = timed_map(manager, local, items)[1]
        assert text_remote == reference, "the SSH VMs' table differs from the local VMs'"
        rows = {"2 SSH VMs, file staged": [], "2 local VMs": []}
        for _ in range(opts.runs):
            rows["2 SSH VMs, file staged"].append(timed_map(manager, remote, items)[0])
            rows["2 local VMs"].append(timed_map(manager, local, items)[0])
        out = [("2 SSH VMs, first map: staging + map", f"{first:.2f} s", f"{mb / first:.0f} MB/s")]
        for name, xs in rows.items():
            m = statistics.median(xs)
            out.append((name, f"{m:.3f} s", f"{mb / m:.0f} MB/s"))
        table(f"GC table over {mb:.0f} MB on loopback SSH VMs (stock luajit agents) vs local VMs, "
              f"8 shards, median of {opts.runs}", ("run", "wall", "throughput"), out)
    finally:
        manager.destroy_all()
        server.stop()


if __name__ == "__main__":
    main()
