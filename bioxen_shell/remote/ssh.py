"""SSH VMs: the bioxen agent on any host you can SSH to, over paramiko.

``vm.create{type="ssh", host="lab1"}`` (a ``[hosts.lab1]`` of the config) or
``host="user@hostname:port"`` ad hoc.  Starting a VM:

1. **connect** (:func:`connect`), or lease a seat on a connection to the same host that is
   already open (:func:`lease_link`: VMs of one host share connections, one channel per agent):
   TCP with a connect timeout, SSH banner/auth timeouts, host key verified against known_hosts
   and bioxen's own file (:mod:`.hostkeys`), key and ssh-agent auth (a password only when the
   config names a source), keepalives that count missed answers (:class:`_Link`);
2. **launch** (:func:`launch_agent`): one exec channel runs a fixed shell wrapper that finds
   the interpreter (the configured one, the profile's runtime, or the best of luajit, lua5.4 …),
   checks that this version of the agent bundle is in the host's cache — if not, it says so,
   the bundle is uploaded once (:mod:`.upload`) and the wrapper runs again — then moves the
   protocol to fds 3/4 (so whatever a child process prints goes to stderr, never into the
   protocol), starts ``<interpreter> agent.lua --in=/dev/fd/3 --out=/dev/fd/4`` and reports
   the agent's pid on stderr;
3. the connection's *guard* channel (one per connection) learns that pid, takes commands
   (``i PID`` = interrupt the agent, ``k PID`` = kill it) and kills every agent it knows when
   its input ends — which happens when the connection drops — so no agent outlives its VM.

The program is never on a command line: the agent is a file in the cache, and the command
lines hold only paths.  :class:`SSHAgentProcess` is the byte stream the VM handle uses.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
import shlex
import socket
import threading
import time
from typing import Any

import paramiko

from ..runtimes import BINARIES, INTERPRETERS, canonical_name
from ..vm.transport import BackendError, show_agent_stderr
from . import upload
from .channel import MAX_PACKET, WINDOW, ChannelStream
from .config import (ConfigError, HostConfig, apply_ssh_config, backend_error,
                     parse_target, resolve_host, upload_method)
from .config import interpreter_candidates as config_candidates
from .credentials import CredentialError, resolve_password
from .hostkeys import HostKeyError, HostKeyVerifier, known_hosts_name

__all__ = ["SSHBackend", "SSHAgentProcess", "SSHConnectError", "connect", "launch_agent", "interpreter_candidates"]

log = logging.getLogger(__name__)
# paramiko logs a failed handshake as an ERROR with a full traceback from its transport thread;
# with no logging configured, Python's last-resort handler would dump that on the user's
# terminal next to bioxen's own one-line error.  Users who configure logging still get it.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

_STDERR_TAIL = 64 * 1024
#: how long closing an agent that exited waits for the rest of its stderr (seconds)
_STDERR_FLUSH = 2.0


# ---------------------------------------------------------------------------------------------
# Connecting

def connect(host: HostConfig, *, retry_for: float = 0.0) -> paramiko.SSHClient:
    """An authenticated, verified connection to ``host``, or :class:`BackendError` saying why.

    ``retry_for`` > 0 keeps retrying refused connections, missing banners and failed auth for
    that many seconds (a freshly booted guest whose sshd or key is not there yet).  Without
    it, a handshake the server cuts off (sshd over its ``MaxStartups`` limit of unauthenticated
    connections drops new ones) is still retried a few times with a growing, jittered delay.
    """
    deadline = time.monotonic() + retry_for
    delay = 0.5
    dropped = 0
    while True:
        try:
            return _connect_once(host)
        except _HandshakeDropped as e:
            dropped += 1
            if dropped >= _HANDSHAKE_ATTEMPTS and time.monotonic() + delay > deadline:
                raise SSHConnectError(
                    f"{e}; {dropped} attempts in a row were cut off during the handshake. An "
                    f"sshd drops new connections while too many others are still authenticating "
                    f"(its MaxStartups, default 10): too many clients connecting to this host at "
                    f"once; else a firewall cuts the connections, or the port is not an SSH "
                    f"server's") from None
            pause = min(_HANDSHAKE_BACKOFF * 2 ** (dropped - 1), 4.0) * (0.5 + random.random())
            log.info("%s; retrying in %.2f s", e, pause)
            time.sleep(pause)
        except _Retryable as e:
            if time.monotonic() + delay > deadline:
                raise
            log.info("%s; retrying in %.1f s", e, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


#: A handshake the server cut off is retried this often, the pauses doubling from this.
_HANDSHAKE_ATTEMPTS = 6
_HANDSHAKE_BACKOFF = 0.2


class SSHConnectError(BackendError):
    """Connecting failed in a way a guest that is still booting also shows (refused, no banner,
    timeout, key not yet authorized).  ``connect(retry_for=…)`` retries these."""


class _HandshakeDropped(SSHConnectError):
    """The server closed or reset the connection before the handshake finished."""


_Retryable = SSHConnectError


def _connect_once(host: HostConfig) -> paramiko.SSHClient:
    where = host.address
    try:
        password = resolve_password(host.password_table(), f"ssh {where}")
    except CredentialError as e:
        raise BackendError(f"ssh: {where}: {e}") from None
    jump: paramiko.SSHClient | None = None
    if host.proxy_jump:
        jump, sock = _through_jump(host)
    else:
        try:
            sock = socket.create_connection((host.hostname, host.port), timeout=host.connect_timeout)
        except socket.timeout:
            raise _Retryable(f"ssh: cannot connect to {where} (no answer within {host.connect_timeout:g} s)") from None
        except OSError as e:
            raise _Retryable(f"ssh: cannot connect to {where} ({e.strerror or e})") from None
        _tune_socket(sock, host.keepalive)
    client = paramiko.SSHClient()
    client.bioxen_jump = jump  # closed with the client (close_client)
    verifier = HostKeyVerifier(extra_files=[host.known_hosts] if host.known_hosts else [], trust=host.trust)
    # Keys are looked up under the alias (an XCP-ng VM's uuid) when there is one, else under
    # host / [host]:port as OpenSSH files them.  With our own socket, paramiko uses the
    # hostname/port arguments only for that lookup.
    if host.host_key_alias:
        lookup_host, lookup_port = host.host_key_alias, 22
    else:
        lookup_host, lookup_port = host.hostname, host.port
    key_file = os.path.expanduser(host.key) if host.key else None
    # IdentityFile lines of the ssh config: the ones that exist, then the defaults, as ssh does
    key_files = [key_file] if key_file else [p for p in map(os.path.expanduser, host.identity_files)
                                             if os.path.isfile(p)]
    try:
        verifier.configure(client)
        client.connect(
            hostname=lookup_host, port=lookup_port, username=host.login, sock=sock,
            key_filename=key_files or None, allow_agent=host.agent, look_for_keys=key_file is None,
            password=password.reveal() if password else None,
            timeout=host.connect_timeout, banner_timeout=host.banner_timeout,
            auth_timeout=host.auth_timeout, transport_factory=_transport,
        )
    except HostKeyError as e:
        _abandon(client, sock)
        raise BackendError(str(e)) from None
    except paramiko.BadHostKeyException as e:
        _abandon(client, sock)
        name = known_hosts_name(lookup_host, lookup_port)
        raise BackendError(verifier.mismatch_message(name, e.key, e.expected_key)) from None
    except paramiko.PasswordRequiredException:
        _abandon(client, sock)
        raise BackendError(f"ssh: {where}: the key {key_file} is protected by a passphrase; "
                           f"add it to ssh-agent (ssh-add {key_file})") from None
    except paramiko.AuthenticationException as e:
        _abandon(client, sock)
        tried = []
        if key_file:
            tried.append(f"key {key_file}")
        else:
            tried.append("default keys in ~/.ssh")
        if host.agent:
            tried.append("ssh-agent")
        if password:
            tried.append(f"password ({password.source})")
        raise _Retryable(
            f"ssh: authentication failed for {where} ({e}); tried {', '.join(tried)}. "
            f"Check that the public key is in ~{host.login}/.ssh/authorized_keys on the host"
        ) from None
    except paramiko.SSHException as e:
        _abandon(client, sock)
        if "No authentication methods available" not in str(e):
            raise _connect_failure(host, e) from None
        raise BackendError(
            f"ssh: no way to authenticate to {where}: no key file, "
            + ("no key in ssh-agent" if host.agent else "ssh-agent turned off (agent = false)")
            + ", no default key in ~/.ssh and no password source; "
            "set key = \"~/.ssh/id_ed25519\" (vm.create option or [hosts.NAME])") from None
    except (EOFError, OSError) as e:
        _abandon(client, sock)
        raise _connect_failure(host, e) from None
    finally:
        del password  # do not keep the value around longer than the call
    return client


def _connect_failure(host: HostConfig, e: BaseException) -> SSHConnectError:
    """A transport-level failure (reset, timeout, no banner) as a retryable error."""
    text = str(e) or type(e).__name__
    cause = e.__cause__ or e.__context__
    cut_off = isinstance(e, (EOFError, ConnectionResetError)) or isinstance(cause, (EOFError, ConnectionResetError)) \
        or "EOF" in repr(e.args) or "reset" in text.lower()
    if cut_off:
        # paramiko words it as a banner problem; what happened is that the peer hung up.
        return _HandshakeDropped(f"ssh: cannot connect to {host.address}: the server closed the "
                                 f"connection during the SSH handshake ({text})")
    if "banner" in text.lower():
        text = f"no SSH banner within {host.banner_timeout:g} s — is this an SSH server? ({text})"
    return SSHConnectError(f"ssh: cannot connect to {host.address}: {text}")


#: AES-GCM first: one AEAD pass per packet instead of AES-CTR plus a separate HMAC, which
#: makes bulk transfers (100 MB arguments and results) markedly faster on both ends.
_CIPHERS_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _transport(sock: socket.socket, **kwargs: Any) -> paramiko.Transport:
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    offered = tuple(options.ciphers)
    options.ciphers = tuple(c for c in _CIPHERS_FIRST if c in offered) + tuple(
        c for c in offered if c not in _CIPHERS_FIRST)
    return transport


def _tune_socket(sock: socket.socket, keepalive: float) -> None:
    """No Nagle delay for small frames; notice a dead link (no FIN ever comes) in about
    4 × ``keepalive`` seconds, whether the link is idle (TCP keepalive probes) or has data in
    flight (TCP_USER_TIMEOUT).  paramiko's own keepalive only sends, it never waits for an answer."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if keepalive <= 0:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    every = max(1, int(keepalive))
    for name, value in (("TCP_KEEPIDLE", every), ("TCP_KEEPINTVL", every), ("TCP_KEEPCNT", 3),
                        ("TCP_USER_TIMEOUT", every * 4 * 1000)):
        opt = getattr(socket, name, None)
        if opt is not None:  # Linux has all four; other systems some
            try:
                sock.setsockopt(socket.IPPROTO_TCP, opt, value)
            except OSError:
                pass


def _abandon(client: paramiko.SSHClient, sock: socket.socket) -> None:
    try:
        close_client(client)
    finally:
        sock.close()


def close_client(client: paramiko.SSHClient) -> None:
    """Close a connection and the jump host connection it went through, if any."""
    try:
        client.close()
    finally:
        jump = getattr(client, "bioxen_jump", None)
        if jump is not None:
            close_client(jump)


def _jump_host(host: HostConfig) -> tuple[HostConfig, str]:
    """The last hop of ``host.proxy_jump`` ("a,b": through a, then b) as a host of its own,
    reached through the hops before it; its ssh config applies as for any host.  It inherits
    the target's ways of verifying and authenticating (known_hosts, trust, agent, key when its
    ssh config names none), never its password source."""
    hops = [h.strip() for h in host.proxy_jump.split(",") if h.strip()]
    last, before = hops[-1], ",".join(hops[:-1]) or None
    try:
        fields = parse_target(last)
    except ConfigError:
        raise BackendError(f"ssh: {host.address}: proxy_jump {host.proxy_jump!r}: {last!r} is not "
                           f"[user@]host[:port]") from None
    jump = HostConfig(
        name=last, source=f"proxy_jump of {host.name}", hostname=fields["hostname"],
        port=fields.get("port", 22), user=fields.get("user", ""), agent=host.agent,
        known_hosts=host.known_hosts, trust=host.trust, ssh_config=host.ssh_config,
        proxy_jump=before, connect_timeout=host.connect_timeout, banner_timeout=host.banner_timeout,
        auth_timeout=host.auth_timeout, keepalive=host.keepalive)
    given = set(fields) | ({"proxy_jump"} if before else set())
    try:
        jump = apply_ssh_config(jump, given)
    except ConfigError as e:
        raise BackendError(f"ssh: {e}") from None
    if not jump.identity_files and host.key:
        jump = dataclasses.replace(jump, key=host.key)
    return jump, last


def _through_jump(host: HostConfig) -> tuple[paramiko.SSHClient, paramiko.Channel]:
    """A connection to the jump host and, over it, a channel to ``host`` (ssh's ProxyJump)."""
    jump_host, spec = _jump_host(host)
    try:
        jump = connect(jump_host)
    except BackendError as e:
        raise BackendError(f"ssh: {host.address}: cannot reach the jump host {spec} "
                           f"(proxy_jump): {e}") from None
    try:
        chan = jump.get_transport().open_channel(
            "direct-tcpip", (host.hostname, host.port), ("127.0.0.1", 0), timeout=host.connect_timeout)
    except paramiko.ChannelException as e:
        close_client(jump)
        raise _Retryable(f"ssh: cannot connect to {host.address} through the jump host {jump_host.address}: "
                         f"it refused to forward ({e.text or e}; is AllowTcpForwarding off there, or is "
                         f"{host.hostname}:{host.port} unreachable from it?)") from None
    except (paramiko.SSHException, EOFError, OSError) as e:
        close_client(jump)
        raise _Retryable(f"ssh: cannot connect to {host.address} through the jump host "
                         f"{jump_host.address}: {e or type(e).__name__}") from None
    return jump, chan


# ---------------------------------------------------------------------------------------------
# Launching the agent
#
# Every exec on a host costs a login shell (and whatever the user's shell rc does: 250 ms for a
# pyenv-laden .bashrc).  So one exec does it all — find the interpreter, check that this
# version of the bundle is in the cache, start the agent — and the connection's guard is
# opened once, by its first VM.  Only the first start of a new version takes a detour through
# the upload.

def _home_relative(path: str) -> str:
    """A path for the remote shell: ``~/x`` → ``"$HOME"/'x'``, anything else quoted."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


# The wrapper's first line on stdout says what happened, before any agent byte:
#   bioxen-start NAME        the agent is starting (its pid follows on stderr)
#   bioxen-upload CACHE      this bundle version is not in CACHE yet: upload it, then retry
#   bioxen-nointerp FOUND…   none of the candidates exists (FOUND = the Lua interpreters there)
_WRAPPER = r"""
cache={cache}
dir="$cache/agent-{version}"
case "$cache" in /*) ;; *) printf 'bioxen-badcache %s
' "$cache"; exit 0 ;; esac
name=; interp=
for i in {candidates}; do
  if p=$(command -v "$i" 2>/dev/null); then name=$i; interp=$p; break; fi
done
if [ -z "$interp" ]; then
  found=
  for i in {all}; do command -v "$i" >/dev/null 2>&1 && found="$found $i"; done
  printf 'bioxen-nointerp%s
' "$found"; exit 0
fi
if [ ! -f "$dir/.complete" ]; then printf 'bioxen-upload %s
' "$cache"; exit 0; fi
printf 'bioxen-start %s
' "$name"
intr="$dir/intr.$$"
: > "$intr"
{start}
pg=-
kill -0 -- -$$ 2>/dev/null && pg=$$
printf 'bioxen-agent-pid %s %s %s
' "$pid" "$pg" "$intr" >&2
wait "$pid"
st=$?
rm -f "$intr"
exit $st
"""

# The guard: one per connection, shared by every agent on it.  It reads commands on stdin:
#   a PID PG INTR   an agent started (PG: its process group or "-"; INTR: its interrupt file)
#   i PID           interrupt it (append a byte to its interrupt file)
#   k PID           kill it                     d PID   it exited: forget it
# and at end of input (closed, or the connection lost) it kills every agent it still knows, so
# no agent outlives its VM.  The records live in a private directory, one file per agent.  It is
# on the command line (not sent on stdin like the wrapper): a shell reading its script from
# stdin could swallow the commands that follow into its read buffer.
_GUARD = (
    'd=$(mktemp -d "${TMPDIR:-/tmp}/bioxen-guard.XXXXXX") || exit 1; '
    'stop() { [ -f "$d/$1" ] || return 0; read -r pg intr < "$d/$1"; '
    '[ "$pg" = - ] || kill -KILL -- "-$pg" 2>/dev/null; kill -KILL "$1" 2>/dev/null; rm -f "$intr" "$d/$1"; }; '
    'while read -r c pid rest; do case "$pid" in ""|*[!0-9]*) continue;; esac; case "$c" in '
    'a) printf "%s\\n" "$rest" > "$d/$pid";; '
    'i) [ -f "$d/$pid" ] && { read -r pg intr < "$d/$pid"; printf x >> "$intr"; } 2>/dev/null;; '
    'k) stop "$pid";; '
    'd) rm -f "$d/$pid";; esac; done; '
    'for f in "$d"/*; do [ -f "$f" ] && stop "${f##*/}"; done; rm -rf "$d"; exit 0'
)

_PID_LINE = re.compile(rb"bioxen-agent-pid (\d+) (\d+|-) ([^\n]*)\n")


# The command line of the agent's channel.  The wrapper script arrives on the channel's stdin,
# so the user's login shell (bash, zsh, fish, tcsh…) only parses these two words.
_LOADER = "exec sh"


def _as_group(script: str) -> bytes:
    """The script as one ``{ …; }`` group: sh must read all of it before running any of it,
    so it never reads ahead into the bytes that follow on stdin (the protocol, the guard's
    commands), which belong to the commands the script runs."""
    return ("{\n" + script.strip("\n") + "\n}\n").encode()


def interpreter_candidates(host: HostConfig, runtime: str | None) -> list[str]:
    """What to look for on the host: the configured interpreter, the profile's runtime, or all (best first)."""
    try:
        return config_candidates(host.interpreter, runtime)
    except ValueError as e:
        raise BackendError(f"ssh: {e}") from None


def _no_interpreter(host: HostConfig, runtime: str | None, found: list[str]) -> BackendError:
    listing = ", ".join(found) or "none"
    if host.interpreter:
        return BackendError(f"ssh: {host.address}: interpreter {host.interpreter!r} (from {host.source}) "
                            f"is not installed on the host; Lua interpreters found there: {listing}")
    if runtime:
        return BackendError(f"ssh: {host.address} has no {BINARIES[canonical_name(runtime)]} (runtime {runtime}); "
                            f"Lua interpreters found there: {listing}")
    return BackendError(f"ssh: {host.address} has no Lua interpreter (looked for {', '.join(INTERPRETERS)}); "
                        f"install one (e.g. apt-get install luajit) or set interpreter = \"/path/to/lua\"")


def launch_agent(link: "_Link", host: HostConfig, runtime: str | None = None, *,
                 upload_method: str = "auto", start_timeout: float = 30.0, profile=None) -> "SSHAgentProcess":  # noqa: ANN001
    """Start the agent on the host over ``link`` (uploading this version of the bundle, with the
    modules of ``profile.paths``, first if needed)."""
    bundle = upload.agent_bundle(profile)
    candidates = interpreter_candidates(host, runtime)
    wrapper = _WRAPPER.format(
        cache=_home_relative(host.cache_dir), version=bundle.version,
        candidates=" ".join(shlex.quote(c) for c in candidates),
        all=" ".join(shlex.quote(c) for c in INTERPRETERS), start=upload.AGENT_START_SH,
    )
    link.guard(host)  # before any agent runs: from its start on, a lost connection kills it
    for _attempt in range(2):
        chan = link.open_channel(host, window_size=WINDOW, max_packet_size=MAX_PACKET)
        try:
            chan.exec_command(_LOADER)
            chan.sendall(_as_group(wrapper))
        except (paramiko.SSHException, EOFError, OSError) as e:
            chan.close()
            raise BackendError(f"ssh: {host.address}: cannot start the agent: {e or type(e).__name__}") from None
        status = _read_status_line(chan, start_timeout)
        word, _, rest = status.partition(" ")
        if word == "bioxen-start":
            proc = SSHAgentProcess(link, chan, host, rest.strip())
            try:
                proc._await_pid(start_timeout)
            except BaseException:
                proc.kill()
                proc.close()
                raise
            return proc
        chan.close()
        if word == "bioxen-upload" and _attempt == 0:
            link.upload_once(host, rest.strip(), bundle, upload_method)
            continue
        if word.startswith("bioxen-nointerp"):
            raise _no_interpreter(host, runtime, status.split()[1:])
        if word == "bioxen-badcache":
            raise BackendError(f"ssh: {host.address}: cache_dir {host.cache_dir!r} ({host.source}) "
                               f"is not an absolute path on the host")
        raise BackendError(f"ssh: {host.address}: the agent did not start (wrapper said {status!r})")
    raise BackendError(f"ssh: {host.address}: the agent bundle is still missing after the upload")


def _read_status_line(chan: paramiko.Channel, timeout: float) -> str:
    """The wrapper's status line, read byte by byte so that no agent byte is consumed.

    Lines before it are skipped: a login shell's rc file that prints something (a banner, a
    "welcome") on a non-interactive session must not be taken for the agent's output.
    """
    deadline = time.monotonic() + timeout
    junk = bytearray()
    line = bytearray()
    try:
        while True:
            chan.settimeout(max(0.01, deadline - time.monotonic()))
            b = chan.recv(1)
            if not b:
                break
            line += b
            if b == b"\n":
                if line.startswith(b"bioxen-"):
                    return line.decode(errors="replace").strip()
                junk += line
                line.clear()
                if len(junk) > 65536:
                    break
    except socket.timeout:
        pass
    finally:
        chan.settimeout(None)
    err = b""
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(65536)
    said = (err + junk + line).decode(errors="replace").strip()
    raise BackendError("ssh: the agent launcher gave no answer"
                       + (f": {said[-2000:]}" if said else f" within {timeout:g} s"))


class SSHAgentProcess(ChannelStream):
    """The byte stream to an agent on an SSH host (implements ``transport.AgentProcess``)."""

    def __init__(self, link: "_Link", chan: paramiko.Channel, host: HostConfig, interpreter: str) -> None:
        self._link = link
        self._chan = chan
        self._host = host
        self.interpreter = interpreter
        self.pid: int | None = None
        self._pgid: int | None = None
        # The agent is interrupted by appending a byte to this file (the guard does it): stock PUC
        # lua's SIGINT handler is one-shot, so a second SIGINT would kill the interpreter.
        self._interrupt_file = ""
        self._stderr = bytearray()
        self._stderr_lock = threading.Lock()
        self._pid_known = threading.Event()
        self._init_channel(chan, host.address)
        self._reader = threading.Thread(target=self._drain_stderr, name=f"ssh-stderr-{host.hostname}",
                                        daemon=True)
        self._reader.start()

    # -- start-up ------------------------------------------------------------------------------
    def _drain_stderr(self) -> None:
        """Keep the agent's stderr flowing (a full window would stall it) and find its pid."""
        pending = b""
        try:
            while True:
                data = self._chan.recv_stderr(65536)
                if not data:
                    break
                if not self._pid_known.is_set():
                    pending += data
                    m = _PID_LINE.search(pending)
                    if m:
                        self.pid = int(m.group(1))
                        self._pgid = int(m.group(2)) if m.group(2) != b"-" else None
                        self._interrupt_file = m.group(3).decode(errors="surrogateescape")
                        self._pid_known.set()
                        # What came before the pid line is the wrapper's (or a login
                        # script's): kept for diagnostics, not shown.
                        with self._stderr_lock:
                            self._stderr += pending[:m.start()]
                        data = pending[m.end():]
                        pending = b""
                    else:
                        continue
                with self._stderr_lock:
                    self._stderr += data
                    del self._stderr[:-_STDERR_TAIL]
                show_agent_stderr(data)
                log.debug("agent stderr on %s: %r", self._host.address, data[:200])
        except (OSError, EOFError):
            pass
        finally:
            if pending:
                with self._stderr_lock:
                    self._stderr += pending
            self._pid_known.set()  # wake _await_pid: the channel is gone

    def _await_stderr(self) -> None:
        """Let the reader show the last of the agent's stderr (it ends with the agent), as
        a local VM's lands on the terminal before the VM is gone."""
        if self._reader is not threading.current_thread():
            self._reader.join(_STDERR_FLUSH)

    def _await_pid(self, timeout: float) -> None:
        if not self._pid_known.wait(timeout) or self.pid is None:
            tail = self.stderr_tail().strip()
            raise BackendError(f"ssh: {self._host.address}: the agent did not start under {self.interpreter}"
                               + (f": {tail}" if tail else f" within {timeout:g} s"))
        # Arm the guard: from now on, "k" (or losing the connection) kills the agent.
        if not self._guard_send(f"a {self.pid} {self._pgid or '-'} {self._interrupt_file}"):
            raise BackendError(f"ssh: {self._host.address}: the control channel closed at start")

    # -- controls --------------------------------------------------------------------------------
    def _guard_send(self, command: str) -> bool:
        return self._link.guard_send(command + "\n")

    def interrupt(self) -> None:
        if not self._killed and not self._closed and self.pid is not None:
            self._guard_send(f"i {self.pid}")

    def kill(self) -> None:
        with self._lock:
            if self._killed:
                return
            self._killed = True
        self._wake()
        try:
            if self.pid is not None:
                self._guard_send(f"k {self.pid}")
            self._chan.close()  # the agent's input ends too
        except Exception:  # kill() never raises
            log.debug("closing the channel after kill", exc_info=True)

    def exit_reason(self) -> str | None:
        if self._killed:
            return "signal 9"
        chan = self._chan
        if chan.exit_status_ready() and chan.exit_status != -1:
            status = chan.exit_status
            return f"signal {status - 128}" if status > 128 else f"exit status {status}"
        if not self._link.alive():
            return "connection lost"
        transport = self._link.transport
        if chan.closed or self._eof:
            # Give the exit-status message a moment: it follows the end of the stream.
            chan.status_event.wait(1.0)
            if chan.exit_status != -1:
                status = chan.exit_status
                return f"signal {status - 128}" if status > 128 else f"exit status {status}"
            if chan.closed or not transport.is_active():
                # Closed without an exit status: the wrapper died by a signal (paramiko drops
                # the "exit-signal" message), so all we know is that the agent is gone.
                return "connection lost"
        return None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "ssh", "host": self._host.address, "interpreter": self.interpreter}
        if self.pid is not None:
            out["pid"] = self.pid
        return out

    def stderr_tail(self) -> str:
        """The last bytes the agent (and anything it ran) wrote to stderr, for diagnostics."""
        with self._stderr_lock:
            return self._stderr.decode("utf-8", "replace")

    def close(self) -> None:
        if self._closed:
            return
        alive = not self._killed and not (self._chan.exit_status_ready() and self._chan.exit_status != -1)
        if alive:
            self.kill()
        elif self.pid is not None:
            self._guard_send(f"d {self.pid}")  # the agent exited: nothing left to kill
            self._await_stderr()
        self._close_channel()

    def _lost_text(self, e: BaseException) -> str:
        if not self._link.alive():
            return f"connection lost ({self._link.lost})" if self._link.lost else "connection lost"
        return f"the agent's channel is closed ({e or type(e).__name__})"


# ---------------------------------------------------------------------------------------------
# Connections shared by the VMs of one host
#
# Every VM on a host runs in a channel of one connection (``ssh`` with ControlMaster does the
# same): sshd limits *new* connections (MaxStartups, default 10 unauthenticated at once), and a
# manager starting 16 VMs at once would go over it.  A connection carries at most
# _AGENTS_PER_LINK agents, which leaves room under sshd's default MaxSessions 10 for the guard
# and an upload (an SFTP session, then an exec one, whose close the server may not have
# finished yet); a server with a lower limit refuses the channel, and the next VM goes to
# another connection.  At most _CONNECTING_PER_HOST connections to one host are being set up
# at any time; the other VMs wait for them.

_AGENTS_PER_LINK = 7
_CONNECTING_PER_HOST = 3
#: Connections a VM's start tries when servers refuse it a session.
_START_ATTEMPTS = 8


def _link_identity(host: HostConfig) -> HostConfig:
    """What makes two VMs' connections interchangeable: everything but the per-VM settings."""
    return dataclasses.replace(host, name="", source="", interpreter=None, cache_dir="")


class _Link:
    """One SSH connection to a host: the agents' channels, one guard for all of them, and a
    keepalive watch that ends the connection when the host stops answering."""

    def __init__(self, host: HostConfig, client: paramiko.SSHClient) -> None:
        self.client = client
        self.transport = client.get_transport()
        self.address = host.address
        self.leases = 0                  # backends holding a seat (starting or running an agent)
        self.running = 0                 # agents started on it and not yet gone
        self.capacity = _AGENTS_PER_LINK
        self.lost: str | None = None   # why bioxen ended the connection
        self._guard: paramiko.Channel | None = None
        self._guard_lock = threading.Lock()
        self._upload_lock = threading.Lock()
        self._uploaded: set[tuple[str, str]] = set()   # (cache dir, bundle version) done here
        self._done = threading.Event()
        self._answered_at = time.monotonic()
        if host.keepalive > 0:
            for target, what in ((self._ping, "ping"), (self._watch, "watch")):
                threading.Thread(target=target, args=(host.keepalive, host.keepalive_count),
                                 name=f"ssh-{what}-{host.hostname}", daemon=True).start()

    def alive(self) -> bool:
        return self.lost is None and self.transport.is_active()

    def count_running(self, change: int) -> None:
        with self._guard_lock:
            self.running += change

    # -- keepalive: paramiko's own only sends; this one also counts the answers -------------
    def _ping(self, every: float, _count: int) -> None:
        """Ask the server for an answer every ``every`` seconds, one request at a time (the
        reply to an unknown global request is a failure message: any answer will do)."""
        while not self._done.wait(every) and self.alive():
            self.transport.global_request("keepalive@openssh.com", wait=True)  # returns when answered or closed
            self._answered_at = time.monotonic()

    def _watch(self, every: float, count: int) -> None:
        """``count`` keepalive intervals without an answer (a frozen host, a link that drops
        packets): end the connection, which ends every call on it with "VM lost"."""
        while not self._done.wait(every) and self.alive():
            silent = time.monotonic() - self._answered_at
            if silent > every * (count + 1):
                self.lose(f"the host did not answer {count} keepalives in {silent:.3g} s "
                          f"(keepalive {every:g} s, keepalive_count {count})")

    def lose(self, why: str) -> None:
        """End the connection because the host does not answer."""
        if self.lost is None:
            self.lost = why
            log.warning("ssh: %s: %s; closing the connection", self.address, why)
        self.close()

    def close(self) -> None:
        self._done.set()
        sock = self.transport.sock
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a send blocked on a host that reads nothing
        except (OSError, AttributeError, EOFError):
            pass
        try:
            close_client(self.client)
        except Exception:  # closing a dead link never raises
            log.debug("closing %s", self.address, exc_info=True)

    # -- channels ------------------------------------------------------------------------------
    def open_channel(self, host: HostConfig, **kwargs: Any) -> paramiko.Channel:
        """A new session channel, or :class:`BackendError`; a server that refuses it (over its
        MaxSessions) raises :class:`_LinkFull` so the caller tries another connection."""
        if not self.alive():
            raise BackendError(f"ssh: {host.address}: the connection is closed"
                               + (f" ({self.lost})" if self.lost else ""))
        try:
            return self.transport.open_session(timeout=host.connect_timeout, **kwargs)
        except paramiko.ChannelException as e:
            raise _LinkFull(f"ssh: {host.address}: the server refused another session on this "
                            f"connection ({e.text or e}; sshd's MaxSessions)") from None
        except paramiko.SSHException as e:
            if "Timeout" in str(e):
                self.lose(f"the host did not answer a channel request within {host.connect_timeout:g} s")
            elif self.alive() and "Unable to open channel" in str(e):
                # paramiko keeps one "why the open failed" per connection: with several opens
                # at once, another thread may have taken the ChannelException of this one.
                raise _LinkFull(f"ssh: {host.address}: the server refused another session on this "
                                f"connection (sshd's MaxSessions)") from None
            raise BackendError(f"ssh: {host.address}: cannot open a channel: {e}") from None
        except (EOFError, OSError) as e:
            raise BackendError(f"ssh: {host.address}: cannot open a channel: {e or type(e).__name__}") from None

    def guard(self, host: HostConfig) -> None:
        """Start this connection's guard (once)."""
        with self._guard_lock:
            if self._guard is not None and not self._guard.closed:
                return
            chan = self.open_channel(host)
            try:
                chan.exec_command("sh -c " + shlex.quote(_GUARD))
            except (paramiko.SSHException, EOFError, OSError) as e:
                chan.close()
                raise BackendError(f"ssh: {host.address}: cannot start the agent's guard: "
                                   f"{e or type(e).__name__}") from None
            self._guard = chan

    def upload_once(self, host: HostConfig, cache: str, bundle: upload.Bundle, method: str) -> None:
        """Upload the agent bundle into ``cache``, one VM at a time per connection (its SFTP
        and exec sessions count against MaxSessions): VMs that waited find it done."""
        with self._upload_lock:
            if (cache, bundle.version) in self._uploaded:
                return
            try:
                upload.upload_bundle(self.client, cache, bundle, method=method)
            except upload.UploadError as e:
                raise BackendError(f"ssh: {host.address}: {e}") from None
            except paramiko.ChannelException as e:
                raise _LinkFull(f"ssh: {host.address}: the server refused a session for the "
                                f"upload ({e.text or e}; sshd's MaxSessions)") from None
            self._uploaded.add((cache, bundle.version))

    def guard_send(self, line: str) -> bool:
        with self._guard_lock:
            guard = self._guard
            if guard is None or guard.closed:
                return False
            try:
                guard.sendall(line.encode())
                return True
            except (OSError, EOFError, paramiko.SSHException):
                return False


class _LinkFull(BackendError):
    """The server refused one more session on a connection."""


class _HostLinks:
    """The connections to one host (one :func:`_link_identity`) and who is opening new ones."""

    def __init__(self) -> None:
        self.links: list[_Link] = []
        self.connecting = 0   # connections being opened
        self.waiting = 0      # VMs that want a seat and have none yet (those opening one too)
        self.changed = threading.Condition()


_hosts: dict[HostConfig, _HostLinks] = {}
_hosts_lock = threading.Lock()


def lease_link(host: HostConfig, *, retry_for: float = 0.0) -> _Link:
    """A connection to ``host`` with room for one more agent (an existing one, or a new one);
    give it back with :func:`release_link`.

    A new connection is opened only for VMs that the ones being opened will not seat (8 VMs
    waiting while one is being opened: a second one), so N VMs open ceil(N / 7) connections."""
    with _hosts_lock:
        pool = _hosts.setdefault(_link_identity(host), _HostLinks())
    with pool.changed:
        pool.waiting += 1
    try:
        with pool.changed:
            while True:
                pool.links = [link for link in pool.links if link.alive()]
                for link in pool.links:
                    if link.leases < link.capacity:
                        link.leases += 1
                        return link
                if pool.connecting < _CONNECTING_PER_HOST and pool.waiting > pool.connecting * _AGENTS_PER_LINK:
                    pool.connecting += 1
                    break
                pool.changed.wait()
        link = None
        try:
            link = _Link(host, connect(host, retry_for=retry_for))
            link.leases = 1
            return link
        finally:
            with pool.changed:
                pool.connecting -= 1
                if link is not None:
                    pool.links.append(link)
                pool.changed.notify_all()
    finally:
        with pool.changed:
            pool.waiting -= 1


def release_link(host: HostConfig, link: _Link) -> None:
    """One agent fewer on ``link``; the last one out closes it."""
    with _hosts_lock:
        pool = _hosts.get(_link_identity(host))
    if pool is None:
        link.close()
        return
    with pool.changed:
        link.leases -= 1
        last = link.leases <= 0
        if last and link in pool.links:
            pool.links.remove(link)
        pool.changed.notify_all()
    if last:
        link.close()


def _full(host: HostConfig, link: _Link) -> None:
    """The server took no more sessions on ``link``: give it no more agents than run there now
    (others may be starting on it: they find out for themselves)."""
    with _hosts_lock:
        pool = _hosts.get(_link_identity(host))
    if pool is not None:
        with pool.changed:
            link.capacity = max(1, min(link.capacity, link.running))


# ---------------------------------------------------------------------------------------------
# The backend

#: Files staged in this process: (host, sha256, extension) → path on the host.  Per host, not
#: per VM: every VM (and every map) on a host shares one copy.
_staged: dict[tuple, str] = {}
_stage_locks: dict[tuple, threading.Lock] = {}
_stage_guard = threading.Lock()


def _stage_host_identity(host: HostConfig) -> tuple:
    """One host's data cache: who logs in where, under which host key name, into which cache."""
    return (host.login, host.hostname, host.port, host.host_key_alias, host.cache_dir)


class SSHBackend:
    """``vm.create{type="ssh", host=…}``: an agent on an SSH host (see the module docstring).

    Options: ``host`` (required: a ``[hosts.NAME]`` or ``user@hostname:port``), any key of a
    ``[hosts.NAME]`` table to override it (``key``, ``interpreter``, ``known_hosts``, ``trust``,
    ``agent``, timeouts, ``cache_dir``…), and ``upload`` (``"auto"``/``"sftp"``/``"exec"``).
    """

    kind = "ssh"

    def __init__(self, name: str, options: dict[str, Any], profile: Any) -> None:
        opts = dict(options)
        target = opts.pop("host", None)
        if not target or not isinstance(target, str):
            raise BackendError('ssh: vm.create{type="ssh"} needs host="NAME" (a [hosts.NAME] of the config) '
                               'or host="user@hostname:port"')
        try:
            self.upload_method = upload_method(opts)
            host = resolve_host(target, opts)
        except ConfigError as e:
            raise backend_error("ssh", e) from None
        self._init(name, host, profile)

    @classmethod
    def for_host(cls, name: str, host: HostConfig, profile: Any, *, retry_for: float = 0.0,
                 upload_method: str = "auto") -> "SSHBackend":
        """A backend for a host described in code (the XCP-ng backend's guests)."""
        self = cls.__new__(cls)
        self.upload_method = upload_method
        self._init(name, host, profile, retry_for=retry_for)
        return self

    def _init(self, name: str, host: HostConfig, profile: Any, retry_for: float = 0.0) -> None:
        self.name = name
        self.host = host
        self.profile = profile
        self.retry_for = retry_for
        self.interpreter: str | None = None
        self._link: _Link | None = None   # leased from the host's shared connections
        self._running_on: _Link | None = None  # where this backend's agent was started
        self._lock = threading.Lock()

    def _leased(self) -> _Link:
        link = self._link
        if link is not None and link.alive():
            return link
        self._release()
        self._link = lease_link(self.host, retry_for=self.retry_for)
        return self._link

    def _proc_done(self) -> None:
        """The agent this backend started is gone (a new start, a stop): one fewer running."""
        link, self._running_on = self._running_on, None
        if link is not None:
            link.count_running(-1)

    def _release(self) -> None:
        self._proc_done()
        link, self._link = self._link, None
        if link is not None:
            release_link(self.host, link)

    def start(self) -> SSHAgentProcess:
        with self._lock:
            runtime = getattr(self.profile, "runtime", None)
            self._proc_done()
            for _attempt in range(_START_ATTEMPTS):
                link = self._leased()
                try:
                    proc = launch_agent(link, self.host, runtime, upload_method=self.upload_method,
                                        profile=self.profile)
                except _LinkFull:
                    _full(self.host, link)  # this VM (and later ones) go to another connection
                    self._release()
                    continue
                except BackendError:
                    if link.alive():
                        raise
                    self._release()  # the connection died under us (a frozen host): a new one
                    continue
                except (paramiko.SSHException, EOFError, OSError) as e:
                    raise BackendError(f"ssh: {self.host.address}: {e or type(e).__name__}") from None
                self.interpreter = proc.interpreter
                link.count_running(+1)
                self._running_on = link
                return proc
            raise BackendError(f"ssh: {self.host.address}: the server refused a session on "
                               f"{_START_ATTEMPTS} connections in a row (sshd's MaxSessions is "
                               f"lower than 2?)")

    def stop(self) -> None:
        with self._lock:
            self._release()

    def destroy(self) -> None:
        # The uploaded bundle is a cache shared by every VM on the host (one per version);
        # it stays for the next VM.  Everything this backend holds is its connection lease.
        self.stop()

    def lost_detail(self) -> str | None:
        """Why bioxen ended the connection its agent ran on (a frozen host), if it did."""
        link = self._running_on or self._link
        return link.lost if link is not None else None

    def lua_path(self) -> str:
        """Nothing to add to the agent's ``package.path``: the profile's modules travel in the
        bundle, whose ``lib/`` the launcher puts first (never this machine's directories)."""
        return ""

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "ssh", "host": self.host.name, "address": self.host.address}
        if self.interpreter:
            out["interpreter"] = self.interpreter
        return out

    # -- data for maps -------------------------------------------------------------------------
    def stage_file(self, local_path: str) -> str:
        """Put a local file in the host's data cache; return its path on the host
        (:func:`stage_on_host`)."""
        return stage_on_host(self.host, local_path, self.upload_method)


def stage_on_host(host: HostConfig, local_path: str, method: str = "auto") -> str:
    """Put a local file in ``host``'s data cache; return its path on the host.

    ``<cache_dir>/data/<sha256><ext>`` (see :func:`upload.stage_data`): uploaded once per
    host and content — every VM on the host and every map reuse it, remembered in this
    process per host — verified before it gets that name, resumed after a dropped link.
    The upload uses a connection of its own, opened for it and closed after it.
    Raises :class:`upload.StageError` (a :class:`BackendError`) naming the host and the file.
    """
    local = upload.local_file(local_path)  # missing/unreadable: an error naming the file
    key = (_stage_host_identity(host), local.sha256, local.ext)
    remote = _staged.get(key)
    if remote is not None:
        return remote
    with _stage_guard:
        lock = _stage_locks.setdefault(key, threading.Lock())
    with lock:  # VMs of one host staging the same file at once: one upload, the rest wait
        remote = _staged.get(key)
        if remote is None:
            # A connection of its own: gigabytes of data never queue behind (or in front
            # of) a VM's requests, and a link that fails while staging is not the VM's.
            try:
                client = connect(host)
            except BackendError as e:
                raise upload.StageError(f"staging {local.path} on {host.address} "
                                        f"failed: {e}") from None
            try:
                result = upload.stage_data(client, host.cache_dir, local,
                                           where=host.address, method=method)
            finally:
                close_client(client)
            remote = _staged[key] = result.remote_path
    return remote
