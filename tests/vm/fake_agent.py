"""A hostile agent: a real process that speaks just enough of the protocol to be started as a
VM, then writes whatever bytes a test hands it onto the VM's stream.

Two ways to run it:

* as a local worker, through the zygote's test hook: ``vm.create{_target =
  "tests.vm.fake_agent:run"}`` (``Manager.create(..., _target=TARGET)``);
* as the "interpreter" of an SSH VM: :func:`write_script` makes an executable that the SSH
  wrapper starts in place of ``lua`` (``interpreter = <that path>``); it takes the agent's
  ``--in=/dev/fd/3 --out=/dev/fd/4`` arguments.

Requests:

* ``configure``, ``exit`` and an ``eval`` of ``"ok"``: answered as the real agent would
  (``ok``: values ``{true}``);
* any other ``eval``: its ``code`` is the hex of bytes to write verbatim, after which the agent
  writes nothing more and goes on reading requests: a stream left in whatever state those
  bytes leave it.

``FAKE_AGENT_HELLO`` (environment, hex): bytes written instead of the hello.
"""
from __future__ import annotations

import os
import sys

from bioxen_shell.vm import protocol as wire  # imported once, in the zygote (it loads the target before forking)

TARGET = "tests.vm.fake_agent:run"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _frame(kind: bytes, payload: bytes) -> bytes:
    return kind + b"%d\n" % len(payload) + payload


def ok_reply(rid: int, values: bytes = b"{1;t}") -> bytes:
    return _frame(b"R", b"{0;s2:idi%d;s2:okts6:values%s}" % (rid, values))


def serve(in_fd: int, out_fd: int) -> int:
    hello = os.environ.get("FAKE_AGENT_HELLO")
    if hello is not None:
        os.write(out_fd, bytes.fromhex(hello))
    else:
        os.write(out_fd, _frame(b"H", wire.encode({"protocol": 1, "agent": "fake", "runtime": "fake"})))
    blobs: list = []
    while True:
        frame = wire.read_frame(in_fd)
        if frame is None:
            return 0
        kind, payload = frame
        if kind == b"B":  # a big string of the request that follows
            blobs.append(payload)
            continue
        req = wire.decode(payload, blobs=blobs)
        blobs = []
        rid, op = req.get("id"), req.get("op")
        if op == "eval" and req.get("code") != "ok":
            os.write(out_fd, bytes.fromhex(req["code"]))
            continue
        os.write(out_fd, ok_reply(rid, b"{0;}" if op != "eval" else b"{1;t}"))
        if op == "exit":
            return 0


def run(runtime: str, *, in_fd: int, out_fd: int, max_memory: int | None = None) -> int:
    """The zygote's entry point for a worker (see zygote.DEFAULT_TARGET)."""
    return serve(in_fd, out_fd)


def write_script(path) -> str:
    """An executable that runs this fake agent the way the SSH wrapper runs a Lua interpreter."""
    path.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "from tests.vm.fake_agent import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    path.chmod(0o755)
    return str(path)


def main(argv: list[str]) -> int:
    fds = {"in": 0, "out": 1}
    for arg in argv:
        for name in fds:
            if arg.startswith(f"--{name}="):
                fds[name] = os.open(arg.split("=", 1)[1], os.O_RDONLY if name == "in" else os.O_WRONLY)
    return serve(fds["in"], fds["out"])
