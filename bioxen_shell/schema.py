"""The one config schema: how every table a user writes is checked, and the one error format.

Every table of settings — ``config.toml`` (``[shell]``, ``[hosts.*]``, ``[pools.*]``,
``[clusters.*]``), VM profiles, and the option tables of ``vm.create{…}`` (``pool = {…}``, SSH,
Slurm and XCP-ng options) — is a *spec*: a dict ``key -> checker``.  A checker takes the value
as written and returns it converted (``"5.4"`` → ``"lua54"``, ``2.0`` → ``2``) or raises
``ValueError("expected …")`` saying what it wanted.  :func:`check_table` runs a spec over a
table and turns every problem into one :class:`SchemaError`, whose text is always::

    WHERE: KEY: EXPECTED, got VALUE

``WHERE`` is the file (or ``vm.create{…}``), ``KEY`` the dotted key (``pools.lab.url``,
``globals.x[2]``), ``EXPECTED`` the checker's words and ``VALUE`` the value as TOML would write
it.  A checker whose value may hold a secret (a URL with a password) raises :class:`Secret`,
and the value is never shown.  The defaults live with the tables' types (``HostConfig``,
``Profile``), which take the checked values.

Light on purpose (``math`` and ``re``): the shell checks ``[shell]`` at every start.
"""
from __future__ import annotations

import math
import re

__all__ = ["SchemaError", "Invalid", "Secret", "MISSING", "VM_CREATE", "check_table", "check_value",
           "show", "key_text", "string", "text", "boolean", "integer", "seconds", "one_of", "string_list",
           "runtime", "MAX_SECONDS"]

#: "No value": the message has no ", got …".
MISSING = object()
#: WHERE for the option tables of ``vm.create``.
VM_CREATE = "vm.create{…}"
#: The longest timeout, interval or limit any table takes (365 days): larger ones are typos, and
#: sockets and waits cannot take arbitrarily large numbers.
MAX_SECONDS = 365 * 24 * 3600


class SchemaError(ValueError):
    """A value that cannot be used: ``str()`` is ``WHERE: KEY: EXPECTED, got VALUE``.

    With only ``where`` it is a message of its own (a file that cannot be found)."""

    def __init__(self, where: str, key: str = "", expected: str = "", got: object = MISSING) -> None:
        self.where, self.key, self.expected, self.got = where, key, expected, got
        text = ": ".join(part for part in (where, key, expected) if part)
        if got is not MISSING:
            text += f", got {show(got)}"
        super().__init__(text)


class Invalid(ValueError):
    """Raised by a checker: ``expected`` says what it wanted.  ``key`` names a part of the value
    (``".LANG"``, ``"[2]"``) and ``got`` that part, when the problem is there, not in the whole."""

    def __init__(self, expected: str, *, key: str = "", got: object = MISSING) -> None:
        super().__init__(expected)
        self.key, self.got = key, got


class Secret(Invalid):
    """A bad value that may hold a secret: its message never shows the value."""


def show(value: object) -> str:
    """A value as the messages show it: as TOML would write it (tables and arrays by kind)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\0", "\\u0000") + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "an array"
    return repr(value)


def check_value(check, value: object, where: str, key: str, error: type = SchemaError) -> object:  # noqa: ANN001
    """``check(value)``, with its ValueError turned into ``error(where, key, expected, value)``."""
    try:
        return check(value)
    except Secret as e:
        raise error(where, key + e.key, str(e)) from None
    except Invalid as e:
        raise error(where, key + e.key, str(e), value if e.got is MISSING else e.got) from None
    except ValueError as e:
        raise error(where, key, str(e), value) from None


def check_table(table: object, spec: dict, where: str, prefix: str = "", *, error: type = SchemaError,
                on_unknown=None, refused: dict | None = None) -> dict:  # noqa: ANN001
    """Check every key of ``table`` against ``spec`` (``key -> checker``); the converted values.

    An unknown key raises, naming the close match and the keys there are — or, with
    ``on_unknown``, is handed to it (``on_unknown(message)``: a warning) and left out.
    ``refused``: keys that are never taken, with the reason (``password``)."""
    if not isinstance(table, dict):
        raise error(where, prefix, "expected a table", table)
    out: dict = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key_text(key)}" if prefix else key_text(key)
        if refused and key in refused:
            raise error(where, dotted, refused[key])
        check = spec.get(key)
        if check is None:
            problem = unknown_key(key, spec)
            if on_unknown is None:
                raise error(where, dotted, problem)
            on_unknown(f"{where}: {dotted}: {problem.replace('unknown key', 'unknown key, ignored', 1)}")
            continue
        out[key] = check_value(check, value, where, dotted, error)
    return out


def key_text(key: object) -> str:
    """A key as a message shows it: NUL and other control characters escaped (never raw)."""
    text = str(key)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def unknown_key(key: object, known, context: str = "") -> str:  # noqa: ANN001 - any iterable of str
    """``unknown key, did you mean 'port'? (expected one of: hostname, port, …)``; ``context``
    follows "unknown key" (``for type='local'``)."""
    from .files import did_you_mean

    hint = did_you_mean(str(key), known)
    return (f"unknown key{' ' + context if context else ''}{', ' + hint if hint else ''} "
            f"(expected one of: {', '.join(known)})")


# -- checkers shared by the tables ------------------------------------------------------------

def string(v: object) -> str:
    """A non-empty string without NUL characters."""
    if not isinstance(v, str) or not v:
        raise ValueError("expected a non-empty string")
    if "\0" in v:
        raise ValueError("expected a string without NUL characters (\\u0000)")
    return v


def text(v: object) -> str:
    """Any string (a description: empty is fine)."""
    if not isinstance(v, str):
        raise ValueError("expected a string")
    return v


def boolean(v: object) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _integral(v: object) -> object:
    """Lua 5.1/LuaJIT numbers arrive as floats: 2.0 is the integer 2."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def integer(low: int, high: int, what: str = "an integer"):  # noqa: ANN201
    """A checker for an integer from ``low`` to ``high`` (``what`` names it in the message)."""
    def check(v: object) -> int:
        v = _integral(v)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise ValueError(f"expected {what} from {low} to {high}")
        return v
    return check


def seconds(*, zero: str | None = None):  # noqa: ANN201
    """A checker for a number of seconds up to :data:`MAX_SECONDS`; greater than 0, or from 0 when
    ``zero`` says what 0 means (``"turns it off"``, ``"no limit"``)."""
    low = f"from 0 ({zero})" if zero else "greater than 0"

    def check(v: object) -> float:
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v <= MAX_SECONDS
        if not ok or (v < 0 if zero else v <= 0):
            raise ValueError(f"expected a number of seconds {low}, at most {MAX_SECONDS} (365 days)")
        return float(v)
    return check


def one_of(choices: dict):  # noqa: ANN201
    """A checker for one of ``choices`` (``value -> what it means``, shown in the message)."""
    expected = "expected " + " or ".join(f'"{c}"' + (f" ({why})" if why else "") for c, why in choices.items())

    def check(v: object) -> str:
        if v not in choices:
            raise ValueError(expected)
        return v
    return check


def string_list(items: str, one: str = "", pattern: re.Pattern | None = None, item=None):  # noqa: ANN001, ANN201
    """A checker for an array of strings: ``items`` names them (``"directory names"``) and ``one``
    one of them (``"a directory name"``); each must match ``pattern`` and pass ``item`` (which
    raises ValueError).  A problem with one names it by its place: ``preload[2]``."""
    def check(v: object) -> tuple:
        if isinstance(v, dict) and not v:  # an empty Lua table arrives as an empty dict
            return ()
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"expected an array of {items}")
        for i, x in enumerate(v, 1):
            if not isinstance(x, str) or "\0" in x or (pattern is not None and not pattern.fullmatch(x)):
                raise Invalid(f"expected {one or 'a string'} (in an array of {items})", key=f"[{i}]", got=x)
            if item is not None:
                try:
                    item(x)
                except ValueError as e:
                    raise Invalid(str(e), key=f"[{i}]", got=x) from None
        return tuple(v)
    return check


def runtime(v: object) -> str:
    """A Lua runtime name or alias (:mod:`bioxen_shell.runtimes`) → its canonical name."""
    from .runtimes import UnknownRuntime, accepted_names, canonical_name

    try:
        return canonical_name(v)
    except UnknownRuntime:
        raise ValueError(accepted_names()) from None
