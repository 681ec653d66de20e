"""What a VM writes outside its captured output — io.stderr, and what os.execute children print —
shows on the shell's stderr the same way for a local VM and an SSH VM (loopback sshd)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import PATIENCE

ROOT = Path(__file__).resolve().parents[2]

# The child writes to its stdout and its stderr, then the VM to its own stderr; print is the
# VM's captured output (the shell's stdout).
CODE = ("os.execute('echo child-out; echo child-err >&2'); io.stderr:write('vm-stderr\\n'); "
        "print('printed') return 1")
WANT = b"child-out\nchild-err\nvm-stderr\n"

# A process of its own, so that its stderr (and the stderr a local VM's worker inherits) is a
# file the test reads; it waits for the text to arrive there, then destroys the VM.
DRIVER = f"""
import json, sys
from bioxen_shell.vm.manager import Manager
from bioxen_shell.vm.profiles import load_profile
from tests.waiting import wait_for
opts, err_path = json.loads(sys.argv[1]), sys.argv[2]
manager = Manager()
try:
    vm = manager.create("o1", profile=load_profile("standard"), **opts)
    assert vm.eval({CODE!r}) == [1]
    wait_for(lambda: open(err_path, "rb").read().endswith({WANT!r}), "the VM's stderr output")
finally:
    manager.destroy_all()
"""


def _stderr_of_a_vm(opts: dict, tmp_path: Path) -> tuple[bytes, bytes]:
    err_path = tmp_path / "stderr"
    with open(err_path, "wb") as err:
        proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(opts), str(err_path)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=err, timeout=PATIENCE)
    text = err_path.read_bytes()
    assert proc.returncode == 0, text.decode(errors="replace")
    return proc.stdout, text


@pytest.mark.parametrize("backend", ["local", "ssh"])
def test_stderr_and_child_output_show_as_for_a_local_vm(backend, request, tmp_path):
    opts = {"type": "local"}
    if backend == "ssh":
        opts = dict(request.getfixturevalue("ssh_vm_options"))
    out, err = _stderr_of_a_vm(opts, tmp_path)
    assert out == b"printed\n"
    assert err == WANT
