"""Slurm VMs on a real one-node cluster beside local VMs, measured in the same run.

    python bench/slurm_vms.py [--copies 20] [--runs 3]        (as root: it may start a cluster)

Uses the cluster ``SLURM_CONF`` names, or starts a private one (tests/slurm_cluster.py:
slurmctld + slurmd + munge on localhost, one node of 2 CPUs).  Two tables:

1. create-to-first-eval for 4 VMs (``vm.create{count = 4}`` then one ``eval`` on each):
   slurm (one job of 4 tasks, ``overcommit`` on the 2-CPU node, a step per VM) vs local workers;
2. the GC-table job of bench/scale_out.py (the E. coli genome × ``--copies``, 8 record-aligned
   shards, each VM reading its own byte ranges) on 2 slurm VMs vs 2 local VMs, median of
   ``--runs``; the outputs are checked to be identical.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _vmbench import table
from scale_out import genome_copies
from scale_out_ssh import shards_of, timed_map

from bioxen_shell.vm.manager import Manager
from tests.slurm_cluster import node_state, start_cluster


def drained(conf: str) -> None:
    """Wait until no job is left in the queue (the last run's are COMPLETING for a moment): each
    run measures its own jobs, not the drain of the previous ones."""
    env = {**os.environ, "SLURM_CONF": conf}
    deadline = time.monotonic() + 120
    while subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True).stdout.strip():
        if time.monotonic() > deadline:
            raise SystemExit("the Slurm queue did not drain within 120 s")
        time.sleep(0.05)


def create_and_eval(manager: Manager, name: str, **options) -> tuple[float, list]:
    t = time.perf_counter()
    vms = manager.create(name, count=4, **options)
    for vm in vms:
        assert vm.eval("return 1") == [1]
    return time.perf_counter() - t, vms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    opts = ap.parse_args()
    conf = os.environ.get("SLURM_CONF")
    cluster = None
    if not conf or node_state(Path(conf)) is None:
        cluster = start_cluster(Path(tempfile.mkdtemp(prefix="bioxen-bench-slurm-")), foreground=True)
        conf = str(cluster.conf)
    slurm = {"type": "slurm", "slurm_conf": conf, "shared_dir": tempfile.mkdtemp(prefix="bioxen-bench-shared-")}
    four = dict(slurm, overcommit=True)  # 4 VMs on the test cluster's 2 CPUs
    manager = Manager()
    try:
        rows = {"4 slurm VMs (one job, 4 steps)": [], "4 local VMs": []}
        for run in range(opts.runs):
            for label, options in (("4 slurm VMs (one job, 4 steps)", four), ("4 local VMs", {})):
                drained(conf)
                dt, vms = create_and_eval(manager, f"c{run}{len(options)}", **options)  # one job: 4 steps
                rows[label].append(dt)
                manager.destroy_many([v.name for v in vms])
        table(f"create-to-first-eval of 4 VMs, median of {opts.runs}", ("VMs", "wall"),
              [(k, f"{statistics.median(v) * 1e3:.0f} ms") for k, v in rows.items()])

        big = genome_copies(opts.copies)
        mb = big.stat().st_size / 1e6
        items = shards_of(big, 8)
        drained(conf)
        remote = manager.create("s", count=2, **slurm)
        local = manager.create("l", count=2)
        reference = timed_map(manager, local, items)[1]
        assert timed_map(manager, remote, items)[1] == reference, "the slurm VMs' table differs"
        times = {"2 slurm VMs": [], "2 local VMs": []}
        for _ in range(opts.runs):
            times["2 slurm VMs"].append(timed_map(manager, remote, items)[0])
            times["2 local VMs"].append(timed_map(manager, local, items)[0])
        out = []
        for name, xs in times.items():
            m = statistics.median(xs)
            out.append((name, f"{m:.3f} s", f"{mb / m:.0f} MB/s"))
        ratio = statistics.median(times["2 local VMs"]) / statistics.median(times["2 slurm VMs"])
        out.append(("slurm / local speed", f"{ratio:.2f}x", ""))
        table(f"GC table over {mb:.0f} MB, 8 shards, median of {opts.runs} (VMs already running)",
              ("run", "wall", "throughput"), out)
    finally:
        manager.destroy_all()
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
