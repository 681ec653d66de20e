"""A 100 MB string into a VM and back (target >= 1 GB/s each way, on every path).

One table, one run: the Python API (``vm.set`` / ``vm.get``), the shell's Lua side
(``w:set`` / ``w:get`` and ``w:eval(code, s)`` from Lua code run by the shell's lupa engine),
beside the physical floor measured here and now (the same bytes copied through a pipe from
one process to another, the same plus the one copy lupa must make between a Lua string and a
Python one, and one ``memcpy`` into fresh memory) and the prior art, whose only ways to move
data are the ``lua -e`` command line (in) and the process's stdout (out).

On a virtual machine most of the cost of receiving 100 MB is page faults on fresh memory:
expect the rows to move together with the floor rows from run to run.

    python bench/vm_bigstring.py [MB] [repeats]
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from _vmbench import LUA, table

from bioxen_shell.engine import Engine
from bioxen_shell.vm.manager import Manager


def rate(mb: float, samples: list[float]) -> str:
    med = sorted(samples)[len(samples) // 2]
    return f"{mb / med:.0f} MB/s (best {mb / min(samples):.0f})"


def python_api(mb: int, repeats: int, size: int) -> list[tuple]:
    binary = bytes(range(256)) * (size // 256)   # arbitrary bytes: stays bytes in Python
    text = "ACGT" * (size // 4)                  # sequence text: comes back as str
    m = Manager()
    vm = m.create("big")
    rows = []
    try:
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
                del back
            rows.append((f"bioxen local VM, Python API, vm.set / vm.get, {label}", rate(mb, ins), rate(mb, outs)))
    finally:
        m.destroy_all()
    return rows


def lua_side(mb: int, repeats: int, size: int, runtime: str = "lua54") -> list[tuple]:
    """The shell's Lua side: Lua code in the shell's lupa engine moving a Lua string."""
    eng = Engine(runtime)
    rows = []
    try:
        eng.lua.execute(f"""
            w = vm.create{{name = 'big-lua'}}
            local bytes = {{}}
            for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
            binary = string.rep(table.concat(bytes), {size // 256})
            text = string.rep('ACGT', {size // 4})
        """)
        lua = eng.lua.eval
        for label, name in (("binary", "binary"), ("ACGT text", "text")):
            cases = [("w:set / w:get", f"function() w:set('s', {name}) end",
                      "function() local s = w:get('s') return #s end")]
            if name == "text":  # with binary data, the same path once the args are encoded
                cases.append(("w:eval(code, s) / w:eval('return s')", f"function() w:eval('s = ...', {name}) end",
                              "function() local s = w:eval('return s') return #s end"))
            for how, put_src, take_src in cases:
                put, take = lua(put_src), lua(take_src)
                ins, outs = [], []
                for _ in range(repeats):
                    t = time.perf_counter()
                    put()
                    ins.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    n = take()
                    outs.append(time.perf_counter() - t)
                    assert n == size, n
                    eng.lua.execute("collectgarbage()")
                rows.append((f"bioxen local VM, shell Lua side ({runtime}), {how}, {label}", rate(mb, ins), rate(mb, outs)))
    finally:
        eng.close()
    return rows


def fresh_buffer(size: int):
    """Fresh memory, with transparent huge pages asked for as bioxen's reader does
    (wire.big_buffer), in plain mmap terms so that the floor is the same whatever the tree."""
    import mmap

    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m.madvise(mmap.MADV_HUGEPAGE)
    except (AttributeError, OSError):
        pass
    return m, memoryview(m)


def pipe_floor(mb: int, repeats: int, size: int, copies: int = 0) -> tuple:
    """The same bytes written into a pipe by one process and read by another into fresh memory
    (see fresh_buffer): what any worker-process design
    pays at least, once per direction.  ``copies``: then copied that many times more into fresh
    memory (the Lua side's unavoidable lupa conversion is one)."""
    import fcntl

    data = bytes(range(256)) * (size // 256)
    times = []
    for _ in range(repeats):
        r, w = os.pipe()
        ack_r, ack_w = os.pipe()
        try:
            fcntl.fcntl(w, 1031, 1 << 20)   # F_SETPIPE_SZ, as the local VMs do
        except OSError:
            pass
        pid = os.fork()
        if pid == 0:
            os.close(w)
            buffers = [fresh_buffer(len(data))]
            view = buffers[0][1]
            got = 0
            while got < len(data):
                n = os.readv(r, [view[got:]])
                if n == 0:
                    break
                got += n
            for _ in range(copies):
                buffers.append(bytes(view))  # a copy into fresh memory (lupa's, on the Lua side)
            os.write(ack_w, b"x")
            os._exit(0)
        os.close(r)
        t = time.perf_counter()
        view = memoryview(data)
        while view:
            view = view[os.write(w, view):]
        os.read(ack_r, 1)
        times.append(time.perf_counter() - t)
        os.waitpid(pid, 0)
        for fd in (w, ack_r, ack_w):
            os.close(fd)
    what = "the same bytes through a pipe, process to process, into fresh memory"
    if copies:
        what += f", then {copies} copy into fresh memory (the Lua side's floor)"
    return (f"floor: {what}", rate(mb, times), "(the same)")


def memcpy_floor(mb: int, repeats: int, size: int) -> tuple:
    data = bytearray(size)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        copy = bytes(data)
        times.append(time.perf_counter() - t)
        del copy
    return ("floor: one memcpy into fresh memory (bytes(bytearray))", rate(mb, times), "(the same)")


def prior_art(mb: int, size: int) -> tuple:
    # in: the code (with the data) goes on the command line
    try:
        subprocess.run([LUA, "-e", "s = '" + "A" * size + "'"], capture_output=True)
        prior_in = "worked"
    except OSError as exc:
        prior_in = f"impossible: {exc.strerror} (ARG_MAX)"
    # out: the data comes back as the process's stdout text
    t = time.perf_counter()
    r = subprocess.run([LUA, "-e", f"io.write(string.rep('A', {size}))"], capture_output=True)
    dt = time.perf_counter() - t
    assert len(r.stdout) == size
    return (f"prior art: `{LUA} -e` (data on argv / stdout)", prior_in, f"{mb / dt:.0f} MB/s (as text, no values)")


def main() -> None:
    mb = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    size = mb * 1024 * 1024
    rows = python_api(mb, repeats, size)
    rows += lua_side(mb, repeats, size, "luajit")  # the shell's default: blobs leave from the Lua strings
    rows += lua_side(mb, repeats, size)
    rows.append(pipe_floor(mb, repeats, size))
    rows.append(pipe_floor(mb, repeats, size, copies=1))
    rows.append(memcpy_floor(mb, repeats, size))
    rows.append(prior_art(mb, size))
    table(f"{mb} MB string into a VM and back (median of {repeats}; higher is better; target >= 1000 MB/s)",
          ("path", "in", "out"), rows)


if __name__ == "__main__":
    main()
