"""A 100 MB string into a VM and back (target >= 500 MB/s each way).

Compared in the same run with the prior art, whose only ways to move data are the `lua -e`
command line (in) and the process's stdout (out).

    python bench/vm_bigstring.py [MB] [repeats]
"""
from __future__ import annotations

import subprocess
import sys
import time

from _vmbench import LUA, table

from bioxen_shell.vm.manager import Manager


def main() -> None:
    mb = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    size = mb * 1024 * 1024
    binary = bytes(range(256)) * (size // 256)   # arbitrary bytes: stays bytes in Python
    text = "ACGT" * (size // 4)                  # sequence text: comes back as str
    m = Manager()
    vm = m.create("big")
    rows = []
    for label, value in (("bytes (binary)", binary), ("str (ACGT text)", text)):
        ins, outs = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            vm.set("s", value)
            ins.append(time.perf_counter() - t)
            t = time.perf_counter()
            back = vm.get("s")
            outs.append(time.perf_counter() - t)
            assert len(back) == len(value)
        best_in, best_out = min(ins), min(outs)
        med_in, med_out = sorted(ins)[len(ins) // 2], sorted(outs)[len(outs) // 2]
        rows.append((f"bioxen local VM, vm:set / vm:get, {label}",
                     f"{mb / med_in:.0f} MB/s (best {mb / best_in:.0f})",
                     f"{mb / med_out:.0f} MB/s (best {mb / best_out:.0f})"))
    m.destroy_all()

    # prior art, in: the code (with the data) goes on the command line
    try:
        subprocess.run([LUA, "-e", "s = '" + "A" * size + "'"], capture_output=True)
        prior_in = "worked"
    except OSError as exc:
        prior_in = f"impossible: {exc.strerror} (ARG_MAX)"
    # prior art, out: the data comes back as the process's stdout text
    t = time.perf_counter()
    r = subprocess.run([LUA, "-e", f"io.write(string.rep('A', {size}))"], capture_output=True)
    dt = time.perf_counter() - t
    assert len(r.stdout) == size
    rows.append((f"prior art: `{LUA} -e` (data on argv / stdout)", prior_in, f"{mb / dt:.0f} MB/s (as text, no values)"))
    table(f"{mb} MB string into a VM and back (median of {repeats}; higher is better; target >= 500 MB/s)",
          ("path", "in", "out"), rows)


if __name__ == "__main__":
    main()
