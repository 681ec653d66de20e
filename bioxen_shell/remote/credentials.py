"""Passwords for SSH hosts and XCP-ng pools: where they come from, and how they are held.

bioxen never stores a password.  The config file only says where one comes from:

* ``password_file``    — a file whose first line is the password; refused when group or
  others may read or write it (``chmod 600`` fixes that), as OpenSSH refuses private keys;
* ``password_command`` — a command (run without a shell, e.g. ``pass show xcp/root``) whose
  first line of output is the password;
* ``password_env``     — the name of an environment variable holding it;
* otherwise, when the caller allows it, a prompt on the terminal (``getpass``).

A password read from any of these is wrapped in :class:`Secret`, whose ``repr``/``str`` hide
the value, so it cannot leak through a log line, a traceback's locals or ``print``.  Error
messages name the *source* (file, command, variable), never the value.
"""
from __future__ import annotations

import getpass
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "Secret",
    "CredentialError",
    "SOURCE_KEYS",
    "read_password_file",
    "run_password_command",
    "password_from_env",
    "prompt_password",
    "resolve_password",
]

#: The config keys that name a password source (at most one per table).
SOURCE_KEYS = ("password_file", "password_command", "password_env")


class CredentialError(Exception):
    """A password could not be obtained; the message names the source, never the value."""


class Secret:
    """A password held in memory.  ``repr``/``str`` never show it; use :meth:`reveal`."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "") -> None:
        self._value = value
        self.source = source  # e.g. "password_file ~/.xcp-pass": safe to show

    def reveal(self) -> str:
        """The password itself, for the one call that needs it (login, auth)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<hidden>{', from ' + self.source if self.source else ''})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):  # no pickling: a pickle would write the value somewhere
        raise TypeError("a Secret cannot be pickled")


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0].rstrip("\r")


def read_password_file(path: str | os.PathLike[str]) -> Secret:
    """Read a password file's first line, refusing a file that group or others can access."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise CredentialError(f"password file {p} does not exist") from None
    except OSError as e:
        raise CredentialError(f"cannot read password file {p}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CredentialError(f"password file {p} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise CredentialError(
            f"password file {p} is accessible by group or others (mode {mode:04o}); "
            f"bioxen refuses it. Run: chmod 600 {shlex.quote(str(p))}"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise CredentialError(f"cannot read password file {p}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CredentialError(f"password file {p} is not UTF-8 text") from None
    value = _first_line(text)
    if not value:
        raise CredentialError(f"password file {p} is empty (the first line is the password)")
    return Secret(value, f"password_file {p}")


def run_password_command(command: str | list[str], timeout: float = 60.0) -> Secret:
    """Run ``command`` without a shell; its first line of standard output is the password.

    Standard input and error stay on the terminal, so tools like ``pass`` can ask for a
    passphrase.  The output is never logged; on failure only the program name is shown.
    """
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise CredentialError("password_command is empty")
    name = argv[0]
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stdin=None, stderr=None,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise CredentialError(f"password_command: program {name!r} not found") from None
    except PermissionError:
        raise CredentialError(f"password_command: program {name!r} is not executable") from None
    except subprocess.TimeoutExpired:
        raise CredentialError(f"password_command {name!r} did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        raise CredentialError(f"password_command {name!r} failed (exit status {done.returncode})")
    value = _first_line(done.stdout.decode("utf-8", "replace"))
    if not value:
        raise CredentialError(f"password_command {name!r} printed no password")
    return Secret(value, f"password_command {name}")


def password_from_env(variable: str, environ: Mapping[str, str] | None = None) -> Secret:
    """The password in environment variable ``variable``."""
    env = os.environ if environ is None else environ
    value = env.get(variable)
    if not value:
        raise CredentialError(f"environment variable {variable} (password_env) is not set or empty")
    return Secret(value, f"password_env {variable}")


def prompt_password(label: str) -> Secret:
    """Ask on the terminal, without echo.  Fails clearly when there is no terminal."""
    if not sys.stdin or not sys.stdin.isatty():
        raise CredentialError(
            f"a password is needed for {label} and there is no terminal to ask on; "
            f"set password_file, password_command or password_env in the config"
        )
    try:
        value = getpass.getpass(f"Password for {label}: ")
    except (EOFError, KeyboardInterrupt):
        raise CredentialError(f"no password entered for {label}") from None
    if not value:
        raise CredentialError(f"no password entered for {label}")
    return Secret(value, "prompt")


def resolve_password(table: Mapping[str, Any], label: str, *, prompt: bool = False) -> Secret | None:
    """The password a config table (``[hosts.X]`` / ``[pools.X]``) asks for, or ``None``.

    ``table`` holds at most one of :data:`SOURCE_KEYS` (the config validator enforces it).
    With none of them: prompt when ``prompt`` is true (XCP-ng pools), else ``None`` (SSH hosts
    use keys and the agent unless a password is configured).
    """
    given = [k for k in SOURCE_KEYS if table.get(k)]
    if len(given) > 1:
        raise CredentialError(f"{label}: give only one of {', '.join(given)}")
    if given == ["password_file"]:
        return read_password_file(table["password_file"])
    if given == ["password_command"]:
        return run_password_command(table["password_command"])
    if given == ["password_env"]:
        return password_from_env(table["password_env"])
    return prompt_password(label) if prompt else None
