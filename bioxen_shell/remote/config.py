"""The user's config file: SSH hosts, XCP-ng pools and shell settings (``config.toml``).

Lives at ``paths.config_dir() / "config.toml"`` (``~/.config/bioxen/config.toml``)::

    [hosts.lab1]                  # vm.create{type="ssh", host="lab1"}
    hostname = "10.0.0.5"
    user = "bio"
    key = "~/.ssh/id_ed25519"

    [pools.lab]                   # vm.create{type="xcpng", pool="lab"}
    url = "https://xcp1.lab"
    password_command = "pass show xcp/root"

    [clusters.hpc]                # vm.create{type="slurm", cluster="hpc"}
    login = "hpc-login"           # a [hosts.NAME] or user@host; absent: Slurm's tools on this machine
    partition = "short"

    [shell]
    runtime = "lua54"

Every value is checked when the file is loaded; an error names the file, the key and what was
expected (``config.toml: hosts.lab1.port: expected an integer from 1 to 65535, got "ssh"``).
The file holds no secrets: passwords come from a file, a command, a variable or a prompt
(:mod:`bioxen_shell.remote.credentials`).  ``bioxen config check`` runs :func:`cli_main`.
"""
from __future__ import annotations

import dataclasses
import getpass
import math
import os
import re
import stat
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .. import paths
from ..files import InputFileError, did_you_mean, load_toml
from ..settings import SECTIONS, SHELL_KEYS
from . import credentials

__all__ = [
    "ConfigError",
    "Config",
    "HostConfig",
    "PoolConfig",
    "ClusterConfig",
    "config_path",
    "load_config",
    "parse_target",
    "resolve_host",
    "INTERPRETERS",
    "RUNTIME_BINARIES",
    "interpreter_candidates",
    "cli_main",
]

#: Interpreters tried on a remote host, best first.
INTERPRETERS = ("luajit", "lua5.4", "lua5.3", "lua5.2", "lua5.1", "lua")
#: profile.runtime → the interpreter binary that provides it on a host or a compute node.
RUNTIME_BINARIES = {"lua51": "lua5.1", "lua52": "lua5.2", "lua53": "lua5.3", "lua54": "lua5.4",
                    "lua55": "lua5.5", "luajit": "luajit"}


def interpreter_candidates(interpreter: str | None, runtime: str | None) -> list[str]:
    """What to look for on a host or a compute node, best first: the configured interpreter,
    the binary of the profile's runtime, or every one of :data:`INTERPRETERS`.  ValueError
    names an unknown runtime."""
    if interpreter:
        return [interpreter]
    if runtime:
        binary = RUNTIME_BINARIES.get(runtime)
        if binary is None:
            raise ValueError(f"runtime {runtime!r} is not one of {', '.join(RUNTIME_BINARIES)}")
        return [binary]
    return list(INTERPRETERS)


#: The longest timeout or interval the config takes (365 days): larger ones are typos, and
#: sockets and waits cannot take arbitrarily large numbers.
MAX_SECONDS = 365 * 24 * 3600


class ConfigError(ValueError):
    """A bad config value; ``str()`` names the file (or ``vm.create``), the key and what was expected."""

    def __init__(self, where: str, key: str, expected: str, got: Any = dataclasses.MISSING) -> None:
        self.where, self.key, self.expected = where, key, expected
        text = f"{where}: {key}: {expected}" if key else f"{where}: {expected}"
        if got is not dataclasses.MISSING:
            text += f", got {_show(got)}"
        super().__init__(text)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


# -- value checkers: each returns the value or raises ValueError(<what was expected>) ----------

def _string(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("expected a non-empty string")
    if "\0" in v:
        raise ValueError("expected a string without NUL characters (\\u0000)")
    return v


def _path(v: Any) -> str:
    return _string(v)  # "~" is expanded where the path is used (locally or on the host)


def _port(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
        raise ValueError("expected an integer from 1 to 65535")
    return v


def _finite_seconds(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v > MAX_SECONDS:
        return None
    return float(v)


def _seconds(v: Any) -> float:
    seconds = _finite_seconds(v)
    if seconds is None or not seconds > 0:
        raise ValueError(f"expected a number of seconds greater than 0, at most {MAX_SECONDS} (365 days)")
    return seconds


def _seconds_or_zero(v: Any) -> float:
    seconds = _finite_seconds(v)
    if seconds is None or seconds < 0:
        raise ValueError(f"expected a number of seconds from 0 (turns it off) to {MAX_SECONDS} (365 days)")
    return seconds


def _count(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000:
        raise ValueError("expected an integer from 1 to 1000")
    return v


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _interpreter(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_./+-]+", v):
        raise ValueError(f"expected an interpreter name or path (one of {', '.join(INTERPRETERS)}, or /path/to/lua)")
    return v


def _trust(v: Any) -> str:
    if v not in ("known-hosts", "tofu"):
        raise ValueError('expected "known-hosts" (verify against known_hosts) or "tofu" (trust and record the first key)')
    return v


def _host_keys(v: Any) -> str:
    if v not in ("inject", "tofu", "known-hosts"):
        raise ValueError('expected "inject" (bioxen generates the guest\'s host key), "tofu" or "known-hosts"')
    return v


def _inject(v: Any) -> str:
    if v not in ("xenstore", "cloud-init"):
        raise ValueError('expected "cloud-init" (a NoCloud config drive, for stock cloud images) or "xenstore" (a bioxen template)')
    return v


_SLURM_TIME = re.compile(r"(\d+-)?\d+(:\d+){0,2}|\d+-\d+|UNLIMITED|INFINITE", re.IGNORECASE)
_SLURM_MEM = re.compile(r"\d+[KMGT]?", re.IGNORECASE)
_SLURM_NAME = re.compile(r"[A-Za-z0-9_.,:+-]+")


def _slurm_time(v: Any) -> str:
    """Slurm's ``--time``: minutes (an integer), or "MM:SS", "HH:MM:SS", "D-HH[:MM[:SS]]"."""
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return str(v)
    if isinstance(v, str) and _SLURM_TIME.fullmatch(v):
        return v
    raise ValueError('expected minutes (an integer) or a Slurm time such as "30:00", "2:00:00" or "1-12"')


def _slurm_mem(v: Any) -> str:
    """Slurm's ``--mem``: megabytes (an integer) or a number with K, M, G or T."""
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return str(v)
    if isinstance(v, str) and _SLURM_MEM.fullmatch(v) and int(v.rstrip("KMGTkmgt")) > 0:
        return v.upper()
    raise ValueError('expected megabytes (an integer) or a size such as "500M" or "4G"')


def _slurm_name(v: Any) -> str:
    if not isinstance(v, str) or not _SLURM_NAME.fullmatch(v):
        raise ValueError("expected a Slurm name (letters, digits, '_', '.', ',', ':', '+', '-')")
    return v


def _cpus(v: Any) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4096:
        raise ValueError("expected a number of CPUs from 1 to 4096")
    return v


def _arguments(v: Any) -> tuple[str, ...]:
    if isinstance(v, dict) and not v:  # an empty Lua table arrives as an empty dict
        return ()
    if not isinstance(v, (list, tuple)) or not all(isinstance(a, str) and a and "\0" not in a for a in v):
        raise ValueError('expected an array of command-line arguments, e.g. ["--constraint=avx2"]')
    return tuple(v)


def _login(v: Any) -> str:
    if not isinstance(v, str) or not v or v.startswith("-") or any(c.isspace() for c in v):
        raise ValueError('expected a [hosts.NAME] of this file or "user@hostname:port"')
    return v


class _SecretValueError(ValueError):
    """A bad value that may hold a secret: its message never shows the value."""


def _url(v: Any) -> str:
    if not isinstance(v, str) or not re.match(r"^https?://[^/\s]+", v) or "\0" in v:
        raise ValueError('expected a URL such as "https://xcp1.lab"')
    problem = url_credentials_problem(v)
    if problem:
        raise _SecretValueError(problem)
    return v.rstrip("/")


CREDENTIAL_OPTIONS = "password_file, password_command or password_env (or be prompted)"


def url_credentials_problem(url: str) -> str | None:
    """Why a pool URL that carries credentials (``https://root:PW@host``) is refused, or
    None.  A URL is shown in messages, in ``v:info()`` and in bioxen's records, so a
    password in it would leak everywhere; the message never repeats it."""
    netloc = urllib.parse.urlsplit(url).netloc
    if "@" not in netloc:
        return None
    userinfo = netloc.rpartition("@")[0]
    if ":" in userinfo:
        return (f"the URL contains a password, which bioxen refuses (URLs appear in messages, "
                f"v:info() and its records): remove it, give the user as user = \"NAME\" and "
                f"the password through {CREDENTIAL_OPTIONS}")
    return 'the URL names a user; give it as user = "NAME" and use a URL without "NAME@"'


def http_problem(url: str, allow_http: bool) -> str | None:
    """Why an ``http://`` pool URL is refused (the password would cross the network in
    clear), or None for https:// or an explicit ``allow_http = true``."""
    if allow_http or not url.lower().startswith("http://"):
        return None
    return ("is http://, which would send the pool password in clear; use https:// (for "
            "XCP-ng's self-signed certificate set fingerprint or ca_bundle), or set "
            "allow_http = true to accept that")


def _fingerprint(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"(?i)sha256:[0-9a-f:]{64,95}", v):
        raise ValueError('expected "sha256:" and the certificate\'s SHA-256 digest in hex')
    return v


def _username(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.@-]*", v):
        raise ValueError("expected a user name")
    return v


def _hostname(v: Any) -> str:
    if not isinstance(v, str) or not v or any(c.isspace() for c in v) or "@" in v or "\0" in v:
        raise ValueError("expected a host name or IP address")
    return v


# -- the tables ----------------------------------------------------------------------------

@dataclass(frozen=True)
class HostConfig:
    """How to reach one SSH host (a ``[hosts.NAME]`` table, an ad hoc target, or a guest)."""

    name: str                          # config name, or the target as written
    hostname: str
    port: int = 22
    user: str = ""                     # "" = the local user name
    key: str | None = None             # private key file; else ssh-agent / default keys
    agent: bool = True                 # use ssh-agent keys
    interpreter: str | None = None     # else the best found (INTERPRETERS)
    known_hosts: str | None = None     # an extra known_hosts file (read only)
    trust: str = "known-hosts"         # or "tofu": trust and record an unknown key
    host_key_alias: str | None = None  # name the key is filed under (xcpng: the VM's uuid)
    password_file: str | None = None
    password_command: str | None = None
    password_env: str | None = None
    connect_timeout: float = 10.0
    banner_timeout: float = 10.0
    auth_timeout: float = 10.0
    keepalive: float = 15.0            # seconds between keepalives, 0 = off
    keepalive_count: int = 3           # unanswered keepalives in a row that end the connection
    ssh_config: str | None = None      # OpenSSH client config to honour; None = ~/.ssh/config, "none" = off
    proxy_jump: str | None = None      # "[user@]host[:port][,…]": reach the host through these
    identity_files: tuple[str, ...] = ()  # IdentityFile lines of the ssh config (when no key)
    cache_dir: str = "~/.cache/bioxen"  # on the host
    source: str = "vm.create"          # where these settings came from (for messages)

    @property
    def login(self) -> str:
        return self.user or getpass.getuser()

    @property
    def address(self) -> str:
        """``user@host:port`` for messages (no secrets)."""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{self.login}@{host}:{self.port}"

    def password_table(self) -> dict[str, str | None]:
        return {k: getattr(self, k) for k in credentials.SOURCE_KEYS}


HOST_KEYS: dict[str, Callable[[Any], Any]] = {
    "hostname": _hostname, "port": _port, "user": _username, "key": _path, "agent": _boolean,
    "interpreter": _interpreter, "known_hosts": _path, "trust": _trust,
    "host_key_alias": _string,
    "password_file": _path, "password_command": _string, "password_env": _string,
    "connect_timeout": _seconds, "banner_timeout": _seconds, "auth_timeout": _seconds,
    "keepalive": _seconds_or_zero, "keepalive_count": _count, "cache_dir": _path,
    "ssh_config": _path, "proxy_jump": _string,
}

#: The OpenSSH client config read when a host names none (``ssh_config``).
USER_SSH_CONFIG = "~/.ssh/config"


@dataclass(frozen=True)
class PoolConfig:
    """An XCP-ng pool (a ``[pools.NAME]`` table).  Used by ``bioxen_shell.remote.xcpng``."""

    name: str
    url: str
    user: str = "root"
    password_file: str | None = None
    password_command: str | None = None
    password_env: str | None = None
    verify_tls: bool = True
    allow_http: bool = False           # http:// sends the password in clear: opt in
    ca_bundle: str | None = None
    fingerprint: str | None = None
    template: str | None = None
    network: str | None = None
    sr: str | None = None
    ssh_user: str = "bioxen"
    ssh_key: str = "~/.ssh/id_ed25519"
    ssh_port: int = 22
    ip_timeout: float = 300.0
    known_hosts: str | None = None     # extra known_hosts file for the guests
    start_timeout: float = 600.0
    shutdown_timeout: float = 120.0
    host_keys: str = "inject"          # "inject" | "tofu" | "known-hosts"
    inject: str = "cloud-init"         # "cloud-init" (a NoCloud config drive) | "xenstore"
    source: str = ""

    def password_table(self) -> dict[str, str | None]:
        return {k: getattr(self, k) for k in credentials.SOURCE_KEYS}

    def password(self) -> credentials.Secret:
        """The pool password from its configured source, else a prompt."""
        secret = credentials.resolve_password(self.password_table(), f"pool {self.name} ({self.user}@{self.url})",
                                              prompt=True)
        assert secret is not None
        return secret


POOL_KEYS: dict[str, Callable[[Any], Any]] = {
    "url": _url, "user": _username,
    "password_file": _path, "password_command": _string, "password_env": _string,
    "verify_tls": _boolean, "allow_http": _boolean, "ca_bundle": _path,
    "fingerprint": _fingerprint, "template": _string, "network": _string, "sr": _string,
    "ssh_user": _username, "ssh_key": _path, "ssh_port": _port, "ip_timeout": _seconds,
    "known_hosts": _path, "start_timeout": _seconds, "shutdown_timeout": _seconds, "host_keys": _host_keys,
    "inject": _inject,
}

@dataclass(frozen=True)
class ClusterConfig:
    """A Slurm cluster (a ``[clusters.NAME]`` table, or ``vm.create{type="slurm"}`` options).
    Used by ``bioxen_shell.remote.slurm``."""

    name: str = "local"
    login: str | None = None           # SSH host that submits; None = Slurm's tools on this machine
    partition: str | None = None       # None = the cluster's default partition
    account: str | None = None
    qos: str | None = None
    cpus: int = 1                      # --cpus-per-task of each VM
    mem: str | None = None             # per VM; None = the profile's memory_limit plus a margin
    time: str | None = None            # --time; None = the partition's default
    queue_timeout: float = 600.0       # how long a VM's job may wait in the queue (0 = forever)
    start_timeout: float = 60.0        # from the grant to the agent's hello
    shared_dir: str = "~/.cache/bioxen"  # on a file system the compute nodes share
    interpreter: str | None = None     # on the compute nodes; else the best found
    slurm_conf: str | None = None      # SLURM_CONF for the Slurm commands (a second cluster)
    overcommit: bool = False           # more VMs than CPUs: salloc/srun --overcommit
    salloc_args: tuple[str, ...] = ()  # more arguments for salloc (e.g. "--constraint=avx2")
    srun_args: tuple[str, ...] = ()    # more arguments for srun
    source: str = "vm.create"


CLUSTER_KEYS: dict[str, Callable[[Any], Any]] = {
    "login": _login, "partition": _slurm_name, "account": _slurm_name, "qos": _slurm_name,
    "cpus": _cpus, "mem": _slurm_mem, "time": _slurm_time, "queue_timeout": _seconds_or_zero,
    "start_timeout": _seconds, "shared_dir": _path, "interpreter": _interpreter,
    "slurm_conf": _path, "salloc_args": _arguments, "srun_args": _arguments, "overcommit": _boolean,
}

# SHELL_KEYS (the [shell] table) comes from bioxen_shell.settings, which the shell reads at every start.


@dataclass
class Config:
    """The parsed config file (empty when there is none)."""

    path: Path
    exists: bool = False
    hosts: dict[str, HostConfig] = field(default_factory=dict)
    given: dict[str, frozenset[str]] = field(default_factory=dict)  # keys each [hosts.NAME] sets
    pools: dict[str, PoolConfig] = field(default_factory=dict)
    clusters: dict[str, ClusterConfig] = field(default_factory=dict)
    shell: dict[str, Any] = field(default_factory=dict)


def config_path() -> Path:
    return paths.config_dir() / "config.toml"


def _check_table(table: Any, spec: Mapping[str, Callable[[Any], Any]], where: str, prefix: str) -> dict[str, Any]:
    """Check every key of ``table`` against ``spec``; return the converted values."""
    if not isinstance(table, dict):
        raise ConfigError(where, prefix, "expected a table", table)
    out: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key == "password":
            raise ConfigError(where, dotted, "bioxen does not keep passwords in its config; "
                                             "use password_file, password_command or password_env")
        checker = spec.get(key)
        if checker is None:
            hint = did_you_mean(key, spec)
            raise ConfigError(where, dotted, f"unknown key{', ' + hint if hint else ''} "
                                             f"(expected one of: {', '.join(spec)})")
        try:
            out[key] = checker(value)
        except _SecretValueError as e:
            raise ConfigError(where, dotted, str(e)) from None
        except ValueError as e:
            raise ConfigError(where, dotted, str(e), value) from None
    sources = [k for k in credentials.SOURCE_KEYS if k in out]
    if len(sources) > 1:
        raise ConfigError(where, prefix, f"give only one password source, not {' and '.join(sources)}")
    return out


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and check the config file.  A missing file is an empty config; anything else
    wrong raises :class:`ConfigError` naming the file and the key."""
    p = Path(path) if path is not None else config_path()
    where = str(p)
    try:
        data = load_toml(p)
    except FileNotFoundError:
        return Config(path=p)
    except InputFileError as e:
        raise ConfigError(where, "", e.problem) from None
    cfg = Config(path=p, exists=True)
    for section, value in data.items():
        if section == "hosts":
            for name, table in _named_tables(value, where, "hosts"):
                values = _check_table(table, HOST_KEYS, where, f"hosts.{name}")
                if "hostname" not in values:
                    try:
                        values["hostname"] = _hostname(name)
                    except ValueError as e:
                        raise ConfigError(where, f"hosts.{name}", f"the table's name is the host name "
                                                                  f"when hostname is not given: {e}") from None
                cfg.given[name] = frozenset(k for k in values if k in table)
                cfg.hosts[name] = HostConfig(name=name, source=f"{where} [hosts.{name}]", **values)
        elif section == "pools":
            for name, table in _named_tables(value, where, "pools"):
                values = _check_table(table, POOL_KEYS, where, f"pools.{name}")
                if "url" not in values:
                    raise ConfigError(where, f"pools.{name}.url", 'missing; expected a URL such as "https://xcp1.lab"')
                problem = http_problem(values["url"], values.get("allow_http", False))
                if problem:
                    raise ConfigError(where, f"pools.{name}.url", problem)
                if values.get("verify_tls") is False and ("ca_bundle" in values or "fingerprint" in values):
                    raise ConfigError(where, f"pools.{name}.verify_tls",
                                      "is false, which contradicts ca_bundle/fingerprint; remove one")
                cfg.pools[name] = PoolConfig(name=name, source=f"{where} [pools.{name}]", **values)
        elif section == "clusters":
            for name, table in _named_tables(value, where, "clusters"):
                values = _check_table(table, CLUSTER_KEYS, where, f"clusters.{name}")
                cfg.clusters[name] = ClusterConfig(name=name, source=f"{where} [clusters.{name}]", **values)
        elif section == "shell":
            cfg.shell = _check_table(value, SHELL_KEYS, where, "shell")
        else:
            hint = did_you_mean(section, SECTIONS)
            raise ConfigError(where, section, f"unknown section{', ' + hint if hint else ''} "
                                              "(expected [hosts.NAME], [pools.NAME], [clusters.NAME] or [shell])")
    for name, cluster in cfg.clusters.items():
        if cluster.login is not None and cluster.login not in cfg.hosts:
            try:
                parse_target(cluster.login)
            except ConfigError:
                raise ConfigError(where, f"clusters.{name}.login", "expected a [hosts.NAME] of this file "
                                  'or "user@hostname:port"', cluster.login) from None
    return cfg


def _named_tables(value: Any, where: str, section: str):
    if not isinstance(value, dict):
        raise ConfigError(where, section, f"expected tables [{section}.NAME]", value)
    for name, table in value.items():
        if not isinstance(table, dict):
            raise ConfigError(where, f"{section}.{name}", f"expected a table [{section}.{name}]", table)
        yield name, table


# -- hosts as vm.create names them -----------------------------------------------------------

_TARGET = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:@\s\[\]]+))(?::(?P<port>\d+))?$")


def parse_target(target: str) -> dict[str, Any]:
    """``user@host:port`` (``[v6addr]:port`` for IPv6; user and port optional) → fields."""
    m = _TARGET.match(target) if isinstance(target, str) and "\0" not in target else None
    if not m:
        raise ConfigError("vm.create", "host", 'expected a configured host name or "user@hostname:port"', target)
    out: dict[str, Any] = {"hostname": m.group("v6") or m.group("host")}
    if m.group("user"):
        out["user"] = _username(m.group("user"))
    if m.group("port"):
        try:
            out["port"] = _port(int(m.group("port")))
        except ValueError as e:
            raise ConfigError("vm.create", "host", str(e), target) from None
    return out


def resolve_host(target: str, options: Mapping[str, Any] | None = None, config: Config | None = None) -> HostConfig:
    """The settings for ``vm.create{host=target, …}``.

    ``target`` is a ``[hosts.NAME]`` of the config, or an ad hoc ``user@hostname:port``.
    ``options`` (other ``vm.create`` keys, same names as the config keys) override the
    config's values; each is checked, and an unknown one names itself.  Then the OpenSSH
    client config (``~/.ssh/config``, or the ``ssh_config`` key) fills in what neither gave,
    as ``ssh`` does: a ``Host`` alias's HostName, User, Port, IdentityFile and ProxyJump (and
    ServerAliveInterval / ServerAliveCountMax as keepalive / keepalive_count).
    """
    opts = _check_table(dict(options or {}), HOST_KEYS, "vm.create", "")
    if config is None:
        config = load_config()
    if target in config.hosts:
        host = dataclasses.replace(config.hosts[target], **opts)
        given = config.given.get(target, frozenset()) | set(opts)
    else:
        fields = parse_target(target)
        fields.update(opts)
        host = HostConfig(name=target, source="vm.create", **fields)
        given = set(fields)
    return apply_ssh_config(host, given)


def _number(v: Any) -> Any:
    """An ssh config value that should be a number (they come as text), else the text as is."""
    return int(v) if isinstance(v, str) and v.isdigit() else v


def apply_ssh_config(host: HostConfig, given: set[str] | frozenset[str]) -> HostConfig:
    """``host`` with what its OpenSSH client config says about ``host.hostname`` (as typed:
    an alias), for every setting not in ``given`` (given ones win, as on ``ssh``'s command line)."""
    path_text = host.ssh_config or USER_SSH_CONFIG
    if path_text == "none":
        return host
    path = Path(path_text).expanduser()
    import paramiko  # only here: the config module is read at every shell start

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if host.ssh_config:  # named explicitly: it must be there
            raise ConfigError(host.source, "ssh_config", f"file {path} does not exist") from None
        return host
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), "", f"cannot read the SSH client config: {e}") from None
    try:
        found = paramiko.SSHConfig.from_text(text).lookup(host.hostname)
    except Exception as e:  # paramiko raises assorted errors for a malformed file
        raise ConfigError(str(path), f"Host {host.hostname}", f"cannot parse the SSH client config: {e}") from None
    where = f"{path} (Host {host.hostname})"
    changes: dict[str, Any] = {}
    if "proxycommand" in found and "proxy_jump" not in given:
        raise ConfigError(where, "ProxyCommand", "is not supported by bioxen; use ProxyJump "
                                                 "(or proxy_jump in bioxen's config)")
    for ssh_key, key, check in (("hostname", "hostname", _hostname), ("user", "user", _username),
                                ("port", "port", lambda v: _port(_number(v))),
                                ("proxyjump", "proxy_jump", _string),
                                ("serveraliveinterval", "keepalive", lambda v: _seconds_or_zero(_number(v))),
                                ("serveralivecountmax", "keepalive_count", lambda v: _count(_number(v)))):
        if ssh_key in found and (key not in given or key == "hostname"):  # the name typed is the alias
            try:
                value = check(found[ssh_key])
            except ValueError as e:
                raise ConfigError(where, ssh_key, str(e), found[ssh_key]) from None
            changes[key] = value
    if changes.get("proxy_jump", "").lower() == "none":
        changes["proxy_jump"] = None
    if "identityfile" in found and "key" not in given:
        changes["identity_files"] = tuple(found["identityfile"])
    return dataclasses.replace(host, **changes) if changes else host


# -- bioxen config check ---------------------------------------------------------------------

def _file_problems(cfg: Config) -> list[str]:
    """Files the config points at that would fail later (missing keys, open password files)."""
    problems: list[str] = []

    def need_file(what: str, value: str | None) -> Path | None:
        if not value:
            return None
        p = Path(value).expanduser()
        if not p.is_file():
            problems.append(f"{cfg.path}: {what}: file {p} does not exist")
            return None
        if not os.access(p, os.R_OK):
            problems.append(f"{cfg.path}: {what}: file {p} is not readable")
            return None
        return p

    def password_file(what: str, value: str | None) -> None:
        p = need_file(what, value)
        if p is not None and stat.S_IMODE(p.stat().st_mode) & 0o077:
            problems.append(f"{cfg.path}: {what}: password file {p} is accessible by group or others "
                            f"(mode {stat.S_IMODE(p.stat().st_mode):04o}); run chmod 600 {p}")

    for name, h in cfg.hosts.items():
        need_file(f"hosts.{name}.key", h.key)
        need_file(f"hosts.{name}.known_hosts", h.known_hosts)
        password_file(f"hosts.{name}.password_file", h.password_file)
    for name, pl in cfg.pools.items():
        need_file(f"pools.{name}.ca_bundle", pl.ca_bundle)
        password_file(f"pools.{name}.password_file", pl.password_file)
    return problems


def cli_main(argv: list[str]) -> int:
    """``bioxen config check [FILE]`` / ``bioxen config path``; ``argv`` is what follows ``config``."""
    usage = "usage: bioxen config check [FILE] | bioxen config path"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "path" and len(argv) == 1:
        print(config_path())
        return 0
    if argv[0] != "check" or len(argv) > 2:
        print(usage, file=sys.stderr)
        return 2
    path = Path(argv[1]) if len(argv) == 2 else config_path()
    try:
        cfg = load_config(path)
    except ConfigError as e:
        print(f"bioxen: config: {e}", file=sys.stderr)
        return 2
    if not cfg.exists:
        if len(argv) == 2:
            print(f"bioxen: config: {path}: no such file", file=sys.stderr)
            return 2
        print(f"{path}: no config file (nothing to check; see docs/config.md)")
        return 0
    problems = _file_problems(cfg)
    for p in problems:
        print(f"bioxen: config: {p}", file=sys.stderr)
    if problems:
        return 2
    for name, pl in cfg.pools.items():
        if pl.url.lower().startswith("http://"):  # accepted only with allow_http = true
            print(f"bioxen: config: warning: {path}: pools.{name}.url is http://: the pool "
                  f"password crosses the network in clear (allow_http = true)", file=sys.stderr)
    hosts = ", ".join(cfg.hosts) or "none"
    pools = ", ".join(cfg.pools) or "none"
    clusters = f"; clusters: {', '.join(cfg.clusters)}" if cfg.clusters else ""
    print(f"{path}: OK — hosts: {hosts}; pools: {pools}{clusters}" + ("; [shell] settings" if cfg.shell else ""))
    return 0
