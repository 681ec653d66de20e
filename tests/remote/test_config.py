"""The config file: parsing, validation errors that name file/key/expected, `bioxen config check`."""
from __future__ import annotations

import os

import pytest

from bioxen_shell import paths
from bioxen_shell.remote.config import (
    ConfigError,
    cli_main,
    load_config,
    parse_target,
    resolve_host,
)

GOOD = """
[hosts.lab1]
hostname = "10.0.0.5"
port = 2222
user = "bio"
key = "~/.ssh/id_ed25519"
interpreter = "luajit"
trust = "tofu"
keepalive = 0
connect_timeout = 3.5

[hosts.plain]

[pools.lab]
url = "https://xcp1.lab/"
password_env = "XCP_PW"
fingerprint = "sha256:{fp}"
template = "debian-12-bioxen"
ip_timeout = 120

[clusters.hpc]
login = "lab1"
partition = "short"
cpus = 4
mem = "8g"
time = "2:00:00"
salloc_args = ["--constraint=avx2"]

[shell]
runtime = "lua54"
path = ["~/lua"]
""".replace("{fp}", "ab" * 32)


@pytest.fixture
def cfg_file():
    p = paths.config_dir() / "config.toml"
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def test_good_config_is_parsed(cfg_file):
    cfg_file.write_text(GOOD)
    cfg = load_config()
    h = cfg.hosts["lab1"]
    assert (h.hostname, h.port, h.user, h.interpreter, h.trust, h.keepalive) == ("10.0.0.5", 2222, "bio", "luajit", "tofu", 0)
    assert h.connect_timeout == 3.5 and h.banner_timeout == 10.0 and h.cache_dir == "~/.cache/bioxen"
    assert cfg.hosts["plain"].hostname == "plain"  # the name is the host name by default
    pool = cfg.pools["lab"]
    assert pool.url == "https://xcp1.lab" and pool.user == "root" and pool.verify_tls is True
    assert pool.ssh_user == "bioxen" and pool.ip_timeout == 120
    assert cfg.shell == {"runtime": "lua54", "path": ["~/lua"]}
    hpc = cfg.clusters["hpc"]
    assert (hpc.login, hpc.partition, hpc.cpus, hpc.mem, hpc.time) == ("lab1", "short", 4, "8G", "2:00:00")
    assert hpc.salloc_args == ("--constraint=avx2",) and hpc.queue_timeout == 600 and hpc.account is None


def test_missing_file_is_an_empty_config():
    cfg = load_config()
    assert not cfg.exists and cfg.hosts == {} and cfg.pools == {}


@pytest.mark.parametrize("text, key, expected", [
    ('[hosts.a]\nport = "ssh"\n', "hosts.a.port", 'expected an integer from 1 to 65535, got "ssh"'),
    ('[hosts.a]\nport = 0\n', "hosts.a.port", "expected an integer from 1 to 65535, got 0"),
    ('[hosts.a]\ntrust = "yes"\n', "hosts.a.trust", 'expected "known-hosts"'),
    ('[hosts.a]\nagent = "no"\n', "hosts.a.agent", 'expected true or false, got "no"'),
    ('[hosts.a]\nconnect_timeout = -1\n', "hosts.a.connect_timeout", "greater than 0"),
    ('[hosts.a]\nhostnme = "x"\n', "hosts.a.hostnme", "unknown key, did you mean 'hostname'? (expected one of: hostname, port"),
    ('[hosts.a]\npassword = "hunter2"\n', "hosts.a.password", "does not keep passwords in its config"),
    ('[hosts.a]\npassword_env = "A"\npassword_file = "/x"\n', "hosts.a", "only one password source"),
    ('[pools.p]\nuser = "root"\n', "pools.p.url", 'missing; expected a URL'),
    ('[pools.p]\nurl = "xcp1"\n', "pools.p.url", 'expected a URL such as "https://xcp1.lab", got "xcp1"'),
    ('[pools.p]\nurl = "https://x"\nfingerprint = "md5:00"\n', "pools.p.fingerprint",
     "expected a SHA-256 certificate fingerprint: 'sha256:' followed by 32 hex bytes"),
    ('[pools.p]\nurl = "https://x"\nverify_tls = false\nca_bundle = "/ca"\n', "pools.p.verify_tls", "contradicts"),
    ('[shell]\nruntime = "lua99"\n', "shell.runtime", "expected one of lua51"),
    ('[hosts]\na = 1\n', "hosts.a", "expected a table [hosts.a], got 1"),
    ('[servers.a]\n', "servers", "unknown section"),
    ('[clusters.c]\ncpus = 0\n', "clusters.c.cpus", "expected a number of CPUs from 1 to 4096, got 0"),
    ('[clusters.c]\ntime = "soon"\n', "clusters.c.time", 'expected minutes (an integer) or a Slurm time'),
    ('[clusters.c]\nmem = "lots"\n', "clusters.c.mem", 'expected megabytes (an integer) or a size'),
    ('[clusters.c]\npartiton = "x"\n', "clusters.c.partiton", "unknown key, did you mean 'partition'?"),
    ('[clusters.c]\nsalloc_args = "--x"\n', "clusters.c.salloc_args", "expected an array of command-line arguments"),
    ('[clusters.c]\nlogin = "no such host!"\n', "clusters.c.login", 'expected a [hosts.NAME] of this file'),
    ('[clusters.c]\nlogin = "a b"\n', "clusters.c.login", 'expected a [hosts.NAME]'),
    ('[clusters.c]\nqueue_timeout = -1\n', "clusters.c.queue_timeout", "from 0 (turns it off)"),
])
def test_bad_values_name_file_key_and_expectation(cfg_file, text, key, expected):
    cfg_file.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config()
    msg = str(err.value)
    assert msg.startswith(f"{cfg_file}: {key}: "), msg
    assert expected in msg
    assert "hunter2" not in msg


def test_invalid_toml_names_file_and_line(cfg_file):
    cfg_file.write_text('[hosts.a]\nport = 22\nuser = \n')
    with pytest.raises(ConfigError, match=rf"^{cfg_file}: not valid TOML: .*line 3"):
        load_config()


def test_unreadable_config_is_an_error_not_an_empty_config(cfg_file, monkeypatch):
    cfg_file.mkdir()  # a directory where the file should be
    with pytest.raises(ConfigError, match=rf"^{cfg_file}: is a directory"):
        load_config()
    cfg_file.rmdir()
    cfg_file.write_bytes(b"\xff\xfe[hosts]")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config()
    cfg_file.write_text("[hosts.a]\n")
    cfg_file.chmod(0)
    if os.geteuid() == 0:  # root reads any file whatever its mode: its read fails as a user's would
        import errno

        real_open = os.open

        def denied(path, flags, *args, **kwargs):
            if os.fspath(path) == os.fspath(cfg_file):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", denied)
    with pytest.raises(ConfigError, match=r"cannot read the file \(Permission denied\)"):
        load_config()


def test_targets_and_overrides(cfg_file):
    cfg_file.write_text(GOOD)
    assert parse_target("bio@example.org:2200") == {"hostname": "example.org", "user": "bio", "port": 2200}
    assert parse_target("[::1]:22") == {"hostname": "::1", "port": 22}
    assert parse_target("host") == {"hostname": "host"}
    h = resolve_host("lab1", {"port": 22, "interpreter": "lua5.4"})
    assert (h.hostname, h.port, h.interpreter, h.user) == ("10.0.0.5", 22, "lua5.4", "bio")
    assert "[hosts.lab1]" in h.source
    adhoc = resolve_host("me@10.1.1.1:2022")
    assert (adhoc.hostname, adhoc.port, adhoc.user, adhoc.source) == ("10.1.1.1", 2022, "me", "vm.create{…}")
    assert adhoc.address == "me@10.1.1.1:2022"
    with pytest.raises(ConfigError, match=r"^vm.create\{…\}: host: expected a configured host name"):
        resolve_host("a b@c")
    with pytest.raises(ConfigError, match=r"^vm.create\{…\}: keepalive: expected a number of seconds"):
        resolve_host("lab1", {"keepalive": "often"})


def test_config_check_ok(cfg_file, capsys):
    cfg_file.write_text(GOOD.replace('key = "~/.ssh/id_ed25519"\n', ""))
    assert cli_main(["check"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "lab1" in out and "lab" in out and "clusters: hpc" in out


def test_config_check_reports_errors_and_bad_files(cfg_file, tmp_path, capsys):
    cfg_file.write_text('[hosts.a]\nport = 70000\n')
    assert cli_main(["check"]) == 2
    err = capsys.readouterr().err
    assert f"{cfg_file}: hosts.a.port: expected an integer from 1 to 65535, got 70000" in err
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    pw.chmod(0o644)
    cfg_file.write_text(f'[pools.p]\nurl = "https://x"\npassword_file = "{pw}"\n'
                        f'[hosts.h]\nkey = "{tmp_path}/no-such-key"\n')
    assert cli_main(["check"]) == 2
    err = capsys.readouterr().err
    assert "pools.p.password_file" in err and "chmod 600" in err
    assert f"hosts.h.key: file {tmp_path}/no-such-key does not exist" in err


def test_config_check_without_file_and_usage(capsys, tmp_path):
    assert cli_main(["check"]) == 0
    assert "no config file" in capsys.readouterr().out
    assert cli_main(["check", str(tmp_path / "missing.toml")]) == 2
    assert cli_main(["frobnicate"]) == 2
    assert cli_main(["path"]) == 0
    assert capsys.readouterr().out.strip().endswith("config.toml")
