"""Data-parallel maps over files: vm.map over shards, vm.map_file, streaming, faults.

Every VM opens its own byte range of the file, so nothing of the sequence data passes through
the shell; these tests check what a user sees: the same bytes as the one-process run, for any
number of VMs and shards, a lost VM's shard re-run, Ctrl-C leaving no VM behind.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bioxen_shell.engine import Engine
from tests.waiting import PATIENCE, eventually, pid_gone, wait_for, when

ROOT = Path(__file__).resolve().parents[2]
BIOXEN = [sys.executable, "-m", "bioxen_shell"]


class Shell(Engine):
    def __init__(self) -> None:
        import io

        self.out = io.BytesIO()
        super().__init__("luajit", stdout=self.out, extensions=["bioxen_shell.vm.bindings"])

    def show(self, line: str) -> str:
        r = self.eval_line(line)
        assert r.ok, r.error_text().decode()
        return r.output.decode()


@pytest.fixture()
def shell():
    sh = Shell()
    yield sh
    sh.close()
    assert sh.vm_host.host is None or sh.vm_host.host.manager.list() == []


def write_fasta(path: Path, records: int = 40, seed: int = 1) -> Path:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(records):
            n = rng.choice([0, 10, 61, 3000, 20000])
            seq = "".join(rng.choice("ACGTNacgtSW") for _ in range(n))
            f.write(f">chr{i} sample record {i}\n")
            for j in range(0, n, 60):
                f.write(seq[j:j + 60] + "\n")
    return path


def bioxen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*BIOXEN, *args], capture_output=True, cwd=cwd or ROOT, timeout=max(300, PATIENCE))


# ------------------------------------------------------------------ the examples, byte for byte

@pytest.mark.parametrize("vms,shards", [(1, 1), (2, 2), (2, 7), (3, 3), (3, 7)])
def test_gc_map_vms_gives_the_one_process_bytes(tmp_path, vms, shards):
    fa = write_fasta(tmp_path / "g.fa")
    one = bioxen("run", "examples/gc_table.lua", str(fa))
    assert one.returncode == 0, one.stderr
    many = bioxen("run", "examples/gc_map_vms.lua", str(fa), "--vms", str(vms), "--shards", str(shards))
    assert many.returncode == 0, many.stderr
    assert many.stdout == one.stdout
    assert one.stdout.count(b"\n") == 41


@pytest.mark.parametrize("mode", ["ignore", "weighted"])
def test_gc_map_vms_modes(tmp_path, mode):
    fa = write_fasta(tmp_path / "g.fa", seed=2)
    one = bioxen("run", "examples/gc_table.lua", str(fa), "--mode", mode)
    many = bioxen("run", "examples/gc_map_vms.lua", str(fa), "--vms", "2", "--mode", mode)
    assert many.returncode == 0, many.stderr
    assert many.stdout == one.stdout


@pytest.mark.parametrize("script,extra", [
    ("six_frame_orfs.lua", ["--min", "60"]),
    ("six_frame_orfs.lua", ["--min", "90", "--fasta"]),
    ("kmer_spectrum.lua", ["--k", "5", "--top", "8"]),
])
@pytest.mark.parametrize("vms", [2, 3])
def test_examples_with_vms_give_the_one_process_bytes(tmp_path, script, extra, vms):
    fa = write_fasta(tmp_path / "g.fa", records=25, seed=3)
    one = bioxen("run", f"examples/{script}", str(fa), *extra)
    assert one.returncode == 0, one.stderr
    many = bioxen("run", f"examples/{script}", str(fa), *extra, "--vms", str(vms))
    assert many.returncode == 0, many.stderr
    assert many.stdout == one.stdout and len(one.stdout) > 100


def test_kmer_spectrum_with_vms_on_fastq(tmp_path):
    one = bioxen("run", "examples/kmer_spectrum.lua", "examples/data/reads.fq", "--k", "7")
    many = bioxen("run", "examples/kmer_spectrum.lua", "examples/data/reads.fq", "--k", "7", "--vms", "2")
    assert many.returncode == 0, many.stderr
    assert many.stdout == one.stdout


# ------------------------------------------------------------------ vm.map over shards in the shell

def test_map_over_shards_keeps_order_and_streams(shell, tmp_path):
    fa = write_fasta(tmp_path / "g.fa")
    shell.show(f"shards = require('bio.fasta').shards({str(fa)!r}, 7)")
    assert shell.show("#shards") == "7"
    shell.show("fn = function(s) local n = 0 for _ in require('bio.fasta').records(s) do n = n + 1 end "
               "return {s.index, n} end")
    shell.show("seen = {}; res, bad = vm.map(fn, shards, {vms = 3, on_result = function(i, r) "
               "seen[#seen + 1] = i .. ':' .. r[1] .. ':' .. r[2] end})")
    assert shell.show("res, bad") == "nil\tnil"
    seen = shell.show("table.concat(seen, ' ')").strip('"').split()
    assert [int(s.split(":")[0]) for s in seen] == list(range(1, 8))
    assert all(s.split(":")[0] == s.split(":")[1] for s in seen)
    assert sum(int(s.split(":")[2]) for s in seen) == 40
    # the non-streaming form returns the same, in order
    assert shell.show("#vm.map(fn, shards, {vms = 2})") == "7"


def test_map_file_sniffs_the_format_and_passes_args(shell, tmp_path):
    fq = tmp_path / "r.fq"
    fq.write_text("".join(f"@r{i}\nACGT\n+\nIIII\n" for i in range(100)))
    shell.show(f"res = vm.map_file(function(s, k) local n = 0 for r in require('bio.fastq').records(s) do "
               f"n = n + #r.seq end return n * k end, {str(fq)!r}, {{vms = 2, shards = 5, args = {{10}}}})")
    assert shell.show("#res") == "5"
    assert shell.show("local t = 0 for _, v in ipairs(res) do t = t + v end return t") == "4000"
    r = shell.eval_line(f"vm.map_file(function() end, {str(tmp_path / 'nope.fa')!r})")
    assert not r.ok and b"nope.fa" in r.message


def test_map_file_sizes_its_shards_for_its_vms(shell, tmp_path):
    # 2 VMs, 8 shards by default: rounds of two shards, each round about half the size of the
    # one before, so the VM that is idle first takes the small last ones.  Same bytes as ever.
    fa = tmp_path / "many.fa"
    rng = random.Random(4)
    fa.write_text("".join(f">r{i}\n" + "".join(rng.choice("ACGT") for _ in range(100)) + "\n" for i in range(3000)))
    shell.show(f"res = vm.map_file(function(s) local n = 0 for r in require('bio.fasta').records(s) do "
               f"n = n + 1 end return {{s.length, n}} end, {str(fa)!r}, {{vms = 2}})")
    got = [tuple(map(int, shell.show(f"res[{i}][1], res[{i}][2]").split("\t"))) for i in range(1, 9)]
    assert shell.show("#res") == "8"
    lengths = [length for length, _ in got]
    assert sum(lengths) == fa.stat().st_size and sum(n for _, n in got) == 3000
    for first, second in zip(lengths[0:6:2], lengths[2:8:2]):
        assert 0.4 < second / first < 0.6, lengths


def test_map_file_errors_name_the_callers_line_and_make_no_vm(shell, tmp_path):
    fa = write_fasta(tmp_path / "g.fa")
    cases = {
        f"vm.map_file(function() end, {str(tmp_path / 'nope.fa')!r}, {{vms = 2, format = 'fasta'}})":
            b"vm.map_file: cannot open '" + str(tmp_path / "nope.fa").encode(),
        f"vm.map_file(function() end, {str(fa)!r}, {{shards = 0}})": b"bad option 'shards' to 'map_file'",
        "vm.map_file(function() end, '-')": b"'-' is standard input",
    }
    for line, expected in cases.items():
        r = shell.eval_line(line)
        assert not r.ok and r.message.startswith(b"repl[") and b"]:1: " in r.message, r.message
        assert expected in r.message, r.message
    assert shell.show("#vm.list()") == "0"


def test_a_function_that_reads_the_repls_locals_is_refused(shell, tmp_path):
    # The REPL keeps `local x` for the next line in its own environment: in a VM x would be
    # nil, and the map would quietly return nils.
    fa = write_fasta(tmp_path / "g.fa")
    shell.show("local k = 7")
    for line in ("vm.map(function(i) return i * k end, {1, 2}, {vms = 1})",
                 f"vm.map_file(function(s) return k end, {str(fa)!r}, {{vms = 1}})"):
        r = shell.eval_line(line)
        assert not r.ok and b"the function uses the REPL's locals (k)" in r.message, r.message
    assert shell.show("#vm.list()") == "0"
    # passed in, it works
    assert shell.show("vm.map(function(i, k) return i * k end, {1, 2}, {vms = 1, args = {k}})[2]") == "14"


def test_map_file_finds_the_shards_first_and_cleans_up_on_either_failure(shell, tmp_path, monkeypatch):
    # vm.map_file finds the shards before it creates VMs: a file that cannot be sharded
    # creates none (and the error says which file).
    from bioxen_shell.vm.manager import Manager

    counts = []
    create = Manager.create

    def counting_create(self, *args, **kwargs):
        counts.append(kwargs.get("count"))
        return create(self, *args, **kwargs)

    monkeypatch.setattr(Manager, "create", counting_create)
    missing = tmp_path / "missing.fa"
    r = shell.eval_line(f"vm.map_file(function() end, {str(missing)!r}, {{vms = 3, format = 'fasta'}})")
    assert not r.ok and b"missing.fa" in r.message and b"No such file" in r.message, r.message
    assert counts == [] and shell.show("#vm.list()") == "0"
    # A VM that cannot be created fails the map the same way, after the shards were found.
    fa = write_fasta(tmp_path / "g.fa")
    r = shell.eval_line(f"vm.map_file(function() end, {str(fa)!r}, {{vms = 2, profile = 'no-such-profile'}})")
    assert not r.ok and b"no-such-profile" in r.message, r.message
    assert shell.show("#vm.list()") == "0"
    # Fewer shards than VMs asked for: no more VMs than shards are made.
    counts.clear()
    tiny = tmp_path / "tiny.fa"
    tiny.write_text(">a\nACGT\n>b\nGGCC\n")
    shell.show(f"res = vm.map_file(function(s) local n = 0 for r in require('bio.fasta').records(s) do "
               f"n = n + 1 end return n end, {str(tiny)!r}, {{vms = 4, shards = 1}})")
    assert shell.show("#res") == "1" and shell.show("res[1]") == "2"
    assert counts == [1]
    assert shell.show("#vm.list()") == "0"


def test_an_error_in_on_result_stops_the_map_and_removes_its_vms(shell, tmp_path):
    fa = write_fasta(tmp_path / "g.fa")
    r = shell.eval_line(f"vm.map_file('function(s) return s.index end', {str(fa)!r}, "
                        f"{{vms = 2, shards = 6, on_result = function(i) if i == 2 then error('stop here') end end}})")
    assert not r.ok and b"stop here" in r.message
    assert shell.show("#vm.list()") == "0"


# ------------------------------------------------------------------ faults

_KILL_ONCE = """function(s, marker)
  -- The first VM to run shard 3 kills itself (kill -9), as a crashed or OOM-killed VM would.
  if s.index == 3 then
    local f = io.open(marker, "r")
    if not f then
      io.open(marker, "w"):close()
      local pid = io.open("/proc/self/stat"):read("*n")
      os.execute("kill -9 " .. pid)
      while true do end
    end
    f:close()
  end
  local n = 0
  for _ in require("bio.fasta").records(s) do n = n + 1 end
  return n
end"""


def test_a_vm_killed_mid_map_has_its_shard_rerun(shell, tmp_path):
    fa = write_fasta(tmp_path / "g.fa")
    marker = tmp_path / "killed"
    shell.show(f"res, bad = vm.map_file({_KILL_ONCE!r}, {str(fa)!r}, "
               f"{{vms = 2, shards = 6, args = {{{str(marker)!r}}}}})")
    assert marker.exists()  # a VM really died
    assert shell.show("bad") == "nil"
    assert shell.show("local t = 0 for _, v in ipairs(res) do t = t + v end return #res, t") == "6\t40"


def test_a_shard_that_kills_every_vm_is_reported_with_its_first_record(shell, tmp_path):
    fa = write_fasta(tmp_path / "g.fa")
    killer = ("function(s) if s.index == 2 then os.execute('kill -9 ' .. io.open('/proc/self/stat'):read('*n')) "
              "while true do end end return s.index end")
    shell.show(f"shards = require('bio.fasta').shards({str(fa)!r}, 5)")
    first = shell.show("shards[2].first_id").strip('"')
    shell.show(f"res, bad = vm.map({killer!r}, shards, {{vms = 2}})")
    assert shell.show("#bad, bad[1].index") == "1\t2"
    for needle in (f"shard 2 (first record {first})", "lost twice"):
        assert shell.show(f"bad[1].error:find({needle!r}, 1, true) ~= nil") == "true", (needle, shell.show("bad[1].error"))
    assert shell.show("res[1], res[2], res[3], res[4], res[5]") == "1\tnil\t3\t4\t5"
    assert shell.show("#vm.list()") == "0"


def _pids_of_workers(names_prefix: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith(names_prefix):
                out.append(int(entry))
    return out


_SPIN = """function(s, dir)
  local pid = io.open("/proc/self/stat"):read("*n")
  io.open(dir .. "/" .. pid, "w"):close()   -- tell the test: this VM is busy
  while true do end
end"""


def _wait_for_files(directory: Path, count: int, proc: subprocess.Popen | None = None) -> list[int]:
    """Wait until ``count`` files appear (inotify would be nicer; this polls the event)."""
    def there():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the shell exited early: {proc.stderr.read().decode()}")
        return len(os.listdir(directory)) >= count

    wait_for(there, f"{count} files in {directory} (there: {os.listdir(directory)})")
    return [int(n) for n in os.listdir(directory)]


def _gone(pids: list[int]) -> bool:
    return eventually(lambda: all(pid_gone(p) for p in pids))


def test_ctrl_c_mid_map_stops_every_vm_and_removes_them(shell, tmp_path):
    fa = write_fasta(tmp_path / "g.fa")
    busy = tmp_path / "busy"
    busy.mkdir()
    with when(lambda: len(os.listdir(busy)) >= 2, shell.interrupt, "both VMs of the map to be busy"):
        r = shell.eval_line(f"vm.map_file({_SPIN!r}, {str(fa)!r}, {{vms = 2, shards = 8, args = {{{str(busy)!r}}}}})")
    pids = [int(n) for n in os.listdir(busy)]
    assert not r.ok and b"interrupted" in r.message
    assert shell.show("#vm.list()") == "0"
    assert _gone(pids)


def test_ctrl_c_mid_map_in_a_script_exits_130_and_leaves_no_process(tmp_path):
    fa = write_fasta(tmp_path / "g.fa")
    busy = tmp_path / "busy"
    busy.mkdir()
    script = tmp_path / "spin.lua"
    script.write_text(f"vm.map_file({_SPIN}, {str(fa)!r}, {{vms = 2, shards = 4, args = {{{str(busy)!r}}}}})\n")
    proc = subprocess.Popen([*BIOXEN, "run", str(script)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pids = _wait_for_files(busy, 2, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(PATIENCE) == 130
    assert _gone(pids)


def test_python_api_map_with_args_and_streaming():
    from bioxen_shell import VMManager

    with VMManager() as manager:
        got = []
        results, failures = manager.map("function(x, k, tag) return tag .. x * k end", [1, 2, 3, 4],
                                        vms=2, args=(10, "n="), on_result=lambda i, v: got.append((i, v)))
        assert results == [] and failures == []
        assert got == [(1, "n=10"), (2, "n=20"), (3, "n=30"), (4, "n=40")]
        results, failures = manager.map("function(x, k) return x + k end", [1, 2], vms=1, args=[5])
        assert results == [6, 7] and failures == []


def test_gc_map_vms_over_a_bgzf_file_gives_the_one_process_bytes(tmp_path):
    from tests.system import require_binary

    fa = write_fasta(tmp_path / "g.fa", records=60, seed=4)
    with open(tmp_path / "g.fa.gz", "wb") as out:
        subprocess.run([require_binary("bgzip"), "-c", str(fa)], stdout=out, check=True)
    one = bioxen("run", "examples/gc_table.lua", str(fa))
    many = bioxen("run", "examples/gc_map_vms.lua", str(tmp_path / "g.fa.gz"), "--vms", "2", "--shards", "5")
    assert many.returncode == 0, many.stderr
    assert many.stdout == one.stdout


def test_an_item_over_its_time_limit_in_jit_code_fails_alone_and_the_map_goes_on(shell):
    """A loop in JIT-compiled code ignores the hook: the host kills and restarts that VM, the
    item fails naming the limit (not re-run: it is the item's fault), the others finish.

    The limit is CPU time, which only the endless item can use up: a wall-clock timeout could
    also fire on a quick item whose VM a loaded machine left waiting for a core."""
    from bioxen_shell import paths

    d = paths.config_dir() / "profiles"
    d.mkdir(parents=True, exist_ok=True)
    (d / "short.toml").write_text("cpu_limit = 1\n")
    spin = ("function(x) if x == 2 then local f = load('local n = 0 while true do n = n + 1 end') "
            "jit.on(f, true) f() end return x * 10 end")
    shell.show(f"res, bad = vm.map({spin!r}, {{1, 2, 3, 4, 5}}, {{vms = 2, profile = 'short'}})")
    assert shell.show("res[1], res[2], res[3], res[4], res[5]") == "10\tnil\t30\t40\t50"
    assert shell.show("#bad, bad[1].index") == "1\t2"
    for needle in ("cpu_limit 1 s", "state (globals) was lost"):
        assert shell.show(f"bad[1].error:find({needle!r}, 1, true) ~= nil") == "true", (needle, shell.show("bad[1].error"))


def test_map_args_keep_their_types_and_a_bad_args_is_refused(shell):
    assert shell.show("vm.map('function(x, a, b, c) return {math.type and math.type(a) or type(a), b, c} end', "
                      "{1}, {vms = 1, runtime = 'lua54', args = {3, 2.5, '\\\\0x'}})[1][1]") == '"integer"'
    assert shell.show("vm.map('function(x, a, b) return a .. b end', {1}, {vms = 1, args = {'y', 'z'}})[1]") == '"yz"'
    r = shell.eval_line("vm.map('function(x) return x end', {1}, {args = 5})")
    assert not r.ok and b"args" in r.message
    r = shell.eval_line("vm.map('function(x) return x end', {1}, {args = {k = 1}})")
    assert not r.ok and b"option 'args' must be a list" in r.message
