"""VM creation: p50 of one (target <= 20 ms) and 100 at once (target <= 2 s).

Compared in the same run with:
  * the prior art: a VM there is a `lua -e` process per call; its "creation" is one spawn;
  * multiprocessing's forkserver (lupa preloaded) starting a process that runs the same worker —
    the alternative to bioxen's own zygote (bioxen_shell/vm/forkserver.py);
  * a plain subprocess `python -m bioxen_shell.vm.worker` per VM (no zygote at all).

    python bench/vm_create.py [N]
"""
from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time

from _vmbench import LUA, ROOT, ms, percentile, table, timed

from bioxen_shell.vm.manager import Manager


def _mp_worker(in_fd, out_fd):
    from bioxen_shell.vm.worker import run_worker

    os.dup2(in_fd, 3)
    os.dup2(out_fd, 4)
    run_worker("lua54", in_fd=3, out_fd=4)


def _start_and_hello(start) -> None:
    """Start a worker with pipes and wait for its hello frame."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    stopper = start(in_r, out_w)
    os.close(in_r)
    os.close(out_w)
    data = b""
    while b"\n" not in data or len(data) < data.index(b"\n") + 1 + int(data[1:data.index(b"\n")]):
        chunk = os.read(out_r, 65536)
        if not chunk:
            raise RuntimeError("worker died")
        data += chunk
    os.close(in_w)  # end of input: the agent exits
    os.close(out_r)
    stopper()


def bench_mp_forkserver(n: int) -> list[float]:
    from multiprocessing.reduction import DupFd

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["lupa.lua54", "bioxen_shell.vm.worker", "bioxen_shell.paths"])

    def start(in_r, out_w):
        # the pipe ends reach the forkserver's child as DupFd (fd passing over its socket)
        p = ctx.Process(target=_mp_dup_worker, args=(DupFd(in_r), DupFd(out_w)))
        p.start()
        return lambda: p.join(5)

    return timed(lambda: _start_and_hello(start), n, warmup=3)


def _mp_dup_worker(in_dup, out_dup):
    _mp_worker(in_dup.detach(), out_dup.detach())


def bench_subprocess(n: int) -> list[float]:
    def start(in_r, out_w):
        p = subprocess.Popen([sys.executable, "-m", "bioxen_shell.vm.worker", "--runtime", "lua54",
                              "--in-fd", str(in_r), "--out-fd", str(out_w)], pass_fds=(in_r, out_w), cwd=ROOT)
        return lambda: p.wait(5)

    return timed(lambda: _start_and_hello(start), n, warmup=2)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    m = Manager()
    m.create("warmup")  # starts the zygote once, as the first vm.create of a session does
    m.destroy("warmup")
    counter = iter(range(10**6))

    def create_destroy():
        h = m.create(f"c{next(counter)}")
        m.destroy(h.name)

    created = []

    def create_only():
        created.append(m.create(f"k{next(counter)}"))

    s_ours = timed(create_only, n, warmup=5)
    m.destroy_all()
    t0 = time.perf_counter()
    hundred = m.create("par", count=100)
    t_hundred = time.perf_counter() - t0
    assert len(hundred) == 100 and all(h.eval("return 1") == [1] for h in hundred)
    t0 = time.perf_counter()
    m.destroy_all()
    t_destroy = time.perf_counter() - t0

    s_prior = timed(lambda: subprocess.run([LUA, "-e", ""], check=True), n, warmup=5)
    s_mp = bench_mp_forkserver(min(n, 50))
    s_sub = bench_subprocess(min(n, 20))
    rows = [
        ("bioxen vm.create (zygote fork + hello + configure)", ms(percentile(s_ours, 50)), ms(percentile(s_ours, 95)), n),
        ("multiprocessing forkserver, same worker (start + hello)", ms(percentile(s_mp, 50)), ms(percentile(s_mp, 95)), len(s_mp)),
        ("subprocess python -m bioxen_shell.vm.worker (start + hello)", ms(percentile(s_sub, 50)), ms(percentile(s_sub, 95)), len(s_sub)),
        (f"prior art: one `{os.path.basename(LUA)} -e` process (its per-call 'VM')", ms(percentile(s_prior, 50)), ms(percentile(s_prior, 95)), n),
    ]
    table("VM creation, one at a time (lower is better; target p50 <= 20 ms)", ("path", "p50", "p95", "N"), rows)
    table("100 VMs at once (target <= 2 s)", ("what", "wall time"),
          [("vm.create{count=100} (parallel, all answering)", f"{t_hundred:.3f} s"),
           ("vm.destroy_all() of those 100", f"{t_destroy:.3f} s")])


if __name__ == "__main__":
    main()
