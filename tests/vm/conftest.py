"""Fixtures for the VM tests: a manager whose VMs are destroyed after each test."""
from __future__ import annotations


import pytest

from bioxen_shell.vm.manager import Manager
from bioxen_shell.vm.profiles import load_profile


@pytest.fixture(scope="module")
def module_manager():
    m = Manager()
    yield m
    assert m.destroy_all() == []


@pytest.fixture(scope="module")
def vm(module_manager):
    """One standard local VM shared by a module's tests (state may leak between them)."""
    return module_manager.create("shared")


def profile(base: str = "standard", **changes):
    """A shipped profile with some fields changed (limits for fault tests)."""
    return load_profile(base).replace(**changes)
