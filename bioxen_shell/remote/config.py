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
import os
import re
import stat
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .. import paths, schema
from ..files import InputFileError, did_you_mean, load_toml
from ..runtimes import BINARIES, INTERPRETERS, canonical_name
from ..schema import VM_CREATE, SchemaError
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
    "interpreter_candidates",
    "normalise_fingerprint",
    "pool_values",
    "check_settings",
    "backend_error",
    "upload_method",
    "cli_main",
]

def interpreter_candidates(interpreter: str | None, runtime: str | None) -> list[str]:
    """What to look for on a host or a compute node, best first: the configured interpreter,
    the binary of the profile's runtime (any name or alias of :mod:`bioxen_shell.runtimes`), or
    every one of :data:`INTERPRETERS`.  :class:`UnknownRuntime` (a ValueError) names an unknown
    runtime and the accepted names."""
    if interpreter:
        return [interpreter]
    if runtime:
        return [BINARIES[canonical_name(runtime)]]
    return list(INTERPRETERS)


class ConfigError(SchemaError):
    """A bad config value; ``str()`` names the file (or ``vm.create{…}``), the key and what was
    expected (the one format of :mod:`bioxen_shell.schema`)."""


def backend_error(kind: str, error: ConfigError) -> Exception:
    """The BackendError a backend raises for ``error``: a bad ``vm.create{…}`` option says where
    it is itself; a config file's gets the backend's name in front (``ssh: FILE: KEY: …``)."""
    from ..vm.transport import BackendError

    return BackendError(str(error) if error.where == VM_CREATE else f"{kind}: {error}")


# -- value checkers: each returns the value or raises ValueError(<what was expected>) ----------

_string = schema.string
_path = schema.string  # "~" is expanded where the path is used (locally or on the host)
_port = schema.integer(1, 65535)
_seconds = schema.seconds()
_seconds_or_zero = schema.seconds(zero="turns it off")
_count = schema.integer(1, 1000)
_boolean = schema.boolean


def _interpreter(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_./+-]+", v):
        raise ValueError(f"expected an interpreter name or path (one of {', '.join(INTERPRETERS)}, or /path/to/lua)")
    return v


_trust = schema.one_of({"known-hosts": "verify against known_hosts",
                         "tofu": "trust and record the first key"})
_host_keys = schema.one_of({"inject": "bioxen generates the guest's host key", "tofu": "", "known-hosts": ""})
_inject = schema.one_of({"cloud-init": "a NoCloud config drive, for stock cloud images",
                         "xenstore": "a bioxen template"})


#: How the agent bundle and data files reach a host: vm.create{upload=…} of SSH and XCP-ng VMs.
UPLOAD_METHOD = schema.one_of({"auto": "SFTP, else a tar stream over exec", "sftp": "", "exec": ""})


def upload_method(options: dict[str, Any]) -> str:
    """``options.pop("upload")``, checked (:data:`UPLOAD_METHOD`); "auto" when not given."""
    return schema.check_value(UPLOAD_METHOD, options.pop("upload", "auto"), VM_CREATE, "upload", ConfigError)


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


_cpus = schema.integer(1, 4096, "a number of CPUs")
_arguments = schema.string_list('command-line arguments, e.g. ["--constraint=avx2"]', "an argument",
                                item=schema.string)


def _login(v: Any) -> str:
    if not isinstance(v, str) or not v or v.startswith("-") or any(c.isspace() for c in v):
        raise ValueError('expected a [hosts.NAME] of this file or "user@hostname:port"')
    return v


def _url(v: Any) -> str:
    if not isinstance(v, str) or not re.match(r"^https?://[^/\s]+", v) or "\0" in v:
        raise ValueError('expected a URL such as "https://xcp1.lab"')
    problem = url_credentials_problem(v)
    if problem:
        raise schema.Secret(problem)
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


def normalise_fingerprint(text: str) -> str:
    """``"sha256:AB:CD…"``, ``"AB:CD…"`` or ``"abcd…"`` → 64 lowercase hex digits.

    Raises ``ValueError`` saying what was expected (the caller adds file and key)."""
    value = text.strip() if isinstance(text, str) else ""
    for prefix in ("sha256:", "sha-256:"):
        if value.lower().startswith(prefix):
            value = value[len(prefix):]
    value = value.replace(":", "").replace(" ", "").lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError("expected a SHA-256 certificate fingerprint: 'sha256:' followed by "
                         "32 hex bytes (e.g. from `openssl x509 -noout -fingerprint -sha256`)")
    return value


def _fingerprint(v: Any) -> str:
    normalise_fingerprint(v)
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
    source: str = VM_CREATE          # where these settings came from (for messages)

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
    source: str = VM_CREATE


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


_REFUSED = {"password": f"bioxen does not keep passwords in its config; use {CREDENTIAL_OPTIONS}"}


def check_settings(table: Any, spec: Mapping[str, Callable[[Any], Any]], where: str, prefix: str) -> dict[str, Any]:
    """Check every key of ``table`` against ``spec`` (the one schema); the converted values."""
    out = schema.check_table(table, dict(spec), where, prefix, error=ConfigError, refused=_REFUSED)
    sources = [k for k in credentials.SOURCE_KEYS if k in out]
    if len(sources) > 1:
        raise ConfigError(where, prefix, f"give only one password source, not {' and '.join(sources)}")
    return out


def pool_values(table: Any, where: str, prefix: str = "") -> dict[str, Any]:
    """The checked values of one pool's table: a ``[pools.NAME]`` of the file, or the inline
    ``vm.create{pool = {…}}`` (``where`` = :data:`schema.VM_CREATE`, ``prefix`` = ``pool``)."""
    values = check_settings(table, POOL_KEYS, where, prefix)
    key = f"{prefix}." if prefix else ""
    if "url" not in values:
        raise ConfigError(where, f"{key}url", 'missing; expected a URL such as "https://xcp1.lab"')
    problem = http_problem(values["url"], values.get("allow_http", False))
    if problem:
        raise ConfigError(where, f"{key}url", problem)
    if values.get("verify_tls") is False and ("ca_bundle" in values or "fingerprint" in values):
        raise ConfigError(where, f"{key}verify_tls", "is false, which contradicts ca_bundle/fingerprint; remove one")
    return values


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
                values = check_settings(table, HOST_KEYS, where, f"hosts.{schema.key_text(name)}")
                if "hostname" not in values:
                    try:
                        values["hostname"] = _hostname(name)
                    except ValueError as e:
                        raise ConfigError(where, f"hosts.{schema.key_text(name)}", f"the table's name is the host name "
                                                                  f"when hostname is not given: {e}") from None
                cfg.given[name] = frozenset(k for k in values if k in table)
                cfg.hosts[name] = HostConfig(name=name, source=f"{where} [hosts.{name}]", **values)
        elif section == "pools":
            for name, table in _named_tables(value, where, "pools"):
                values = pool_values(table, where, f"pools.{schema.key_text(name)}")
                cfg.pools[name] = PoolConfig(name=name, source=f"{where} [pools.{name}]", **values)
        elif section == "clusters":
            for name, table in _named_tables(value, where, "clusters"):
                values = check_settings(table, CLUSTER_KEYS, where, f"clusters.{schema.key_text(name)}")
                cfg.clusters[name] = ClusterConfig(name=name, source=f"{where} [clusters.{name}]", **values)
        elif section == "shell":
            cfg.shell = check_settings(value, SHELL_KEYS, where, "shell")
        else:
            hint = did_you_mean(section, SECTIONS)
            raise ConfigError(where, section, f"unknown section{', ' + hint if hint else ''} "
                                              "(expected [hosts.NAME], [pools.NAME], [clusters.NAME] or [shell])")
    for name, cluster in cfg.clusters.items():
        if cluster.login is not None and cluster.login not in cfg.hosts:
            try:
                parse_target(cluster.login)
            except ConfigError:
                raise ConfigError(where, f"clusters.{schema.key_text(name)}.login", "expected a [hosts.NAME] of this file "
                                  'or "user@hostname:port"', cluster.login) from None
    return cfg


def _named_tables(value: Any, where: str, section: str):
    if not isinstance(value, dict):
        raise ConfigError(where, section, f"expected tables [{section}.NAME]", value)
    for name, table in value.items():
        if not isinstance(table, dict):
            raise ConfigError(where, f"{section}.{schema.key_text(name)}", f"expected a table [{section}.{schema.key_text(name)}]", table)
        yield name, table


# -- hosts as vm.create names them -----------------------------------------------------------

_TARGET = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:@\s\[\]]+))(?::(?P<port>\d+))?$")


def parse_target(target: str) -> dict[str, Any]:
    """``user@host:port`` (``[v6addr]:port`` for IPv6; user and port optional) → fields."""
    m = _TARGET.match(target) if isinstance(target, str) and "\0" not in target else None
    if not m:
        raise ConfigError(schema.VM_CREATE, "host", 'expected a configured host name or "user@hostname:port"', target)
    out: dict[str, Any] = {"hostname": m.group("v6") or m.group("host")}
    if m.group("user"):
        out["user"] = _username(m.group("user"))
    if m.group("port"):
        try:
            out["port"] = _port(int(m.group("port")))
        except ValueError as e:
            raise ConfigError(schema.VM_CREATE, "host", str(e), target) from None
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
    opts = check_settings(dict(options or {}), HOST_KEYS, schema.VM_CREATE, "")
    if config is None:
        config = load_config()
    if target in config.hosts:
        host = dataclasses.replace(config.hosts[target], **opts)
        given = config.given.get(target, frozenset()) | set(opts)
    else:
        fields = parse_target(target)
        fields.update(opts)
        host = HostConfig(name=target, source=VM_CREATE, **fields)
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
        need_file(f"hosts.{schema.key_text(name)}.key", h.key)
        need_file(f"hosts.{schema.key_text(name)}.known_hosts", h.known_hosts)
        password_file(f"hosts.{schema.key_text(name)}.password_file", h.password_file)
    for name, pl in cfg.pools.items():
        need_file(f"pools.{schema.key_text(name)}.ca_bundle", pl.ca_bundle)
        password_file(f"pools.{schema.key_text(name)}.password_file", pl.password_file)
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
