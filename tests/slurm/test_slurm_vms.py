"""Slurm VMs against a real Slurm (slurmctld + slurmd + munge on localhost, tests/slurm_cluster.py).

The conformance suite (tests/conformance) runs against slurm VMs as well; these tests cover
what only Slurm has: jobs and steps, the queue (progress, queue_timeout, Ctrl-C), Slurm's own
error messages, the profile's limits as Slurm's, ``:vms``, ``bioxen vm gc`` and a login host.
"""
from __future__ import annotations

import io
import subprocess
import threading

import pytest

from bioxen_shell.remote import gc, registry
from bioxen_shell.remote.slurm import COMMENT_PREFIX, JOB_PREFIX
from bioxen_shell.vm.errors import VMCrashed, VMError
from bioxen_shell.vm.manager import Manager, VMCreateError
from bioxen_shell.vm.profiles import load_profile
from tests.waiting import PATIENCE, wait_for


def squeue(cluster, *args: str) -> list[list[str]]:
    """This cluster's queue: one ``[id, name, state, comment]`` per job."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%j|%T|%k", *args], env=cluster.env,
                         capture_output=True, text=True, check=True).stdout
    return [line.split("|", 3) for line in out.splitlines() if line.strip()]


def live_jobs(cluster, prefix: str = JOB_PREFIX) -> list[list[str]]:
    """Jobs named ``prefix…`` that have not ended (COMPLETING counts as ended: the node is
    being given back)."""
    return [j for j in squeue(cluster) if j[1].startswith(prefix) and j[2] not in ("COMPLETING", "COMPLETED")]


def scontrol_job(cluster, job: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job, "-o"], env=cluster.env,
                         capture_output=True, text=True, check=True).stdout
    return dict(f.split("=", 1) for f in out.split() if "=" in f)


@pytest.fixture
def options(slurm_vm_options):
    return dict(slurm_vm_options)


@pytest.fixture(autouse=True)
def no_jobs_left_behind(slurm_cluster):
    """Every test ends with none of its jobs in the queue (as :destroy and exit promise)."""
    before = {j[0] for j in squeue(slurm_cluster)}
    yield
    wait_for(lambda: not [j for j in live_jobs(slurm_cluster) if j[0] not in before],
             "the test's Slurm jobs to end")


# ----------------------------------------------------------------------------- jobs and steps

def test_a_vm_is_a_job_step_and_vms_shows_job_node_and_state(manager, options, slurm_cluster):
    vm = manager.create("s1", **options)
    assert vm.eval("return 6 * 7") == [42]
    row = manager.table()[0]
    assert row["type"] == "slurm" and row["state"] == "RUNNING" and row["node"] and row["step"] == "0"
    (job,) = [j for j in squeue(slurm_cluster) if j[0] == row["job"]]
    assert job[1] == JOB_PREFIX + "s1" and job[2] == "RUNNING"
    assert job[3] == COMMENT_PREFIX + registry.current_owner().token()  # gc's proof of ownership
    manager.destroy("s1")
    wait_for(lambda: not [j for j in live_jobs(slurm_cluster) if j[0] == row["job"]], "the job to end")


def test_profile_paths_travel_in_the_bundle_and_runtime_aliases_pick_the_interpreter(manager, options, tmp_path):
    from tests.system import require_binary

    require_binary("lua5.4")
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "mymod.lua").write_text("return {answer = 42}\n")
    (tmp_path / "p.toml").write_text(f'runtime = "5.4"\npaths = ["{mods}"]\n')
    vm = manager.create("sp", profile=load_profile(str(tmp_path / "p.toml")), **options)
    assert vm.eval('return _VERSION, require("mymod").answer') == ["Lua 5.4", 42]
    found = vm.eval('return package.searchpath("mymod", package.path)')[0]
    assert found.endswith("/lib/mymod.lua") and not found.startswith(str(mods)), found  # the bundle's copy


def test_count_makes_one_job_whose_steps_are_the_vms_and_a_map_runs_over_them(manager, options, slurm_cluster,
                                                                             tmp_path):
    vms = manager.create("m", count=2, **options)
    (job,) = {vm.describe()["job"] for vm in vms}  # one job, one step per VM, side by side
    assert sorted(vm.describe()["step"] for vm in vms) == ["0", "1"]
    assert scontrol_job(slurm_cluster, job)["NumTasks"] == "2"
    assert [j[1] for j in live_jobs(slurm_cluster) if j[0] == job] == [JOB_PREFIX + "m1+1"]
    fa = tmp_path / "g.fa"
    fa.write_text("".join(f">r{i}\n" + "GC" * i + "AT" * (50 - i) + "\n" for i in range(40)))
    from bioxen_shell.vm import protocol as wire
    from bioxen_shell.vm.mapper import run_map
    from tests.bio.harness import run
    shards = run("lupa:luajit21", f"return require('bio.fasta').shards({str(fa)!r}, 7)")
    res = run_map(manager, "function(s) local n = 0 for r in require('bio.fasta').records(s) do "
                           "n = n + #r.seq end return n end", [wire.encode(s) for s in shards],
                  vms=vms, progress=False)
    assert res.failures == [] and sum(res.values()) == 40 * 100
    manager.destroy("m1")  # the job stays for the VM that is left …
    assert vms[1].eval("return 1") == [1] and live_jobs(slurm_cluster, JOB_PREFIX + "m1+1")
    manager.destroy("m2")  # … and goes with the last one
    wait_for(lambda: not live_jobs(slurm_cluster, JOB_PREFIX + "m1+1"), "the job to end with its last VM")


def test_more_vms_than_cpus_with_overcommit(manager, options, slurm_cluster):
    vms = manager.create("oc", count=4, overcommit=True, **options)  # the node has 2 CPUs
    assert [vm.eval("return 2") for vm in vms] == [[2]] * 4
    assert len({vm.describe()["job"] for vm in vms}) == 1


def test_runtime_pins_the_interpreter_on_the_node(manager, options):
    vm = manager.create("p", runtime="lua54", **options)
    assert vm.describe()["interpreter"] == "lua5.4"
    assert vm.eval("return _VERSION") == ["Lua 5.4"]


def test_a_missing_interpreter_names_the_node_and_what_it_has(manager, options, slurm_cluster):
    with pytest.raises(VMCreateError) as info:
        manager.create("ni", interpreter="lua9.9", **options)
    text = str(info.value)
    assert "has no lua9.9" in text and "Lua interpreters found there:" in text and "lua5.4" in text
    assert not live_jobs(slurm_cluster, JOB_PREFIX + "ni")


# ----------------------------------------------------------------------------- limits as Slurm's

def test_profile_memory_limit_and_time_become_the_jobs_limits(manager, options, slurm_cluster):
    prof = load_profile("standard").replace(memory_limit=256 * 1024 * 1024)
    vm = manager.create("lim", profile=prof, time="10:00", cpus=2, **options)
    job = scontrol_job(slurm_cluster, vm.describe()["job"])
    assert job["TimeLimit"] == "00:10:00"
    assert job["NumCPUs"] == "2"
    assert job.get("MinMemoryCPU") == "160M"  # per CPU: the agent's 256 MiB plus the interpreter's 64
    with pytest.raises(VMError) as info:  # and the agent's own limit still holds
        vm.eval("local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(100) .. i end")
    assert info.value.kind == "memory"
    assert vm.eval("return 1") == [1]


def test_a_job_that_ends_is_a_lost_vm_that_restart_replaces(manager, options, slurm_cluster):
    vm = manager.create("end", **options)
    vm.set("x", 1)
    first = vm.describe()["job"]
    subprocess.run(["scancel", first], env=slurm_cluster.env, check=True)  # as an admin, or the time limit
    wait_for(lambda: vm.current_status() == "lost", "the VM to be seen lost")
    with pytest.raises(VMCrashed) as info:
        vm.eval("return 1")
    text = str(info.value)
    assert "VM lost" in text
    # what the job ended as, once Slurm is done with it (or that it is still ending)
    assert f"Slurm job {first} is CANCELLED" in text or f"Slurm job {first} is ending (COMPLETING)" in text
    vm.restart()
    assert vm.describe()["job"] != first and vm.eval("return x") == [None]


# ----------------------------------------------------------------------------- Slurm's errors

def test_slurm_errors_are_shown_as_slurm_says_them(manager, options, slurm_cluster):
    with pytest.raises(VMCreateError, match="salloc: error: invalid partition specified: nosuch"):
        manager.create("bad", partition="nosuch", **options)
    with pytest.raises(VMCreateError, match="salloc: error: Memory specification can not be satisfied"):
        manager.create("big", mem="999G", **options)
    assert not live_jobs(slurm_cluster, JOB_PREFIX + "b")


def test_a_request_the_partition_cannot_hold_waits_only_for_the_queue_timeout(manager, options, slurm_cluster,
                                                                             capfd):
    with pytest.raises(VMCreateError) as info:
        manager.create("many", cpus=64, queue_timeout=2, **options)
    assert "(PENDING, reason: PartitionConfig) after 2 s (queue_timeout); it was cancelled" in str(info.value)
    assert "salloc: Requested partition configuration not available now" in capfd.readouterr().err  # as Slurm said it
    assert not live_jobs(slurm_cluster, JOB_PREFIX + "many")


def test_a_job_that_can_never_start_is_cancelled_with_its_reason(manager, options, slurm_cluster):
    with pytest.raises(VMCreateError) as info:
        manager.create("long", partition="short", time="1:00:00", **options)  # short: MaxTime 5 min
    assert "PartitionTimeLimit" in str(info.value) and "cancelled" in str(info.value)
    assert not live_jobs(slurm_cluster, JOB_PREFIX + "long")


def test_bad_options_name_the_key(manager, options):
    with pytest.raises(VMCreateError, match=r"^vm.create\{…\}: cpus: expected a number of CPUs from 1 to 4096, got 0$"):
        manager.create("o1", cpus=0, **options)
    with pytest.raises(VMCreateError, match=r"^vm.create\{…\}: time: expected minutes"):
        manager.create("o2", time="soon", **options)
    with pytest.raises(VMCreateError, match=r"unknown key.*partition"):
        manager.create("o3", partiton="debug", **options)
    with pytest.raises(VMCreateError, match=r'^vm.create\{…\}: cluster: "nope" is not a \[clusters.NAME\]'):
        manager.create("o4", cluster="nope", **options)


# ----------------------------------------------------------------------------- the queue

def _waiting(options: dict) -> dict:
    """Options whose job waits in the queue (BeginTime) until something ends the wait."""
    return dict(options, salloc_args=["--begin=now+1hour"])


def test_queue_timeout_cancels_a_waiting_job_and_says_why(manager, options, slurm_cluster, capfd):
    with pytest.raises(VMCreateError) as info:
        manager.create("q", queue_timeout=3, **_waiting(options))
    text = str(info.value)
    assert "still waits in the queue (PENDING, reason: BeginTime) after 3 s (queue_timeout)" in text
    assert "it was cancelled" in text
    assert "PENDING (reason: BeginTime)" in capfd.readouterr().err  # the progress shown meanwhile
    assert not live_jobs(slurm_cluster, JOB_PREFIX + "q")


@pytest.mark.parametrize("count", [None, 2])
def test_ctrl_c_while_queued_cancels_every_job(options, slurm_cluster, count):
    pressed = threading.Event()
    m = Manager(interrupted=pressed.is_set)
    failure: list[BaseException] = []

    def create():
        try:
            m.create("cc", count=count, **_waiting(options))
        except BaseException as e:  # noqa: BLE001 - checked below
            failure.append(e)

    t = threading.Thread(target=create)
    t.start()
    wait_for(lambda: len(live_jobs(slurm_cluster, JOB_PREFIX + "cc")) == 1, "the job to be queued")  # one per create
    pressed.set()  # what Ctrl-C in the shell does
    t.join(PATIENCE)
    assert not t.is_alive() and failure and "the job was cancelled" in str(failure[0])
    assert len(m) == 0
    wait_for(lambda: not live_jobs(slurm_cluster, JOB_PREFIX + "cc"), "the jobs to be cancelled")


# ----------------------------------------------------------------------------- gc

def _foreign_job(cluster, name: str, comment: str | None) -> str:
    """A queued job as another bioxen (or someone else) would leave it; its id."""
    argv = ["sbatch", "--parsable", f"--job-name={name}", "-n1", "--begin=now+1hour", "--output=/dev/null",
            "--wrap=sleep 1"]
    if comment is not None:
        argv.append(f"--comment={comment}")
    done = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=PATIENCE, check=True)
    return done.stdout.strip().split(";")[0]


def test_gc_cancels_only_orphaned_jobs_of_this_installation(manager, options, slurm_cluster, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    me = registry.current_owner()
    dead = registry.Owner(me.host, me.boot_id, 1, "1", me.user, me.installation)  # pid 1 never started then
    other = registry.Owner(me.host, me.boot_id, 1, "1", me.user, "another-installation")
    orphan = _foreign_job(slurm_cluster, JOB_PREFIX + "orphan", COMMENT_PREFIX + dead.token())
    unowned = _foreign_job(slurm_cluster, JOB_PREFIX + "lookalike", None)
    not_mine = _foreign_job(slurm_cluster, JOB_PREFIX + "theirs", COMMENT_PREFIX + other.token())
    in_use = manager.create("alive", **options).describe()["job"]
    try:
        out, err = io.StringIO(), io.StringIO()
        assert gc.cli_main(["gc", "--cluster", "local"], out=out, err=err) == 0, err.getvalue()
        rows = [line.split() for line in out.getvalue().splitlines()[1:] if line and not line.startswith(" ")]
        listing = {row[3]: row[0] for row in rows if row[0] in gc.STATUS_NOTES}
        assert listing == {orphan: "orphan", unowned: "unowned", not_mine: "not-mine", in_use: "in-use"}
        assert "run `bioxen vm gc --yes`" in out.getvalue()
        assert {orphan, unowned, not_mine} <= {j[0] for j in live_jobs(slurm_cluster)}  # listing removes nothing

        out = io.StringIO()
        assert gc.cli_main(["gc", "--cluster", "local", "--yes"], out=out, err=err) == 0, err.getvalue()
        assert f"cancelled Slurm job {orphan}" in out.getvalue()
        wait_for(lambda: orphan not in {j[0] for j in live_jobs(slurm_cluster)}, "the orphan to be cancelled")
        assert {unowned, not_mine, in_use} <= {j[0] for j in live_jobs(slurm_cluster)}
    finally:
        subprocess.run(["scancel", unowned, not_mine, orphan], env=slurm_cluster.env)


# ----------------------------------------------------------------------------- a login host

def test_a_cluster_reached_through_a_login_host(options, slurm_cluster, sshd_server, tmp_path, monkeypatch):
    """``[clusters.NAME] login = "…"``: salloc/srun/scancel run on the login host over SSH, the
    agent bundle and a map's data are staged into shared_dir there."""
    from bioxen_shell import paths
    cfg = paths.config_dir() / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    shared = tmp_path / "login-shared"
    cfg.write_text(f"""
[hosts.login]
hostname = "127.0.0.1"
port = {sshd_server.port}
user = "{sshd_server.user}"
key = "{sshd_server.client_key}"
known_hosts = "{sshd_server.known_hosts}"
agent = false

[clusters.hpc]
login = "login"
slurm_conf = "{slurm_cluster.conf}"
shared_dir = "{shared}"
""")
    m = Manager()
    try:
        vms = m.create("l", count=2, type="slurm", cluster="hpc")
        assert vms[0].eval("return 1 + 1") == [2]
        d = vms[0].describe()
        assert d["host"] == "login" and d["state"] == "RUNNING" and d["pid"]
        fa = tmp_path / "data.fa"
        fa.write_text(">a\nACGT\n>b\nGGGG\n")
        from bioxen_shell.vm import protocol as wire
        from bioxen_shell.vm.mapper import run_map
        from tests.bio.harness import run
        shards = run("lupa:luajit21", f"return require('bio.fasta').shards({str(fa)!r}, 2)")
        res = run_map(m, "function(s) local g = 0 for r in require('bio.fasta').records(s) do "
                         "g = g + select(2, r.seq:gsub('[GC]', '')) end return g end",
                      [wire.encode(s) for s in shards], vms=vms, progress=False)
        assert res.failures == [] and sum(res.values()) == 6
        assert list((shared / "data").glob("*.fa"))  # staged on the login host's shared_dir
        vms[0].send("while true do end")
        vms[0].interrupt()
        with pytest.raises(VMError):
            vms[0].recv(PATIENCE)
        assert vms[0].eval("return 3") == [3]
    finally:
        assert m.destroy_all() == []
