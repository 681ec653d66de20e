"""Pytest fixtures for the XAPI simulator (loaded as a plugin for the whole suite).

* ``xapi_pool`` (session) — a simulated pool shared by everything that only *uses* xcpng VMs
  (the conformance suite); never reset, so long-lived VMs of other fixtures stay intact.
* ``xcpng_vm_options`` (session) — ``vm.create`` options that provision a VM through
  ``xapi_pool`` and end on the loopback sshd (``sshd_server``): the simulated guest reports
  127.0.0.1 as its IP, and its boot hook installs the SSH key bioxen injected (xenstore
  ``vm-data/bioxen/authorized_keys``) into that sshd's ``authorized_keys`` — so the VM is only
  reachable if the injection worked.
* ``xapi_sim`` (function) — a second simulated pool, reset before each test, for tests that
  inject faults or assert on the object tables; ``xcpng_settings`` gives inline pool settings
  for it (guests = the shared sshd), ``xcpng_guest_settings`` settings whose guests each run
  their own sshd from the injected host key (tests/xapi_sim/guest_sshd.py).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.waiting import PATIENCE
from tests.xapi_sim import RunningPool, XapiSimulator, start_pool

SIM_USER = "root"
SIM_PASSWORD = "xapi-sim-password"
TEMPLATE = "Debian Bookworm 12 (bioxen)"
CLOUD_TEMPLATE = "Alpine 3.20 cloud (disk)"   # an imported stock cloud image
NETWORK = "Pool-wide network associated with eth0"
AUTHORIZED_KEYS_KEY = "vm-data/bioxen/authorized_keys"


def install_injected_key_hook(sim: XapiSimulator, authorized_keys: Path) -> None:
    """Make the simulated guests honour bioxen's key-injection convention.

    A real template runs a boot script that copies xenstore ``vm-data/bioxen/authorized_keys``
    into the guest user's ``~/.ssh/authorized_keys``; our "guest" is the loopback sshd, so the
    hook appends the key to its AuthorizedKeysFile.
    """
    def on_boot(sim: XapiSimulator, vm: str) -> None:
        key = sim.db.row("VM", vm)["xenstore_data"].get(AUTHORIZED_KEYS_KEY)
        if not key:
            return
        lines = authorized_keys.read_text().splitlines() if authorized_keys.exists() else []
        if key not in lines:
            with open(authorized_keys, "a") as f:
                f.write(key + "\n")

    sim.guest.on_boot.append(on_boot)


def _password_file(directory: Path) -> Path:
    path = directory / "xapi-password"
    path.write_text(SIM_PASSWORD + "\n")
    path.chmod(0o600)
    return path


def pool_settings(pool: RunningPool, password_file: Path, sshd_server, key: Path) -> dict:
    """Inline pool settings (what a ``[pools.NAME]`` section holds) for a simulated pool."""
    return {
        "url": pool.url, "user": SIM_USER, "password_file": str(password_file),
        "allow_http": True,  # the simulator's plain endpoint (tests that need TLS use .https)
        "template": TEMPLATE, "network": NETWORK,
        "inject": "xenstore",  # the simulator's bioxen template reads its keys from xenstore
        "ssh_user": sshd_server.user, "ssh_key": str(key), "ssh_port": sshd_server.port,
        "known_hosts": str(sshd_server.known_hosts), "ip_timeout": 60,
        "shutdown_timeout": PATIENCE,
        # every guest is the one shared sshd, whose host key the known_hosts file trusts
        "host_keys": "known-hosts",
    }


@pytest.fixture(scope="session")
def xapi_pool(tmp_path_factory) -> RunningPool:
    pool = start_pool(tmp_path_factory.mktemp("xapi-sim"))
    yield pool
    pool.stop()


@pytest.fixture(scope="session")
def _xcpng_client_key(tmp_path_factory) -> Path:
    from tests.remote.sshd_fixture import write_keypair
    key = tmp_path_factory.mktemp("xcpng-key") / "id_ed25519"
    write_keypair(key, "bioxen-xcpng-test")
    return key


@pytest.fixture(scope="session")
def xcpng_vm_options(xapi_pool, sshd_server, tmp_path_factory, _xcpng_client_key) -> dict:
    password_file = _password_file(tmp_path_factory.mktemp("xapi-secret"))
    install_injected_key_hook(xapi_pool.sim, sshd_server.directory / "authorized_keys")
    return {"type": "xcpng",
            "pool": pool_settings(xapi_pool, password_file, sshd_server, _xcpng_client_key),
            "memory": "512MiB", "vcpus": 1}


@pytest.fixture(scope="session")
def _xapi_test_pool(tmp_path_factory) -> RunningPool:
    pool = start_pool(tmp_path_factory.mktemp("xapi-sim-tests"))
    yield pool
    pool.stop()


@pytest.fixture
def xapi_test_pool(_xapi_test_pool) -> RunningPool:
    """The private simulated pool, reset to a pristine state for this test."""
    _xapi_test_pool.sim.reset()
    for server in _xapi_test_pool.servers():
        server.clear_faults()
    return _xapi_test_pool


@pytest.fixture
def xapi_sim(xapi_test_pool) -> XapiSimulator:
    return xapi_test_pool.sim


@pytest.fixture
def xcpng_settings(xapi_test_pool, sshd_server, tmp_path, _xcpng_client_key) -> dict:
    """Inline pool settings for the private pool; its guests accept bioxen's injected key."""
    install_injected_key_hook(xapi_test_pool.sim, sshd_server.directory / "authorized_keys")
    return pool_settings(xapi_test_pool, _password_file(tmp_path), sshd_server,
                         _xcpng_client_key)


@pytest.fixture
def xcpng_guest_settings(xapi_test_pool, tmp_path, _xcpng_client_key):
    """Inline pool settings for the private pool whose guests each run their own sshd,
    configured from bioxen's injected host key and authorized key (``GuestSSHDs``).  Uses
    the default ``host_keys = "inject"``: no known_hosts file is involved."""
    import getpass

    from tests.xapi_sim.guest_sshd import GuestSSHDs
    guests = GuestSSHDs(tmp_path / "guests").install(xapi_test_pool.sim)
    settings = {
        "url": xapi_test_pool.url, "user": SIM_USER, "allow_http": True,
        "password_file": str(_password_file(tmp_path)), "template": TEMPLATE,
        "inject": "xenstore", "network": NETWORK, "ssh_user": getpass.getuser(), "ssh_key": str(_xcpng_client_key),
        "ssh_port": guests.port, "ip_timeout": 60, "shutdown_timeout": PATIENCE,
    }
    yield settings, guests
    guests.stop_all()


@pytest.fixture
def xcpng_cloud_settings(xapi_test_pool, tmp_path, _xcpng_client_key):
    """Inline pool settings (``inject = "cloud-init"``) for the private pool whose guests are
    stock cloud images: each reads its NoCloud config drive and only then runs its own sshd
    with the host key and authorized key the drive gave it (tests/xapi_sim/config_drive.py);
    xenstore is ignored.  The template is the pool's imported cloud image (it has a disk)."""
    from tests.xapi_sim.config_drive import CloudInitGuestSSHDs
    guests = CloudInitGuestSSHDs(tmp_path / "cloud-guests").install(xapi_test_pool.sim)
    settings = {
        "url": xapi_test_pool.url, "user": SIM_USER,
        "password_file": str(_password_file(tmp_path)), "template": CLOUD_TEMPLATE,
        "network": NETWORK, "ssh_user": guests.account, "ssh_key": str(_xcpng_client_key),
        "ssh_port": guests.port, "ip_timeout": 60, "shutdown_timeout": PATIENCE,
        "inject": "cloud-init", "allow_http": True,
    }
    yield settings, guests
    guests.stop_all()
