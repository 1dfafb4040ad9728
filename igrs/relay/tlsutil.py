"""TLS for every relay connection: self-signed node certificates, fingerprints, contexts."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_self_signed(
    cert_path: Path, key_path: Path, hosts: list[str] | None = None, days: int = 3650
) -> None:
    """Write an ECDSA P-256 self-signed certificate valid for ``hosts`` (names or IPs)."""
    hosts = hosts or ["localhost", "127.0.0.1"]
    key = ec.generate_private_key(ec.SECP256R1())
    # a unique name: several self-signed node certificates may sit in one trust store
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                         f"igrs-relay-{os.urandom(6).hex()}")])
    alt: list[x509.GeneralName] = []
    for h in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def fingerprint_pem(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return fingerprint_der(cert.public_bytes(serialization.Encoding.DER))


def fingerprint_der(der: bytes) -> str:
    """SHA-256 over the DER certificate, as colon-separated upper-case hex."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def normalise_fingerprint(fp: str) -> str:
    hexdigits = fp.replace(":", "").replace(" ", "").upper()
    if len(hexdigits) != 64 or any(ch not in "0123456789ABCDEF" for ch in hexdigits):
        raise ValueError("a SHA-256 fingerprint is 64 hex digits")
    return ":".join(hexdigits[i : i + 2] for i in range(0, 64, 2))


def fingerprint_matches(der: bytes, expected: str) -> bool:
    return hmac.compare_digest(fingerprint_der(der), normalise_fingerprint(expected))


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


def client_context(cafile: str | Path | None, fingerprint: str | None) -> ssl.SSLContext:
    """Verify by CA file (hostname checked) or by pinned fingerprint (checked after handshake)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if fingerprint is not None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the pin is checked by the caller on the DER cert
    elif cafile is not None:
        ctx.load_verify_locations(cafile)
    else:
        ctx.load_default_certs()
    return ctx
