"""Profiles: shipped ones load, bad ones are refused with file, key and what was expected."""
from __future__ import annotations

import pytest

from bioxen_shell import paths
from bioxen_shell.vm.profiles import (
    ProfileError,
    cli_main,
    list_profiles,
    load_profile,
    load_profile_file,
    size,
)


def test_shipped_profiles_exist_and_validate():
    names = set(list_profiles())
    assert {"minimal", "standard", "bioinformatics", "sandboxed"} <= names
    for name in names:
        p = load_profile(name)
        assert p.name == name


def test_sandboxed_profile_is_tight():
    p = load_profile("sandboxed")
    assert p.sandbox is True
    assert p.allow_ffi is False
    assert 0 < p.memory_limit <= 256 * 1024**2
    assert 0 < p.call_timeout <= 30
    assert 0 < p.cpu_limit <= 30


def test_bioinformatics_preloads_bio_modules():
    p = load_profile("bioinformatics")
    assert "bio.seq" in p.preload and all(m.startswith("bio.") for m in p.preload)


def _write(tmp_path, text, name="bad.toml"):
    f = tmp_path / name
    f.write_text(text)
    return f


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ("memroy_limit = '1GiB'\n", "memroy_limit", "unknown key"),
        ("memory_limit = 'lots'\n", "memory_limit", "expected a size"),
        ("call_timeout = 'soon'\n", "call_timeout", "expected a number of seconds"),
        ("call_timeout = -1\n", "call_timeout", "expected a number of seconds from 0 (no limit)"),
        ("sandbox = 'yes'\n", "sandbox", "expected true or false"),
        ("runtime = 'lua99'\n", "runtime", "expected one of lua51"),
        ("preload = 'bio.seq'\n", "preload", "expected an array of Lua module names"),
        ("preload = ['bio seq']\n", "preload[1]", "expected a Lua module name like 'bio.seq'"),
        ("preload = ['bio.end']\n", "preload[1]", "expected a Lua module name without Lua keywords"),
        ("[globals]\n'1x' = 2\n", "globals.1x", "Lua identifier"),
        ("sandbox = true\nallow_ffi = true\n", "allow_ffi", "expected false when sandbox = true"),
    ],
)
def test_bad_profile_names_file_key_and_expectation(tmp_path, text, key, expected):
    f = _write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile_file(f)
    msg = str(info.value)
    assert str(f) in msg and key in msg and expected in msg


def test_invalid_toml_names_the_file(tmp_path):
    f = _write(tmp_path, "memory_limit = \n")
    with pytest.raises(ProfileError, match=r"bad\.toml: not valid TOML"):
        load_profile_file(f)


def test_user_profile_overrides_shipped_and_paths_are_relative_to_file(tmp_path):
    user_dir = paths.config_dir() / "profiles"
    user_dir.mkdir(parents=True)
    (user_dir / "standard.toml").write_text("memory_limit = '1MiB'\npaths = ['mods']\n")
    p = load_profile("standard")
    assert p.memory_limit == 1024**2
    assert p.paths == (str((user_dir / "mods").resolve()),)
    assert list_profiles()["standard"] == user_dir / "standard.toml"


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError, match=r"'nope' not found.*known: .*standard"):
        load_profile("nope")


def test_sizes():
    assert size("256MiB") == 256 * 1024**2
    assert size("1GB") == 10**9
    assert size(0) == 0 and size(2.0) == 2  # Lua 5.1/LuaJIT numbers arrive as floats
    with pytest.raises(ValueError, match="expected a size like '256MiB'"):
        size(True)


def test_cli_list_show_check(capsys, tmp_path):
    assert cli_main([]) == 0
    out = capsys.readouterr().out
    assert "sandboxed" in out and "bioinformatics" in out and "64MiB" in out
    assert cli_main(["show", "sandboxed"]) == 0
    shown = capsys.readouterr().out
    assert "sandbox = true" in shown and "memory_limit = \"64MiB\"" in shown
    bad = _write(tmp_path, "oops = 1\n")
    assert cli_main(["check", str(bad)]) == 2
    assert "oops: unknown key" in capsys.readouterr().out
    assert cli_main(["show", "nope"]) == 2
    assert cli_main(["frobnicate"]) == 2


def test_the_kept_parses_of_the_shipped_profiles_are_current():
    """bioxen_shell/vm/shipped_profiles.py is what its generator makes of profiles/*.toml."""
    from pathlib import Path

    from tests.vm import gen_shipped_profiles

    committed = Path(gen_shipped_profiles.DEFAULT_OUT).read_text()
    assert committed == gen_shipped_profiles.generate(), "run: python tests/vm/gen_shipped_profiles.py"


def test_a_shipped_profile_is_read_as_its_file_now_is(tmp_path, monkeypatch):
    """The kept parse of a shipped profile is used only for its committed bytes: an edited
    file (an installation changed in place) is parsed again, and every field agrees with
    tomllib's reading of the file either way."""
    import shutil
    import tomllib

    from bioxen_shell.vm.profiles import profile_from_dict

    for f in paths.profiles_dir().glob("*.toml"):
        shutil.copy(f, tmp_path / f.name)
    std = tmp_path / "standard.toml"
    std.write_text(std.read_text().replace('memory_limit = "2GiB"', 'memory_limit = "3GiB"'))
    monkeypatch.setattr(paths, "profiles_dir", lambda: tmp_path)
    assert load_profile("standard").memory_limit == 3 * 1024**3
    for name in ("standard", "minimal", "sandboxed", "bioinformatics"):
        path = tmp_path / f"{name}.toml"
        assert load_profile(name) == profile_from_dict(name, tomllib.loads(path.read_text()), str(path))
