"""Slurm VMs: the bioxen agent as a job step on a Slurm cluster.

``vm.create{type="slurm", cluster="hpc", partition="short", cpus=2, mem="4G", time="2:00:00",
count=8}``.  The VMs of one ``vm.create`` share one Slurm job (N tasks of ``cpus`` CPUs, see
:class:`_JobGroup`) and each VM's agent is one job step in it, so ``vm.map`` over file shards
runs across the cluster with the same agent, protocol and ``vm`` API as every other VM:

1. **allocate** (:class:`_Allocation`): ``salloc --no-shell --job-name=bioxen-NAME
   --comment=bioxen-owner=TOKEN --ntasks=N --cpus-per-task=…`` (plus ``--mem-per-cpu``,
   ``--time``, ``--partition``, ``--account``, ``--qos``).  The job id is read from salloc's
   stderr as soon as the controller has queued the job; while it waits, ``squeue`` tells its
   state and reason, shown on stderr when they change.  ``queue_timeout`` ends the wait, and so
   does Ctrl-C: both cancel the job (``scancel``).  The comment carries the owner stamp of
   :mod:`.registry`, which is how ``bioxen vm gc`` tells this installation's jobs from
   everything else in the queue.
2. **stage** the agent bundle (``lua/`` and ``bio_stdlib/``) once per version into
   ``shared_dir`` — a directory on a file system the compute nodes share (home, by default
   ``~/.cache/bioxen``), next to the bundles the SSH backend uploads;
3. **step**: ``srun --jobid=N --ntasks=1 --exact --unbuffered sh -c WRAPPER`` per VM, with the
   protocol on srun's stdin and stdout (see :func:`_srun_argv`).  The wrapper, on the node, finds
   the best Lua interpreter there, starts the agent with SIGUSR1 ignored, reports
   ``bioxen-agent-pid PID STEP NODE INTERPRETER`` on stderr and turns SIGUSR1 into a byte
   appended to the agent's interrupt file (stock ``lua`` has no safe SIGINT handler).  So an
   interrupt is ``scancel --signal=USR1 N.STEP``, a kill ``scancel --signal=KILL N.STEP``, and
   ``:restart()`` starts a new step in the same job (a job of its own if that one has ended).
4. **destroy** ends the VM's step; the job goes with its last VM (``scancel N``).

Slurm's commands run on this machine (its client tools on PATH), or on a login host over SSH
when the cluster's ``login`` names one (``[clusters.NAME]`` in config.toml): the two differ only in
:class:`_LocalCommands` / :class:`.slurm_ssh.SSHCommands`, the places commands run and steps are started.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

from ..runtimes import INTERPRETERS
from ..schema import VM_CREATE, show
from ..vm.pipes import PipeStream
from ..vm.transport import BackendError, show_agent_stderr
from . import registry, upload
from .config import (CLUSTER_KEYS, ClusterConfig, ConfigError, backend_error, check_settings,
                     interpreter_candidates, load_config)

__all__ = ["SlurmBackend", "SlurmStep", "JOB_PREFIX", "COMMENT_PREFIX", "list_jobs", "cancel_job",
           "cluster_settings", "cluster_for_gc", "commands_for"]

#: Every bioxen job's name starts with this; its comment with :data:`COMMENT_PREFIX`.
JOB_PREFIX = "bioxen-"
COMMENT_PREFIX = "bioxen-owner="
#: Memory asked beyond the profile's memory_limit: the interpreter's own code and buffers.
_MEM_MARGIN_MB = 64
#: How often the queue is asked about a pending job, and how long before the first time.
_QUEUE_POLL = 5.0
_FIRST_POLL = 1.0
#: How long a Slurm command (squeue, scancel) may take before it counts as failed.
_COMMAND_TIMEOUT = 30.0
_STDERR_TAIL = 64 * 1024
#: How long a lost VM's message waits for its ending job's final state (CANCELLED, TIMEOUT…).
_ENDING_WAIT = 15.0

_JOB_ID = re.compile(r"[Jj]ob allocation (\d+)")
#: What salloc says on every wait (bioxen shows the queue's state itself).
_ROUTINE = re.compile(r"queued and waiting for resources|has been allocated resources|"
                      r"Granted job allocation|Job aborted due to signal|Job has been cancelled")
_PID_LINE = re.compile(rb"bioxen-agent-pid (\d+) (\S+) (\S+) (\S+)\n")
_FAIL_LINE = re.compile(rb"bioxen-(nointerp|nobundle|notmp) ([^\n]*)\n")

#: Pending reasons that never clear by waiting (the job asks for more than its partition, account
#: or QOS allows per job): the job is cancelled and the reason reported at once.  Slurm accepts
#: such a job unless EnforcePartLimits is set, and would keep it in the queue forever.
_HOPELESS = {
    "PartitionTimeLimit": "its time limit is over the partition's",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows",
    "BadConstraints": "its constraints cannot be satisfied",
    "InvalidAccount": "its account is not valid",
    "InvalidQOS": "its QOS is not valid",
    "DependencyNeverSatisfied": "its dependency can never be satisfied",
}
_PER_JOB_LIMIT = re.compile(r"(QOS|Assoc)\w*PerJob")

#: Job states in which the allocation holds (or will hold) its node.  COMPLETING is not one: the
#: job is ending (cancelled, out of time) and its steps are being killed.
_LIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "SUSPENDED", "RESIZING"})


# ---------------------------------------------------------------------------------------------
# Settings: [clusters.NAME] of config.toml, overridden by vm.create options

def cluster_settings(options: dict[str, Any]) -> ClusterConfig:
    """The cluster a ``vm.create{type="slurm", …}`` means: ``cluster="NAME"`` (a
    ``[clusters.NAME]`` of config.toml) or this machine's Slurm, with the other options on top,
    each checked by the config's one schema."""
    opts = dict(options)
    name = opts.pop("cluster", None)
    try:
        given = check_settings(opts, CLUSTER_KEYS, VM_CREATE, "")
    except ConfigError as e:
        raise backend_error("slurm", e) from None
    if name is None:
        return ClusterConfig(**given)
    if not isinstance(name, str) or not name:
        raise BackendError(f"{VM_CREATE}: cluster: expected the name of a [clusters.NAME] of "
                           f"config.toml, got {show(name)}")
    try:
        config = load_config()
    except ConfigError as e:
        raise BackendError(f"slurm: {e}") from None
    base = config.clusters.get(name)
    if base is None:
        known = ", ".join(config.clusters) or "none"
        raise BackendError(f"{VM_CREATE}: cluster: {show(name)} is not a [clusters.NAME] of "
                           f"{config.path} (clusters there: {known})")
    return dataclasses.replace(base, **given)


def cluster_for_gc(name: str) -> ClusterConfig:
    """The cluster ``bioxen vm gc --cluster NAME`` means ("local": this machine's Slurm)."""
    if name == "local":
        return ClusterConfig()
    return cluster_settings({"cluster": name})


def _salloc_argv(cluster: ClusterConfig, label: str, ntasks: int, mem_per_cpu: int | None,
                 owner: str) -> list[str]:
    argv = ["salloc", "--no-shell", f"--job-name={JOB_PREFIX}{label}",
            f"--comment={COMMENT_PREFIX}{owner}", f"--ntasks={ntasks}",
            f"--cpus-per-task={cluster.cpus}"]
    if mem_per_cpu:
        argv.append(f"--mem-per-cpu={mem_per_cpu}")
    if cluster.overcommit:
        argv.append("--overcommit")
    for option, value in (("--time", cluster.time), ("--partition", cluster.partition),
                          ("--account", cluster.account), ("--qos", cluster.qos)):
        if value:
            argv.append(f"{option}={value}")
    return argv + list(cluster.salloc_args)


_MB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def _megabytes(size: str) -> int:
    """Slurm's memory syntax ("500", "500M", "4G") in MB."""
    unit = size[-1].upper() if size[-1].isalpha() else "M"
    number = int(size[:-1] if size[-1].isalpha() else size)
    return max(1, math.ceil(number * _MB[unit]))


def vm_memory(cluster: ClusterConfig, profile: Any) -> tuple[int | None, bool]:
    """The memory one VM asks for (MB), and whether the user asked for it (``mem``) rather than
    it being the profile's memory_limit plus :data:`_MEM_MARGIN_MB` (so that the agent's own
    limit, which keeps the VM, is hit first)."""
    if cluster.mem:
        return _megabytes(cluster.mem), True
    limit = int(getattr(profile, "memory_limit", 0) or 0)
    if limit <= 0:
        return None, False
    return -(-limit // (1024 * 1024)) + _MEM_MARGIN_MB, False


def node_memory(cmds: Any, partition: str | None) -> int | None:
    """The memory (MB) of the partition's smallest node as Slurm counts it, or None."""
    argv = ["sinfo", "-h", "-o", "%m"] + (["-p", partition] if partition else [])
    status, out, _err = cmds.run(argv)
    sizes = [int(m.group(0)) for m in re.finditer(r"\d+", out)] if status == 0 else []
    return min(sizes) if sizes else None


# ---------------------------------------------------------------------------------------------
# Where Slurm's commands run

class _LocalCommands:
    """Slurm's client tools on this machine."""

    where = "this machine"

    def __init__(self, cluster: ClusterConfig) -> None:
        self.cluster = cluster
        self.env = dict(os.environ)
        if cluster.slurm_conf:
            self.env["SLURM_CONF"] = os.path.expanduser(cluster.slurm_conf)

    def _missing(self, program: str) -> BackendError:
        return BackendError(f"slurm: {program} is not installed on {self.where} (Slurm's client "
                            f"tools: apt-get install slurm-client, or `module load slurm`); or name a "
                            f"login host: [clusters.NAME] login = \"host\"")

    def run(self, argv: list[str], timeout: float = _COMMAND_TIMEOUT) -> tuple[int, str, str]:
        """Run a Slurm command; ``(status, stdout, stderr)``."""
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=self.env,
                                  timeout=timeout, start_new_session=True)
        except FileNotFoundError:
            raise self._missing(argv[0]) from None
        except subprocess.TimeoutExpired:
            return 124, "", f"{argv[0]} did not answer within {timeout:g} s"
        return (done.returncode, done.stdout.decode(errors="replace"),
                done.stderr.decode(errors="replace"))

    def popen(self, argv: list[str], *, stdin: Any = subprocess.DEVNULL,
              stdout: Any = subprocess.DEVNULL) -> subprocess.Popen:
        # A session of its own: Ctrl-C at the terminal is bioxen's to handle, never srun's (one
        # SIGINT makes srun print status, two in a second kill the step).
        try:
            return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                    env=self.env, start_new_session=True, close_fds=True)
        except FileNotFoundError:
            raise self._missing(argv[0]) from None

    def close(self) -> None:
        """Nothing to release on this machine (a login host's commands hold a connection)."""

    def start_step(self, job: str, argv: list[str]) -> "SlurmStep":
        """Run ``argv`` (srun) with the protocol on its stdin and stdout."""
        return SlurmStep(self, job, argv)

    def install_bundle(self, profile=None) -> str:  # noqa: ANN001
        """Put this version of the agent bundle (with ``profile``'s modules) under ``shared_dir``;
        return its directory."""
        bundle = upload.agent_bundle(profile)
        shared = os.path.abspath(os.path.expanduser(self.cluster.shared_dir))
        final = upload.remote_bundle_dir(shared, bundle)
        if os.path.isfile(os.path.join(final, ".complete")):
            return final
        try:
            os.makedirs(shared, mode=0o700, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=f".tmp-{bundle.version}-", dir=shared)
            for name, data in bundle.files:
                path = os.path.join(tmp, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
            with open(os.path.join(tmp, ".complete"), "wb") as f:
                f.write(bundle.version.encode() + b"\n")
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, final)
            except OSError:  # another bioxen won the race: theirs is as good
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as e:
            raise BackendError(f"slurm: cannot put the agent into shared_dir {shared} "
                               f"({self.cluster.source}): {e.strerror or e}") from None
        return final


def commands_for(cluster: ClusterConfig) -> _LocalCommands:
    """The place that runs ``cluster``'s Slurm commands."""
    if cluster.login is None:
        return _LocalCommands(cluster)
    from .slurm_ssh import SSHCommands
    return SSHCommands(cluster)


def _slurm_said(err: str) -> str:
    """What a Slurm command said on stderr, as it said it (one line per message)."""
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    return "; ".join(lines[-6:]) if lines else "no message"


def job_state(cmds: Any, job: str) -> tuple[str, str, str] | None:
    """``(state, reason, nodes)`` of a job in the queue, or None when the queue no longer
    lists it (ended and purged) or cannot be asked."""
    status, out, _err = cmds.run(["squeue", "-h", "-j", job, "-o", "%T|%r|%N"])
    if status != 0:
        return None
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            return parts[0], parts[1], parts[2]
    return None


def job_is_live(cmds: Any, job: str) -> bool:
    """Whether the job still holds (or will hold) its node: queued or running, not ending."""
    state = job_state(cmds, job)
    return state is not None and state[0] in _LIVE_STATES


def cancel_job(cmds: Any, job: str, signal_name: str | None = None) -> str | None:
    """``scancel`` a job (or a step ``N.S``); the error text, or None when it worked."""
    argv = ["scancel"] + ([f"--signal={signal_name}"] if signal_name else []) + [job]
    status, _out, err = cmds.run(argv)
    if status != 0 and "Invalid job id" not in err and "already completing or completed" not in err \
            and "has already completed" not in err:
        return _slurm_said(err)
    return None


def list_jobs(cmds: Any) -> list[dict[str, str]]:
    """This user's jobs in the queue that look like bioxen's (name or comment): id, name,
    comment, state, nodes, submitted."""
    user = registry.current_owner().user
    status, out, err = cmds.run(["squeue", "-h", "-u", user, "-o", "%i|%j|%T|%N|%V|%k"])
    if status != 0:
        raise BackendError(f"slurm: squeue on {cmds.where} failed: {_slurm_said(err)}")
    jobs = []
    for line in out.splitlines():
        parts = line.rstrip("\n").split("|", 5)
        if len(parts) != 6:
            continue
        job, name, state, nodes, submitted, comment = parts
        if name.startswith(JOB_PREFIX) or comment.startswith(COMMENT_PREFIX):
            jobs.append({"job": job, "name": name, "state": state, "nodes": nodes,
                         "submitted": submitted, "comment": "" if comment == "(null)" else comment})
    return jobs


# ---------------------------------------------------------------------------------------------
# The allocation: asking for a job and waiting in the queue

def _show(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class _Allocation:
    """Ask for a job and wait until Slurm grants it (see the module docstring)."""

    def __init__(self, cmds: Any, cluster: ClusterConfig, label: str, ntasks: int,
                 mem_per_cpu: int | None, cancelled: Callable[[], bool]) -> None:
        self.cmds = cmds
        self.cluster = cluster
        self.label = label
        self.ntasks = ntasks
        self.mem_per_cpu = mem_per_cpu
        self.cancelled = cancelled
        self.owner = registry.current_owner().token()
        self.job: str | None = None
        self._lines: list[str] = []

    def _read_stderr(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            self._lines.append(line)
            m = _JOB_ID.search(line)
            if m and self.job is None:
                self.job = m.group(1)
            elif not _ROUTINE.search(line) and " error: " not in line:
                _show(line)  # what Slurm says besides the routine (errors end up in the exception)

    def request(self) -> str:
        """The granted job's id.  Raises BackendError (job cancelled) on an error, the queue
        timeout or a cancel; a KeyboardInterrupt cancels the job too, then goes on."""
        argv = _salloc_argv(self.cluster, self.label, self.ntasks, self.mem_per_cpu, self.owner)
        proc = self.cmds.popen(argv)
        reader = threading.Thread(target=self._read_stderr, args=(proc.stderr,),
                                  name=f"salloc-{self.label}", daemon=True)
        reader.start()
        try:
            status = self._wait(proc)
        except BaseException:
            self._abandon(proc)
            raise
        reader.join(_COMMAND_TIMEOUT)
        if status != 0 or self.job is None:
            self._abandon(proc)
            raise BackendError(f"slurm: salloc on {self.cmds.where} failed: "
                               f"{_slurm_said(chr(10).join(self._lines))}")
        return self.job

    def _wait(self, proc: Any) -> int:
        started = time.monotonic()
        next_poll = started + _FIRST_POLL
        shown: tuple[str, str] | None = None
        limit = self.cluster.queue_timeout
        while True:
            try:
                return proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if self.cancelled():
                raise BackendError(f"slurm: stopped while job {self.job or '(not yet queued)'} waited in "
                                   f"the queue (Ctrl-C, or another VM of this vm.create failed); the "
                                   f"job was cancelled")
            if limit and now - started > limit:
                state = job_state(self.cmds, self.job) if self.job else None
                what = f" ({state[0]}, reason: {state[1]})" if state else ""
                raise BackendError(f"slurm: job {self.job or '?'} still waits in the "
                                   f"queue{what} after {limit:g} s (queue_timeout); it was cancelled")
            if self.job is not None and now >= next_poll:
                next_poll = now + _QUEUE_POLL
                state = job_state(self.cmds, self.job)
                if state is not None and state[0] == "PENDING":
                    self._check_hopeless(state[1])
                if state is not None and state[0] == "PENDING" and state[:2] != shown:
                    shown = state[:2]
                    _show(f"slurm: {self.label}: job {self.job} {state[0]} (reason: {state[1]}), "
                          f"waiting {now - started:.0f} s")

    def _check_hopeless(self, reason: str) -> None:
        why = _HOPELESS.get(reason) or ("it asks for more than a per-job limit allows"
                                        if _PER_JOB_LIMIT.search(reason) else None)
        if why is not None:
            raise BackendError(f"slurm: job {self.job} cannot start: Slurm keeps it "
                               f"PENDING with reason {reason} ({why}); it was cancelled")

    def _abandon(self, proc: Any) -> None:
        """Stop salloc and cancel whatever job it asked for (found by its owner stamp when
        its id was never printed)."""
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(_COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        if self.job is not None:
            cancel_job(self.cmds, self.job)
            return
        try:
            jobs = list_jobs(self.cmds)
        except BackendError:
            return
        stamp = COMMENT_PREFIX + self.owner
        for job in jobs:
            if job["comment"] == stamp and job["name"] == JOB_PREFIX + self.label:
                cancel_job(self.cmds, job["job"])


# ---------------------------------------------------------------------------------------------
# The agent's step

# On the node: $1 = the bundle's directory, $2… = interpreters to try, best first.  The first
# line on stderr says what happened (the agent's pid, or why it could not start).
_WRAPPER = r"""
dir=$1; shift
name=; interp=
for i in "$@"; do
  if p=$(command -v "$i" 2>/dev/null); then name=$i; interp=$p; break; fi
done
node=$(hostname 2>/dev/null || echo "${SLURMD_NODENAME:-?}")
if [ -z "$interp" ]; then
  found=
  for i in ALL; do command -v "$i" >/dev/null 2>&1 && found="$found,$i"; done
  printf 'bioxen-nointerp %s %s\n' "$node" "${found#,}" >&2; exit 97
fi
if [ ! -f "$dir/.complete" ]; then printf 'bioxen-nobundle %s %s\n' "$node" "$dir" >&2; exit 98; fi
intr=$(mktemp "${TMPDIR:-/tmp}/bioxen-intr.XXXXXX") || { printf 'bioxen-notmp %s\n' "$node" >&2; exit 99; }
trap '' USR1
START
trap 'printf x >> "$intr"' USR1
printf 'bioxen-agent-pid %s %s %s %s\n' "$pid" "${SLURM_STEP_ID:--}" "$node" "$name" >&2
st=
while [ -z "$st" ]; do
  wait "$pid"; s=$?
  if [ "$s" -le 128 ] || ! kill -0 "$pid" 2>/dev/null; then st=$s; fi
done
rm -f "$intr"
exit "$st"
""".replace("ALL", " ".join(INTERPRETERS)).replace("START", upload.AGENT_START_SH)


def _srun_argv(cluster: ClusterConfig, job: str, bundle_dir: str, candidates: list[str]) -> list[str]:
    # --unbuffered: without it slurmstepd forwards a task's stdout only up to its last newline
    # (a frame's payload would wait for the next frame); with it the task's stdout is a pty in
    # raw mode, which passes every byte value unchanged (tests/slurm checks both facts).
    # --exact: the step takes only its own task's CPUs, so the VMs of one job run side by side
    # (without it the first step holds the whole allocation and the next waits).
    return (["srun", f"--jobid={job}", "--ntasks=1", "--nodes=1", f"--cpus-per-task={cluster.cpus}",
             "--exact", "--unbuffered", "--quiet", "--kill-on-bad-exit=1"]
            + (["--overcommit"] if cluster.overcommit else []) + list(cluster.srun_args)
            + ["sh", "-c", _WRAPPER, "bioxen-agent", bundle_dir] + candidates)


class _StepControls:
    """What every Slurm step has, wherever srun runs: the pid line, interrupt/kill through
    ``scancel``, and the exit reason.  Mixed into a byte stream class (pipes or a channel)."""

    def _init_step(self, cmds: Any, job: str, where: str) -> None:
        self._cmds = cmds
        self.job = job
        self.step: str | None = None
        self.node: str | None = None
        self.pid: int | None = None
        self.interpreter: str | None = None
        self.failure: str | None = None   # the wrapper's complaint (no interpreter, no bundle)
        self._where = where
        self._stderr = bytearray()
        self._stderr_lock = threading.Lock()
        self._started = threading.Event()
        self._killed = False
        self._ended: bool | None = None  # whether the job has ended, once srun has

    def _take_stderr(self, chunks: Any) -> None:
        """Read the step's stderr: find the pid line, then show everything on our stderr (as a
        local VM's io.stderr is shown)."""
        pending = b""
        try:
            for data in chunks:
                if not self._started.is_set():
                    pending += data
                    m = _PID_LINE.search(pending)
                    fail = _FAIL_LINE.search(pending)
                    if m:
                        self.pid = int(m.group(1))
                        self.step = m.group(2).decode(errors="replace")
                        self.node = m.group(3).decode(errors="replace")
                        self.interpreter = m.group(4).decode(errors="replace")
                        self._keep(pending[:m.start()])
                        data, pending = pending[m.end():], b""
                        self._started.set()
                    elif fail:
                        self.failure = fail.group(0).decode(errors="replace").strip()
                        self._keep(pending)
                        pending = b""
                        self._started.set()
                        continue
                    else:
                        continue
                self._keep(data)
                if not self._killed:  # after a kill, srun's "task 0: Killed" is our own doing
                    show_agent_stderr(data)
        finally:
            self._keep(pending)
            self._started.set()

    def _keep(self, data: bytes) -> None:
        if data:
            with self._stderr_lock:
                self._stderr += data
                del self._stderr[:-_STDERR_TAIL]

    def stderr_tail(self) -> str:
        with self._stderr_lock:
            return self._stderr.decode("utf-8", "replace")

    def await_start(self, timeout: float, runtime: str | None, candidates: list[str]) -> None:
        if not self._started.wait(timeout):
            raise BackendError(f"slurm: job {self.job}: the agent's step did not start within "
                               f"{timeout:g} s (start_timeout){self._said()}")
        if self.pid is not None:
            return
        if self.failure and self.failure.startswith("bioxen-nointerp"):
            _word, node, found = (self.failure.split(" ", 2) + ["", ""])[:3]
            raise BackendError(f"slurm: job {self.job}: node {node} has no {' or '.join(candidates)}"
                               f"{f' (runtime {runtime})' if runtime else ''}; Lua interpreters "
                               f"found there: {found.replace(',', ', ') or 'none'}")
        if self.failure and self.failure.startswith("bioxen-nobundle"):
            _word, node, where = (self.failure.split(" ", 2) + ["", ""])[:3]
            raise BackendError(f"slurm: job {self.job}: node {node} does not see {where}: shared_dir "
                               f"must be on a file system the compute nodes share")
        raise BackendError(f"slurm: job {self.job}: srun failed: {_slurm_said(self.stderr_tail())}")

    def _said(self) -> str:
        tail = self.stderr_tail().strip()
        return f": {_slurm_said(tail)}" if tail else ""

    def _step_id(self) -> str | None:
        return f"{self.job}.{self.step}" if self.step not in (None, "-") else None

    def interrupt(self) -> None:
        step = self._step_id()
        if step is not None and not self._killed and self.exit_reason() is None:
            cancel_job(self._cmds, step, "USR1")

    def kill(self) -> None:
        if self._killed:
            return
        self._killed = True
        step = self._step_id()
        try:
            if step is not None and self._srun_status() is None:
                cancel_job(self._cmds, step, "KILL")
        except Exception:  # kill() never raises
            pass
        self._end_srun()

    def exit_reason(self) -> str | None:
        if self._killed:
            return "signal 9"
        status = self._srun_status()
        if status is None:
            return None
        if self._job_ended():
            return "connection lost"  # the job is gone (time limit, cancelled, node failure)
        if status < 0:
            return f"signal {-status}"
        return f"signal {status - 128}" if status > 128 else f"exit status {status}"

    def _job_ended(self) -> bool:
        if self._ended is None:
            self._ended = not job_is_live(self._cmds, self.job)
        return self._ended

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "slurm", "job": self.job}
        for key in ("step", "node", "pid", "interpreter"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


class SlurmStep(_StepControls, PipeStream):
    """The byte stream to an agent whose srun runs on this machine (``transport.AgentProcess``)."""

    def __init__(self, cmds: _LocalCommands, job: str, argv: list[str]) -> None:
        self._init_step(cmds, job, cmds.where)
        self._srun = self._start_on_pipes(lambda stdin, stdout: cmds.popen(argv, stdin=stdin, stdout=stdout))
        self._reader = threading.Thread(target=self._take_stderr, args=(self._chunks(),),
                                        name=f"srun-stderr-{job}", daemon=True)
        self._reader.start()

    def _chunks(self):
        stream = self._srun.stderr
        while True:
            data = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not data:
                return
            yield data

    def _srun_status(self) -> int | None:
        return self._srun.poll()

    def _end_srun(self) -> None:
        try:
            self._srun.kill()
        except OSError:
            pass

    def close(self) -> None:
        if self._closed:
            return
        if self._srun.poll() is None:
            self.kill()
        try:
            self._srun.wait(_COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(2.0)
        self._closed = True
        self._close_pipes()
        if self._srun.stderr is not None:
            self._srun.stderr.close()


# ---------------------------------------------------------------------------------------------
# The job that the VMs of one vm.create share

class _JobGroup:
    """One job for the VMs of one ``vm.create`` (``count = N``: N tasks, one step per VM).

    One job rather than one per VM: the scheduler grants the VMs together (a map starts when
    all its VMs can), one ``salloc`` waits in the queue and is cancelled, and on a cluster whose
    nodes' memory Slurm does not know (``RealMemory`` unset) jobs cannot share a node but the
    steps of one job can.  The first VM to start asks for the job; the others wait for it.  The
    job is cancelled when its last VM leaves (destroyed or stopped); a VM restarted after that
    asks for a job of its own."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.job: str | None = None
        self.spent = False                  # its job was given back or has ended
        self._members: dict[int, str] = {}   # id → VM name
        self._lock = threading.Lock()
        self._asked = False
        self._granted = threading.Event()
        self._error: BaseException | None = None

    def join(self, member: Any) -> None:
        with self._lock:
            self._members[id(member)] = member.name

    def job_for(self, ask: Callable[[int, str], str], cancelled: Callable[[], bool]) -> str:
        """The group's job: asked for by the first caller (``ask(ntasks, label)``; the label is
        the first VM's name), waited for by the rest."""
        with self._lock:
            if self.job is not None:
                return self.job
            first = not self._asked
            self._asked = True
            label = min(self._members.values(), key=lambda n: (len(n), n), default="vm")
        if first:
            try:
                job = ask(self.size, label + (f"+{self.size - 1}" if self.size > 1 else ""))
            except BaseException as e:
                self._error = e
                self._granted.set()
                raise
            with self._lock:
                self.job = job
            self._granted.set()
            return job
        while not self._granted.wait(0.2):
            if cancelled():
                raise BackendError("slurm: stopped while the job of this vm.create waited in the queue "
                                   "(Ctrl-C, or another VM of this vm.create failed); the job was "
                                   "cancelled")  # by the VM that asked for it
        if self._error is not None:
            raise BackendError(str(self._error) if isinstance(self._error, BackendError)
                               else "slurm: asking for the job of this vm.create failed") from None
        if self.job is None:  # every VM that had started left again (the create failed)
            raise BackendError("slurm: the job of this vm.create was given back")
        return self.job

    def leave(self, member: Any) -> str | None:
        """``member`` is gone; the job to cancel when it was the last one (else None)."""
        with self._lock:
            self._members.pop(id(member), None)
            if self._members or self.job is None:
                return None
            job, self.job = self.job, None
            self.spent = True
            return job


# ---------------------------------------------------------------------------------------------
# The backend

class SlurmBackend:
    """``vm.create{type="slurm", …}``: an agent as a step of its own Slurm job.

    Options: ``cluster`` (a ``[clusters.NAME]`` of config.toml; default: Slurm on this machine)
    and any key of such a table to override it: ``partition``, ``account``, ``qos``, ``cpus``,
    ``mem``, ``time``, ``queue_timeout``, ``start_timeout``, ``shared_dir``, ``interpreter``,
    ``slurm_conf``, ``overcommit``, ``salloc_args``, ``srun_args``, ``login``.
    """

    kind = "slurm"

    def __init__(self, name: str, options: dict[str, Any], profile: Any) -> None:
        self.name = name
        self.profile = profile
        self.cluster = cluster_settings(options)
        self.runtime = getattr(profile, "runtime", None)
        try:
            self.candidates = interpreter_candidates(self.cluster.interpreter, self.runtime)
        except ValueError as e:
            raise BackendError(f"slurm: {e}") from None
        self._cmds: Any = None
        self._group = _JobGroup(1)
        self._group.join(self)
        self.job: str | None = None
        self._step: Any = None
        self._cancelled: Callable[[], bool] = lambda: False
        self._lock = threading.Lock()
        self._state_cache: tuple[float, tuple[str, str, str] | None] = (0.0, None)
        self._lost: str | None = None

    @classmethod
    def shared_for_create(cls, count: int) -> _JobGroup:
        """What the VMs of one ``vm.create{count = N}`` share: one job (see :class:`_JobGroup`)."""
        return _JobGroup(count)

    def set_shared(self, group: _JobGroup) -> None:
        self._group.leave(self)
        self._group = group
        group.join(self)

    def set_cancel_check(self, check: Callable[[], bool]) -> None:
        """The manager's "stop waiting" test (Ctrl-C in the shell, a failed sibling of count=N)."""
        self._cancelled = check

    def _commands(self) -> Any:
        if self._cmds is None:
            self._cmds = commands_for(self.cluster)
        return self._cmds

    def start(self) -> Any:
        with self._lock:
            cmds = self._commands()
            bundle_dir = cmds.install_bundle(self.profile)
            group = self._group
            if group.spent or (group.job is not None and not self._job_alive(group.job)):
                if group.job is not None:  # ended (time limit, cancelled): a job of its own
                    self._lost = self._end_text(group.job)
                group.leave(self)
                group = self._group = _JobGroup(1)
            group.join(self)
            self.job = group.job_for(self._ask, self._cancelled)
            step = cmds.start_step(self.job, _srun_argv(self.cluster, self.job, bundle_dir, self.candidates))
            try:
                step.await_start(self.cluster.start_timeout, self.runtime, self.candidates)
            except BaseException:
                step.kill()
                step.close()
                raise
            self._step = step
            return step

    def _ask(self, ntasks: int, label: str) -> str:
        """Ask for the job of this VM's group (``ntasks`` VMs) and wait for it."""
        cmds = self._commands()
        per_vm, asked = vm_memory(self.cluster, self.profile)
        if per_vm and not asked:
            nodes = node_memory(cmds, self.cluster.partition)
            if nodes is not None and per_vm > nodes:
                _show(f"slurm: {self.name}: the nodes have {nodes} MB as Slurm counts it, less than the "
                      f"{per_vm} MB of the profile's memory_limit (plus {_MEM_MARGIN_MB} MB): the job "
                      f"asks for no memory of its own (the agent's limit still holds; mem = … sets it)")
                per_vm = None
        mem_per_cpu = -(-per_vm // self.cluster.cpus) if per_vm else None
        return _Allocation(cmds, self.cluster, label, ntasks, mem_per_cpu, self._cancelled).request()

    def _job_alive(self, job: str | None = None) -> bool:
        job = job or self.job
        return job is not None and job_is_live(self._commands(), job)

    def _end_text(self, job: str | None = None) -> str | None:
        job = job or self.job
        if job is None:
            return None
        # A job that is ending shows COMPLETING until its steps are gone: wait a little for the
        # state it ends in (CANCELLED, TIMEOUT…), which says why.
        deadline = time.monotonic() + _ENDING_WAIT
        while True:
            status, out, _err = self._commands().run(["scontrol", "show", "job", job, "-o"])
            if status != 0:
                return f"Slurm job {job} has ended"
            fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
            state = fields.get("JobState", "?")
            if state != "COMPLETING" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if state == "COMPLETING":
            return f"Slurm job {job} is ending (COMPLETING)"
        reason = fields.get("Reason", "None")
        why = {"TIMEOUT": f"it reached its time limit ({fields.get('TimeLimit', '?')})",
               "CANCELLED": "it was cancelled", "NODE_FAIL": "its node failed",
               "PREEMPTED": "it was preempted", "OUT_OF_MEMORY": "it ran out of memory"}.get(state)
        return (f"Slurm job {job} is {state}" + (f": {why}" if why else "")
                + (f" (reason: {reason})" if reason not in ("None", "") else ""))

    def stop(self) -> None:
        """``:stop()``: the agent is gone; give the allocation back (``:restart()`` asks again)."""
        self._release()

    def destroy(self) -> None:
        self._release()

    def _release(self) -> None:
        """This VM leaves its job; the last VM of a job cancels it."""
        with self._lock:
            self.job = None
            self._step = None
            job = self._group.leave(self)
            if job is None:
                return
            problem = cancel_job(self._commands(), job)
            self._commands().close()  # a login host's connection lease
            if problem is not None:
                raise BackendError(f"slurm: could not cancel job {job} on {self._commands().where}: "
                                   f"{problem}; cancel it with `scancel {job}`")

    def lost_detail(self) -> str | None:
        if self._lost is None and self.job is not None and not self._job_alive():
            self._lost = self._end_text()
        return self._lost

    def lua_path(self) -> str:
        """Nothing to add to the agent's ``package.path``: the profile's modules travel in the
        bundle (``lib/``, first in the path the step's launcher sets)."""
        return ""

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "slurm", "cluster": self.cluster.name}
        if self.cluster.login:
            out["host"] = self.cluster.login
        if self.cluster.partition:
            out["partition"] = self.cluster.partition
        if self.job is not None:
            out["job"] = self.job
            state = self._cached_state()
            if state is not None:
                out["state"] = state[0]
                if state[2]:
                    out["node"] = state[2]
        return out

    def _cached_state(self) -> tuple[str, str, str] | None:
        at, state = self._state_cache
        if time.monotonic() - at > 2.0 and self.job is not None:
            state = job_state(self._commands(), self.job)
            self._state_cache = (time.monotonic(), state)
        return state

    def stage_file(self, local_path: str) -> str:
        """A data file for a map: on a login host, staged into ``shared_dir`` (once per
        content); from this machine, used where it is (the cluster's nodes share it)."""
        stage = getattr(self._commands(), "stage_file", None)
        return stage(local_path) if stage is not None else os.path.abspath(local_path)


def shell_words(argv: list[str]) -> str:
    """``argv`` as one POSIX shell command line (for a login host)."""
    return " ".join(shlex.quote(a) for a in argv)
