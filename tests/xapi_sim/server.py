"""XML-RPC over HTTP(S) in front of :class:`XapiSimulator`, as xapi serves it.

* ``POST /`` and ``POST /RPC2``, HTTP/1.1 keep-alive, ``text/xml``; 404 elsewhere.
* Every API answer is a ``Status`` struct (never an XML-RPC ``<fault>``).
* A *member* endpoint plays a pool member: logins answer ``HOST_IS_SLAVE [coordinator
  address]``.  The coordinator listens on 127.0.0.2 and the member on 127.0.0.1 *with the same
  port*, so the bare address XAPI returns is enough to reach the coordinator, as on a real pool.
* HTTPS endpoints use a certificate from :mod:`tests.xapi_sim.tls`.
"""
from __future__ import annotations

import socket
import ssl
import threading
import xmlrpc.client
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .simulator import XapiSimulator
from .tls import CertFiles, make_certificates


THUMBPRINT_REQUEST = "x-xenapi-request-host-certificate-thumbprint"
THUMBPRINT_RESPONSE = "x-xenapi-response-host-certificate-thumbprint"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle plus the client's
    # delayed ACK would add ~40 ms to every call.
    disable_nagle_algorithm = True
    server: "SimServer"

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path not in ("/", "/RPC2"):
            self._send(404, b"Not found", "text/plain")
            return
        try:
            params, method = xmlrpc.client.loads(body, use_builtin_types=False)
        except Exception as e:  # malformed XML-RPC: xapi answers with an error, not a crash
            reply = {"Status": "Failure",
                     "ErrorDescription": ["XMLRPC_UNMARSHAL_FAILURE", "methodCall", str(e)]}
            method = "?"
        else:
            if self.server.take(self.server.drop_next, method):
                self._hang_up()  # the request is lost: the call never runs
                return
            reply = self.server.answer(method, params)
            if self.server.take(self.server.lose_reply_next, method):
                self._hang_up()  # the call ran; its reply is lost
                return
        extra = {}
        if (self.server.member and self.server.coordinator_thumbprint
                and self.headers.get(THUMBPRINT_REQUEST, "").lower() == "sha-256:master"
                and reply.get("ErrorDescription", [""])[0] == "HOST_IS_SLAVE"):
            # api_server.ml: a member tells a pinning client the coordinator's certificate.
            extra[THUMBPRINT_RESPONSE] = self.server.coordinator_thumbprint
        try:
            data = xmlrpc.client.dumps((reply,), methodresponse=True, allow_none=False)
        except TypeError as e:  # a simulator bug must not look like a network error
            data = xmlrpc.client.dumps(({"Status": "Failure", "ErrorDescription": [
                "INTERNAL_ERROR", f"cannot marshal reply to {method}: {e}"]},),
                methodresponse=True)
        self._send(200, data.encode(), "text/xml", extra)
        if self.server.take(self.server.close_after_reply, method):
            self._hang_up()  # as a pool closing an idle kept-alive connection

    def _hang_up(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)
        self.server.hang_ups += 1

    def do_PUT(self) -> None:  # noqa: N802 - XAPI's HTTP handlers (/import_raw_vdi)
        from .config_drive import handle_put
        if self.server.drop_next.get("import_raw_vdi", 0) > 0:  # the upload is cut off
            self.server.drop_next["import_raw_vdi"] -= 1
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.server.member:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._send(401, b"", "text/plain")  # a member knows no coordinator session
            return
        handle_put(self, self.server.sim)

    def _send(self, code: int, data: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(code)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet in tests
        pass


class SimServer(ThreadingHTTPServer):
    """One listening endpoint (coordinator or member, HTTP or HTTPS)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sim: XapiSimulator, host: str, port: int, *, member: bool = False,
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__((host, port), _Handler)
        self.sim, self.member, self.tls = sim, member, tls
        self.coordinator_thumbprint: str | None = None  # set on HTTPS members
        # Connection faults, each ``{wire method name: how many of its next requests}``:
        # drop_next: the connection closes on receipt, the call never runs (a lost request);
        # lose_reply_next: the call runs, then the connection closes with no reply (a lost
        # reply: what a reset after the pool did the work looks like to the client);
        # close_after_reply: the reply is sent, then the connection closed, as a pool does
        # to an idle kept-alive connection.
        self.drop_next: dict[str, int] = {}
        self.lose_reply_next: dict[str, int] = {}
        self.close_after_reply: dict[str, int] = {}
        self._fault_lock = threading.Lock()
        self.hang_ups = 0  # connections closed by one of those faults (tests wait for it)
        self._thread: threading.Thread | None = None

    def take(self, faults: dict[str, int], method: str) -> bool:
        """Use up one of ``method``'s pending faults; whether there was one."""
        with self._fault_lock:  # (requests are served by concurrent threads)
            if faults.get(method, 0) <= 0:
                return False
            faults[method] -= 1
            return True

    def clear_faults(self) -> None:
        for faults in (self.drop_next, self.lose_reply_next, self.close_after_reply):
            faults.clear()
        self.hang_ups = 0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}/"

    def answer(self, method: str, params: tuple):
        if self.member:
            if method.startswith("session.login") or method.startswith("session_login"):
                return {"Status": "Failure",
                        "ErrorDescription": ["HOST_IS_SLAVE", self.sim.coordinator_address]}
            return {"Status": "Failure",
                    "ErrorDescription": ["SESSION_INVALID", str(params[0]) if params else ""]}
        return self.sim.call(method, params)

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def finish_request(self, request, client_address) -> None:
        if self.tls is not None:
            try:
                request.settimeout(10)
                request.do_handshake()
                request.settimeout(None)
            except (ssl.SSLError, OSError):
                return  # the client refused our certificate (that is what TLS tests expect)
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        pass  # connection resets from clients that gave up are normal in tests

    def start(self) -> "SimServer":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"xapi-sim {self.url}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


@dataclass
class RunningPool:
    """A simulated pool on loopback: coordinator and member, HTTP and HTTPS."""

    sim: XapiSimulator
    certs: CertFiles
    http: SimServer            # coordinator, http://127.0.0.2:P/
    https: SimServer           # coordinator, https://127.0.0.2:Q/
    member_http: SimServer     # member, http://127.0.0.1:P/ (HOST_IS_SLAVE → 127.0.0.2)
    member_https: SimServer    # member, https://127.0.0.1:Q/ (its own certificate, same CA)
    https_other_cert: SimServer  # coordinator state behind an unrelated certificate

    @property
    def url(self) -> str:
        return self.http.url

    def servers(self) -> list[SimServer]:
        return [self.http, self.https, self.member_http, self.member_https, self.https_other_cert]

    def stop(self) -> None:
        for server in self.servers():
            server.stop()


def start_pool(cert_dir: Path, sim: XapiSimulator | None = None) -> RunningPool:
    """Start every endpoint; member ports equal coordinator ports (retrying on a clash)."""
    sim = sim or XapiSimulator(coordinator_address="127.0.0.2")
    certs = make_certificates(cert_dir)
    tls = _server_context(certs.cert_file, certs.key_file)
    for _attempt in range(20):
        http = SimServer(sim, "127.0.0.2", 0)
        https = SimServer(sim, "127.0.0.2", 0, tls=tls)
        try:
            member_http = SimServer(sim, "127.0.0.1", http.server_address[1], member=True)
            member_https = SimServer(
                sim, "127.0.0.1", https.server_address[1], member=True,
                tls=_server_context(certs.member_cert_file, certs.member_key_file))
            member_https.coordinator_thumbprint = "sha-256:" + certs.fingerprint.split(":", 1)[1]
        except OSError:  # the port is taken on 127.0.0.1: try another pair
            http.server_close()
            https.server_close()
            continue
        break
    else:  # pragma: no cover - 20 clashes in a row
        raise RuntimeError("could not find ports free on both 127.0.0.1 and 127.0.0.2")
    other = SimServer(sim, "127.0.0.2", 0,
                      tls=_server_context(certs.other_cert_file, certs.other_key_file))
    pool = RunningPool(sim, certs, http, https, member_http, member_https, other)
    for server in pool.servers():
        server.start()
    return pool
