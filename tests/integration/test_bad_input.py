"""Bad input through the real ``bioxen`` command: endless or huge files, NULs, absurd limits,
deep nesting, bad encodings, directories where files belong, typos.  Each is refused with one
message naming the file and the key, exit status 2, no traceback (or, for a typo in the
config at start-up, one warning and the shell goes on)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIOXEN = [sys.executable, "-m", "bioxen_shell"]


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    for var in ("CONFIG", "STATE", "CACHE"):
        d = tmp_path / var.lower()
        d.mkdir()
        e[f"BIOXEN_{var}_DIR"] = str(d)
    e.pop("BIOXEN_PATH", None)
    return e


@pytest.fixture
def config(env):
    return Path(env["BIOXEN_CONFIG_DIR"]) / "config.toml"


def bioxen(env, *args, stdin=None, cwd=None):
    """Run the command; ``stdin``: bytes to send, an open file, or None (/dev/null)."""
    feed = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin or subprocess.DEVNULL}
    proc = subprocess.run([*BIOXEN, *args], capture_output=True, env=env, cwd=cwd or REPO, timeout=120, **feed)
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    assert "Traceback" not in out + err, err
    return proc.returncode, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------- size caps

def test_run_dev_zero_stops_at_the_script_cap(env):
    code, out, err = bioxen(env, "run", "/dev/zero")
    assert code == 2 and out == ""
    assert one_line(err) == "bioxen: /dev/zero: larger than 64 MiB, the limit for a Lua script"


def test_a_script_over_the_cap_is_refused_before_it_runs(env, tmp_path):
    script = tmp_path / "big.lua"
    with open(script, "wb") as f:
        f.write(b"print('ran')\n")
        f.truncate(64 * 1024 * 1024 + 1)  # sparse: no disk used
    code, out, err = bioxen(env, "run", str(script))
    assert (code, out) == (2, "")
    assert one_line(err) == f"bioxen: {script}: larger than 64 MiB, the limit for a Lua script"
    # at the cap exactly it runs (the rest is NULs after a comment)
    with open(script, "wb") as f:
        f.write(b"print('ran') --[[")
        f.truncate(64 * 1024 * 1024 - 2)
        f.seek(0, 2)
        f.write(b"]]")
    assert bioxen(env, "run", str(script))[:2] == (0, "ran\n")


@pytest.mark.parametrize("args", [["-"], [], ["-i"]], ids=["dash", "pipe", "plain-repl"])
def test_endless_stdin_stops_at_the_script_cap(env, args):
    with open("/dev/zero", "rb") as zero:
        code, out, err = bioxen(env, *args, stdin=zero)
    assert code == 2 and out == ""
    assert one_line(err).startswith("bioxen: stdin: ") and "larger than 64 MiB, the limit for a Lua script" in err


def test_run_dev_zero_in_the_repl_is_an_error_and_the_repl_goes_on(env):
    code, out, err = bioxen(env, "-i", stdin=b":run /dev/zero\n1 + 1\n")
    assert (code, out) == (0, "2\n")
    assert one_line(err) == "/dev/zero: larger than 64 MiB, the limit for a Lua script"


def test_a_script_read_through_a_pipe_is_not_lost(env):
    # bioxen peeks at a script to start VMs early; a pipe cannot be read twice.
    proc = subprocess.run(["bash", "-c", f"{' '.join(BIOXEN)} run <(echo 'print(vm ~= nil, 40 + 2)')"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "true\t42\n"), proc.stderr


def test_profile_dev_zero_in_vm_create(env, tmp_path):
    script = tmp_path / "p.lua"
    script.write_text('print(select(2, pcall(vm.create, {profile = "/dev/zero"})))\n')
    code, out, err = bioxen(env, "run", str(script))
    assert code == 0, err
    assert out.strip().endswith("/dev/zero: larger than 1 MiB, the limit for a TOML file (profiles, config.toml)")


def test_profiles_check_dev_zero_and_config_dev_zero(env, config):
    code, out, err = bioxen(env, "profiles", "check", "/dev/zero")
    assert code == 2
    assert out == "INVALID  /dev/zero: larger than 1 MiB, the limit for a TOML file (profiles, config.toml)\n"
    config.symlink_to("/dev/zero")
    code, out, err = bioxen(env, "-e", "print(1)")
    assert (code, out) == (2, "")
    assert one_line(err) == f"bioxen: {config}: larger than 1 MiB, the limit for a TOML file (profiles, config.toml)"


# ------------------------------------------------------------- profile values

BAD_PROFILES = [
    ('[env]\nLANG = "C\\u0000evil"\n', "env.LANG: an environment variable cannot hold a NUL character (\\u0000) in its value"),
    ('[env]\n"A\\u0000B" = "x"\n', "env.A\\u0000B: an environment variable cannot hold a NUL character (\\u0000) "
                                   "in its name"),
    ("memory_limit = 99999999999999999999999\n", "memory_limit: expected at most 64TiB, the largest limit bioxen takes (a 64-bit Linux process can "
                                             "address 128TiB), got 99999999999999999999999"),
    ('memory_limit = "65TiB"\n', "memory_limit: expected at most 64TiB"),
    ('memory_limit = "' + "9" * 400 + 'TiB"\n', "memory_limit: expected a size of at most 24 digits (this is too large), got \"" + "9" * 400 + "TiB\""),
    ("call_timeout = 1e300\n", "call_timeout: expected a number of seconds from 0 (no limit), at most "
                               "31536000 (365 days), got 1e+300"),
    ("cpu_limit = 31536001\n", "cpu_limit: expected a number of seconds"),
    ("cpu_limit = nan\n", "cpu_limit: expected a number of seconds"),
    ('paths = ["lib\\u0000"]\n', "paths[1]: expected a directory path without NUL characters (\\u0000) (in an array of directory paths), "
                                   "got \"lib\\u0000\""),
    ("[globals]\nBIG = 9223372036854775808\n", "globals.BIG: expected an integer from -2^63 to 2^63-1, got 9223372036854775808"),
    ("[globals]\nDEEP = " + "[" * 70 + "]" * 70 + "\n", "globals.DEEP: expected values nested at most 64 levels deep"),
    ("a = " + "[" * 3000 + "]" * 3000 + "\n", "not valid TOML: arrays or tables nested too deeply "
                                              "(more than 100 levels at line 1)"),
    ("description = 'ok'\nmemroy_limit = '1GiB'\n", "memroy_limit: unknown key, did you mean 'memory_limit'?"),
    ("memory_limit = \n", "not valid TOML: Invalid value (at line 1, column 16)"),
]


@pytest.mark.parametrize("text, message", BAD_PROFILES)
def test_profiles_check_refuses_bad_values(env, tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    code, out, err = bioxen(env, "profiles", "check", str(f))
    assert code == 2, out
    assert out.startswith(f"INVALID  {f}: ") and message in out, out


def test_a_nul_in_env_is_refused_by_vm_create_before_any_worker_starts(env, tmp_path):
    f = tmp_path / "nul.toml"
    f.write_text('[env]\nLANG = "C\\u0000evil"\n')
    script = tmp_path / "p.lua"
    script.write_text(f'print(select(2, pcall(vm.create, {{profile = "{f}"}})))\nprint(#vm.list())\n')
    code, out, err = bioxen(env, "run", str(script))
    assert code == 0, err
    message, count = out.splitlines()
    assert f"{f}: env.LANG: an environment variable cannot hold a NUL character" in message
    assert count == "0"


def test_the_largest_limits_are_taken(env, tmp_path):
    f = tmp_path / "big.toml"
    f.write_text('memory_limit = "64TiB"\ncall_timeout = 31536000\ncpu_limit = 31536000\n')
    code, out, err = bioxen(env, "profiles", "check", str(f))
    assert (code, out) == (0, f"ok       big  ({f})\n")


def test_non_utf8_is_reported_the_same_for_a_profile_and_the_config(env, tmp_path, config):
    data = b'description = "ok"\nruntime = "lua54\xff"\n'
    f = tmp_path / "latin.toml"
    f.write_bytes(data)
    code, out, _ = bioxen(env, "profiles", "check", str(f))
    problem = "not UTF-8 text: byte 0xff at line 2, column 17 (save the file as UTF-8)"
    assert (code, out) == (2, f"INVALID  {f}: {problem}\n")
    config.write_bytes(data.replace(b"description", b"[shell]\n#"))
    code, out, err = bioxen(env, "-e", "print(1)")
    assert (code, out) == (2, "")
    assert one_line(err) == f"bioxen: {config}: not UTF-8 text: byte 0xff at line 3, column 17 (save the file as UTF-8)"
    code, out, err = bioxen(env, "config", "check")
    assert code == 2 and one_line(err) == f"bioxen: config: {config}: not UTF-8 text: byte 0xff at line 3, " \
                                          f"column 17 (save the file as UTF-8)"


def test_a_directory_named_like_a_profile(env):
    profiles = Path(env["BIOXEN_CONFIG_DIR"]) / "profiles"
    (profiles / "broken.toml").mkdir(parents=True)
    code, out, err = bioxen(env, "profiles")
    assert code == 2, err
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert f"INVALID: {profiles / 'broken.toml'}: is a directory, expected a TOML file" in rows["broken"]
    assert "64MiB" in rows["sandboxed"]  # the others are still listed
    code, out, err = bioxen(env, "profiles", "show", "broken")
    assert code == 2
    assert one_line(err) == (f"bioxen profiles: {profiles / 'broken.toml'}: is a directory, "
                             f"expected a TOML file (profiles, config.toml)")


# --------------------------------------------------------------- config.toml

def test_config_that_is_a_directory_or_too_deep(env, config):
    config.mkdir()
    code, out, err = bioxen(env, "-e", "print(1)")
    assert (code, out) == (2, "")
    assert one_line(err) == f"bioxen: {config}: is a directory, expected a TOML file (profiles, config.toml)"
    config.rmdir()
    config.write_text("[shell]\nruntime = 'lua54'\n[hosts.x]\nhostname = " + "[" * 3000 + "]" * 3000 + "\n")
    code, out, err = bioxen(env, "-e", "print(1)")
    assert code == 2
    assert one_line(err) == (f"bioxen: {config}: not valid TOML: arrays or tables nested too deeply "
                             f"(more than 100 levels at line 4)")


def test_config_typos_warn_once_at_start_with_the_close_match(env, config):
    config.write_text('[shell]\nruntme = "lua52"\npath = []\n[shel]\nruntime = "lua53"\n')
    code, out, err = bioxen(env, "-i", stdin=b"print(_VERSION)\n:reset\n1 + 1\n")
    assert (code, out) == (0, "Lua 5.1\nfresh Lua state (luajit)\n2\n")  # the default runtime, LuaJIT
    assert err.splitlines() == [
        f"bioxen: warning: {config}: [shel]: unknown section, ignored; did you mean 'shell'?",
        f"bioxen: warning: {config}: shell.runtme: unknown key, ignored, did you mean 'runtime'? "
        f"(expected one of: runtime, path, style)",
    ]
    code, out, err = bioxen(env, "config", "check")
    assert code == 2
    assert one_line(err) == (f"bioxen: config: {config}: shell.runtme: unknown key, did you mean 'runtime'? "
                             f"(expected one of: runtime, path, style)")


def test_config_bad_shell_value_exits_2(env, config):
    config.write_text("[shell]\nruntime = 5\n")
    code, out, err = bioxen(env, "-e", "print(1)")
    assert (code, out) == (2, "")
    assert one_line(err) == (f"bioxen: {config}: shell.runtime: expected one of lua51, lua52, lua53, lua54, "
                             f"lua55, luajit, or an alias such as 5.4, 54, lua5.4, lua-5.4 (for every 5.x), "
                             f"luajit2.1, luajit21 or jit, got 5")


@pytest.mark.parametrize("text, message", [
    ("[hosts.a]\nconnect_timeout = 1e300\n", "hosts.a.connect_timeout: expected a number of seconds greater than 0, "
                                             "at most 31536000 (365 days), got 1e+300"),
    ("[hosts.a]\nkeepalive = inf\n", "hosts.a.keepalive: expected a number of seconds from 0"),
    ('[hosts.a]\nkey = "id\\u0000rsa"\n', "hosts.a.key: expected a string without NUL characters"),
    ('[hosts."a\\u0000b"]\n', "the table's name is the host name when hostname is not given: "
                              "expected a host name or IP address"),
    ("[hosts.a]\nprot = 22\n", "hosts.a.prot: unknown key, did you mean 'port'?"),
    ("[pool.a]\n", "pool: unknown section, did you mean 'pools'?"),
])
def test_config_check_refuses_bad_values(env, config, text, message):
    config.write_text(text)
    code, out, err = bioxen(env, "config", "check")
    assert code == 2
    assert one_line(err).startswith(f"bioxen: config: {config}: ") and message in err, err
