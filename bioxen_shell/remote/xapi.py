"""XAPI sessions through the stock XenAPI SDK: login, TLS, pool redirects, errors, tasks, events.

:class:`XapiSession` wraps one ``XenAPI.Session`` (the SDK is used unmodified; only its
``transport`` is ours) and adds what the SDK leaves to callers:

* **TLS verified by default** — against the system store, a ``ca_bundle``, or a pinned
  certificate ``fingerprint`` (for XCP-ng's self-signed host certificates).  Turning
  verification off is explicit (``verify_tls = false``) and warns every time a session opens.
* **Pool members**: a login on a member answers ``HOST_IS_SLAVE [coordinator]``; we log in
  again on the coordinator (once; same scheme and port, IPv6 bracketed).
* **Errors with names**: ``XenAPI.Failure`` becomes :class:`XapiError` with the code, the
  parameters *by name* (from the datamodel) and the call that failed.  Transport failures
  become :class:`XapiConnectionError` naming the URL.
* **Session expiry**: the SDK itself logs in again on ``SESSION_INVALID`` (with the remembered
  credentials, up to three times); we turn its final give-up into an ``XapiError``.
* **Always log out**: use the session as a context manager.  XAPI caps sessions per
  user/originator (500) and keeps idle ones for 24 h.
* **Busy pools**: calls refused with ``OTHER_OPERATION_IN_PROGRESS``/``TOO_BUSY`` are retried
  with backoff (they never started), synchronously or inside an ``Async`` task.
* **No call runs twice**: xmlrpc.client re-sends a request once when the connection resets,
  even if the pool already ran it.  Our transport never does; a broken connection after the
  request went out is :class:`XapiReplyLost`.  Only calls that are harmless to repeat (reads,
  setters, removals, tags) are re-sent, once; anything else is recovered by the caller, who
  looks for its effect (:meth:`XapiSession.call_or_find`) instead of doing it again.
* **Waiting**: :meth:`XapiSession.wait_task` and :meth:`XapiSession.wait_until` block on
  ``event.from`` (falling back to polling where it is unknown) instead of fixed sleeps.

A session is not thread-safe (the SDK shares one HTTP connection): use one per thread.
Secrets: the password is passed to the SDK and nowhere else; it never appears in a message.
"""
from __future__ import annotations

import hashlib
import http.client
import ipaddress
import logging
import select
import ssl
import time
import urllib.parse
import warnings
import xmlrpc.client
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol, TypeVar

import XenAPI

from .config import normalise_fingerprint  # the one check of a fingerprint (config and pools)

log = logging.getLogger(__name__)

__all__ = [
    "ORIGINATOR", "API_VERSION", "NULL_REF", "TLSSettings", "XapiSession", "XapiError",
    "XapiAuthError", "XapiConnectionError", "XapiReplyLost", "XapiTimeout", "InsecureTLSWarning",
    "normalise_fingerprint",
]

ORIGINATOR = "bioxen"
API_VERSION = "1.0"
NULL_REF = "OpaqueRef:NULL"
DEFAULT_TIMEOUT = 60.0  # seconds for one HTTP exchange (event.from waits are shorter)
_EVENT_WAIT = 5.0       # seconds one event.from call may block
_BUSY = ("OTHER_OPERATION_IN_PROGRESS", "TOO_BUSY", "TOO_MANY_PENDING_TASKS",
         "HOST_STILL_BOOTING")
_THUMBPRINT_REQUEST = "x-xenapi-request-host-certificate-thumbprint"
_THUMBPRINT_RESPONSE = "x-xenapi-response-host-certificate-thumbprint"

# Parameter names of the error codes bioxen meets, from ocaml/idl/datamodel_errors.ml
# (see xapi-errors.tsv).  Used to write messages like "VM_BAD_POWER_STATE (expected=halted…)".
ERROR_PARAMS: dict[str, list[str]] = {
    "SESSION_AUTHENTICATION_FAILED": ["user", "message"],
    "SESSION_INVALID": ["handle"],
    "HOST_IS_SLAVE": ["coordinator"],
    "HANDLE_INVALID": ["class", "handle"],
    "UUID_INVALID": ["type", "uuid"],
    "VM_BAD_POWER_STATE": ["vm", "expected", "actual"],
    "VM_IS_TEMPLATE": ["vm", "operation"],
    "VM_LACKS_FEATURE": ["vm"],
    "VM_REQUIRES_SR": ["vm", "sr"],
    "VM_REQUIRES_NET": ["vm", "network"],
    "OTHER_OPERATION_IN_PROGRESS": ["class", "object", "operation_type", "operation_ref"],
    "OPERATION_NOT_ALLOWED": ["reason"],
    "OPERATION_BLOCKED": ["ref", "code"],
    "HOST_NOT_ENOUGH_FREE_MEMORY": ["needed", "available"],
    "MEMORY_CONSTRAINT_VIOLATION": ["constraint"],
    "INVALID_VALUE": ["field", "value"],
    "SR_FULL": ["requested", "maximum"],
    "VDI_IN_USE": ["vdi", "operation"],
    "DEVICE_ALREADY_EXISTS": ["device"],
    "MAP_DUPLICATE_KEY": ["type", "param_name", "uuid", "key"],
    "TASK_CANCELLED": ["task"],
    "MESSAGE_METHOD_UNKNOWN": ["method"],
    "MESSAGE_PARAMETER_COUNT_MISMATCH": ["method", "expected", "received"],
    "INTERNAL_ERROR": ["message"],
    "LICENSE_RESTRICTION": ["feature"],
    "EVENT_FROM_TOKEN_PARSE_FAILURE": ["token"],
    "VM_FAILED_SHUTDOWN_ACK": ["vm"],
    "VM_SHUTDOWN_TIMEOUT": ["vm", "timeout"],
    "VM_CANNOT_DELETE_DEFAULT_TEMPLATE": ["vm"],
    "INVALID_DEVICE": ["device"],
    "MAC_INVALID": ["MAC"],
}


class XapiError(Exception):
    """XAPI answered ``Failure``: ``code`` and ``params`` are its ``ErrorDescription``."""

    def __init__(self, code: str, params: list[str] | tuple = (), call: str = "") -> None:
        self.code, self.params, self.call = code, [str(p) for p in params], call
        super().__init__(self._message())

    def _message(self) -> str:
        names = ERROR_PARAMS.get(self.code, [])
        shown = []
        for i, value in enumerate(self.params):
            shown.append(f"{names[i]}={value}" if i < len(names) else value)
        detail = f" ({', '.join(shown)})" if shown else ""
        where = f"{self.call} failed: " if self.call else ""
        return f"{where}{self.code}{detail}"

    def param(self, name: str, default: str = "") -> str:
        """A parameter by its datamodel name (``e.param("actual")``)."""
        names = ERROR_PARAMS.get(self.code, [])
        if name in names and names.index(name) < len(self.params):
            return self.params[names.index(name)]
        return default


class XapiAuthError(XapiError):
    """The pool refused the user name or password.  Never retried."""


class XapiConnectionError(Exception):
    """The pool could not be reached (DNS, refused, TLS, HTTP, dropped connection)."""


class XapiReplyLost(XapiConnectionError):
    """The connection broke after the request was sent: the pool may have run the call.

    ``method`` is the call; whoever made it decides how to find out what happened."""

    def __init__(self, message: str, method: str) -> None:
        super().__init__(message)
        self.method = method


def safe_to_resend(method: str) -> bool:
    """Whether sending ``method`` again, when it may have run, leaves the pool as running it
    once does.

    Reads, setters (``set_*``, ``set_memory_limits``), map removals and tag changes are.  So
    are ``<Class>.destroy`` and ``VM.hard_shutdown`` of a given ref: if the first one ran,
    the repeat changes nothing and answers ``HANDLE_INVALID`` or ``VM_BAD_POWER_STATE
    [halted]``, which their callers take as done (refs are never reused).  Creating,
    starting, a clean shutdown and every ``Async.*`` call are not (a second ``VM.clone``
    makes a second VM); nor is ``add_to_*``, which fails with ``MAP_DUPLICATE_KEY`` the
    second time (:meth:`XapiSession.set_map_key` re-runs the remove/add pair instead)."""
    if method.startswith("Async."):
        return False
    if method in ("event_from", "event.from", "event.get_current_id", "task.cancel",
                  "VM.hard_shutdown"):
        return True
    name = method.rsplit(".", 1)[-1]
    return name.startswith(("get_", "set_", "remove_from_")) or name in (
        "get_all", "get_all_records", "get_record", "add_tags", "remove_tags", "destroy")


class XapiTimeout(Exception):
    """Something we waited for (a task, an event) did not happen in time."""


class InsecureTLSWarning(UserWarning):
    """TLS verification was turned off for a pool (``verify_tls = false``)."""


class _SecretLike(Protocol):
    def reveal(self) -> str: ...


def _reveal(password: str | _SecretLike) -> str:
    return password if isinstance(password, str) else password.reveal()


def _pretty_fingerprint(hexdigest: str) -> str:
    up = hexdigest.upper()
    return "sha256:" + ":".join(up[i:i + 2] for i in range(0, len(up), 2))


@dataclass(frozen=True)
class TLSSettings:
    """How to trust the pool's HTTPS certificate.

    * ``verify`` true, nothing else: the system CA store, hostname checked.
    * ``ca_bundle``: a PEM file of CAs to trust instead (hostname checked).
    * ``fingerprint``: the SHA-256 of the host certificate; the certificate must match it
      exactly (chain and hostname are not checked: the pin *is* the trust).
    * ``verify`` false: no verification at all; warns on every connection.
    """

    verify: bool = True
    ca_bundle: str | None = None
    fingerprint: str | None = None

    def context(self) -> ssl.SSLContext:
        if self.fingerprint or not self.verify:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        return ssl.create_default_context(cafile=self.ca_bundle)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection that accepts exactly one certificate (by SHA-256 of its DER)."""

    def __init__(self, *args: Any, pin: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pin = pin

    def connect(self) -> None:
        super().connect()
        der = self.sock.getpeercert(binary_form=True) or b""
        actual = hashlib.sha256(der).hexdigest()
        if actual != self._pin:
            self.sock.close()
            raise ssl.SSLCertVerificationError(
                f"certificate fingerprint mismatch: expected {_pretty_fingerprint(self._pin)}, "
                f"the server presented {_pretty_fingerprint(actual)}")


class _Transport(xmlrpc.client.Transport):
    """The SDK's HTTP(S) transport with a timeout and bioxen's TLS rules."""

    def __init__(self, https: bool, tls: TLSSettings, timeout: float) -> None:
        super().__init__()
        self._https, self._tls, self._timeout = https, tls, timeout
        self._pin = normalise_fingerprint(tls.fingerprint) if tls.fingerprint else None
        # With a pinned certificate we ask every host for the coordinator's certificate
        # fingerprint; a member answering HOST_IS_SLAVE sends it (xapi api_server.ml), over
        # the connection we already trust, so the redirect can be pinned too.
        self.coordinator_thumbprint: str | None = None
        # Set once a request may have reached the pool: before that, a failure (refused,
        # TLS, unreachable) means the call certainly did not run.
        self.request_sent = False

    def request(self, host: Any, handler: str, request_body: bytes, verbose: bool = False) -> Any:
        """One attempt, never two: xmlrpc.client's version re-sends the request when the
        connection resets, which runs a call twice if the pool had already run it."""
        self.request_sent = False
        self._drop_cold_connection()
        return self.single_request(host, handler, request_body, verbose)

    def _drop_cold_connection(self) -> None:
        """Close a kept-alive connection the pool has closed meanwhile (it reads as ready:
        EOF), so the request goes out on a fresh one and is not mistaken for a lost reply."""
        conn = self._connection[1] if self._connection else None
        sock = getattr(conn, "sock", None)
        if sock is None:
            return
        try:
            readable = select.select([sock], [], [], 0)[0]
        except (OSError, ValueError):
            readable = [sock]
        if readable:
            self.close()

    def send_request(self, host: Any, handler: str, request_body: bytes, debug: bool) -> Any:
        connection = self.make_connection(host)
        if connection.sock is None:
            connection.connect()  # a failure here: nothing was sent
        self.request_sent = True
        return super().send_request(host, handler, request_body, debug)

    def send_headers(self, connection: http.client.HTTPConnection, headers: list) -> None:
        if self._pin:
            headers = [*headers, (_THUMBPRINT_REQUEST, "sha-256:master")]
        super().send_headers(connection, headers)

    def parse_response(self, response: http.client.HTTPResponse) -> Any:
        self.coordinator_thumbprint = response.getheader(_THUMBPRINT_RESPONSE)
        return super().parse_response(response)

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        chost, self._extra_headers, _x509 = self.get_host_info(host)
        if not self._https:
            conn: http.client.HTTPConnection = http.client.HTTPConnection(
                chost, timeout=self._timeout)
        elif self._pin:
            conn = _PinnedHTTPSConnection(chost, timeout=self._timeout,
                                          context=self._tls.context(), pin=self._pin)
        else:
            conn = http.client.HTTPSConnection(chost, timeout=self._timeout,
                                               context=self._tls.context())
        self._connection = host, conn
        return conn


T = TypeVar("T")


class XapiSession:
    """One logged-in XAPI session.  ``with XapiSession(...) as s: s.call("VM.get_all")``."""

    def __init__(self, url: str, user: str, password: str | _SecretLike, *,
                 tls: TLSSettings = TLSSettings(), timeout: float = DEFAULT_TIMEOUT,
                 label: str | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"expected an http:// or https:// URL for the pool, got {url!r}")
        self.url = url
        self.user = user
        self.tls = tls
        self.timeout = timeout
        self.busy_timeout = 30.0  # how long to retry calls the pool refused as busy
        self.label = label or url  # what messages call this pool ("pool 'lab'")
        self._password = password
        self._sdk: XenAPI.Session | None = None
        self._last_transport: _Transport | None = None
        self._tls_in_use = tls
        self.coordinator_url = url

    # ------------------------------------------------------------------ login / logout
    def __enter__(self) -> "XapiSession":
        if self._sdk is None:  # a session opened by login() may be entered as well
            self.login()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.logout()

    def login(self) -> None:
        """Log in (following one ``HOST_IS_SLAVE`` redirect to the coordinator)."""
        if self._sdk is not None:
            self.logout()  # never leak the previous session
        url = self.url
        tls = self.tls
        for _hop in range(2):
            try:
                self._sdk = self._login_at(url, tls)
                self.coordinator_url = url
                self._tls_in_use = tls
                return
            except XenAPI.Failure as f:
                details = [str(d) for d in f.details]
                code = details[0] if details else "UNKNOWN"
                if code == "HOST_IS_SLAVE" and len(details) > 1 and url == self.url:
                    coordinator = self._redirect_url(url, details[1])
                    log.info("%s: %s is a pool member; logging in on the coordinator %s",
                             self.label, _host_of(url), _host_of(coordinator))
                    thumbprint = self._last_transport.coordinator_thumbprint
                    if tls.fingerprint and thumbprint:
                        tls = replace(tls, fingerprint=thumbprint)
                    url = coordinator
                    continue
                if code in ("SESSION_AUTHENTICATION_FAILED", "SESSION_AUTHORIZATION_FAILED"):
                    raise XapiAuthError(code, details[1:],
                                        f"login to {self.label} ({_host_of(url)}) as "
                                        f"{self.user!r}") from None
                raise XapiError(code, details[1:], f"login to {self.label}") from None
        raise XapiError("HOST_IS_SLAVE", [], f"login to {self.label}: the coordinator "
                        "also answered HOST_IS_SLAVE (pool changing coordinator?)")

    def _login_at(self, url: str, tls: TLSSettings) -> XenAPI.Session:
        https = url.startswith("https:")
        self._tls_in_use = tls
        if https and not tls.verify and not tls.fingerprint:
            message = (f"TLS verification is OFF for {self.label} ({_host_of(url)}): "
                       "the password is sent to whoever answers. Set ca_bundle or fingerprint "
                       "instead of verify_tls = false.")
            warnings.warn(message, InsecureTLSWarning, stacklevel=3)
            log.warning("%s", message)
        transport = self._last_transport = _Transport(https, tls, self.timeout)
        sdk = XenAPI.Session(url, transport=transport)
        self._guard_transport(url, lambda: sdk.xenapi.login_with_password(
            self.user, _reveal(self._password), API_VERSION, ORIGINATOR))
        return sdk

    @staticmethod
    def _redirect_url(url: str, coordinator: str) -> str:
        parts = urllib.parse.urlsplit(url)
        host = coordinator.strip()
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass  # a host name
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def logout(self) -> None:
        """Log out; never raises (a session that is already gone is fine)."""
        sdk, self._sdk = self._sdk, None
        if sdk is None:
            return
        try:
            sdk.xenapi.session.logout()
        except Exception as e:  # noqa: BLE001 - logging out must not mask the real outcome
            log.debug("%s: logout failed: %s", self.label, type(e).__name__)
        finally:
            try:
                sdk.transport.close() if sdk.transport else None
            except Exception:  # noqa: BLE001
                pass

    @property
    def logged_in(self) -> bool:
        return self._sdk is not None

    @property
    def ref(self) -> str | None:
        """This session's ref: a credential, never to be logged or written."""
        return self._sdk.handle if self._sdk is not None else None

    def log_out_other(self, ref: str) -> None:
        """Log out another session of this pool by its ref (one a killed process left)."""
        if self._sdk is None:
            raise RuntimeError("XapiSession.log_out_other before login()")
        sdk = self._sdk
        # session.logout ends the session it is called with, so call it with that one's ref
        reply = self._guard_transport(self.coordinator_url, lambda: sdk.session.logout(ref))
        if reply.get("Status") != "Success":
            details = [str(d) for d in reply.get("ErrorDescription") or ["UNKNOWN"]]
            raise XapiError(details[0], details[1:], "session.logout (another session)")

    # ------------------------------------------------------------------ calls
    def call(self, method: str, *args: Any) -> Any:
        """Call ``method`` (``"VM.clone"``, ``"Async.VM.start"``) and return its ``Value``.

        A pool that is momentarily busy (``OTHER_OPERATION_IN_PROGRESS`` on the object,
        ``TOO_BUSY``, ``TOO_MANY_PENDING_TASKS``, ``HOST_STILL_BOOTING``) refused to *start*
        the call, so it is retried with backoff for up to ``busy_timeout`` seconds.  A lost
        reply (:class:`XapiReplyLost`) is asked again only for a call :func:`safe_to_resend`;
        for others it is raised (see :meth:`call_or_find`).
        """
        return self._retry_busy(method, lambda: self._call_resending_safe(method, *args))

    def call_for_cleanup(self, method: str, *args: Any) -> None:
        """:meth:`call` on a path that is already failing (destroying a task or disk made for
        a step that went wrong): its own failure is dropped, since the error that matters is
        the one being raised."""
        try:
            self.call(method, *args)
        except (XapiError, XapiConnectionError):
            pass

    def _retry_busy(self, method: str, fn: Callable[[], T]) -> T:
        """``fn()``, again with backoff while the pool answers that it is too busy to start
        it (for up to ``busy_timeout`` seconds)."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.2
        while True:
            try:
                return fn()
            except XapiError as e:
                if e.code not in _BUSY or time.monotonic() + delay > deadline:
                    raise
                log.info("%s: %s answered %s; retrying in %.1f s", self.label, method, e.code,
                         delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _call_resending_safe(self, method: str, *args: Any) -> Any:
        """One call; a lost reply is re-sent once, on a new connection, only for a call that
        is harmless to repeat (:func:`safe_to_resend`)."""
        try:
            return self._call_once(method, *args)
        except XapiReplyLost:
            if not safe_to_resend(method):
                raise
            log.info("%s: the reply to %s was lost; asking again", self.label, method)
            return self._call_once(method, *args)

    def call_or_find(self, method: str, *args: Any, find: Callable[[], T | None]) -> Any:
        """A call that must not run twice (``VM.clone``, ``VIF.create``): if its reply is
        lost, ``find()`` looks for what it made (by a token the call carries, or by its
        object and device); only when that finds nothing, so the call cannot have run, is it
        sent again.  A second lost reply with nothing found raises :class:`XapiReplyLost`."""
        return self._recovering(method, lambda: self.call(method, *args), find)

    def _recovering(self, method: str, attempt: Callable[[], T], find: Callable[[], T | None]
                    ) -> T:
        for tries in (1, 2):
            try:
                return attempt()
            except XapiReplyLost:
                found = find()
                if found is not None:
                    log.info("%s: the reply to %s was lost; it had run", self.label, method)
                    return found
                if tries == 2:
                    raise
                log.info("%s: the reply to %s was lost and it had not run; sending it again",
                         self.label, method)
        raise AssertionError("unreachable")

    def set_map_key(self, cls: str, ref: str, field: str, key: str, value: str) -> None:
        """Set one key of a map field (``VM.other_config``): remove, then add, as XAPI has no
        single call for it.  A lost reply re-runs the pair, which is harmless repeated."""
        def put() -> None:
            self.call(f"{cls}.remove_from_{field}", ref, key)
            self.call(f"{cls}.add_to_{field}", ref, key, value)

        def present() -> bool | None:
            return True if self.call(f"{cls}.get_{field}", ref).get(key) == value else None

        self._recovering(f"{cls}.add_to_{field}", put, present)

    def _call_once(self, method: str, *args: Any) -> Any:
        if self._sdk is None:
            raise RuntimeError("XapiSession.call before login()")
        target: Any = self._sdk.xenapi
        for part in method.split("."):
            target = getattr(target, part)
        try:
            return self._guard_transport(self.coordinator_url, lambda: target(*args), method)
        except XenAPI.Failure as f:
            details = [str(d) for d in f.details]
            raise XapiError(details[0] if details else "UNKNOWN", details[1:], method) from None
        except xmlrpc.client.Fault as f:
            # The SDK's own give-up after SESSION_INVALID + three re-logins, or a 500.
            if "session" in f.faultString.lower():
                raise XapiError("SESSION_INVALID", [], f"{method} (the pool rejected the session "
                                "again after logging in anew three times)") from None
            raise XapiError("INTERNAL_ERROR", [f.faultString], method) from None

    def _guard_transport(self, url: str, fn: Callable[[], T], method: str = "login",
                         sent: Callable[[], bool] | None = None) -> T:
        """Turn network and TLS failures into XapiConnectionError naming the URL, and a
        connection broken after the request went out into XapiReplyLost.  ``sent`` says
        whether the request went out (default: the XML-RPC transport's own record)."""
        try:
            return fn()
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, TimeoutError,
                http.client.RemoteDisconnected, http.client.BadStatusLine,
                http.client.IncompleteRead, ssl.SSLEOFError) as e:
            if sent is None:
                transport = self._last_transport
                sent = lambda: transport is not None and transport.request_sent  # noqa: E731
            if not sent():
                raise XapiConnectionError(f"{self.label}: cannot reach {_host_of(url)}: "
                                          f"{_reason(e)}") from None
            raise XapiReplyLost(
                f"{self.label}: the connection to {_host_of(url)} broke after {method} was "
                f"sent ({_reason(e)}); the pool may have run it", method) from None
        except ssl.SSLCertVerificationError as e:
            raise XapiConnectionError(self._tls_hint(url, e)) from None
        except ssl.SSLError as e:
            raise XapiConnectionError(f"{self.label}: TLS error talking to {_host_of(url)}: "
                                      f"{e.reason or e}") from None
        except xmlrpc.client.ProtocolError as e:
            raise XapiConnectionError(f"{self.label}: HTTP {e.errcode} {e.errmsg} from "
                                      f"{_host_of(url)}") from None
        except (OSError, http.client.HTTPException) as e:
            raise XapiConnectionError(f"{self.label}: cannot reach {_host_of(url)}: "
                                      f"{_reason(e)}") from None

    def _tls_hint(self, url: str, error: ssl.SSLCertVerificationError) -> str:
        message = getattr(error, "verify_message", None) or (
            error.args[0] if error.args and isinstance(error.args[0], str) else str(error))
        parts = urllib.parse.urlsplit(url)
        presented = ""
        try:
            pem = ssl.get_server_certificate((parts.hostname, parts.port or 443), timeout=5)
            presented = _pretty_fingerprint(
                hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest())
        except (OSError, ValueError):
            pass
        hint = (f"{self.label}: the TLS certificate of {_host_of(url)} was not trusted "
                f"({message}).")
        if presented and not self._tls_in_use.fingerprint:
            hint += (f" It presents {presented}; if you have checked that on the host "
                     f"(`openssl x509 -in /etc/xensource/xapi-ssl.pem -noout -fingerprint "
                     f"-sha256`), set fingerprint = \"{presented}\" for this pool, or give "
                     f"ca_bundle = the CA file that signed it.")
        return hint

    # ------------------------------------------------------------------ HTTP handlers
    def put(self, path: str, query: dict[str, str], body: bytes) -> tuple[int, str]:
        """``PUT`` ``body`` to one of XAPI's HTTP handlers (``/import_raw_vdi``) on the
        coordinator, authenticated by this session (``session_id`` in the query), over a
        connection with the same TLS rules as the XML-RPC calls.  A plain body with
        ``Content-Length`` (XAPI refuses HTTP chunked encoding); one redirect to the host that
        sees the storage is followed.  Returns the HTTP status and reason."""
        if self._sdk is None:
            raise RuntimeError("XapiSession.put before login()")
        params = urllib.parse.urlencode({"session_id": self._sdk._session, **query})
        url = urllib.parse.urljoin(self.coordinator_url, f"{path}?{params}")
        for _hop in range(2):
            parts = urllib.parse.urlsplit(url)
            transport = _Transport(parts.scheme == "https", self._tls_in_use, self.timeout)
            conn = transport.make_connection(parts.netloc)

            request_sent = [False]

            def exchange() -> http.client.HTTPResponse:
                conn.request("PUT", f"{parts.path}?{parts.query}", body=body,
                             headers={"Content-Type": "application/octet-stream"})
                request_sent[0] = True
                response = conn.getresponse()
                response.read()
                return response

            try:
                response = self._guard_transport(url, exchange, f"PUT {path}",
                                                 sent=lambda: request_sent[0])
            finally:
                conn.close()
            location = response.getheader("Location")
            if response.status not in (301, 302, 307) or not location:
                return response.status, response.reason
            url = urllib.parse.urljoin(url, location)
        return response.status, response.reason

    # ------------------------------------------------------------------ waiting
    def wait_until(self, classes: list[str] | Callable[[], list[str]],
                   check: Callable[[], T | None], timeout: float, what: str) -> T:
        """Return ``check()``'s first non-None value, re-checking whenever ``event.from``
        reports a change in ``classes``; raise :class:`XapiTimeout` after ``timeout`` s.

        ``classes`` are subscriptions (``"vm/<ref>"``, ``"task/<ref>"``; a bare class name
        means every object of it, which on a busy pool is a flood).  It may be a function,
        read after each check, when the objects to watch become known while waiting (a VM's
        guest metrics appear once it has booted)."""
        subscriptions = classes if callable(classes) else (lambda: classes)
        deadline = time.monotonic() + timeout
        token = ""
        use_events = True
        while True:
            result = check()
            if result is not None:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise XapiTimeout(f"{self.label}: timed out after {timeout:g} s waiting for "
                                  f"{what}")
            if use_events:
                try:
                    reply = self.call("event_from", subscriptions(), token,
                                      float(min(remaining, _EVENT_WAIT)))
                    token = reply["token"]
                    continue
                except XapiError as e:
                    if e.code not in ("MESSAGE_METHOD_UNKNOWN", "EVENT_FROM_TOKEN_PARSE_FAILURE"):
                        raise
                    use_events = e.code != "MESSAGE_METHOD_UNKNOWN"
                    token = ""
            time.sleep(min(0.5, max(0.0, remaining)))

    def wait_task(self, task: str, timeout: float, what: str) -> str:
        """Wait for an ``Async.*`` task; return its decoded result (a ref or ``""``).

        A failed task raises :class:`XapiError` with the task's ``error_info``; on timeout the
        task is cancelled and :class:`XapiTimeout` raised.  The task is destroyed either way.
        """
        def finished() -> dict | None:
            record = self.call("task.get_record", task)
            return record if record["status"] not in ("pending", "cancelling") else None

        try:
            try:
                record = self.wait_until([f"task/{task}"], finished, timeout, what)
            except XapiTimeout:
                try:
                    self.call("task.cancel", task)
                except XapiError:
                    pass
                raise
            if record["status"] == "success":
                return _decode_task_result(record.get("result", ""))
            info = [str(x) for x in record.get("error_info") or ["INTERNAL_ERROR"]]
            raise XapiError(info[0], info[1:], record.get("name_label") or what)
        finally:
            self.call_for_cleanup("task.destroy", task)

    def run_async(self, method: str, *args: Any, timeout: float, what: str,
                  find: Callable[[], str | None] | None = None) -> str:
        """``Async.<method>`` then :meth:`wait_task`.  Synchronous failures raise as well.

        A task that fails because the pool was busy never started: it is run again (as
        :meth:`call` does).  If the reply carrying the task is lost, the task is unknown:
        ``find()`` says whether its work was done (returning the result, e.g. the new VM) —
        else the call is sent again; without ``find`` :class:`XapiReplyLost` is raised.
        """
        def attempt() -> str:
            task = self.call(f"Async.{method}", *args)
            return self.wait_task(task, timeout, what)

        if find is None:
            return self._retry_busy(method, attempt)

        def found() -> str | None:
            self._await_lost_task(method, timeout)
            return find()

        return self._retry_busy(method, lambda: self._recovering(f"Async.{method}", attempt,
                                                                 found))

    def _await_lost_task(self, method: str, timeout: float) -> None:
        """After a lost reply to ``Async.<method>`` its task, if the call ran, is unknown but
        among the pool's unfinished tasks of that name: wait until none is left, so that the
        caller's check sees the work done, not half done (another client's task of the same
        name only makes the wait longer).  Its record is left for XAPI to remove (an hour
        after it ends): which one it was cannot be told."""
        label = f"Async.{method}"
        running: list[str] = []

        def none_running() -> bool | None:
            running[:] = [ref for ref, task in self.call("task.get_all_records").items()
                          if task["name_label"] == label
                          and task["status"] in ("pending", "cancelling")]
            return None if running else True

        self.wait_until(lambda: [f"task/{ref}" for ref in running], none_running, timeout,
                        f"the {label} tasks in progress to end")


def _decode_task_result(text: str) -> str:
    """A task's ``result`` is an XML-RPC ``<value>…</value>`` fragment (taskHelper.ml)."""
    if not text:
        return ""
    try:
        (value,), _ = xmlrpc.client.loads(
            f"<methodResponse><params><param>{text}</param></params></methodResponse>")
        return str(value)
    except Exception:  # noqa: BLE001 - an unexpected shape: hand back the raw text
        return text


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _host_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.netloc or url

