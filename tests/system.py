"""Helpers for tests that need parts of the system (interpreters, daemons)."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

__all__ = ["require_binary", "require_data", "ANY2FASTA", "ECOLI_GENOME", "STOCK_LUAS", "die_with_parent",
           "tmpfs", "Tmpfs"]

#: Stock interpreters the agent and the sequence library must run under.
STOCK_LUAS = ["lua5.1", "lua5.2", "lua5.3", "lua5.4", "luajit"]


def require_binary(name: str, also_in: str | None = None) -> str:
    """Return the path of ``name`` or skip the test, saying which Debian package provides it.

    ``also_in``: directories to look in besides PATH (``os.pathsep``-separated), for programs
    such as sshd in /usr/sbin, which a normal user's PATH often lacks."""
    path = shutil.which(name) or (shutil.which(name, path=also_in) if also_in else None)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {_PACKAGE.get(name, name)})")
    return path


#: Real data that Debian packages ship (CI installs them): a draft genome of *Leptospira
#: kirschneri* as GenBank, EMBL, FASTA, FASTQ and GFF, and the E. coli NC_008253 genome.
ANY2FASTA = Path("/usr/share/doc/any2fasta/examples")
ECOLI_GENOME = Path("/usr/share/doc/bowtie/examples/genomes/NC_008253.fna.gz")
_DATA_PACKAGE = {ANY2FASTA: "any2fasta-examples", ECOLI_GENOME.parents[2]: "bowtie-examples"}


def require_data(path: Path) -> Path:
    """Return ``path`` (a file of ANY2FASTA or ECOLI_GENOME) or skip, naming the package that ships it."""
    if not path.exists():
        package = next((pkg for root, pkg in _DATA_PACKAGE.items() if root in path.parents or root == path),
                       "the package that ships it")
        pytest.skip(f"{path} is missing (apt-get install {package})")
    return path


_PACKAGE = {"sshd": "openssh-server", "luajit": "luajit", "seqkit": "seqkit", "tmux": "tmux", "bgzip": "tabix",
            "cloud-init": "cloud-init", "bsdtar": "libarchive-tools",
            "genisoimage": "genisoimage", "blkid": "util-linux", "samtools": "samtools",
            **dict.fromkeys(["slurmctld", "slurmd", "srun", "salloc", "sbatch", "squeue", "scancel", "sinfo"],
                            "slurm-wlm munge"),
            **dict.fromkeys(["munged", "munge", "unmunge"], "munge")}


def die_with_parent() -> None:
    """A ``preexec_fn`` for daemons the tests start: they get SIGKILL when the test process dies.

    Without it a killed pytest run leaves its sshd listening.  (The parent-death signal is tied
    to the thread that forks, so use it only from the main thread, e.g. in session fixtures.)
    """
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


class Tmpfs:
    """A small tmpfs mounted for one test: a file system that can fill up or turn read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def remount_read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True, capture_output=True)

    def fill(self) -> None:
        """Use up every free block (what is written later fails with ENOSPC)."""
        with open(self.path / ".fill", "wb", buffering=0) as f:
            block = b"\0" * 4096
            try:
                while True:
                    f.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "64k") -> Iterator[Tmpfs]:
    """Mount a tmpfs of ``size`` on the directory ``path`` for the ``with`` block, or skip.

    Mounting needs root (CI runs as root) and the mount(8) command; a container without
    CAP_SYS_ADMIN refuses it.  The skip says which; under BIOXEN_REQUIRE_SYSTEM=1 it fails.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    if shutil.which("mount") is None:
        pytest.skip("mount(8) is not installed (apt-get install mount)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (it needs CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield Tmpfs(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
