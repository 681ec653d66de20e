"""Slurm VMs from the command line: the scale-out example over slurm VMs gives the one-process
output byte for byte, and bioxen's exit cancels its jobs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bioxen_shell import paths
from bioxen_shell.remote.slurm import JOB_PREFIX
from tests.waiting import PATIENCE, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _queue(env) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%j|%T"], env=env, capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines()
            if line.startswith(JOB_PREFIX) and not line.endswith(("|COMPLETING", "|COMPLETED"))]


def _cluster_config(slurm_vm_options) -> None:
    cfg = paths.config_dir() / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(f'[clusters.test]\nslurm_conf = "{slurm_vm_options["slurm_conf"]}"\n'
                   f'shared_dir = "{slurm_vm_options["shared_dir"]}"\n')


def bioxen(*args: str, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bioxen_shell", *args], env=env, capture_output=True,
                          timeout=PATIENCE, cwd=ROOT)


def test_gc_map_over_slurm_vms_is_byte_identical_and_leaves_no_job(slurm_vm_options, slurm_env, tmp_path):
    _cluster_config(slurm_vm_options)
    fa = tmp_path / "g.fa"
    fa.write_text("".join(f">seq{i} desc\n" + ("ACGTGGCCA" * (i % 17 + 1)) + "N\n" for i in range(300)))
    env = {**os.environ, **slurm_env}
    one = bioxen("run", "examples/gc_table.lua", str(fa), env=env)
    assert one.returncode == 0, one.stderr
    many = bioxen("run", "examples/gc_map_vms.lua", str(fa), "--vms", "2", "--type", "slurm",
                  "--cluster", "test", env=env)
    assert many.returncode == 0, many.stderr
    assert many.stdout == one.stdout
    assert _queue(env) == []  # the map's own VMs were destroyed with it


def test_exit_cancels_the_jobs_of_vms_left_running(slurm_vm_options, slurm_env):
    _cluster_config(slurm_vm_options)
    env = {**os.environ, **slurm_env}
    done = bioxen("-e", 'vms = vm.create{type = "slurm", cluster = "test", name = "left", count = 2} '
                        'print(vms[1]:eval("return 40 + 2"))', env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"42\n"
    wait_for(lambda: _queue(env) == [], "bioxen's jobs to be gone after it exited")


def test_ctrl_c_while_the_job_waits_cancels_it(slurm_vm_options, slurm_env):
    """SIGINT (Ctrl-C) to `bioxen -e` whose vm.create waits in the queue: the job is cancelled,
    bioxen says so and exits with an error."""
    _cluster_config(slurm_vm_options)
    env = {**os.environ, **slurm_env}
    proc = subprocess.Popen([sys.executable, "-m", "bioxen_shell", "-e",
                             'vm.create{type = "slurm", cluster = "test", name = "waits", '
                             'salloc_args = {"--begin=now+1hour"}} print("never")'],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: any(line.startswith(JOB_PREFIX + "waits|PENDING") for line in _queue(env)),
                 "the job to be queued")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=PATIENCE)
    finally:
        proc.kill()
    assert proc.returncode == 1 and out == b""
    assert b"stopped while job" in err and b"the job was cancelled" in err
    wait_for(lambda: _queue(env) == [], "the job to be cancelled")


def test_a_killed_bioxen_leaves_a_job_that_gc_finds_and_cancels(slurm_vm_options, slurm_env, tmp_path):
    """kill -9 of bioxen: its agent ends with srun's input, but the allocation stays until its
    time limit; `bioxen vm gc` lists it as an orphan and `--yes` cancels it."""
    _cluster_config(slurm_vm_options)
    env = {**os.environ, **slurm_env}
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-m", "bioxen_shell", "-e",
                             'local v = vm.create{type = "slurm", cluster = "test", name = "killed"} '
                             f'io.open({str(ready)!r}, "w"):close() while true do end'],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(ready.exists, "the VM to be created")
    finally:
        proc.kill()
        proc.wait()
    listing = bioxen("vm", "gc", "--cluster", "local", env=env)
    assert listing.returncode == 0, listing.stderr
    (row,) = [line for line in listing.stdout.decode().splitlines() if JOB_PREFIX + "killed" in line]
    assert row.split()[0] == "orphan"
    removed = bioxen("vm", "gc", "--cluster", "local", "--yes", env=env)
    assert removed.returncode == 0 and b"cancelled Slurm job" in removed.stdout
    wait_for(lambda: _queue(env) == [], "the orphaned job to be cancelled")
