"""Put the agent and the sequence library on a remote host, once per version.

The *bundle* is every Lua file the agent may need: ``lua/bioxen/**`` (the agent, the wire
codec, …) and ``bio_stdlib/**`` (``require "bio.seq"``).  Its version is a SHA-256 over the
file names and contents, so a changed file means a new directory and an unchanged one is never
sent twice.  On the host it lives in ``<cache_dir>/agent-<version>/`` (``cache_dir`` defaults
to ``~/.cache/bioxen``), with a ``.complete`` marker written last.

Uploads go to a temporary directory that is renamed into place, so a VM never sees half a
bundle and two shells uploading at once do not clash.  SFTP is used when the server offers it;
otherwise (minimal images without the sftp subsystem) a tar stream goes over an exec channel.
"""
from __future__ import annotations

import hashlib
import io
import logging
import secrets
import shlex
import tarfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import paramiko

from .. import paths

__all__ = ["Bundle", "agent_bundle", "remote_bundle_dir", "upload_bundle", "UploadError"]

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


def _signature() -> tuple:
    """Cheap change detector (names, sizes, mtimes) so the hash is recomputed only on change."""
    sig = []
    for root in (paths.lua_dir(), paths.bio_stdlib_dir()):
        for p in sorted(root.rglob("*.lua")):
            st = p.stat()
            sig.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(sig)


@lru_cache(maxsize=4)
def _bundle_for(_sig: tuple) -> Bundle:
    files = _collect(paths.lua_dir(), "lua") + _collect(paths.bio_stdlib_dir(), "bio_stdlib")
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return Bundle(version=h.hexdigest()[:16], files=tuple(files))


def agent_bundle() -> Bundle:
    """The current bundle of this installation."""
    return _bundle_for(_signature())


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
