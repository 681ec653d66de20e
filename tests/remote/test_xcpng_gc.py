"""``bioxen vm gc`` and the VM record: orphans left by a killed bioxen process are listed and
destroyed with --yes; VMs of a live process and of other machines are left alone; the record
survives concurrent writers and refuses to overwrite a damaged file."""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from bioxen_shell.remote import gc, registry as registry_mod, xcpng
from bioxen_shell.remote.xcpng import OWNER_KEY, TAG, XCPngBackend
from bioxen_shell.vm.profiles import load_profile
from tests.waiting import PATIENCE, wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_password_cache():
    xcpng.forget_passwords()
    yield
    xcpng.forget_passwords()


def run_gc(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = gc.cli_main(["gc", *argv], out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def _spawn_creator(settings: dict, name: str) -> subprocess.Popen:
    """A separate bioxen process creating an xcpng VM (it will be SIGKILLed mid-way)."""
    code = textwrap.dedent(f"""
        import json, sys
        from bioxen_shell.vm.manager import Manager
        Manager().create({name!r}, type="xcpng", pool=json.loads(sys.argv[1]))
        print("created", flush=True)
        import time; time.sleep(600)
    """)
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(settings)], cwd=REPO,
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait(predicate, timeout: float, what: str):
    return wait_for(predicate, what, timeout, interval=0.05)


def test_orphan_of_a_process_killed_while_provisioning(xapi_sim, xcpng_settings):
    """The creating process is SIGKILLed while it waits for the guest's IP: the VM stays on
    the pool (nothing could clean up); gc lists it as an orphan and --yes destroys it."""
    xapi_sim.guest.boot_delay = 600  # the guest never gets its IP while the child lives
    child = _spawn_creator(xcpng_settings, "doomed")
    try:
        _wait(lambda: any(v["power_state"] == "Running" for v in xapi_sim.vms().values()),
              PATIENCE, "the child's VM to be started")
        _wait(lambda: registry_mod.Registry().all(), PATIENCE, "the record")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(PATIENCE)
    (record,) = registry_mod.Registry().all()
    assert record.owner.pid == child.pid and not record.owner.is_alive()
    assert xapi_sim.open_sessions()  # the dead child's: XAPI would keep it for 24 h

    status, out, err = run_gc()
    assert status == 0, err
    assert "orphan" in out and "bioxen-doomed" in out and record.uuid in out
    assert "run `bioxen vm gc --yes`" in out
    assert len(xapi_sim.vms()) == 1  # listing destroys nothing

    status, out, err = run_gc("--yes")
    assert status == 0, err
    assert f"destroyed bioxen-doomed ({record.uuid})" in out
    assert xapi_sim.vms() == {}
    assert all(v["VBDs"] for v in xapi_sim.table("VDI").values())  # no orphaned disk either
    assert registry_mod.Registry().all() == []
    assert xapi_sim.open_sessions() == []  # gc logged out its own and the dead child's
    assert registry_mod.Registry().sessions() == []


@pytest.mark.parametrize("stalled", ["VM.get_uuid", "VM.add_tags"])
def test_orphan_of_a_process_killed_between_clone_and_tag(xapi_sim, xcpng_settings, stalled):
    """The narrowest windows: killed right after VM.clone — before its uuid is recorded
    (the record written before the clone is still "pending" and names the VM's label), or
    recorded but not yet tagged (gc looks the recorded uuid up).  Either way gc finds it."""
    xapi_sim.delays[stalled] = PATIENCE  # the child is killed while this call hangs
    child = _spawn_creator(xcpng_settings, "early")
    try:
        _wait(lambda: xapi_sim.calls(stalled) and xapi_sim.calls("VM.clone"), PATIENCE,
              f"the child to reach {stalled}")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(PATIENCE)
        del xapi_sim.delays[stalled]  # calls from now on (gc's) answer at once
    # (cloned under a per-create label, "bioxen-early (creating <token>)")
    ((ref, vm),) = [(r, v) for r, v in xapi_sim.table("VM").items()
                    if v["name_label"].startswith("bioxen-early (creating ")]
    assert TAG not in vm["tags"] and vm["is_a_template"]  # not even provisioned yet
    (record,) = registry_mod.Registry().all()
    assert record.pending == (stalled == "VM.get_uuid")

    status, out, err = run_gc("--yes")
    assert status == 0, err
    assert f"destroyed {vm['name_label']} ({vm['uuid']})" in out
    assert ref not in xapi_sim.table("VM")
    assert registry_mod.Registry().all() == []


def test_pending_record_of_a_live_creator_is_not_touched(xapi_sim, xcpng_settings):
    reg = registry_mod.Registry()
    reg.add(registry_mod.VMRecord(
        uuid="pending-x", pool=xcpng_settings["url"], url=xcpng_settings["url"], name="busy",
        name_label="bioxen-busy", owner=registry_mod.current_owner(), pending=True,
        settings=dict(xcpng_settings)))
    xapi_sim.db.create("VM", name_label="bioxen-busy")  # cloned a moment ago, not yet tagged
    status, out, _ = run_gc("--yes")
    assert status == 0 and "bioxen-busy" not in out
    assert len(xapi_sim.vms()) == 1 and len(reg.all()) == 1


def test_pending_record_matching_two_vms_destroys_neither(xapi_sim, xcpng_settings):
    """A killed bioxen's pending record names "bioxen-twin", and two untagged VMs carry that
    name (another bioxen cloned one at the same moment): gc cannot tell which is ours."""
    reg = registry_mod.Registry()
    reg.add(registry_mod.VMRecord(
        uuid="pending-y", pool=xcpng_settings["url"], url=xcpng_settings["url"], name="twin",
        name_label="bioxen-twin", owner=registry_mod.Owner(socket.gethostname(), "", 999999999,
                                                             "1"),
        pending=True, settings=dict(xcpng_settings)))
    twins = {xapi_sim.db.create("VM", name_label="bioxen-twin") for _ in range(2)}
    status, out, _ = run_gc("--yes", "--foreign")
    assert status == 0
    assert _rows(out) == {"bioxen-twin": "ambiguous"} and out.count("ambiguous  ") == 2
    assert twins <= set(xapi_sim.table("VM")) and len(reg.all()) == 1


def test_vm_of_a_live_process_is_left_alone(xapi_sim, xcpng_settings):
    b = XCPngBackend("alive", {"pool": dict(xcpng_settings)}, load_profile(None))
    proc = b.start()
    try:
        status, out, _ = run_gc("--yes")
        assert status == 0
        assert "in-use" in out and "bioxen-alive" in out
        assert "no orphans to destroy" in out
        assert len(xapi_sim.vms()) == 1
    finally:
        proc.kill()
        proc.close()
        b.destroy()


def _tagged_vm(sim, label: str, owner: str | None, with_disk: bool = True) -> str:
    other_config = {OWNER_KEY: owner} if owner is not None else {}
    ref = sim.db.create("VM", name_label=label, tags=[TAG], other_config=other_config)
    if with_disk:
        vdi = sim.db.create("VDI", name_label=f"{label} disk", SR=sim.sr, virtual_size="1024")
        sim.db.create("VBD", VM=ref, VDI=vdi, userdevice="0", type="Disk")
    return ref


def _token(**changes) -> str:
    """An owner stamp like bioxen writes, with some fields changed."""
    from dataclasses import replace
    return replace(registry_mod.current_owner(), **changes).token()


def test_tagged_vms_of_a_configured_pool(xapi_sim, xcpng_settings):
    """No record at all (lost file): gc still finds bioxen's VMs on a configured pool by tag
    and owner stamp, and tells the dead local owner from a live one and from another machine."""
    from tests.remote.test_xcpng_backend import _write_config
    _write_config(xcpng_settings, "sim")
    dead = _tagged_vm(xapi_sim, "bioxen-lost", _token(pid=999999999, start_time="1"))
    foreign = _tagged_vm(xapi_sim, "bioxen-elsewhere", _token(host="another-machine"))
    live = _tagged_vm(xapi_sim, "bioxen-mine", registry_mod.current_owner().token())
    untagged = xapi_sim.db.create("VM", name_label="not bioxen's")

    status, out, err = run_gc("--pool", "sim")
    assert status == 0, err
    rows = _rows(out)
    assert rows == {"bioxen-lost": "orphan", "bioxen-elsewhere": "foreign", "bioxen-mine": "in-use"}
    assert "not bioxen's" not in out
    assert "created by you from another machine (OWNER): orphaned there" in out
    assert "destroyed only with --foreign" in out

    status, out, _ = run_gc("--pool", "sim", "--yes")
    assert "destroyed bioxen-lost" in out
    vms = xapi_sim.table("VM")
    assert dead not in vms and {foreign, live, untagged} <= set(vms)
    status, out, _ = run_gc("--yes", "--foreign")  # every configured pool
    assert "destroyed bioxen-elsewhere" in out
    vms = xapi_sim.table("VM")
    assert foreign not in vms and {live, untagged} <= set(vms)
    assert xapi_sim.open_sessions() == []


def _rows(out: str) -> dict[str, str]:
    return {line.split()[2]: line.split()[0] for line in out.splitlines()[1:]
            if line.split() and line.split()[0] in gc.STATUS_NOTES}


def test_gc_destroys_nothing_it_cannot_prove_is_ours(xapi_sim, xcpng_settings):
    """A shared pool: VMs tagged 'bioxen' by hand, or stamped by another user, by another
    bioxen installation, or by an older bioxen, are listed and survive --yes --foreign with
    their disks; only this user's and installation's dead VM goes."""
    from tests.remote.test_xcpng_backend import _write_config
    _write_config(xcpng_settings, "sim")
    dead_pid = {"pid": 999999999, "start_time": "1"}
    others = {
        "bioxen-by-hand": (_tagged_vm(xapi_sim, "bioxen-by-hand", None), "unowned"),
        "bioxen-other-user": (_tagged_vm(xapi_sim, "bioxen-other-user",
                                         _token(user="someone-else", **dead_pid)), "not-mine"),
        "bioxen-other-install": (_tagged_vm(xapi_sim, "bioxen-other-install",
                                            _token(installation="0" * 32, **dead_pid)),
                                 "not-mine"),
        "bioxen-old-stamp": (_tagged_vm(xapi_sim, "bioxen-old-stamp",
                                        f"{socket.gethostname()}:999999999:1"), "not-mine"),
        "bioxen-far-away": (_tagged_vm(xapi_sim, "bioxen-far-away",
                                       _token(host="elsewhere", installation="1" * 32)),
                            "not-mine"),
    }
    mine = _tagged_vm(xapi_sim, "bioxen-mine", _token(**dead_pid))

    status, out, err = run_gc("--pool", "sim", "--yes", "--foreign")
    assert status == 0, err
    assert _rows(out) == {**{label: st for label, (_, st) in others.items()},
                          "bioxen-mine": "orphan"}
    assert "never destroyed" in out
    assert "destroyed bioxen-mine" in out
    assert out.count("destroyed bioxen-") == 1
    vms = xapi_sim.table("VM")
    assert mine not in vms
    assert {ref for ref, _ in others.values()} <= set(vms)
    for ref, _ in others.values():  # with its disk
        (vbd,) = vms[ref]["VBDs"]
        assert xapi_sim.db.exists("VDI", xapi_sim.db.row("VBD", vbd)["VDI"])


def test_stale_record_is_removed(xapi_sim, xcpng_settings):
    reg = registry_mod.Registry()
    reg.add(registry_mod.VMRecord(
        uuid="00000000-0000-0000-0000-000000000000", pool=xcpng_settings["url"],
        url=xcpng_settings["url"], name="ghost", name_label="bioxen-ghost",
        owner=registry_mod.Owner("h", "", 1, "1"), settings=dict(xcpng_settings)))
    status, out, _ = run_gc()
    assert "gone" in out and "bioxen-ghost" in out
    run_gc("--yes")
    assert reg.all() == []


def test_unreachable_pool_is_reported_not_fatal(xapi_sim, xcpng_settings):
    reg = registry_mod.Registry()
    reg.add(registry_mod.VMRecord(
        uuid="11111111-1111-1111-1111-111111111111", pool="http://127.0.0.1:9/",
        url="http://127.0.0.1:9/", name="x", name_label="bioxen-x",
        owner=registry_mod.Owner("h", "", 1, "1"),
        settings=dict(xcpng_settings, url="http://127.0.0.1:9/")))
    status, out, err = run_gc()
    assert status == 1 and "cannot reach 127.0.0.1:9" in err
    assert len(reg.all()) == 1  # an unreachable pool never loses the record


# ------------------------------------------------------------------------------ the record
def _record(i: int) -> registry_mod.VMRecord:
    return registry_mod.VMRecord(uuid=f"uuid-{i}", pool="p", url="u", name=f"n{i}",
                                 name_label=f"bioxen-n{i}", owner=registry_mod.current_owner())


def test_registry_concurrent_writers_lose_nothing(tmp_path):
    reg = registry_mod.Registry(tmp_path / "vms.json")
    threads = [threading.Thread(target=reg.add, args=(_record(i),)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reg.all()) == 20
    code = ("import sys; from bioxen_shell.remote import registry as r; from pathlib import Path;"
            "reg = r.Registry(Path(sys.argv[1]));"
            "[reg.add(r.VMRecord(uuid=f'p{sys.argv[2]}-{i}', pool='p', url='u', name='n',"
            " name_label='l', owner=r.current_owner())) for i in range(10)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(reg.path), str(k)], cwd=REPO)
             for k in range(3)]
    assert [p.wait(PATIENCE) for p in procs] == [0, 0, 0]
    assert len(reg.all()) == 50
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".xcpng-vms.")]


def test_registry_refuses_to_overwrite_a_damaged_file(tmp_path):
    path = tmp_path / "vms.json"
    path.write_text("{ not json")
    reg = registry_mod.Registry(path)
    with pytest.raises(registry_mod.RegistryError, match=str(path)):
        reg.add(_record(1))
    assert path.read_text() == "{ not json"


def test_owner_liveness():
    me = registry_mod.current_owner()
    assert me.is_alive()
    assert not registry_mod.Owner(me.host, me.boot_id, me.pid, "1").is_alive()  # pid reused
    assert not registry_mod.Owner("elsewhere", "", me.pid, me.start_time).is_alive()
    assert registry_mod.Owner.from_token(me.token()).is_alive()


def test_cli_usage(capsys, monkeypatch):
    from bioxen_shell.cli import main
    monkeypatch.delenv("SLURM_CONF", raising=False)  # no local Slurm either (CI starts one)
    assert main(["vm"]) == 2
    assert main(["vm", "frobnicate"]) == 2
    assert "unknown subcommand 'frobnicate'" in capsys.readouterr().err
    assert main(["vm", "gc", "--help"]) == 0
    assert "--foreign" in capsys.readouterr().out
    assert main(["vm", "gc", "--bogus"]) == 2
    assert main(["vm", "gc"]) == 0  # nothing configured, nothing recorded
    assert "nothing to do" in capsys.readouterr().out


def test_damaged_installation_id_stops_gc_and_is_never_replaced(xapi_sim, xcpng_settings):
    """The id is what proves a VM is ours: a damaged one is an error, never a fresh id
    (which would make every earlier VM look like another installation's)."""
    from bioxen_shell import paths
    first = registry_mod.installation_id()
    assert registry_mod.installation_id() == first  # stable
    path = paths.state_dir() / registry_mod.INSTALLATION_FILE
    path.write_text("garbage\n")
    status, out, err = run_gc()
    assert status == 2 and str(path) in err and "damaged" in err
    assert path.read_text() == "garbage\n"


def test_installation_id_is_made_once_under_concurrency():
    code = ("from bioxen_shell.remote import registry as r; print(r.installation_id())")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    ids = {p.communicate(timeout=PATIENCE)[0].strip() for p in procs}
    assert len(ids) == 1 and ids == {registry_mod.installation_id()}
