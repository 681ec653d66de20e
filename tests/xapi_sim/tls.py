"""Certificates for the simulator's HTTPS endpoints, generated with ``cryptography``.

A throwaway CA signs one server certificate valid for ``localhost``, ``127.0.0.1`` and
``127.0.0.2`` (the simulated pool member and coordinator).  Tests verify against the CA file
(the ``ca_bundle`` setting), pin the server certificate's SHA-256 fingerprint (``fingerprint``),
or turn verification off.  The pool member has its own certificate from the same CA (as each XCP-ng host
has its own), and a second, unrelated self-signed certificate lets tests check that the wrong
certificate is refused.
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class CertFiles:
    ca_file: Path         # PEM of the CA that signed the server certificate
    cert_file: Path       # server certificate (PEM)
    key_file: Path        # server key (PEM, unencrypted)
    fingerprint: str      # "sha256:AB:CD:…" of the server certificate (DER)
    other_cert_file: Path  # an unrelated self-signed certificate
    other_key_file: Path
    other_fingerprint: str
    member_cert_file: Path  # the pool member's own certificate (same CA, its own key)
    member_key_file: Path
    member_fingerprint: str


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _fingerprint(cert: x509.Certificate) -> str:
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return "sha256:" + ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _write_key(key, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _cert(subject: str, issuer_name: x509.Name, issuer_key, public_key, *, ca: bool,
          sans: list | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates(directory: Path) -> CertFiles:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("xapi-sim test CA", _name("xapi-sim test CA"), ca_key, ca_key.public_key(), ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("127.0.0.2"))]
    server = _cert("xcp-sim-1", ca.subject, ca_key, key.public_key(), ca=False, sans=sans)
    member_key = ec.generate_private_key(ec.SECP256R1())
    member = _cert("xcp-sim-2", ca.subject, ca_key, member_key.public_key(), ca=False, sans=sans)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("impostor", _name("impostor"), other_key, other_key.public_key(), ca=False,
                  sans=sans)

    files = CertFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                      _fingerprint(server), directory / "other.pem", directory / "other.key",
                      _fingerprint(other), directory / "member.pem", directory / "member.key",
                      _fingerprint(member))
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(key, files.key_file)
    files.other_cert_file.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    _write_key(other_key, files.other_key_file)
    files.member_cert_file.write_bytes(member.public_bytes(serialization.Encoding.PEM))
    _write_key(member_key, files.member_key_file)
    return files
