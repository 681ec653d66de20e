"""Biopython's own test files (Tests/GenBank, Tests/EMBL, …), from the PyPI sdist.

The wheel that ``pip install biopython`` gives has no test material, so the sdist of the
pinned version is fetched once (``pip download``, which goes to the package registry CI
has) and unpacked into a cache shared by every test of the run.  Without the registry the
tests that need it skip (a failure under ``BIOXEN_REQUIRE_SYSTEM=1``).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

VERSION = "1.88"

__all__ = ["VERSION", "biopython_tests_dir"]


def _cache_root() -> Path:
    # Not under the per-test user dirs (conftest isolates those): one download per machine.
    return Path(os.environ.get("BIOXEN_TEST_CACHE") or Path(tempfile.gettempdir()) / "bioxen-test-cache")


def biopython_tests_dir() -> Path:
    """The unpacked ``biopython-VERSION/Tests`` folder; downloads the sdist on first use."""
    root = _cache_root() / f"biopython-{VERSION}"
    done = root / ".unpacked"
    tests = root / f"biopython-{VERSION}" / "Tests"
    if done.exists():
        return tests
    root.mkdir(parents=True, exist_ok=True)
    sdist = root / f"biopython-{VERSION}.tar.gz"
    if not sdist.exists():
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             f"biopython=={VERSION}", "-d", str(root)],
            capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not sdist.exists():
            pytest.skip(f"cannot download the biopython {VERSION} sdist from the package registry "
                        f"(needed for Biopython's test files): {proc.stderr.strip()[-300:]}")
    # Unpacked beside the cache and renamed into place: another test process that
    # shares the cache never sees half a folder.
    work = Path(tempfile.mkdtemp(dir=root))
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/Tests/" in m.name and m.isfile()]
        tar.extractall(work, members=members, filter="data")
    try:
        os.rename(work / f"biopython-{VERSION}", root / f"biopython-{VERSION}")
    except OSError:  # another process won the race: its copy is complete
        pass
    done.touch()
    return tests
