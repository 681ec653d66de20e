"""Suite-wide test policy.

Tests that need a system part (``lua5.4``, ``luajit``, ``sshd``, a terminal…)
skip with a clear reason on a bare machine.  CI sets ``BIOXEN_REQUIRE_SYSTEM=1``:
then every skip becomes a failure, so a missing install step can never pass
as green.
"""
from __future__ import annotations

import os
import signal

import pytest

# Fixtures shared across test folders: the loopback sshd, the XAPI simulator and a Slurm cluster.
pytest_plugins = ["tests.remote.sshd_fixture", "tests.xapi_sim.fixtures", "tests.slurm_fixture"]

STRICT = os.environ.get("BIOXEN_REQUIRE_SYSTEM") == "1"

# A run started in the background by a script (`python -m pytest &`) inherits SIGINT ignored,
# and Python then leaves it so.  Tests that deliver Ctrl-C, to this process or to the
# commands they start (which inherit the disposition), would wait forever for its effect.
# They expect what a terminal gives: Python's default handler here, SIG_DFL in children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def manager():
    """A VM manager whose VMs must all be gone again (destroyed without an error) after the test."""
    from bioxen_shell.vm.manager import Manager
    m = Manager()
    yield m
    assert m.destroy_all() == []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under BIOXEN_REQUIRE_SYSTEM=1 (CI must provide this): {reason}"


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Keep every test away from the real user's config, state and cache."""
    base = tmp_path_factory.mktemp("bioxen-home")
    for var in ("BIOXEN_CONFIG_DIR", "BIOXEN_STATE_DIR", "BIOXEN_CACHE_DIR"):
        monkeypatch.setenv(var, str(base / var.lower()))
    # nor the user's ~/.ssh/config (a test that wants one writes this file)
    monkeypatch.setattr("bioxen_shell.remote.config.USER_SSH_CONFIG", str(base / "ssh_config"))
