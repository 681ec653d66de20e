"""Data for maps: staging shard files on SSH (and XCP-ng) hosts, against the real loopback sshd.

Everything goes through stock OpenSSH: uploads are counted by wrapping bioxen's own
``upload.stage_data`` (never paramiko or sshd), links are cut for real (the client transport
closed, or the server's connection processes killed) from inside the transfer's progress
callback, and every wait is on an event.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from bioxen_shell.remote import ssh, upload
from bioxen_shell.remote.config import resolve_host
from bioxen_shell.remote.ssh import SSHBackend
from bioxen_shell.vm import protocol as wire, staging
from bioxen_shell.vm.manager import Manager
from bioxen_shell.vm.profiles import load_profile
from bioxen_shell.vm.transport import BackendError
from tests.remote.sshd_fixture import start_sshd
from tests.waiting import PATIENCE

MiB = 1 << 20


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(autouse=True)
def _fresh_process_memo():
    """Each test is a fresh shell process as far as the per-host memo goes."""
    ssh._staged.clear()
    yield
    ssh._staged.clear()


@pytest.fixture
def cache_dir(tmp_path):
    """The host's cache (the host is this machine: the tests can look at it directly)."""
    return tmp_path / "remote-cache"


@pytest.fixture
def opts(ssh_vm_options, cache_dir):
    out = dict(ssh_vm_options, cache_dir=str(cache_dir))
    del out["type"]
    return out


@pytest.fixture
def stage_calls(monkeypatch):
    """Every ``upload.stage_data`` call the backends make, with its result."""
    calls: list[upload.StageResult] = []
    real = upload.stage_data

    def counting(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(result)
        return result

    monkeypatch.setattr(upload, "stage_data", counting)
    return calls


def uploads(calls: list[upload.StageResult]) -> list[upload.StageResult]:
    return [r for r in calls if r.uploaded]


def make_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def backend(opts: dict, name: str = "s1", **changes) -> SSHBackend:
    return SSHBackend(name, dict(opts, **changes), load_profile("standard"))


def client_for(opts: dict, **changes):
    o = dict(opts, **changes)
    return ssh.connect(resolve_host(o.pop("host"), o)), o["cache_dir"]


def shard(path, offset=0, length=100, **extra) -> bytes:
    return wire.encode({"path": str(path), "offset": offset, "length": length, "format": "fasta", **extra})


def data_dir_listing(cache_dir: Path) -> list[str]:
    return sorted(os.listdir(cache_dir / "data"))


def cutter(after: int, cut):
    """A progress callback that cuts the link once ``after`` bytes were sent."""
    state = {"cut": False}

    def progress(done: int, total: int) -> None:
        if done >= after and not state["cut"]:
            state["cut"] = True
            cut()

    return progress


# ----------------------------------------------------------------------------- once per host

def test_staged_once_per_host_across_vms_and_maps(ssh_vm_options, opts, cache_dir, tmp_path, stage_calls):
    genome = tmp_path / "genome.fa"
    data = make_file(genome, 3 * MiB + 17)
    manager = Manager()
    try:
        vms = manager.create("st", profile=load_profile("standard"), count=3,
                             **dict(ssh_vm_options, cache_dir=str(cache_dir)))
        shards = [(0, 1000), (MiB, 4096), (3 * MiB, 17)]
        for _map in range(2):                       # two maps over the same file
            for vm, (offset, length) in zip(vms, shards):
                item = staging.prepare_item(vm, shard(genome, offset, length))
                value = wire.decode(item)
                assert value["path"] == f"{cache_dir}/data/{sha(data)}.fa"
                assert (value["offset"], value["length"], value["format"]) == (offset, length, "fasta")
                # the VM opens its own byte range of the staged copy, on "its" host
                got = vm.eval("local p, o, n = ...; local f = assert(io.open(p, 'rb')); "
                              "f:seek('set', o); local s = f:read(n); f:close(); return s",
                              value["path"], offset, length)[0]
                assert got == data[offset:offset + length]
    finally:
        assert manager.destroy_all() == []
    assert len(stage_calls) == 1 and stage_calls[0].sent == len(data)   # one upload for 3 VMs × 2 maps
    assert stage_calls[0].verified_by in ("openssl", "sha256sum", "shasum", "python3")
    staged = cache_dir / "data" / f"{sha(data)}.fa"
    assert staged.read_bytes() == data and oct(staged.stat().st_mode & 0o777) == "0o600"
    assert not any(n.endswith(".partial") for n in data_dir_listing(cache_dir))

    # Another shell process (no memo) asks again: the host has it, nothing is sent.
    ssh._staged.clear()
    b = backend(opts, name="again")
    try:
        assert b.stage_file(str(genome)) == str(staged)
    finally:
        b.destroy()
    assert len(stage_calls) == 2 and stage_calls[1].already and stage_calls[1].sent == 0


def test_same_content_under_another_name_is_not_sent_again(opts, cache_dir, tmp_path, stage_calls):
    a = tmp_path / "a.fa"
    data = make_file(a, 64 * 1024)
    b = tmp_path / "copy.fasta.gz"
    shutil.copyfile(a, b)
    be = backend(opts)
    try:
        first = be.stage_file(str(a))
        second = be.stage_file(str(b))
    finally:
        be.destroy()
    assert first.endswith(f"/{sha(data)}.fa") and second.endswith(f"/{sha(data)}.fasta.gz")
    assert Path(second).read_bytes() == data
    assert [r.already for r in stage_calls] == [False, True]


def test_a_changed_local_file_is_staged_anew(opts, cache_dir, tmp_path, stage_calls):
    f = tmp_path / "reads.fq"
    v1 = make_file(f, 10_000)
    be = backend(opts)
    try:
        p1 = be.stage_file(str(f))
        v2 = make_file(f, 12_000)
        os.utime(f, ns=(1, 10**18))  # a different mtime whatever the clock's resolution
        p2 = be.stage_file(str(f))
    finally:
        be.destroy()
    assert p1 != p2 and Path(p1).read_bytes() == v1 and Path(p2).read_bytes() == v2
    assert len(uploads(stage_calls)) == 2


def test_local_hash_is_computed_once_per_path_size_and_mtime(tmp_path):
    f = tmp_path / "genome.fa"
    first = make_file(f, 50_000)
    st = f.stat()
    assert upload.local_file(str(f)).sha256 == sha(first)
    # Another process (nothing in memory) with the file rewritten in place, same size and
    # mtime: the recorded hash is used, the file is not read again.
    upload._hashes.clear()
    f.write_bytes(os.urandom(50_000))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert upload.local_file(str(f)).sha256 == sha(first)
    # a new mtime is a new file
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert upload.local_file(str(f)).sha256 == sha(f.read_bytes()) != sha(first)


def test_secrets_stay_out_of_logs_and_errors(opts, tmp_path, monkeypatch, caplog):
    import logging

    secret = "hunter2-staging-secret"
    monkeypatch.setenv("BIOXEN_TEST_STAGE_PW", secret)
    caplog.set_level(logging.DEBUG)
    genome = tmp_path / "genome.fa"
    make_file(genome, 1000)
    be = backend(opts, password_env="BIOXEN_TEST_STAGE_PW")
    try:
        be.stage_file(str(genome))
        with pytest.raises(upload.StageError) as err:
            be.stage_file(str(tmp_path / "missing.fa"))
    finally:
        be.destroy()
    assert secret not in caplog.text and secret not in str(err.value)
    assert "staged " in caplog.text  # the staging was logged, without it


def test_remote_names_keep_the_extension():
    ext = upload._extension
    assert [ext(n) for n in ("genome.fa", "reads.fastq.gz", "my genome v2.fa", "x.fa.bgz", "README",
                             ".hidden", "a.tar.gz", "weird.f a", "reads.gz")] == \
        [".fa", ".fastq.gz", ".fa", ".fa.bgz", "", "", ".tar.gz", "", ".gz"]


# ----------------------------------------------------------------------------- resume

def test_dropped_link_leaves_a_partial_that_the_next_attempt_resumes(opts, cache_dir, tmp_path, stage_calls):
    genome = tmp_path / "genome.fa"
    data = make_file(genome, 24 * MiB)
    local = upload.local_file(str(genome))
    client, cache = client_for(opts)
    with pytest.raises(upload.StageError) as err:
        upload.stage_data(client, cache, local, where="bioxen-test-host", method="sftp",
                          progress=cutter(6 * MiB, client.get_transport().close))
    message = str(err.value)
    assert str(genome) in message and "bioxen-test-host" in message
    assert "connection was lost" in message and "next attempt resumes" in message
    partial = cache_dir / "data" / f".{local.sha256}.partial"
    assert partial.is_file()
    assert not (cache_dir / "data" / local.remote_name).exists()   # never a half file under the final name

    # The next attempt (a new connection, through the backend) sends only the rest.
    be = backend(opts)
    try:
        remote = be.stage_file(str(genome))
    finally:
        be.destroy()
    (result,) = stage_calls
    assert result.resumed_from > 0 and result.sent == len(data) - result.resumed_from
    assert Path(remote).read_bytes() == data
    assert not partial.exists()


def test_resume_over_exec_after_the_server_side_of_the_link_dies(tmp_path, stage_calls):
    """No sftp subsystem: bytes go through `cat >>`; sshd's processes of the connection are
    killed mid-transfer (the link dropped, seen from the client)."""
    server = start_sshd(tmp_path / "sshd-nosftp", sftp=False)
    try:
        cache_dir = tmp_path / "remote-cache"
        o = {"host": server.target, "key": str(server.client_key), "known_hosts": str(server.known_hosts),
             "agent": False, "cache_dir": str(cache_dir)}
        genome = tmp_path / "reads.fastq"
        data = make_file(genome, 24 * MiB)
        local = upload.local_file(str(genome))
        client, cache = client_for(o)
        port = client.get_transport().sock.getsockname()[1]
        with pytest.raises(upload.StageError, match=r"partial upload .* stays on the host"):
            upload.stage_data(client, cache, local, where=server.target,
                              progress=cutter(6 * MiB, lambda: server.kill_connection(port)))
        client.close()
        assert not (cache_dir / "data" / local.remote_name).exists()
        be = backend(o)
        try:
            remote = be.stage_file(str(genome))
        finally:
            be.destroy()
        (result,) = stage_calls
        assert result.method == "exec"
        assert result.resumed_from > 0 and result.sent == len(data) - result.resumed_from
        assert Path(remote).read_bytes() == data
    finally:
        server.stop()


def test_a_corrupt_partial_is_never_published(opts, cache_dir, tmp_path):
    genome = tmp_path / "genome.fa"
    data = make_file(genome, 2 * MiB)
    local = upload.local_file(str(genome))
    (cache_dir / "data").mkdir(parents=True)
    (cache_dir / "data" / f".{local.sha256}.partial").write_bytes(b"X" * 1000)  # not a prefix of the file
    client, cache = client_for(opts)
    try:
        result = upload.stage_data(client, cache, local, where="h")
    finally:
        client.close()
    # resumed at 1000, the checksum failed, the partial was dropped and the file sent again
    assert result.resumed_from == 1000 and result.sent == (len(data) - 1000) + len(data)
    assert Path(result.remote_path).read_bytes() == data


def test_a_partial_longer_than_the_file_is_restarted(opts, cache_dir, tmp_path):
    genome = tmp_path / "genome.fa"
    data = make_file(genome, 4096)
    local = upload.local_file(str(genome))
    (cache_dir / "data").mkdir(parents=True)
    (cache_dir / "data" / f".{local.sha256}.partial").write_bytes(b"Y" * 10_000)
    client, cache = client_for(opts)
    try:
        result = upload.stage_data(client, cache, local, where="h")
    finally:
        client.close()
    assert result.resumed_from == 0 and result.sent == len(data)
    assert Path(result.remote_path).read_bytes() == data


def test_a_complete_partial_is_only_verified_and_an_empty_file_stages(opts, cache_dir, tmp_path):
    genome = tmp_path / "genome.fa"
    data = make_file(genome, 300_000)
    local = upload.local_file(str(genome))
    (cache_dir / "data").mkdir(parents=True)
    (cache_dir / "data" / f".{local.sha256}.partial").write_bytes(data)  # the link dropped before "verify"
    empty = tmp_path / "empty.fq"
    empty.write_bytes(b"")
    client, cache = client_for(opts)
    try:
        result = upload.stage_data(client, cache, local, where="h")
        nothing = upload.stage_data(client, cache, upload.local_file(str(empty)), where="h")
    finally:
        client.close()
    assert result.resumed_from == len(data) and result.sent == 0 and not result.already
    assert Path(result.remote_path).read_bytes() == data
    assert nothing.remote_path.endswith(f"/{sha(b'')}.fq") and Path(nothing.remote_path).read_bytes() == b""


# ----------------------------------------------------------------------------- concurrency

def test_concurrent_vms_of_one_process_share_one_upload(opts, cache_dir, tmp_path, stage_calls):
    genome = tmp_path / "genome.fa"
    data = make_file(genome, 8 * MiB)
    backends = [backend(opts, name=f"c{i}") for i in range(4)]
    paths, errors = [], []
    go = threading.Barrier(len(backends))

    def stage(b):
        try:
            go.wait(PATIENCE)
            paths.append(b.stage_file(str(genome)))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=stage, args=(b,)) for b in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PATIENCE)
    for b in backends:
        b.destroy()
    assert not errors and len(paths) == 4 and len(set(paths)) == 1
    assert len(stage_calls) == 1 and stage_calls[0].sent == len(data)
    assert Path(paths[0]).read_bytes() == data


@pytest.mark.parametrize("portable", [False, True], ids=["flock", "mkdir-lock"])
def test_concurrent_stagers_of_two_shells_do_not_clash(opts, cache_dir, tmp_path, portable):
    """Two processes (two connections, no shared memo) stage one file on one host at once:
    the second waits on the host's lock while the first uploads, then finds the file there."""
    genome = tmp_path / "genome.fa"
    data = make_file(genome, 8 * MiB)
    local = upload.local_file(str(genome))
    (ca, cache), (cb, _) = client_for(opts), client_for(opts)
    a_uploading, b_waiting = threading.Event(), threading.Event()
    results: dict[str, upload.StageResult] = {}
    errors = []

    def progress_a(done, total):
        a_uploading.set()
        if done < total:
            assert b_waiting.wait(PATIENCE), "the second stager never waited for the lock"

    def run(name, client, **kw):
        try:
            results[name] = upload.stage_data(client, cache, local, where="h", portable=portable, **kw)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
            a_uploading.set()
            b_waiting.set()

    ta = threading.Thread(target=run, args=("a", ca), kwargs={"progress": progress_a})
    ta.start()
    assert a_uploading.wait(PATIENCE)
    tb = threading.Thread(target=run, args=("b", cb), kwargs={"on_wait": b_waiting.set})
    tb.start()
    ta.join(PATIENCE)
    tb.join(PATIENCE)
    ca.close()
    cb.close()
    assert not errors, errors
    assert results["a"].sent == len(data) and not results["a"].already
    assert results["b"].already and results["b"].sent == 0
    assert results["a"].remote_path == results["b"].remote_path
    assert Path(results["a"].remote_path).read_bytes() == data


# ----------------------------------------------------------------------------- verification

def test_without_checksum_tools_the_upload_is_read_back(opts, cache_dir, tmp_path):
    genome = tmp_path / "genome.fa"
    data = make_file(genome, 3 * MiB)
    client, cache = client_for(opts)
    try:
        result = upload.stage_data(client, cache, upload.local_file(str(genome)), where="h",
                                   verify="readback")
    finally:
        client.close()
    assert result.verified_by == "readback"
    assert Path(result.remote_path).read_bytes() == data


def test_staging_leaves_key_reexchange_to_the_server(opts, tmp_path, caplog):
    """paramiko's own rekeying (every 512 MiB) can livelock when the server closes a channel
    during it (paramiko #822; it happened here at the end of a 512 MiB exec upload).  A
    staging connection leaves it to the server: even one set to rekey every 64 KiB does not."""
    import logging

    genome = tmp_path / "genome.fa"
    data = make_file(genome, 4 * MiB)
    client, cache = client_for(opts)
    client.get_transport().packetizer.REKEY_BYTES = 64 * 1024
    caplog.set_level(logging.DEBUG, logger="paramiko.transport")
    try:
        result = upload.stage_data(client, cache, upload.local_file(str(genome)), where="h", method="exec")
    finally:
        client.close()
    assert Path(result.remote_path).read_bytes() == data
    assert "Rekeying" not in caplog.text


# ----------------------------------------------------------------------------- errors

def test_missing_or_unreadable_local_files_are_named(opts, tmp_path, stage_calls):
    be = backend(opts)
    missing = tmp_path / "nope" / "genome.fa"
    with pytest.raises(upload.StageError, match=rf"cannot stage {missing}: the local file does not exist"):
        be.stage_file(str(missing))
    with pytest.raises(upload.StageError, match=rf"cannot stage {tmp_path}: not a regular file"):
        be.stage_file(str(tmp_path))
    if os.geteuid() != 0:
        locked = tmp_path / "locked.fa"
        locked.write_bytes(b">x\nACGT\n")
        locked.chmod(0)
        unreadable = str(locked)
    else:
        unreadable = "/proc/self/mem"  # a regular file that no one can read from offset 0
    with pytest.raises(upload.StageError, match=r"cannot stage .*: cannot read the local file"):
        be.stage_file(unreadable)
    # and through prepare_item, as the mapper calls it
    handle = SimpleNamespace(backend=be)
    with pytest.raises(BackendError, match=rf"cannot stage {missing}"):
        staging.prepare_item(handle, shard(missing))
    assert stage_calls == []  # nothing reached the host


def test_unreachable_host_names_host_and_file(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    genome = tmp_path / "genome.fa"
    make_file(genome, 100)
    be = SSHBackend("u", {"host": f"bio@127.0.0.1:{port}", "agent": False, "connect_timeout": 2},
                    load_profile("standard"))
    with pytest.raises(upload.StageError, match=rf"staging {genome} on bio@127.0.0.1:{port} failed: "
                                                rf".*Connection refused"):
        be.stage_file(str(genome))


# ----------------------------------------------------------------------------- prepare_item

def test_prepare_item_rewrites_only_shards_and_keeps_every_other_byte(opts, cache_dir, tmp_path, stage_calls):
    genome = tmp_path / "genome.fa.gz"
    data = make_file(genome, 70_000)
    be = backend(opts)
    handle = SimpleNamespace(backend=be)
    try:
        bgzf = {"path": str(genome), "offset": 65280, "length": 4720, "format": "fasta",
                "bgzf": True, "block": 65280, "skip": 17, "name": "chunk-2", "big": "A" * 100_000}
        item = wire.encode(bgzf)
        out = staging.prepare_item(handle, item)
        value = wire.decode(out)
        assert value == dict(bgzf, path=f"{cache_dir}/data/{sha(data)}.fa.gz")
        assert Path(value["path"]).read_bytes() == data
        # cached per host and path: the next shards of the file cost no upload
        for offset in (0, 100, 200):
            staging.prepare_item(handle, shard(genome, offset, 100))
        assert len(stage_calls) == 1

        # not shards: returned as they are (the same object), nothing staged
        for other in (wire.encode("just a string"), wire.encode([1, 2, 3]),
                      wire.encode({"path": str(genome), "offset": 1}),             # no length
                      wire.encode({"path": str(genome), "offset": 1.5, "length": 2}),  # not integers
                      wire.encode({"path": 7, "offset": 1, "length": 2}),
                      wire.encode({"seq": "s4:path" * 1000, "n": 1}),
                      wire.encode("x" * (4 * MiB))):
            assert staging.prepare_item(handle, other) is other

        # stage=False: the hosts already have the file at that path
        missing = shard("/shared/nfs/genome.fa", 0, 10)
        assert staging.prepare_item(handle, missing, stage=False) is missing
    finally:
        be.destroy()
    assert len(stage_calls) == 1


def test_prepare_item_leaves_items_of_local_vms_alone(tmp_path):
    genome = tmp_path / "genome.fa"
    make_file(genome, 100)
    manager = Manager()
    try:
        vm = manager.create("loc", profile=load_profile("standard"), type="local")
        item = shard(genome, 0, 10)
        assert staging.prepare_item(vm, item) is item
        assert vm.eval("local p = ...; local f = assert(io.open(p, 'rb')); local n = #f:read('a'); "
                       "f:close(); return n", str(genome)) == [100]
    finally:
        assert manager.destroy_all() == []


# ----------------------------------------------------------------------------- XCP-ng guests

def test_xcpng_guest_stages_over_its_ssh_connection(xapi_sim, xcpng_settings, tmp_path, stage_calls):
    from bioxen_shell.remote import xcpng
    from bioxen_shell.remote.xcpng import XCPngBackend

    xcpng.forget_passwords()
    cache_dir = tmp_path / "guest-cache"
    genome = tmp_path / "genome.fa"
    data = make_file(genome, 256 * 1024)
    be = XCPngBackend("xs", {"pool": dict(xcpng_settings), "cache_dir": str(cache_dir)},
                      load_profile(None))
    with pytest.raises(upload.StageError, match=r"not running"):
        be.stage_file(str(genome))
    proc = be.start()
    try:
        handle = SimpleNamespace(backend=be)
        out = wire.decode(staging.prepare_item(handle, shard(genome, 5, 10)))
        assert out["path"] == f"{cache_dir}/data/{sha(data)}.fa"
        assert Path(out["path"]).read_bytes() == data
        assert be.stage_file(str(genome)) == out["path"] and len(stage_calls) == 1
    finally:
        proc.close()
        be.destroy()
        xcpng.forget_passwords()
