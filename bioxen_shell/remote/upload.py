"""Put the agent and the sequence library on a remote host, once per version.

The *bundle* is every Lua file the agent may need: ``lua/bioxen/**`` (the agent, the wire
codec, …), ``bio_stdlib/**`` (``require "bio.seq"``) and the Lua files of the profile's
``paths`` (the user's modules, under ``lib/``: a module of an earlier directory wins, as in
``package.path`` locally).  Its version is a SHA-256 over the
file names and contents, so a changed file means a new directory and an unchanged one is never
sent twice.  On the host it lives in ``<cache_dir>/agent-<version>/`` (``cache_dir`` defaults
to ``~/.cache/bioxen``), with a ``.complete`` marker written last.

Uploads go to a temporary directory that is renamed into place, so a VM never sees half a
bundle and two shells uploading at once do not clash.  SFTP is used when the server offers it;
otherwise (minimal images without the sftp subsystem) a tar stream goes over an exec channel.

The same cache holds the *data files* of maps (:func:`stage_data`, see "Data for maps" in
docs/ssh.md): ``<cache_dir>/data/<sha256><ext>``, content-addressed, uploaded once per host,
verified before it gets its final name, and resumed — not restarted — after a dropped link.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import secrets
import shlex
import socket
import stat as stat_mod
import tarfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import paramiko

from .. import paths
from ..files import format_bytes
from ..vm.transport import BackendError
from .channel import MAX_PACKET, WINDOW

__all__ = ["Bundle", "agent_bundle", "remote_bundle_dir", "upload_bundle", "UploadError",
           "LocalFile", "StageResult", "StageError", "local_file", "stage_data", "file_sha256",
           "leave_rekeying_to_the_server"]

log = logging.getLogger(__name__)


class UploadError(Exception):
    """The bundle could not be put on the host."""


@dataclass(frozen=True)
class Bundle:
    version: str                          # 16 hex digits of the content hash
    files: tuple[tuple[str, bytes], ...]  # (relative path, content), sorted

    @property
    def size(self) -> int:
        return sum(len(data) for _, data in self.files)


def _collect(root: Path, prefix: str) -> list[tuple[str, bytes]]:
    out = []
    for path in sorted(root.rglob("*.lua")):
        if "__pycache__" in path.parts:
            continue
        out.append((f"{prefix}/{path.relative_to(root).as_posix()}", path.read_bytes()))
    return out


#: Where the profile's modules go in the bundle (first in the agent's ``package.path``).
MODULES_DIR = "lib"
#: The most Lua a profile's ``paths`` may hold: they travel with every new bundle version, and
#: a slip such as ``paths = ["~"]`` must fail at once, not upload a home directory's scripts.
MAX_MODULE_BYTES = 64 * 1024 * 1024


def _signature(module_dirs: tuple[str, ...], where: str) -> tuple:
    """Cheap change detector (names, sizes, mtimes) so the hash is recomputed only on change.
    Refuses module directories with more than :data:`MAX_MODULE_BYTES` of Lua before any is read."""
    sig = []
    modules = 0
    for root in (paths.lua_dir(), paths.bio_stdlib_dir(), *module_dirs):
        for p in sorted(Path(root).rglob("*.lua")):
            st = p.stat()
            sig.append((str(p), st.st_size, st.st_mtime_ns))
            modules += st.st_size if root in module_dirs else 0
            if modules > MAX_MODULE_BYTES:
                raise BackendError(f"{where}: paths: {root}: the directories hold more than "
                                   f"{format_bytes(MAX_MODULE_BYTES)} of Lua files, the most bioxen uploads "
                                   f"with the agent (name only the directories of your modules)")
    return tuple(sig)


def _collect_modules(module_dirs: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """The Lua files of ``module_dirs`` under :data:`MODULES_DIR`, merged: a name an earlier
    directory has is not taken again (``require`` would find the earlier one locally too)."""
    taken: dict[str, bytes] = {}
    for d in module_dirs:
        for name, data in _collect(Path(d), MODULES_DIR):
            taken.setdefault(name, data)
    return sorted(taken.items())


@lru_cache(maxsize=8)
def _bundle_for(_sig: tuple, module_dirs: tuple[str, ...]) -> Bundle:
    files = (_collect(paths.lua_dir(), "lua") + _collect(paths.bio_stdlib_dir(), "bio_stdlib")
             + _collect_modules(module_dirs))
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return Bundle(version=h.hexdigest()[:16], files=tuple(files))


def agent_bundle(profile=None) -> Bundle:  # noqa: ANN001 - a vm.profiles.Profile
    """The current bundle of this installation, with the modules of ``profile.paths`` (the
    directories that exist) in :data:`MODULES_DIR`: a remote VM finds them as a local one does."""
    dirs = tuple(d for d in getattr(profile, "paths", ()) if os.path.isdir(d))
    return _bundle_for(_signature(dirs, getattr(profile, "source", "profile")), dirs)


#: sh lines that start the agent of the bundle in ``$dir`` under ``$interp`` in the background
#: (its pid in ``$pid``), interrupted through the file ``$intr``.  The protocol moves to fds 3/4
#: first, so whatever a child process of the agent prints goes to stderr, never into the
#: protocol.  Shared by the SSH wrapper and the Slurm step's.
AGENT_START_SH = r"""
lpath="$dir/lib/?.lua;$dir/lib/?/init.lua;$dir/lua/?.lua;$dir/lua/?/init.lua;$dir/bio_stdlib/?.lua;$dir/bio_stdlib/?/init.lua"
exec 3<&0 4>&1 </dev/null 1>&2
if [ -e /dev/fd/3 ]; then
  "$interp" -e "package.path=[==[$lpath]==]..';'..package.path" "$dir/lua/bioxen/agent.lua" \
    --in=/dev/fd/3 --out=/dev/fd/4 --interrupt-file="$intr" &
else
  "$interp" -e "package.path=[==[$lpath]==]..';'..package.path" "$dir/lua/bioxen/agent.lua" \
    --interrupt-file="$intr" 0<&3 1>&4 &
fi
pid=$!
exec 3<&- 4>&-
""".strip("\n")


def remote_bundle_dir(cache_dir_abs: str, bundle: Bundle) -> str:
    return f"{cache_dir_abs.rstrip('/')}/agent-{bundle.version}"


def upload_bundle(client: paramiko.SSHClient, cache_dir_abs: str, bundle: Bundle, *,
                  method: str = "auto", timeout: float = 60.0) -> str:
    """Upload ``bundle`` under ``cache_dir_abs`` (absolute path on the host); return its directory.

    ``method``: ``"sftp"``, ``"exec"`` (tar over an exec channel) or ``"auto"`` (SFTP, falling
    back to exec when the server has no sftp subsystem).
    """
    final = remote_bundle_dir(cache_dir_abs, bundle)
    tmp = f"{cache_dir_abs.rstrip('/')}/.tmp-{bundle.version}-{secrets.token_hex(4)}"
    started = time.monotonic()
    if method in ("auto", "sftp"):
        try:
            sftp = client.open_sftp()
        except (paramiko.SSHException, EOFError, OSError) as e:
            if method == "sftp":
                raise UploadError(f"SFTP is not available on the host ({e})") from None
            log.info("no SFTP on the host (%s); uploading over an exec channel", e)
        else:
            try:
                with sftp:
                    _upload_sftp(sftp, cache_dir_abs, tmp, bundle)
            except (OSError, EOFError, paramiko.SSHException) as e:
                _remove(client, tmp, timeout)
                raise UploadError(f"uploading the agent by SFTP to {tmp} failed: {e}") from None
            _finish(client, tmp, final, timeout)
            log.info("uploaded agent bundle %s (%d files, %d bytes) by SFTP in %.2f s",
                     bundle.version, len(bundle.files), bundle.size, time.monotonic() - started)
            return final
    _upload_exec(client, cache_dir_abs, tmp, bundle, timeout)
    _finish(client, tmp, final, timeout)
    log.info("uploaded agent bundle %s over exec in %.2f s", bundle.version, time.monotonic() - started)
    return final


def _sftp_makedirs(sftp: paramiko.SFTPClient, path: str, made: set[str]) -> None:
    if path in made or path in ("", "/"):
        return
    parent = path.rsplit("/", 1)[0]
    if parent != path:
        _sftp_makedirs(sftp, parent, made)
    try:
        sftp.mkdir(path, 0o700)
    except OSError:
        try:
            sftp.stat(path)  # it exists already (or we cannot create it: stat tells)
        except OSError as e:
            raise UploadError(f"cannot create directory {path} on the host: {e}") from None
    made.add(path)


def _upload_sftp(sftp: paramiko.SFTPClient, cache: str, tmp: str, bundle: Bundle) -> None:
    made: set[str] = set()
    _sftp_makedirs(sftp, cache.rstrip("/"), made)
    for name, data in bundle.files:
        remote = f"{tmp}/{name}"
        _sftp_makedirs(sftp, remote.rsplit("/", 1)[0], made)
        with sftp.open(remote, "wb") as f:
            f.set_pipelined(True)
            f.write(data)
    with sftp.open(f"{tmp}/.complete", "wb") as f:
        f.write(bundle.version.encode() + b"\n")


def _tar_of(bundle: Bundle) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in list(bundle.files) + [(".complete", bundle.version.encode() + b"\n")]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def run(client: paramiko.SSHClient, command: str, stdin: bytes = b"", timeout: float = 60.0) -> tuple[int, bytes, bytes]:
    """Run the sh ``command`` on the host, feeding ``stdin``; return (status, stdout, stderr).

    Both streams are drained (stderr in a helper thread) before the status is read, as
    paramiko advises: a full window would otherwise stall the command.
    """
    chan = client.get_transport().open_session(timeout=timeout)
    err = bytearray()

    def drain_stderr() -> None:
        try:
            while data := chan.recv_stderr(65536):
                err.extend(data)
        except (OSError, EOFError):
            pass

    try:
        chan.settimeout(timeout)
        chan.exec_command("sh -c " + shlex.quote(command))  # one line: any login shell passes it on
        reader = threading.Thread(target=drain_stderr, daemon=True)
        reader.start()
        if stdin:
            chan.sendall(stdin)
        chan.shutdown_write()
        out = bytearray()
        while data := chan.recv(65536):
            out.extend(data)
        reader.join(timeout)
        return chan.recv_exit_status(), bytes(out), bytes(err)
    finally:
        chan.close()


def _upload_exec(client: paramiko.SSHClient, cache: str, tmp: str, bundle: Bundle, timeout: float) -> None:
    q = shlex.quote
    status, _out, err = run(client, f"umask 077 && mkdir -p {q(tmp)} && tar -xf - -C {q(tmp)}",
                            _tar_of(bundle), timeout)
    if status != 0:
        _remove(client, tmp, timeout)
        raise UploadError(f"uploading the agent over an exec channel failed (exit status {status}): "
                          f"{err.decode(errors='replace').strip()}")


def _remove(client: paramiko.SSHClient, path: str, timeout: float) -> None:
    """Best effort: leave no half upload behind."""
    try:
        run(client, f"rm -rf {shlex.quote(path)}", timeout=timeout)
    except (OSError, EOFError, paramiko.SSHException):
        pass


def _finish(client: paramiko.SSHClient, tmp: str, final: str, timeout: float) -> None:
    """Rename the finished upload into place; if another shell won the race, keep theirs.

    A published directory is never removed or replaced: a VM may be starting from it.  Every
    final directory holds ``.complete`` (it was written before the rename), so "it exists" is
    enough.  Two shells racing both see no final directory; the loser's ``mv`` then moves its
    copy *into* the winner's directory, and is cleaned up from there.
    """
    q = shlex.quote
    leftover = f"{final}/{tmp.rsplit('/', 1)[1]}"
    script = (f"if [ -d {q(final)} ]; then rm -rf {q(tmp)}; "
              f"else mv {q(tmp)} {q(final)} 2>/dev/null; rm -rf {q(leftover)} {q(tmp)}; fi; "
              f"[ -f {q(final)}/.complete ]")
    status, _out, err = run(client, script, timeout=timeout)
    if status != 0:
        raise UploadError(f"cannot move the uploaded agent into {final} on the host: "
                          f"{err.decode(errors='replace').strip()}")


# ---------------------------------------------------------------------------------------------
# Data files for maps ("shards" name byte ranges of a local file; the file must be on the host)
#
# Layout on the host, next to the agent bundles:
#
#   <cache_dir>/data/<sha256><ext>      a published file: complete and verified (ext: ".fa", ".fa.gz")
#   <cache_dir>/data/.<sha256>.partial  an upload in progress, or one a dropped link interrupted
#   <cache_dir>/data/.<sha256>.lock     flock(1) lock of the stagers of this content (empty file)
#   <cache_dir>/data/.<sha256>.wlock    held by an exec-channel writer while it appends
#
# One *stager* exec channel per staging holds the lock for as long as it is open (a process
# holds a flock only while it lives, so a dropped connection releases it by itself), reports
# what the host has, and verifies and publishes on command.  The bytes go by SFTP (positional
# writes, the server's largest write size, pipelined) or, without an sftp subsystem, through
# ``cat >>`` on a second exec channel.

#: Local read size while hashing and uploading: memory stays bounded whatever the file size.
_CHUNK = 1 << 20
#: SFTP write request size when the server does not state its limit (every server takes it).
_SFTP_WRITE_DEFAULT = 32 * 1024
#: Upper bound of the write size taken from the server's limits@openssh.com answer.
_SFTP_WRITE_MAX = 255 * 1024
#: Compression suffixes kept together with the format's: ``genome.fa.gz`` → ``<sha>.fa.gz``.
_COMPRESSED = frozenset({"gz", "bgz", "bgzf", "bz2", "xz", "zst", "zstd", "lz4", "z"})
_SUFFIX = re.compile(r"^[A-Za-z0-9_+-]{1,16}$")
_HASH_CACHE_FILE = "file-sha256.json"
_HASH_CACHE_MAX = 2000


class StageError(BackendError):
    """A data file could not be staged.  The message names the local file and, once a host is
    involved, the host; it never holds a secret."""


@dataclass(frozen=True)
class LocalFile:
    """A local file about to be staged: where it is, what it is, and what it is called remotely."""

    path: str        # absolute, symlinks resolved
    size: int
    mtime_ns: int
    sha256: str      # hex
    ext: str         # kept from the basename: ".fa", ".fastq.gz", or ""

    @property
    def remote_name(self) -> str:
        return self.sha256 + self.ext


@dataclass(frozen=True)
class StageResult:
    """What one :func:`stage_data` call did."""

    remote_path: str     # the published file on the host
    sha256: str
    size: int
    sent: int            # bytes sent by this call (0 when the host already had the file)
    resumed_from: int    # bytes of an interrupted upload that were kept rather than sent again
    already: bool        # the host had this content already (under this or another extension)
    verified_by: str     # "openssl", "sha256sum", "shasum", "python3", "readback"; "" if already
    method: str          # "sftp", "exec", or "" if already
    seconds: float

    @property
    def uploaded(self) -> bool:
        return not self.already


def _size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _extension(name: str) -> str:
    """The suffix kept on the remote name, so tools that sniff the format by name still can."""
    parts = name.lstrip(".").split(".")
    if len(parts) < 2 or not _SUFFIX.match(parts[-1]):
        return ""
    last = parts[-1]
    if last.lower() in _COMPRESSED and len(parts) >= 3 and _SUFFIX.match(parts[-2]):
        return f".{parts[-2]}.{last}"
    return f".{last}"


# -- the local side: a SHA-256 per (path, size, mtime), computed once ---------------------------

_hashes: dict[tuple, str] = {}
_hash_locks: dict[tuple, threading.Lock] = {}
_hash_guard = threading.Lock()


def _hash_key(real: str, st: os.stat_result) -> tuple:
    return (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _load_hash_cache() -> dict:
    try:
        data = json.loads((paths.cache_dir() / _HASH_CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def _persisted_hash(key: tuple) -> str | None:
    entry = _load_hash_cache().get(key[0])
    if isinstance(entry, list) and len(entry) == 5 and tuple(entry[:4]) == key[1:]:
        sha = entry[4]
        if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha):
            return sha
    return None


def _persist_hash(key: tuple, sha: str) -> None:
    """Best effort: remember the hash across processes (``<cache dir>/file-sha256.json``)."""
    try:
        directory = paths.cache_dir()
        directory.mkdir(parents=True, exist_ok=True)
        files = _load_hash_cache()
        files.pop(key[0], None)
        files[key[0]] = [*key[1:], sha]
        while len(files) > _HASH_CACHE_MAX:
            files.pop(next(iter(files)))
        tmp = directory / f".{_HASH_CACHE_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": 1, "files": files}, f)
        os.replace(tmp, directory / _HASH_CACHE_FILE)
    except OSError as e:
        log.debug("could not record the hash of %s: %s", key[0], e)


def file_sha256(path: str, st: os.stat_result | None = None) -> str:
    """SHA-256 (hex) of a local file, computed once per (path, size, mtime) and cached in the
    process and in ``<cache dir>/file-sha256.json``.  Reads in 1 MiB chunks."""
    real = os.path.realpath(path)
    try:
        st = st or os.stat(real)
    except OSError as e:
        raise StageError(f"cannot stage {path}: {e.strerror or e}") from None
    key = _hash_key(real, st)
    sha = _hashes.get(key)
    if sha is not None:
        return sha
    with _hash_guard:
        lock = _hash_locks.setdefault(key, threading.Lock())
    with lock:  # two maps over one new file hash it once
        sha = _hashes.get(key) or _persisted_hash(key)
        if sha is None:
            started = time.monotonic()
            h = hashlib.sha256()
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            try:
                with open(real, "rb", buffering=0) as f:
                    while n := f.readinto(buf):
                        h.update(view[:n])
                after = os.stat(real)
            except OSError as e:
                raise StageError(f"cannot stage {path}: cannot read the local file "
                                 f"({e.strerror or e})") from None
            if _hash_key(real, after) != key:
                raise StageError(f"cannot stage {path}: the local file changed while it was being "
                                 f"read; stage it once it is complete")
            sha = h.hexdigest()
            log.info("SHA-256 of %s (%s) in %.2f s", real, _size_text(st.st_size),
                     time.monotonic() - started)
            _persist_hash(key, sha)
        _hashes[key] = sha
    return sha


def local_file(path: str) -> LocalFile:
    """Check a local file and describe it for staging; :class:`StageError` names it if it is
    missing, not a regular file, or unreadable."""
    if not isinstance(path, str) or not path:
        raise StageError(f"cannot stage {path!r}: not a file path")
    real = os.path.realpath(os.path.expanduser(path))
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise StageError(f"cannot stage {path}: the local file does not exist") from None
    except OSError as e:
        raise StageError(f"cannot stage {path}: {e.strerror or e}") from None
    if not stat_mod.S_ISREG(st.st_mode):
        raise StageError(f"cannot stage {path}: not a regular file")
    sha = file_sha256(real, st)
    return LocalFile(path=real, size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha,
                     ext=_extension(os.path.basename(real)))


# -- the host side --------------------------------------------------------------------------------

def _shell_path(path: str) -> str:
    """A path for the remote shell: ``~/x`` → ``"$HOME"/'x'``, anything else quoted."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _as_group(script: str) -> bytes:
    # As the agent's wrapper: sh reads the whole group before running any of it, so the
    # commands that follow on stdin are left for `read`.
    return ("{\n" + script.strip("\n") + "\n}\n").encode()


# Lines it prints (the client skips anything else, e.g. a login banner):
#   bioxen-stage-wait                 another stager holds this content's lock; waiting for it
#   bioxen-stage-have PATH            the host has the file (now) under its final name
#   bioxen-stage-need SIZE DIR        send the file; SIZE bytes of an earlier upload are in DIR
#   bioxen-stage-badcache / -nodir    the cache directory is unusable
# then, per command read from stdin ("v [readback]" verify + publish, "m" publish after a
# read-back, "x" discard the partial):
#   bioxen-stage-ok TOOL PATH | bioxen-stage-nosum | bioxen-stage-bad TOOL SUM
#   bioxen-stage-removed | bioxen-stage-error TEXT
_STAGER = r"""
umask 077
dir=@DIR@
sha=@SHA@
final=@FINAL@
portable=@PORTABLE@
case "$dir" in /*) ;; *) printf 'bioxen-stage-badcache %s\n' "$dir"; exit 0 ;; esac
if ! { mkdir -p "$dir" && cd "$dir"; } 2>/dev/null; then printf 'bioxen-stage-nodir %s\n' "$dir"; exit 0; fi
lock=".$sha.lock"; part=".$sha.partial"
if [ "$portable" = 0 ] && command -v flock >/dev/null 2>&1; then
  exec 9>>"$lock"
  if ! flock -n 9; then printf 'bioxen-stage-wait\n'; flock 9 || exit 1; fi
  flock ".$sha.wlock" true 2>/dev/null
else
  said=
  until mkdir "$lock.d" 2>/dev/null; do
    [ -n "$said" ] || { printf 'bioxen-stage-wait\n'; said=1; }
    holder=$(cat "$lock.d/pid" 2>/dev/null)
    if [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null; then rm -rf "$lock.d"; continue; fi
    sleep 1
  done
  trap 'rm -rf "$lock.d"' EXIT
  trap 'exit 1' HUP INT TERM PIPE
  echo $$ > "$lock.d/pid"
  w=$(cat ".$sha.writer" 2>/dev/null)
  while [ -n "$w" ] && kill -0 "$w" 2>/dev/null; do sleep 1; done
fi
publish() { printf 'bioxen-stage-have %s/%s\n' "$PWD" "$final"; exit 0; }
[ -f "$final" ] && publish
for f in "$sha" "$sha".*; do
  [ -f "$f" ] || continue
  ln "$f" "$final" 2>/dev/null && publish
  cp "$f" ".$sha.copy" 2>/dev/null && mv -f ".$sha.copy" "$final" && publish
done
size=0
[ -f "$part" ] && size=$(($(wc -c < "$part")))
printf 'bioxen-stage-need %s %s\n' "$size" "$PWD"
while read -r cmd arg; do
  case "$cmd" in
  v)
    if [ ! -f "$part" ]; then printf 'bioxen-stage-error the upload %s/%s is missing\n' "$PWD" "$part"; continue; fi
    tool=; sum=
    if [ "$arg" != readback ]; then
      # openssl first: its SHA-256 is often several times faster than coreutils'
      if command -v openssl >/dev/null 2>&1 && sum=$(openssl dgst -sha256 < "$part" 2>/dev/null); then
        tool=openssl; sum=${sum##* }
      elif command -v sha256sum >/dev/null 2>&1; then tool=sha256sum; sum=$(sha256sum < "$part")
      elif command -v shasum >/dev/null 2>&1; then tool=shasum; sum=$(shasum -a 256 < "$part")
      elif command -v python3 >/dev/null 2>&1; then tool=python3
        sum=$(python3 -c 'import hashlib,sys; h=hashlib.sha256(); [h.update(b) for b in iter(lambda: sys.stdin.buffer.read(1048576), b"")]; print(h.hexdigest())' < "$part")
      fi
    fi
    sum=${sum%% *}
    if [ -z "$sum" ]; then printf 'bioxen-stage-nosum\n'
    elif [ "$sum" = "$sha" ]; then
      if err=$(mv -f "$part" "$final" 2>&1); then rm -f ".$sha.writer"; printf 'bioxen-stage-ok %s %s/%s\n' "$tool" "$PWD" "$final"
      else printf 'bioxen-stage-error cannot rename %s: %s\n' "$part" "$err"; fi
    else rm -f "$part"; printf 'bioxen-stage-bad %s %s\n' "$tool" "$sum"; fi ;;
  m)
    if err=$(mv -f "$part" "$final" 2>&1); then rm -f ".$sha.writer"; printf 'bioxen-stage-ok readback %s/%s\n' "$PWD" "$final"
    else printf 'bioxen-stage-error cannot rename %s: %s\n' "$part" "$err"; fi ;;
  x) rm -f "$part"; printf 'bioxen-stage-removed\n' ;;
  *) printf 'bioxen-stage-error unknown command %s\n' "$cmd" ;;
  esac
done
exit 0
"""

# The exec-channel writer (hosts without SFTP): appends its stdin to the partial file.  It holds
# the ".wlock" while it runs, so a stager after a dropped link waits for a writer that is still
# flushing what it had received before appending anything itself.
_WRITER = r"""
umask 077
cd @DIR@ || exit 1
part=".@SHA@.partial"
if [ @PORTABLE@ = 0 ] && command -v flock >/dev/null 2>&1; then
  exec 8>>".@SHA@.wlock"; flock 8 || exit 1
else
  echo $$ > ".@SHA@.writer"
fi
@TRUNCATE@
printf 'bioxen-stage-writing\n'
exec cat >> "$part"
"""


class _Lost(Exception):
    """The channel ended or the connection dropped (the text says which)."""


class _Failed(Exception):
    """A step failed for a reason that is not the link (the text says why)."""


class _Lines:
    """The status lines of a staging channel (anything not ours is skipped)."""

    def __init__(self, chan: paramiko.Channel, transport: paramiko.Transport) -> None:
        self.chan, self.transport = chan, transport
        self.buf = bytearray()

    def next(self, deadline: float | None) -> str:
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                raw = bytes(self.buf[:nl])
                del self.buf[:nl + 1]
                if raw.startswith(b"bioxen-stage-"):
                    return raw.decode("utf-8", "surrogateescape")
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise _Lost("the host did not answer in time")
            self.chan.settimeout(1.0 if left is None else max(0.01, min(1.0, left)))
            try:
                data = self.chan.recv(4096)
            except socket.timeout:
                if not self.transport.is_active():
                    raise _Lost("connection lost") from None
                continue
            if not data:
                raise _Lost(self.ended())
            self.buf += data

    def ended(self) -> str:
        if not self.transport.is_active():
            return "connection lost"
        err = b""
        try:
            while self.chan.recv_stderr_ready():
                err += self.chan.recv_stderr(65536)
        except (OSError, EOFError):
            pass
        text = err.decode(errors="replace").strip()
        return "the staging command on the host ended" + (f": {text[-500:]}" if text else "")


def _open_script(transport: paramiko.Transport, script: str, timeout: float) -> paramiko.Channel:
    chan = transport.open_session(window_size=WINDOW, max_packet_size=MAX_PACKET, timeout=timeout)
    chan.exec_command("exec sh")  # the script goes on stdin: any login shell passes this on
    chan.sendall(_as_group(script))
    return chan


def _fill(template: str, **values: str) -> str:
    for name, value in values.items():
        template = template.replace(f"@{name}@", value)
    return template


#: Ciphers with 128-bit blocks: the server's rekey limit (OpenSSH: 2^32 blocks,
#: 64 GiB, or its RekeyLimit) is safe for them.  Anything else keeps paramiko's 512 MiB.
_WIDE_BLOCK_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr",
                       "aes192-ctr", "aes256-ctr", "aes128-cbc", "aes192-cbc", "aes256-cbc")
#: Our own rekey threshold on connections that stage data (the server's comes first).
_BULK_REKEY_BYTES = 1 << 40


def leave_rekeying_to_the_server(transport: paramiko.Transport) -> None:
    """Let the server, not paramiko, start the key re-exchanges of a bulk-data connection.

    paramiko starts one every 512 MiB sent or received; if the server closes a channel just
    then (a ``cat`` that finished, an exited command), paramiko's transport thread waits for
    its own key exchange while answering the close, and the connection dies 30 s later with
    "Key-exchange timed out waiting for key negotiation" (paramiko issue #822, seen here at
    the end of 512 MiB of staging).  A re-exchange the server starts has no such window (it
    sends nothing else until it is done).  Only for 128-bit-block ciphers, whose server
    limits are safe; the client still rekeys after 1 TiB if the server never does.
    """
    if transport.local_cipher in _WIDE_BLOCK_CIPHERS and transport.remote_cipher in _WIDE_BLOCK_CIPHERS:
        packetizer = transport.packetizer
        packetizer.REKEY_BYTES = _BULK_REKEY_BYTES
        packetizer.REKEY_PACKETS = 1 << 31  # below the 2^32 sequence-number wrap


def _sftp_write_size(sftp: paramiko.SFTPClient) -> int:
    """The largest write the server takes (OpenSSH states it: limits@openssh.com), else 32 KiB.

    Big writes matter: paramiko's per-request cost, not the cipher, bounds SFTP uploads."""
    try:
        from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY
        kind, msg = sftp._request(CMD_EXTENDED, "limits@openssh.com")
        if kind == CMD_EXTENDED_REPLY:
            msg.get_int64()                  # max packet length
            msg.get_int64()                  # max read length
            max_write = msg.get_int64()
            if max_write >= _SFTP_WRITE_DEFAULT:
                return min(max_write, _SFTP_WRITE_MAX)
    except Exception as e:  # noqa: BLE001 - any server without the extension gets the safe size
        log.debug("no limits@openssh.com on the server (%s); SFTP writes of 32 KiB", e)
    return _SFTP_WRITE_DEFAULT


class _Source:
    """The local file, read in bounded chunks from an offset; errors name it."""

    def __init__(self, local: LocalFile, start: int) -> None:
        self.local = local
        self.start = start
        try:
            self.f = open(local.path, "rb", buffering=0)
            self.f.seek(start)
        except OSError as e:
            raise _Failed(f"cannot read the local file ({e.strerror or e})") from None
        self.buf = bytearray(_CHUNK)

    def chunks(self):
        remaining = self.local.size - self.start
        view = memoryview(self.buf)
        try:
            while remaining > 0:
                try:
                    n = self.f.readinto(view[:min(_CHUNK, remaining)])
                except OSError as e:
                    raise _Failed(f"reading the local file failed ({e.strerror or e})") from None
                if not n:
                    raise _Failed("the local file shrank while it was being uploaded")
                remaining -= n
                yield view[:n]
        finally:
            self.f.close()


def _send_sftp(sftp: paramiko.SFTPClient, local: LocalFile, part: str, start: int,
               sent: list[int], progress: Callable[[int, int], None] | None, timeout: float) -> None:
    sftp.get_channel().settimeout(timeout)
    write_size = _sftp_write_size(sftp)
    source = _Source(local, start)
    if start:
        f = sftp.open(part, "r+b")
        f.seek(start)
    else:
        f = sftp.open(part, "wb")
        f.chmod(0o600)
    with f:
        f.MAX_REQUEST_SIZE = write_size
        f.set_pipelined(True)
        for chunk in source.chunks():
            f.write(chunk)
            sent[0] += len(chunk)
            if progress is not None:
                progress(start + sent[0], local.size)
    # Pipelined write errors are not all reported back by paramiko; the size (and then the
    # checksum) tells whether the host stored everything.
    stored = sftp.stat(part).st_size
    if stored != local.size:
        raise _Failed(f"the host stored only {stored} of {local.size} bytes (disk full?); "
                      f"the partial upload {part} stays there")


def _send_all(chan: paramiko.Channel, view: memoryview) -> None:
    chunk = max(4096, chan.out_max_packet_size or MAX_PACKET)
    while view:
        n = chan.send(view[:chunk].tobytes())
        if n <= 0:
            raise EOFError("channel closed")
        view = view[n:]


def _wait_exit(chan: paramiko.Channel, transport: paramiko.Transport, deadline: float) -> int:
    while not chan.status_event.wait(1.0):
        if not transport.is_active():
            raise _Lost("connection lost")
        if time.monotonic() > deadline:
            raise _Lost("the host did not finish writing in time")
    return chan.recv_exit_status()


def _send_exec(transport: paramiko.Transport, local: LocalFile, data_dir: str, start: int,
               sent: list[int], progress: Callable[[int, int], None] | None, timeout: float,
               portable: bool) -> None:
    source = _Source(local, start)
    script = _fill(_WRITER, DIR=shlex.quote(data_dir), SHA=local.sha256, PORTABLE=str(int(portable)),
                   TRUNCATE="" if start else ': > "$part"')
    chan = _open_script(transport, script, timeout)
    try:
        lines = _Lines(chan, transport)
        if lines.next(time.monotonic() + timeout) != "bioxen-stage-writing":
            raise _Failed("the writer on the host did not start")
        chan.settimeout(timeout)
        for chunk in source.chunks():
            _send_all(chan, chunk)
            sent[0] += len(chunk)
            if progress is not None:
                progress(start + sent[0], local.size)
        chan.shutdown_write()
        status = _wait_exit(chan, transport, time.monotonic() + timeout)
        if status != 0:
            raise _Failed(f"writing the file on the host failed (exit status {status}): "
                          f"{lines.ended()}")
    finally:
        chan.close()


def _readback_sha256(transport: paramiko.Transport, part: str, timeout: float) -> str:
    """Read the upload back (``cat`` over an exec channel) and hash it here: the verification
    for hosts with neither sha256sum, shasum, openssl nor python3.  Costs a second transfer."""
    h = hashlib.sha256()
    chan = transport.open_session(window_size=WINDOW, max_packet_size=MAX_PACKET, timeout=timeout)
    try:
        chan.settimeout(timeout)
        chan.exec_command("exec cat " + shlex.quote(part))
        while data := chan.recv(1 << 20):
            h.update(data)
        if _wait_exit(chan, transport, time.monotonic() + timeout) != 0:
            raise _Lost("reading the upload back failed")
    finally:
        chan.close()
    return h.hexdigest()


def stage_data(client: paramiko.SSHClient, cache_dir: str, local: LocalFile, *, where: str,
               method: str = "auto", verify: str = "auto", timeout: float = 60.0,
               progress: Callable[[int, int], None] | None = None,
               on_wait: Callable[[], None] | None = None, portable: bool = False) -> StageResult:
    """Make ``local`` available on the host as ``<cache_dir>/data/<sha256><ext>``; return where.

    Once per host and content: a host that has the file (under any extension) gets nothing.
    A partial upload of an earlier, interrupted attempt is continued from its size.  The file
    gets its final name only after the host's copy was verified (``openssl``, ``sha256sum``,
    ``shasum`` or ``python3`` on the host; without any, it is read back and hashed here).

    ``where`` names the host in messages (``user@host:port``); ``method`` is ``"sftp"``,
    ``"exec"`` or ``"auto"``; ``verify="readback"`` skips the host's tools; ``progress(done,
    total)`` is called after each chunk sent; ``on_wait()`` when another stager (another shell)
    holds the lock of this content; ``portable`` uses no flock(1) (hosts without util-linux).
    Raises :class:`StageError` naming the file and the host.  The connection is left to the
    server for key re-exchanges from then on (:func:`leave_rekeying_to_the_server`); give it
    a connection of its own (``SSHBackend.stage_file`` does).
    """
    if method not in ("auto", "sftp", "exec"):
        raise ValueError(f"method must be 'auto', 'sftp' or 'exec', not {method!r}")
    if verify not in ("auto", "readback"):
        raise ValueError(f"verify must be 'auto' or 'readback', not {verify!r}")
    started = time.monotonic()
    what = f"staging {local.path} ({_size_text(local.size)}) on {where}"
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise StageError(f"{what} failed: the connection is closed")
    leave_rekeying_to_the_server(transport)
    # Waiting for another stager, verifying and reading back scale with the size.
    slow = timeout + local.size / 1e6
    sent = [0]
    part: str | None = None
    stager = sftp = None
    script = _fill(_STAGER, DIR=_shell_path(cache_dir.rstrip("/") + "/data"), SHA=local.sha256,
                   FINAL=shlex.quote(local.remote_name), PORTABLE=str(int(portable)))
    try:
        stager = _open_script(transport, script, timeout)
        lines = _Lines(stager, transport)
        status = lines.next(time.monotonic() + timeout)
        if status == "bioxen-stage-wait":
            log.info("%s: another stager holds the lock; waiting for it", what)
            if on_wait is not None:
                on_wait()
            status = lines.next(time.monotonic() + slow)
        word, _, rest = status.partition(" ")
        if word == "bioxen-stage-have":
            return StageResult(remote_path=rest, sha256=local.sha256, size=local.size, sent=0,
                               resumed_from=0, already=True, verified_by="", method="",
                               seconds=time.monotonic() - started)
        if word == "bioxen-stage-badcache":
            raise StageError(f"{what} failed: cache_dir {cache_dir!r} is not an absolute path on the host")
        if word == "bioxen-stage-nodir":
            raise StageError(f"{what} failed: cannot create the directory {rest} on the host")
        if word != "bioxen-stage-need":
            raise StageError(f"{what} failed: unexpected answer from the host: {status!r}")
        have_text, _, data_dir = rest.partition(" ")
        if not have_text.isdigit() or not data_dir.startswith("/"):
            raise StageError(f"{what} failed: unexpected answer from the host: {status!r}")
        have = int(have_text)
        part = f"{data_dir}/.{local.sha256}.partial"
        use = method
        if method in ("auto", "sftp"):
            try:
                sftp = paramiko.SFTPClient.from_transport(transport, window_size=WINDOW,
                                                          max_packet_size=MAX_PACKET)
                use = "sftp"
            except (paramiko.SSHException, EOFError, OSError) as e:
                if not transport.is_active():
                    raise
                if method == "sftp":
                    raise StageError(f"{what} failed: SFTP is not available on the host ({e})") from None
                log.info("no SFTP on %s (%s); staging over an exec channel", where, e)
                use = "exec"
        resumed_from = 0
        for attempt in range(2):
            start = have if have <= local.size else 0  # longer than the file: not ours, start over
            if attempt == 0:
                resumed_from = start
                if start:
                    log.info("%s: resuming an interrupted upload at %s", what, _size_text(start))
            if start and start == local.size:
                pass  # all there (the link dropped before the verification): just verify
            elif use == "sftp":
                _send_sftp(sftp, local, part, start, sent, progress, timeout)
            else:
                _send_exec(transport, local, data_dir, start, sent, progress, timeout, portable)
            try:
                now = os.stat(local.path)
                unchanged = (now.st_size, now.st_mtime_ns) == (local.size, local.mtime_ns)
            except OSError:
                unchanged = False
            if not unchanged:
                raise StageError(f"{what} failed: the local file changed while it was being "
                                 f"uploaded; stage it once it is complete")
            answer = _command(stager, lines, "v readback" if verify == "readback" else "v", slow)
            word, _, rest = answer.partition(" ")
            if word == "bioxen-stage-nosum":
                log.info("%s: no checksum tool on the host; reading the upload back", what)
                got = _readback_sha256(transport, part, slow)
                if got == local.sha256:
                    answer = _command(stager, lines, "m", slow)
                else:
                    _command(stager, lines, "x", slow)
                    answer = f"bioxen-stage-bad readback {got}"
                word, _, rest = answer.partition(" ")
            if word == "bioxen-stage-ok":
                tool, _, remote = rest.partition(" ")
                seconds = time.monotonic() - started
                log.info("staged %s on %s as %s: %s sent%s by %s, verified by %s, in %.2f s",
                         local.path, where, remote, _size_text(sent[0]),
                         f" (resumed at {_size_text(resumed_from)})" if resumed_from else "",
                         use, tool, seconds)
                return StageResult(remote_path=remote, sha256=local.sha256, size=local.size,
                                   sent=sent[0], resumed_from=resumed_from, already=False,
                                   verified_by=tool, method=use, seconds=seconds)
            if word == "bioxen-stage-bad" and attempt == 0:
                # The partial is gone (the stager removed it): send everything once more.
                log.warning("%s: the host's copy did not match (%s); uploading it again", what, rest)
                have = 0
                continue
            if word == "bioxen-stage-bad":
                tool, _, got = rest.partition(" ")
                raise StageError(f"{what} failed: the host's copy has SHA-256 {got} ({tool}), "
                                 f"not {local.sha256}; it was removed")
            raise StageError(f"{what} failed: {rest or answer}")
        raise AssertionError("unreachable")
    except _Failed as e:
        raise StageError(f"{what} failed: {e}") from None
    except (_Lost, OSError, EOFError, paramiko.SSHException) as e:
        lost = not transport.is_active()
        reason = "the connection was lost" if lost else f"{e or type(e).__name__}"
        if part is None:
            raise StageError(f"{what} failed: {reason} before the upload began") from None
        raise StageError(f"{what} failed: {reason} after {_size_text(sent[0])} were sent; "
                         f"the partial upload {part} stays on the host and the next attempt "
                         f"resumes it") from None
    finally:
        for closable in (sftp, stager):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # noqa: BLE001 - the connection may be gone
                    pass


def _command(chan: paramiko.Channel, lines: _Lines, command: str, slow: float) -> str:
    chan.sendall(command.encode() + b"\n")
    return lines.next(time.monotonic() + slow)
