"""The shell's own settings: the ``[shell]`` table of ``config.toml``, read at every start.

The whole file goes through the one TOML loader (:func:`bioxen_shell.files.load_toml`), so a
file that is not UTF-8, not TOML, too large or a directory stops the shell with one line naming
the file (exit status 2).  The ``[shell]`` values are checked here, with the same checkers
``bioxen config check`` uses (:data:`SHELL_KEYS`); a key or section bioxen does not know is not
silently ignored: the shell warns once, naming the file and the key and the close match, and
starts.  ``[hosts.*]`` and ``[pools.*]`` are checked in full where they are used (``vm.create``)
and by ``bioxen config check`` (:mod:`bioxen_shell.remote.config`, too heavy to import here).
"""
from __future__ import annotations

import os
import sys

from . import schema
from .files import InputFileError, did_you_mean, load_toml

__all__ = ["DEFAULT_STYLE", "SECTIONS", "SHELL_KEYS", "SettingsError", "check_style", "read_shell_settings"]

#: The top-level tables of config.toml.
SECTIONS = ("hosts", "pools", "clusters", "shell")


class SettingsError(schema.SchemaError):
    """config.toml cannot be used; ``str()`` names the file and the key (the one schema's format)."""


#: The colour style of the REPL when config.toml names none (bioxen_shell.repl.styles).
DEFAULT_STYLE = "bioxen"


def check_style(v: object) -> str:
    """A colour style name: ``bioxen`` or a Pygments style (plug-ins too); else ValueError.

    Pygments is imported only when a style is named (about 4 ms), never for the default."""
    if isinstance(v, str) and v == DEFAULT_STYLE:
        return v
    if isinstance(v, str) and v:
        from pygments.styles import STYLE_MAP, get_style_by_name
        from pygments.util import ClassNotFound

        if v in STYLE_MAP:
            return v
        try:
            get_style_by_name(v)  # a plug-in's style (looked up only for names Pygments lacks)
            return v
        except ClassNotFound:
            hint = did_you_mean(v, [DEFAULT_STYLE, *STYLE_MAP])
            if hint:
                raise ValueError(f"expected a Pygments style name ({hint})") from None
    raise ValueError(f'expected a Pygments style name such as "{DEFAULT_STYLE}" (the default) or "monokai"')


def _style_shape(v: object) -> str:
    """The style's check when no REPL will open: a name, not yet looked up (no Pygments import)."""
    if isinstance(v, str) and v:
        return v
    return check_style(v)  # raises


_directory_names = schema.string_list("directory names", "a directory name", item=schema.string)


def _directories(v: object) -> list[str]:
    return list(_directory_names(v))


#: ``[shell]`` key -> checker: returns the value or raises ValueError(what was expected).
SHELL_KEYS = {"runtime": schema.runtime, "path": _directories, "style": check_style}
#: The lighter checkers ``read_shell_settings(…, full=False)`` uses (scripts, ``-e``: no REPL).
_LIGHT_KEYS = {"style": _style_shape}


def read_shell_settings(path: str | os.PathLike[str], *, full: bool = True) -> dict:
    """The checked ``[shell]`` table of ``path`` (``{}`` when the file does not exist).

    Raises :class:`SettingsError` for a file that cannot be read or parsed and for a bad
    ``[shell]`` value; writes one warning line to stderr for each unknown section or
    ``[shell]`` key.  ``path`` values have ``~`` expanded.  ``full=False`` (no REPL will
    open) checks only the type of ``style``, sparing start-up the Pygments import.
    """
    try:
        data = load_toml(path)
    except FileNotFoundError:
        return {}
    except InputFileError as exc:
        raise SettingsError(str(exc)) from None
    where = os.fspath(path)
    for section in data:
        if section not in SECTIONS:
            hint = did_you_mean(section, SECTIONS)
            _warn(f"{where}: [{section}]: unknown section, ignored"
                  + (f"; {hint}" if hint else f" (bioxen knows {', '.join(SECTIONS)})"))
    spec = SHELL_KEYS if full else {**SHELL_KEYS, **_LIGHT_KEYS}
    out = schema.check_table(data.get("shell", {}), spec, where, "shell", error=SettingsError, on_unknown=_warn)
    if "path" in out:
        out["path"] = [os.path.expanduser(d) for d in out["path"]]
    return out


def _warn(text: str) -> None:
    sys.stderr.write(f"bioxen: warning: {text}\n")
    sys.stderr.flush()
