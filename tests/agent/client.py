"""A minimal protocol client for the agent tests: one real agent process, driven over pipes.

This is deliberately independent of the VM handle (bioxen_shell/vm/handle.py) so that the
agent and codec are tested on their own, with the real interpreters.
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bioxen_shell.vm import protocol as wire
from tests.waiting import PATIENCE, wait_for

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
ROOT = Path(__file__).resolve().parents[2]
LUA_DIR = ROOT / "lua"
AGENT = LUA_DIR / "bioxen" / "agent.lua"

#: lupa runtimes the worker is tested on, and the stock binaries.
LUPA_RUNTIMES = ["lua51", "lua52", "lua53", "lua54", "lua55", "luajit21"]
STOCK_BINARIES = ["lua5.1", "lua5.2", "lua5.3", "lua5.4", "luajit"]


class AgentError(Exception):
    def __init__(self, reply: dict) -> None:
        super().__init__(f"{reply.get('kind')}: {reply.get('error')}")
        self.reply = reply
        self.kind = reply.get("kind")
        self.message = reply.get("error")
        self.traceback = reply.get("traceback")


class Agent:
    """An agent process: `lua5.4 agent.lua …` or the lupa worker."""

    def __init__(self, runtime: str, *, max_memory: int | None = None, extra_args=(), env=None,
                 blobs: bool = True) -> None:
        self.runtime = runtime
        self.blobs = blobs  # big strings as B frames (wire.encode_request; replies: configure)
        to_agent_r, to_agent_w = os.pipe()
        from_agent_r, from_agent_w = os.pipe()
        # The agent's ends become fds 3 and 4 in the child.
        if runtime in STOCK_BINARIES or runtime.startswith("/"):
            cmd = [runtime, str(AGENT), "--in=/dev/fd/3", "--out=/dev/fd/4", *extra_args]
        else:
            cmd = [sys.executable, "-m", "bioxen_shell.vm.worker", "--runtime", runtime,
                   "--in-fd", "3", "--out-fd", "4", *extra_args]
            if max_memory:
                cmd += ["--max-memory", str(max_memory)]
        child_env = dict(os.environ if env is None else env)
        child_env["LUA_PATH"] = f"{LUA_DIR}/?.lua;;"
        child_env["PYTHONPATH"] = str(ROOT)

        def setup():
            # Move both ends out of the way first: either may already be fd 3 or 4.
            a, b = os.dup(to_agent_r), os.dup(from_agent_w)
            a2, b2 = os.dup2(a, 100), os.dup2(b, 101)
            os.dup2(a2, 3)
            os.dup2(b2, 4)

        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=setup, pass_fds=(3, 4), env=child_env,
        )
        for fd in (to_agent_w, from_agent_r):
            try:  # bigger pipe buffers: fewer context switches for 100 MB values
                fcntl.fcntl(fd, F_SETPIPE_SZ, 1 << 20)
            except OSError:
                pass
        os.close(to_agent_r)
        os.close(from_agent_w)
        self.wfd, self.rfd = to_agent_w, from_agent_r
        self.reader = wire.FrameReader()
        self.frames: list = []
        self.next_id = 1
        kind, payload = self.read_frame()
        assert kind == wire.HELLO, (kind, payload)
        self.hello = wire.decode(payload)

    # -- raw frames --------------------------------------------------------------------
    def read_frame(self, timeout: float = PATIENCE):
        import select

        deadline = time.monotonic() + timeout
        while not self.frames:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no frame from the agent within {timeout} s")
            ready, _, _ = select.select([self.rfd], [], [], left)
            if ready:
                got = self.reader.read_from(self.rfd)
                if got is None:
                    err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
                    raise EOFError(f"agent closed the channel (exit {self.proc.poll()}): {err}")
                self.frames.extend(got)
        return self.frames.pop(0)

    def send(self, op: str, **fields) -> int:
        rid = self.next_id
        self.next_id += 1
        wire.write_parts(self.wfd, wire.encode_request(op, rid, send_blobs=self.blobs, **fields))
        return rid

    def recv(self, timeout: float = PATIENCE, on_output=None):
        """Collect output frames, blobs and the reply; returns (reply, output bytes).
        ``self.last_frames`` lists the kinds of the frames that came (O, B, R)."""
        out = bytearray()
        blobs: list = []
        self.last_frames = []
        # One deadline for the whole reply: a busy agent sends (empty) output frames now and
        # then, so a per-frame timeout would never expire on a call that never ends.
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply from the agent within {timeout:g} s")
            kind, payload = self.read_frame(left)
            self.last_frames.append(kind)
            if kind == wire.OUTPUT:
                if on_output:
                    on_output(bytes(payload))
                out += payload
            elif kind == wire.BLOB:
                blobs.append(payload)
            elif kind == wire.REPLY:
                return wire.decode_reply(payload, blobs), bytes(out)
            else:
                raise AssertionError(f"unexpected frame {kind!r}")

    def request(self, op: str, timeout: float = PATIENCE, **fields):
        rid = self.send(op, **fields)
        reply, out = self.recv(timeout)
        assert reply.get("id") in (rid, None), reply
        self.last_output = out
        return reply

    def values(self, op: str, **fields) -> list:
        reply = self.request(op, **fields)
        if not reply["ok"]:
            raise AgentError(reply)
        return reply["values"]

    def eval(self, code: str, *args, **fields):
        return self.values("eval", code=code, args=list(args), **fields)

    def configure(self, **fields):
        """configure; big reply strings come as B frames unless the agent was started with
        ``blobs=False`` (or ``blobs`` is given here)."""
        fields.setdefault("blobs", self.blobs)
        return self.values("configure", **fields)

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def wait_output(self, timeout: float = PATIENCE) -> bytes:
        """Wait for the running call's first output (an O frame) and return it; the frames
        read meanwhile stay queued for :meth:`recv`.  Code that writes before it loops is
        then known to be running, so an interrupt sent now cannot come too early."""
        seen: list = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no output from the agent within {timeout:g} s")
                kind, payload = self.read_frame(left)
                seen.append((kind, payload))
                if kind == wire.OUTPUT and len(payload):
                    return bytes(payload)
                if kind == wire.REPLY:
                    raise AssertionError(f"the call answered before writing anything: {bytes(payload)!r}")
        finally:
            self.frames[:0] = seen

    def sigint_taken(self) -> bool:
        """Whether the agent has taken the SIGINT sent to it: no longer pending in the kernel
        (its handler has run), or blocked, as stock LuaJIT's agent keeps it (it stays pending
        there until the agent polls it, which is the agent's own business)."""
        masks = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("SigPnd", "ShdPnd", "SigBlk"):
                    masks[key] = int(value.strip(), 16)
        bit = 1 << (signal.SIGINT - 1)
        return bool(masks["SigBlk"] & bit) or not ((masks["SigPnd"] | masks["ShdPnd"]) & bit)

    def interrupt_while_idle(self) -> None:
        """SIGINT between calls, and wait until the agent has it (then a request sent next
        comes after the interrupt, whatever the machine's load)."""
        self.interrupt()
        wait_for(self.sigint_taken, "the idle agent to take its SIGINT")

    def close(self) -> int:
        try:
            if self.proc.poll() is None:
                try:
                    self.request("exit", timeout=5)
                except Exception:
                    pass
            try:
                return self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        finally:
            for fd in (self.wfd, self.rfd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.proc.stdout.close()
            self.proc.stderr.close()
