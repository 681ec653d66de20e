"""Where bioxen finds its own files and keeps the user's.

Two kinds of location:

* Shipped resources (``lua/``, ``bio_stdlib/``, ``profiles/``).  In an installed
  wheel they live in ``bioxen_shell/_data/``; in a source checkout (or an
  editable install) they sit at the top of the repository.  ``resource_dir``
  hides the difference.
* Per-user directories (history, config, user profiles, caches), chosen by
  ``platformdirs`` so they follow the XDG conventions on Linux.  Each can be
  overridden with an environment variable, which the tests use to keep the
  user's real home untouched.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "resource_dir",
    "resource_path",
    "lua_dir",
    "bio_stdlib_dir",
    "profiles_dir",
    "config_dir",
    "state_dir",
    "cache_dir",
    "lua_search_path",
    "lua_search_dirs",
    "lua_patterns",
]

# Strings and os.path here, pathlib only where a Path is returned: the zygote imports this
# module at its start, beside the shell's own start-up, and pathlib (with urllib.parse,
# ipaddress and re, which it imports) is most of what that import would cost.
_PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))
_APP = "bioxen"


def resource_path(name: str) -> str:
    """The directory of a shipped resource, as a string (resource_dir without pathlib)."""
    data = os.path.join(_PACKAGE_DIR, "_data")
    for candidate in (os.path.join(data, name), os.path.join(os.path.dirname(_PACKAGE_DIR), name)):
        if os.path.isdir(candidate):
            return candidate
    raise FileNotFoundError(
        f"bioxen resource directory {name!r} is missing from the installation "
        f"(looked in {data} and {os.path.dirname(_PACKAGE_DIR)})"
    )


def resource_dir(name: str) -> Path:
    """Return the directory of a shipped resource (``lua``, ``bio_stdlib``, ``profiles``)."""
    from pathlib import Path

    return Path(resource_path(name))


def lua_dir() -> Path:
    """The shell's and the agent's Lua sources (``lua/``)."""
    return resource_dir("lua")


def bio_stdlib_dir() -> Path:
    """The Lua sequence library (``bio_stdlib/``, modules ``bio.*``)."""
    return resource_dir("bio_stdlib")


def profiles_dir() -> Path:
    """The profiles shipped with bioxen."""
    return resource_dir("profiles")


def _user_dir(env_var: str, kind: str) -> Path:
    from pathlib import Path

    override = os.environ.get(env_var)
    if override:
        return Path(override)
    # Imported here, not at module level: platformdirs pulls in a noticeable
    # share of start-up time and `bioxen -e CODE` rarely needs a user dir.
    import platformdirs

    return Path(getattr(platformdirs, f"user_{kind}_dir")(_APP))


def config_dir() -> Path:
    """User configuration: ``config.toml`` and ``profiles/`` (override: ``BIOXEN_CONFIG_DIR``)."""
    return _user_dir("BIOXEN_CONFIG_DIR", "config")


def state_dir() -> Path:
    """User state: REPL history, the record of created VMs (override: ``BIOXEN_STATE_DIR``)."""
    return _user_dir("BIOXEN_STATE_DIR", "state")


def cache_dir() -> Path:
    """Disposable caches (override: ``BIOXEN_CACHE_DIR``)."""
    return _user_dir("BIOXEN_CACHE_DIR", "cache")


def lua_search_dirs(extra_dirs: list[str] | None = None) -> list[str]:
    """The directories of :func:`lua_search_path`, in order, each once."""
    dirs: list[str] = list(extra_dirs or [])
    dirs += [d for d in os.environ.get("BIOXEN_PATH", "").split(os.pathsep) if d]
    dirs += [resource_path("bio_stdlib"), resource_path("lua")]
    return list(dict.fromkeys(dirs))


def lua_patterns(dirs: list[str]) -> str:
    """``D/?.lua;D/?/init.lua`` for each directory: the ``package.path`` entries that find a
    module in them."""
    return ";".join(f"{os.path.join(d, '?.lua')};{os.path.join(d, '?', 'init.lua')}" for d in dirs)


def lua_search_path(extra_dirs: list[str] | None = None) -> str:
    """A ``package.path`` value that finds bioxen's Lua modules, ``bio.*`` and the user's.

    Order: the user's extra directories, then ``BIOXEN_PATH`` (colon separated),
    then the sequence library, then bioxen's own Lua sources; each directory once.
    """
    return lua_patterns(lua_search_dirs(extra_dirs))
