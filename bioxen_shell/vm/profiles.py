"""VM profiles: named, validated TOML files that say how a VM is set up.

A profile is data, applied when a VM starts (the handle turns it into the agent's
``configure`` request).  Profiles are looked up by name in two places, the user's first so a
user can override a shipped one:

1. ``paths.config_dir() / "profiles" / NAME.toml``
2. ``paths.profiles_dir() / NAME.toml`` (shipped: minimal, standard, bioinformatics, sandboxed)

Every key is checked: an unknown key, a wrong type or a bad value raises
:class:`ProfileError` naming the file, the key and what was expected.  See docs/profiles.md.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
TYPE_CHECKING = False  # not `typing` at run time: it costs start-up (see cli.py)
if TYPE_CHECKING:
    from typing import Any

from .. import paths, schema
from ..runtimes import default_runtime
from ..schema import SchemaError

__all__ = [
    "Profile",
    "ProfileError",
    "DEFAULT_PROFILE",
    "load_profile",
    "load_profile_file",
    "list_profiles",
    "size",
    "format_size",
    "cli_main",
]

DEFAULT_PROFILE = "standard"
#: The largest ``memory_limit``: 64 TiB, half of what a 64-bit Linux process can address
#: (128 TiB); a larger value is a typo, and the worker's RLIMIT_AS backstop (a few times the
#: limit) could not be set.
MAX_MEMORY_LIMIT = 64 * 1024**4
#: The longest ``call_timeout`` / ``cpu_limit``: 365 days (waits cannot take any number).
MAX_SECONDS = 365 * 24 * 3600
#: How deep a ``[globals]`` value may nest (the VM's wire codec stops at 200).
MAX_GLOBALS_DEPTH = 64

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "B": 1,
    "K": 1024, "KB": 1000, "KIB": 1024,
    "M": 1024**2, "MB": 1000**2, "MIB": 1024**2,
    "G": 1024**3, "GB": 1000**3, "GIB": 1024**3,
    "T": 1024**4, "TB": 1000**4, "TIB": 1024**4,
}


class ProfileError(SchemaError):
    """A profile is missing or invalid.  The message names the file, the key and what was expected
    (the one format of :mod:`bioxen_shell.schema`)."""


class Profile:
    """A validated profile.  Sizes are bytes and times are seconds; 0 means "no limit".

    Immutable.  A plain class, not a dataclass: ``dataclasses`` imports ``inspect``, a
    tenth of the shell's start-up, and every script that creates a VM loads this module."""

    #: field -> default.  runtime None = the backend's default (local: luajit, or lua54 if
    #: lupa lacks it; remote: the best interpreter found there, luajit first).  allow_ffi:
    #: LuaJIT's ffi in the VM, on unless the profile is sandboxed (bio.* fast paths need it;
    #: outside a sandbox it gives no power os/io do not already give).
    _DEFAULTS: dict[str, Any] = {
        "runtime": None, "description": "", "preload": (), "sandbox": False, "memory_limit": 0,
        "call_timeout": 0.0, "cpu_limit": 0.0, "paths": (), "globals": None, "env": None,
        "allow_ffi": True, "stall_limit": 30.0, "max_blob": 4 << 30, "source": "<built-in>",
    }
    __slots__ = ("name", *_DEFAULTS)

    name: str
    runtime: str | None
    description: str
    preload: tuple[str, ...]
    sandbox: bool
    memory_limit: int
    call_timeout: float
    cpu_limit: float
    paths: tuple[str, ...]
    globals: dict[str, Any]
    env: dict[str, str]
    allow_ffi: bool
    stall_limit: float
    max_blob: int
    source: str

    def __init__(self, name: str, **fields: Any) -> None:
        unknown = set(fields) - set(self._DEFAULTS)
        if unknown:
            raise TypeError(f"Profile: unknown field(s) {', '.join(sorted(unknown))}")
        set_ = object.__setattr__
        set_(self, "name", name)
        for key, default in self._DEFAULTS.items():
            value = fields.get(key, default)
            if value is None and key in ("globals", "env"):
                value = {}
            set_(self, key, value)

    def _fields(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.__slots__}

    def replace(self, **changes: Any) -> "Profile":
        """A copy with some fields changed (what ``dataclasses.replace`` does for a dataclass)."""
        fields = self._fields()
        fields.update(changes)
        return Profile(**fields)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"Profile is immutable (cannot set {key!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Profile) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # holds dicts, as the dataclass did

    def __repr__(self) -> str:
        return "Profile(" + ", ".join(f"{k}={v!r}" for k, v in self._fields().items()) + ")"

    def with_runtime(self, runtime: str | None) -> "Profile":
        """This profile with another runtime (``vm.create{runtime=…}``); checks the name."""
        if runtime is None:
            return self
        return self.replace(runtime=schema.check_value(schema.runtime, runtime, schema.VM_CREATE, "runtime",
                                                       ProfileError))

    def configure_fields(self, vm_name: str, lua_path: str) -> dict[str, Any]:
        """The fields of the agent's ``configure`` request (docs/protocol.md)."""
        return {
            "sandbox": self.sandbox,
            "preload": list(self.preload),
            "path": lua_path,
            "cpu_limit": self.cpu_limit,
            "memory_limit": self.memory_limit // 1024,
            "allow_ffi": self.allow_ffi,
            "globals": dict(self.globals),
            "name": vm_name,
        }

    def summary(self) -> dict[str, Any]:
        """The profile as plain data (for ``bioxen profiles show`` and ``:info()``)."""
        return {
            "name": self.name,
            "description": self.description,
            "runtime": self.runtime,
            "preload": list(self.preload),
            "sandbox": self.sandbox,
            "memory_limit": format_size(self.memory_limit),
            "call_timeout": self.call_timeout,
            "cpu_limit": self.cpu_limit,
            "paths": list(self.paths),
            "globals": dict(self.globals),
            "env": dict(self.env),
            "allow_ffi": self.allow_ffi,
            "stall_limit": self.stall_limit,
            "max_blob": format_size(self.max_blob),
            "source": self.source,
        }


# --------------------------------------------------------------------------- sizes

def size(value: Any) -> int:
    """``"256MiB"`` / ``"1GB"`` / ``1048576`` / ``0`` → bytes; else ValueError(what was expected)."""
    if isinstance(value, float) and value.is_integer():  # Lua 5.1/LuaJIT numbers arrive as floats
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("expected a size >= 0")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            unit = (m.group(2) or "").upper()
            if unit in _SIZE_UNITS:
                whole, _, frac = m.group(1).partition(".")
                whole = whole.lstrip("0")
                if len(whole) > 24:  # beyond any size (and int() of a long digit string is slow)
                    raise ValueError("expected a size of at most 24 digits (this is too large)")
                frac = frac[:24]
                factor = _SIZE_UNITS[unit]
                return int(whole or 0) * factor + int(frac or 0) * factor // 10 ** len(frac)
    raise ValueError("expected a size like '256MiB', '1GB' or a number of bytes (0 = no limit)")


def format_size(n: int) -> str:
    """Bytes → ``"256MiB"`` (``"none"`` for 0)."""
    if n == 0:
        return "none"
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:.1f}{unit}"
    return f"{n}B"


# --------------------------------------------------------------------------- validation

def _limit(value: Any) -> int:
    """A size limit: :func:`size`, at most :data:`MAX_MEMORY_LIMIT`."""
    n = size(value)
    if n > MAX_MEMORY_LIMIT:
        raise ValueError(f"expected at most {format_size(MAX_MEMORY_LIMIT)}, the largest limit bioxen takes "
                         f"(a 64-bit Linux process can address 128TiB)")
    return n


class _TooDeep(schema.Invalid):
    """A value nested deeper than MAX_GLOBALS_DEPTH."""


def _lua_value(value: Any, depth: int = 1) -> Any:
    """TOML values that map onto Lua values (dates do not; integers fit in 64 bits).  A problem
    deep down is raised as :class:`schema.Invalid` naming its place (``.a[2]``)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise ValueError("expected an integer from -2^63 to 2^63-1")
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, dict)) and depth > MAX_GLOBALS_DEPTH:
        raise _TooDeep(f"expected values nested at most {MAX_GLOBALS_DEPTH} levels deep")
    if isinstance(value, (list, dict)):
        items = enumerate(value, 1) if isinstance(value, list) else value.items()
        out = {}
        for k, v in items:
            place = f"[{k}]" if isinstance(value, list) else f".{schema.key_text(k)}"
            try:
                out[k] = _lua_value(v, depth + 1)
            except _TooDeep:
                raise  # named by the top key (globals.NAME), not the whole path down
            except schema.Invalid as e:
                raise schema.Invalid(str(e), key=place + e.key, got=v if e.got is schema.MISSING else e.got) from None
            except ValueError as e:
                raise schema.Invalid(str(e), key=place, got=v) from None
        return list(out.values()) if isinstance(value, list) else out
    raise ValueError("expected a string, number, boolean, array or table")


_LUA_KEYWORDS = frozenset(
    "and break do else elseif end false for function goto if in local nil not or repeat return "
    "then true until while".split())


def _module_name(name: str) -> None:
    if any(part in _LUA_KEYWORDS for part in name.split(".")):
        raise ValueError("expected a Lua module name without Lua keywords")


def _table_of(what: str, check_name, check_value):  # noqa: ANN001, ANN202
    """A checker for a table ``NAME -> value`` (``globals``, ``env``): each name by ``check_name``
    and each value by ``check_value``; a problem names the entry (``globals.x``)."""
    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError(f"expected a table of {what}")
        out = {}
        for k, v in value.items():
            try:
                check_name(k)
                out[k] = check_value(v)
            except _TooDeep as e:
                raise schema.Invalid(str(e), key=f".{schema.key_text(k)}") from None
            except schema.Invalid as e:
                raise schema.Invalid(str(e), key=f".{schema.key_text(k)}{e.key}",
                                     got=v if e.got is schema.MISSING else e.got) from None
            except ValueError as e:
                raise schema.Invalid(str(e), key=f".{schema.key_text(k)}", got=v) from None
        return out
    return check


def _lua_identifier(name: str) -> None:
    if not _IDENT_RE.match(name):
        raise schema.Invalid("expected a Lua identifier as the name")


def _env_name(name: str) -> None:
    if "\0" in name:
        raise schema.Invalid("an environment variable cannot hold a NUL character (\\u0000) in its name", got=name)
    if not name or "=" in name:
        raise schema.Invalid("expected a variable name without '='", got=name)


def _env_value(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if "\0" in value:
        raise ValueError("an environment variable cannot hold a NUL character (\\u0000) in its value")
    return value


_no_limit_seconds = schema.seconds(zero="no limit")

#: The profile's keys (one schema: :mod:`bioxen_shell.schema`).
_FIELDS = {
    "description": schema.text,
    "runtime": schema.runtime,
    "preload": schema.string_list("Lua module names", "a Lua module name like 'bio.seq'", _MODULE_RE, _module_name),
    "sandbox": schema.boolean,
    "memory_limit": _limit,
    "call_timeout": _no_limit_seconds,
    "cpu_limit": _no_limit_seconds,
    "paths": schema.string_list("directory paths", "a directory path without NUL characters (\\u0000)"),
    "globals": _table_of("Lua globals", _lua_identifier, _lua_value),
    "env": _table_of("environment variables", _env_name, _env_value),
    "allow_ffi": schema.boolean,
    "stall_limit": _no_limit_seconds,
    "max_blob": _limit,
}


def profile_from_dict(name: str, data: dict[str, Any], source: str) -> Profile:
    """Validate a parsed TOML document into a :class:`Profile`."""
    kwargs = schema.check_table(data, _FIELDS, source, error=ProfileError)
    if kwargs.get("sandbox") and kwargs.get("allow_ffi"):
        raise ProfileError(source, "allow_ffi", "expected false when sandbox = true (ffi escapes any sandbox)", True)
    kwargs.setdefault("allow_ffi", not kwargs.get("sandbox", False))
    # Extra module paths are relative to the profile file, so a profile can ship its modules.
    base = Path(source).parent if source != "<built-in>" else Path.cwd()
    if "paths" in kwargs:
        kwargs["paths"] = tuple(str((base / Path(p).expanduser()).resolve()) for p in kwargs["paths"])
    return Profile(name=name, source=source, **kwargs)


# --------------------------------------------------------------------------- lookup

def _search_dirs() -> list[Path]:
    dirs = [paths.config_dir() / "profiles"]
    try:
        dirs.append(paths.profiles_dir())
    except FileNotFoundError:
        pass
    return dirs


def _shipped_dir() -> Path | None:
    try:
        return paths.profiles_dir()
    except FileNotFoundError:
        return None


def load_profile_file(path: str | Path, name: str | None = None) -> Profile:
    """Load and validate one profile file."""
    from ..files import InputFileError, load_toml

    path = Path(path)
    known = None
    if path.parent == _shipped_dir():  # a shipped profile: tomllib's parse may be kept already

        def known(raw: bytes) -> dict | None:
            from .shipped_profiles import PROFILES

            entry = PROFILES.get(path.name)
            return entry[1]() if entry is not None and entry[0] == raw else None
    try:
        data = load_toml(path, known)
    except FileNotFoundError:
        raise ProfileError(f"{path}: profile file not found") from None
    except InputFileError as exc:
        raise ProfileError(str(exc)) from None
    return profile_from_dict(name or path.stem, data, str(path))


def load_profile(name: str | None = None) -> Profile:
    """Find a profile by name (user directory first) or by path (a name ending in ``.toml``)."""
    name = name or DEFAULT_PROFILE
    if not isinstance(name, str):
        raise ProfileError(f"profile: expected a profile name or a path to a .toml file, got {name!r}")
    if name.endswith(".toml") or "/" in name:
        return load_profile_file(Path(name).expanduser())
    if not _NAME_RE.match(name):
        raise ProfileError(f"profile: {name!r} is not a profile name (letters, digits, '_', '-', '.')")
    for d in _search_dirs():
        candidate = d / f"{name}.toml"
        if candidate.exists() or candidate.is_symlink():  # a directory or a dangling link: say so
            return load_profile_file(candidate, name)
    known = ", ".join(sorted(list_profiles())) or "none"
    raise ProfileError(
        f"profile {name!r} not found in {' or '.join(str(d) for d in _search_dirs())} (known: {known})"
    )


def list_profiles() -> dict[str, Path]:
    """Every profile name → the file that defines it (the user's file wins)."""
    found: dict[str, Path] = {}
    for d in reversed(_search_dirs()):
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                found[p.stem] = p
    return dict(sorted(found.items()))


# --------------------------------------------------------------------------- CLI

_USAGE = """usage: bioxen profiles [list | show NAME | check [NAME_OR_FILE ...] | path]

  list     the profiles and where they come from (default)
  show     one profile's effective settings
  check    validate profiles (all of them by default); exit status 2 if one is bad
  path     the directories searched, user directory first
"""


def cli_main(argv: list[str]) -> int:
    """``bioxen profiles …`` (the shell's CLI dispatches here).  Returns the exit status."""
    try:
        return _cli(list(argv))
    except BrokenPipeError:  # `bioxen profiles | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _toml_value(v: Any) -> str:
    """A value as it would be written in a profile (``true``, ``["bio.seq"]``, ``"2GiB"``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return f"{v:g}"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _short_path(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if text.startswith(home + "/") else text


def _cli(args: list[str]) -> int:
    cmd = args.pop(0) if args else "list"
    out = sys.stdout
    if cmd in ("-h", "--help", "help"):
        out.write(_USAGE)
        return 0
    if cmd == "path":
        for d in _search_dirs():
            out.write(f"{d}\n")
        return 0
    if cmd == "list":
        rows = [("NAME", "RUNTIME", "MEMORY", "TIMEOUT", "SANDBOX", "PRELOAD", "FILE")]
        status = 0
        for name, path in list_profiles().items():
            try:
                p = load_profile_file(path, name)
            except ProfileError as exc:
                rows.append((name, "-", "-", "-", "-", f"INVALID: {exc}", str(path)))
                status = 2
                continue
            preload = ",".join(p.preload) or "-"
            if len(preload) > 30:
                preload = f"{p.preload[0]},… ({len(p.preload)} modules)"
            rows.append((
                name, p.runtime or "default", format_size(p.memory_limit),
                f"{p.call_timeout:g}s" if p.call_timeout else "none",
                "yes" if p.sandbox else "no",
                preload, _short_path(path),
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n")
        if any(r[1] == "default" for r in rows[1:]):
            out.write(f"(RUNTIME default: local VMs run {default_runtime()}, remote VMs the best "
                      f"interpreter found, luajit first)\n")
        return status
    if cmd == "show":
        if len(args) != 1:
            sys.stderr.write("bioxen profiles show: expected one profile name\n")
            return 2
        try:
            p = load_profile(args[0])
        except ProfileError as exc:
            sys.stderr.write(f"bioxen profiles: {exc}\n")
            return 2
        out.write(f"# profile {p.name!r}, from {p.source}\n")
        for k, v in p.summary().items():
            if k in ("name", "source"):
                continue
            if k == "runtime" and v is None:
                out.write(f"# runtime unset: local VMs run luajit where lupa has it, else lua54 (here: "
                          f"{default_runtime()}); remote ones the best interpreter found (luajit first)\n")
                continue
            if (k == "memory_limit" and not p.memory_limit) or (k == "max_blob" and not p.max_blob):
                v = 0
            out.write(f"{k} = {_toml_value(v)}\n")
        return 0
    if cmd == "check":
        targets = args or list(list_profiles())
        status = 0
        for t in targets:
            try:
                p = load_profile(t)
                out.write(f"ok       {p.name}  ({p.source})\n")
            except ProfileError as exc:
                out.write(f"INVALID  {exc}\n")
                status = 2
        return status
    sys.stderr.write(f"bioxen profiles: unknown command {cmd!r}\n{_USAGE}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(cli_main(sys.argv[1:]))
