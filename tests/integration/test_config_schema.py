"""One config schema: every entry point that takes settings — ``bioxen config check``, the
shell's start (``[shell]``), a profile, and the option tables of ``vm.create{…}`` (inline
``pool = {…}``, ``runtime``, SSH options) — refuses a bad value with the same message,
``WHERE: KEY: EXPECTED, got VALUE``, through the real ``bioxen`` command."""
from __future__ import annotations

import pytest

from bioxen_shell import schema
from bioxen_shell.runtimes import accepted_names
from tests.integration.test_bad_input import bioxen, config, env  # noqa: F401 - fixtures

TRUE_OR_FALSE = "expected true or false"
RUNTIME = accepted_names()


def _pcall(code: str) -> list[str]:
    return ["-e", f"print(select(2, pcall(vm.create, {code})))"]


def _config_check(config_file, tmp_path):
    config_file.write_text('[pools.lab]\nurl = "https://x"\nverify_tls = "yes"\n')
    return ["config", "check"], "err", f"bioxen: config: {config_file}: "


def _config_check_shell(config_file, tmp_path):
    config_file.write_text('[shell]\nruntime = "lua9"\n')
    return ["config", "check"], "err", f"bioxen: config: {config_file}: "


def _shell_start(config_file, tmp_path):
    config_file.write_text('[shell]\nruntime = "lua9"\n')
    return ["-e", "print(1)"], "err", f"bioxen: {config_file}: "


def _profile_check(config_file, tmp_path):
    (tmp_path / "p.toml").write_text('runtime = "lua9"\n')
    return ["profiles", "check", str(tmp_path / "p.toml")], "out", f"INVALID  {tmp_path / 'p.toml'}: "


def _profile_in_vm_create(config_file, tmp_path):
    (tmp_path / "p.toml").write_text('sandbox = "yes"\n')
    return _pcall(f'{{profile = "{tmp_path / "p.toml"}"}}'), "out", f"vm.create: {tmp_path / 'p.toml'}: "


def _inline_pool(config_file, tmp_path):
    return _pcall('{type = "xcpng", pool = {url = "https://x", verify_tls = "yes"}}'), "out", ""


def _vm_create_runtime(config_file, tmp_path):
    return _pcall('{runtime = "lua9"}'), "out", ""


def _vm_create_ssh_option(config_file, tmp_path):
    return _pcall('{type = "ssh", host = "me@example.invalid", agent = "yes"}'), "out", ""


@pytest.mark.parametrize("entry, where, key, expected, got", [
    (_config_check, "", "pools.lab.verify_tls", TRUE_OR_FALSE, '"yes"'),
    (_config_check_shell, "", "shell.runtime", RUNTIME, '"lua9"'),
    (_shell_start, "", "shell.runtime", RUNTIME, '"lua9"'),
    (_profile_check, "", "runtime", RUNTIME, '"lua9"'),
    (_profile_in_vm_create, "", "sandbox", TRUE_OR_FALSE, '"yes"'),
    (_inline_pool, schema.VM_CREATE + ": ", "pool.verify_tls", TRUE_OR_FALSE, '"yes"'),
    (_vm_create_runtime, schema.VM_CREATE + ": ", "runtime", RUNTIME, '"lua9"'),
    (_vm_create_ssh_option, schema.VM_CREATE + ": ", "agent", TRUE_OR_FALSE, '"yes"'),
], ids=lambda v: v.__name__.strip("_") if callable(v) else None)
def test_every_entry_point_refuses_a_bad_value_in_the_one_format(env, config, tmp_path, entry, where, key,  # noqa: F811
                                                                  expected, got):
    args, stream, prefix = entry(config, tmp_path)
    code, out, err = bioxen(env, *args)
    text = out if stream == "out" else err
    assert text.splitlines() == [f"{prefix}{where}{key}: {expected}, got {got}"], (out, err)
    assert code == (0 if args[0] == "-e" and "pcall" in args[1] else 2)
