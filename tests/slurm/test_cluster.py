"""What the slurm backend relies on, checked against a real single-node cluster.

These protect the backend from a Slurm that changes behaviour: srun's stdio is binary-safe,
``-u`` delivers a partial line at once (without it srun holds it until a newline or the
end), ``salloc --no-shell`` grants and says so on stderr (or says it is waiting), steps run
inside an allocation, ``scancel --signal`` reaches every process of a step, and the error
messages for impossible requests.  Every wait is for an event, with a deadline.
"""
from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.waiting import PATIENCE, wait_for

GRANTED = re.compile(r"^salloc: Granted job allocation (\d+)$")


def run(args, env, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, timeout=PATIENCE, **kwargs)


def squeue(env, *args) -> str:
    return run(["squeue", "-h", *args], env, text=True).stdout.strip()


def job_state(env, job: str) -> str:
    return squeue(env, "-j", job, "-o", "%T|%r")


def allocate(env, *args) -> str:
    """``salloc --no-shell ARGS`` that must be granted at once; returns the job id."""
    proc = run(["salloc", "--no-shell", *args], env, text=True)
    assert proc.returncode == 0, proc.stderr
    match = GRANTED.match(proc.stderr.strip())
    assert match, proc.stderr
    return match.group(1)


def ended(env, job: str) -> bool:
    return job_state(env, job).split("|")[0] in ("", "COMPLETED", "CANCELLED", "COMPLETING")


@pytest.fixture
def jobs(slurm_env):
    """Job ids a test allocates; cancelled at its end, so the next test finds the node free."""
    ids: list[str] = []
    yield ids
    for job in ids:
        run(["scancel", job], slurm_env)
    for job in ids:
        wait_for(lambda job=job: job_state(slurm_env, job).split("|")[0] in ("", "COMPLETED", "CANCELLED"),
                 f"job {job} to end")


def read_until(stream, wanted: bytes, what: str) -> bytes:
    """Read ``stream`` (a pipe) until ``wanted`` is in what was read; fail after PATIENCE."""
    got = b""
    deadline = time.monotonic() + PATIENCE
    while wanted not in got:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([stream], [], [], max(left, 0))
        if not ready:
            raise AssertionError(f"waited {PATIENCE:g} s for {what}; got {got!r}")
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            raise AssertionError(f"end of output before {what}; got {got!r}")
        got += chunk
    return got


@contextlib.contextmanager
def srun(env, *args) -> Iterator[subprocess.Popen]:
    """``srun ARGS`` with its stdio on pipes, killed at the end of the block if still there."""
    proc = subprocess.Popen(["srun", *args], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def answer(proc: subprocess.Popen) -> bytes:
    """Give the task the line it reads, then return the rest of its output (it must succeed)."""
    proc.stdin.write(b"\n")
    proc.stdin.close()
    rest = proc.stdout.read()
    assert proc.wait(PATIENCE) == 0, proc.stderr.read()
    return rest


def test_srun_stdio_is_binary_safe(slurm_env):
    data = os.urandom(1 << 20)
    proc = run(["srun", "-n1", "cat"], slurm_env, input=data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data


@pytest.mark.parametrize("task", [["sh", "-c", "printf abc; read x; printf def"],
                                  ["lua5.4", "-e", 'io.write("abc") io.stdout:flush() io.read("l") io.write("def")']],
                         ids=["sh", "lua5.4"])
def test_srun_u_delivers_a_partial_line_before_the_task_ends(slurm_env, task):
    if task[0] == "lua5.4":
        from tests.system import require_binary
        require_binary("lua5.4")
    with srun(slurm_env, "-n1", "-u", *task) as proc:
        # the task is blocked reading its stdin: "abc" can only come from the running task
        assert read_until(proc.stdout, b"abc", "abc from the running task") == b"abc"
        assert answer(proc) == b"def"


def test_srun_without_u_holds_a_partial_line_until_the_end(slurm_env, tmp_path):
    marker = tmp_path / "written"
    with srun(slurm_env, "-n1", "sh", "-c", f"printf abc; touch {marker}; read x; printf def") as proc:
        wait_for(marker.exists, "the task to have written abc")
        proc.stdin.write(b"\n")
        proc.stdin.close()
        # "abc" comes only with the rest, in one piece at the end: line-buffered by Slurm
        assert read_until(proc.stdout, b"abc", "the task's output") == b"abcdef"
        assert proc.wait(PATIENCE) == 0


def test_srun_without_u_delivers_whole_lines_at_once(slurm_env):
    with srun(slurm_env, "-n1", "sh", "-c", "printf 'abc\\nxy'; read x") as proc:
        assert read_until(proc.stdout, b"\n", "a whole line from the running task") == b"abc\n"
        assert answer(proc) == b"xy"


def test_salloc_no_shell_grants_a_running_job_that_steps_run_in(slurm_env, jobs):
    proc = run(["salloc", "--no-shell", "-J", "bioxen-test", "--comment=made by bioxen", "-n1"], slurm_env, text=True)
    assert proc.returncode == 0 and proc.stdout == ""
    match = GRANTED.match(proc.stderr.strip())
    assert match and proc.stderr.count("\n") == 1, proc.stderr
    job = match.group(1)
    jobs.append(job)
    assert job_state(slurm_env, job) == "RUNNING|None"
    row = squeue(slurm_env, "-j", job, "-o", "%i|%j|%k|%T|%u|%N")
    assert row == f"{job}|bioxen-test|made by bioxen|RUNNING|root|{os.uname().nodename.split('.')[0]}"
    step = run(["srun", f"--jobid={job}", "-n1", "sh", "-c", "echo $SLURM_JOB_ID.$SLURM_STEP_ID"], slurm_env, text=True)
    assert step.returncode == 0, step.stderr
    assert step.stdout == f"{job}.0\n"
    assert job_state(slurm_env, job) == "RUNNING|None"  # a step ending leaves the allocation
    assert run(["scancel", job], slurm_env).returncode == 0
    wait_for(lambda: ended(slurm_env, job), f"job {job} to end after scancel")


def test_squeue_shows_an_unset_comment_as_null(slurm_env, jobs):
    job = allocate(slurm_env, "-n1")
    jobs.append(job)
    # without -J, salloc --no-shell names the job "no-shell"
    assert squeue(slurm_env, "-j", job, "-o", "%i|%j|%k|%T|%u") == f"{job}|no-shell|(null)|RUNNING|root"


def test_salloc_says_it_waits_for_resources(slurm_env, jobs):
    # in "short": "debug" shares each core among four jobs (OverSubscribe=FORCE:4)
    big = allocate(slurm_env, "-p", "short", "-J", "bioxen-big", "-n1", "-c2")
    jobs.append(big)
    waiter = subprocess.Popen(["salloc", "--no-shell", "-p", "short", "-J", "bioxen-waiter", "-n1"], env=slurm_env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        text = read_until(waiter.stderr, b"queued and waiting for resources\n", "salloc to say it waits").decode()
        match = re.fullmatch(r"salloc: Pending job allocation (\d+)\n"
                             r"salloc: job \1 queued and waiting for resources\n", text)
        assert match, text
        job = match.group(1)
        jobs.append(job)
        assert job_state(slurm_env, job) == "PENDING|Resources"
        run(["scancel", big], slurm_env)
        _, err = waiter.communicate(timeout=PATIENCE)
        assert err.decode() == (f"salloc: job {job} has been allocated resources\n"
                                f"salloc: Granted job allocation {job}\n")
        assert waiter.returncode == 0
        assert job_state(slurm_env, job) == "RUNNING|None"
    finally:
        waiter.kill()
        waiter.wait()


def test_scancel_signal_reaches_every_process_of_a_step(slurm_env, jobs, tmp_path):
    job = allocate(slurm_env, "-n1")
    jobs.append(job)
    got, child = tmp_path / "got", tmp_path / "child"
    # the task traps USR1; its child ignores it; the task's own `sleep`s keep the default
    script = (f'trap "echo got >> {got}" USR1; '
              f'(trap "" USR1; exec sh -c "echo \\$\\$ > {child}; while :; do sleep 0.1; done") & '
              'while :; do sleep 0.1; done')
    step = subprocess.Popen(["srun", f"--jobid={job}", "-n1", "sh", "-c", script], env=slurm_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: child.exists() and child.read_text().strip(), "the child to start")
        child_pid = int(child.read_text())
        for n in (1, 2):
            assert run(["scancel", "--signal=USR1", f"{job}.0"], slurm_env).returncode == 0
            wait_for(lambda n=n: got.exists() and got.read_text() == "got\n" * n, f"trap number {n} to run")
        assert Path(f"/proc/{child_pid}").exists()  # it ignores USR1: still there
        assert step.poll() is None  # and the step goes on
        run(["scancel", job], slurm_env)
        _, err = step.communicate(timeout=PATIENCE)
        # the task's sleep, which did not ignore USR1, died of it (sh says so)
        assert "User defined signal 1" in err.decode()
    finally:
        step.kill()
        step.wait()


@pytest.mark.parametrize("args, message", [
    (["-p", "nosuch"], "salloc: error: invalid partition specified: nosuch\n"
                       "salloc: error: Job submit/allocate failed: Invalid partition name specified\n"),
    (["--mem=999999"], "salloc: error: Memory specification can not be satisfied\n"
                       "salloc: error: Job submit/allocate failed: Requested node configuration is not available\n"),
], ids=["no-such-partition", "too-much-memory"])
def test_salloc_refuses_impossible_requests(slurm_env, args, message):
    proc = run(["salloc", "--no-shell", *args, "-n1"], slurm_env, text=True)
    assert (proc.returncode, proc.stderr) == (1, message)


@pytest.mark.parametrize("args, reason", [
    (["-p", "short", "-t", "10"], "PartitionTimeLimit"),
    (["-c", "3"], "PartitionConfig"),
], ids=["over-max-time", "too-many-cpus"])
def test_over_a_partitions_limits_salloc_pends_forever(slurm_env, args, reason):
    """Under Slurm's default EnforcePartLimits=NO (the test cluster's too) such a job is queued
    and never runs: the backend must read the reason and give up (tests/slurm/test_slurm_vms.py)."""
    proc = subprocess.Popen(["salloc", "--no-shell", "-J", "bioxen-test-pend", *args, "-n1"], env=slurm_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        first = proc.stderr.readline().decode()
        assert first == "salloc: Requested partition configuration not available now\n"
        job = re.match(r"salloc: Pending job allocation (\d+)$", proc.stderr.readline().decode().strip()).group(1)
        wait_for(lambda: job_state(slurm_env, job) == f"PENDING|{reason}", f"job {job} to pend with {reason}")
    finally:
        run(["scancel", "-n", "bioxen-test-pend"], slurm_env)
        proc.wait(PATIENCE)


def test_the_short_partition_grants_up_to_its_max_time(slurm_env, jobs):
    job = allocate(slurm_env, "-p", "short", "-t", "5", "-n1")
    jobs.append(job)
    assert squeue(slurm_env, "-j", job, "-o", "%P|%l") == "short|5:00"
