"""Staging a data file for maps on an SSH host, beside scp and sftp of the same file, in one run.

    python bench/staging.py [MiB] [REPEATS]

Starts a private OpenSSH server on 127.0.0.1 (tests/remote/sshd_fixture.py) and copies one
file of random bytes (default 256 MiB) to it, REPEATS times each (default 3, the median is
shown): bioxen's ``stage_data`` by SFTP and over an exec channel — from a fresh host cache,
so every run uploads, and timed to the verified file under its final name — and the stock
``scp`` and ``sftp`` clients (their default cipher, and scp with bioxen's AES-GCM too).
The SHA-256 of the local file is computed before the clock starts (once per file, cached);
its cost is shown apart.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _vmbench import table

from bioxen_shell.remote import ssh, upload
from bioxen_shell.remote.config import resolve_host
from tests.remote.sshd_fixture import start_sshd


def _rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e6:.0f} MB/s ({seconds:.2f} s)"


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    size = mib * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="bioxen-bench-staging-"))
    os.environ.setdefault("BIOXEN_CACHE_DIR", str(work / "local-cache"))
    server = start_sshd(work / "sshd")
    try:
        src = work / "genome.fa"
        with open(src, "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))
        remote = work / "remote"
        host = resolve_host(server.target, {"key": str(server.client_key), "known_hosts": str(server.known_hosts),
                                            "agent": False, "cache_dir": str(remote)})
        t = time.perf_counter()
        local = upload.local_file(str(src))
        hashing = time.perf_counter() - t

        ssh_opts = ["-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                    "-i", str(server.client_key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]
        target = f"{server.user}@{server.host}"

        def scp(*extra: str) -> None:
            subprocess.run(["scp", "-q", "-P", str(server.port), *ssh_opts, *extra, str(src),
                            f"{target}:{work / 'scp.out'}"], check=True)

        def sftp() -> None:
            subprocess.run(["sftp", "-q", "-P", str(server.port), *ssh_opts, "-b", "-", target],
                           input=f"put {src} {work / 'sftp.out'}\n".encode(), check=True,
                           stdout=subprocess.DEVNULL)

        client = ssh.connect(host)

        def bioxen(method: str):
            def run() -> None:
                shutil.rmtree(remote, ignore_errors=True)
                r = upload.stage_data(client, host.cache_dir, local, where=host.address, method=method)
                assert r.sent == size and not r.already, r
            return run

        runs = [
            ("bioxen stage_data, SFTP (verified, renamed into place)", bioxen("sftp")),
            ("bioxen stage_data, exec channel (verified, renamed)", bioxen("exec")),
            ("scp (default cipher)", scp),
            ("scp -c aes128-gcm@openssh.com (bioxen's cipher)", lambda: scp("-c", "aes128-gcm@openssh.com")),
            ("sftp put (default cipher)", sftp),
        ]
        samples: dict[str, list[float]] = {label: [] for label, _ in runs}
        for _ in range(repeats):  # interleaved, so a busy moment of the machine hits all of them
            for label, fn in runs:
                t = time.perf_counter()
                fn()
                samples[label].append(time.perf_counter() - t)
        rows = [(label, _rate(size, statistics.median(s)), _rate(size, min(s))) for label, s in samples.items()]
        rows.append(("(local SHA-256 of the file, once per file, before staging)", _rate(size, hashing), ""))
        table(f"{mib} MiB over loopback, {repeats} runs each (higher is better)",
              ("path", "median", "best"), rows)
        client.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
