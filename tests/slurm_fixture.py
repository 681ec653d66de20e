"""Pytest fixtures for a real single-node Slurm cluster (see tests/slurm_cluster.py).

Loaded as a plugin by ``tests/conftest.py``.

* ``slurm_cluster`` (session) — a running cluster, as a :class:`tests.slurm_cluster.Cluster`.
  If ``SLURM_CONF`` is set and ``sinfo`` answers with it (CI starts one with
  ``python -m tests.slurm_cluster start DIR``), that cluster is used and left running.
  Otherwise the fixture starts a private one in a temporary directory and stops it at the
  end of the session.  It skips with a clear reason when Slurm or munge is not installed
  or when not root (``BIOXEN_REQUIRE_SYSTEM=1`` turns those skips into failures).
* ``slurm_env`` — ``os.environ`` plus that cluster's ``SLURM_CONF``, for subprocesses.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.slurm_cluster import CLIENTS, DAEMONS, SBIN, Cluster, node_state, start_cluster
from tests.system import require_binary

__all__ = ["slurm_cluster", "slurm_env", "slurm_vm_options"]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    running = os.environ.get("SLURM_CONF")
    if running and node_state(Path(running)) is not None:
        yield Cluster(Path(running).parent)
        return
    for name in DAEMONS + CLIENTS:
        require_binary(name, also_in=SBIN)
    if os.geteuid() != 0:
        pytest.skip("a private Slurm cluster runs its daemons as root (CI runs as root; or set "
                    "SLURM_CONF to a running cluster: python -m tests.slurm_cluster start DIR)")
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"), foreground=True)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm_env(slurm_cluster) -> dict[str, str]:
    return {**os.environ, **slurm_cluster.env}


@pytest.fixture(scope="session")
def slurm_vm_options(slurm_cluster, tmp_path_factory):
    """``vm.create`` options for a VM on ``slurm_cluster`` (its SLURM_CONF, and the agent
    bundle in a shared_dir of the session rather than the real ``~/.cache/bioxen``)."""
    return {
        "type": "slurm",
        "slurm_conf": str(slurm_cluster.conf),
        "shared_dir": str(tmp_path_factory.mktemp("slurm-shared")),
    }
