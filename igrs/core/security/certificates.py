"""X.509 certificates bound to the Ed25519 identity keys, for TLS 1.3 between paired devices
(specs/security.md §11). No CA and no clock: sans-IO.

A device's identity key certifies a TLS key (``device_certificate``): the identity acts as the
issuer ``O=igrs identity, CN=<SHA-256 of the identity key, hex>`` of that one certificate. A
peer trusts the identity key it stored at pairing and nothing else: it builds a trust anchor
for that key itself (``pin_certificate``, a CA certificate of the key under the issuer's name,
used as a partial-chain anchor), so that TLS accepts exactly the certificates that key signed.
The identity key signs only these DER certificates (they begin with a SEQUENCE, 0x30), never a
TLS transcript, so its pipe-handshake signatures (§5, which begin with a 2-byte length) and its
certificates cannot be confused.
"""

from __future__ import annotations

import datetime
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from igrs.core.security.identity import LocalIdentity, check_public_key
from igrs.errors import SecurityError

# project choice: valid from 2000 to the RFC 5280 "no well-defined expiration" date. Home devices
# often have no clock until NTP answers (or none at all); the certificate is only as valid as
# the pairing that pins its issuer, and unpairing ends it.
NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
IDENTITY_ORG = "igrs identity"
DEVICE_ORG = "igrs device"
PIN_ORG = "igrs pin"


def identity_name(public_key: bytes) -> x509.Name:
    """The X.509 name of an identity key: ``O=igrs identity, CN=<SHA-256 of the key, hex>``."""
    check_public_key(public_key)
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, IDENTITY_ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, _hex(public_key))])


def _hex(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()


def _key_usage(*, digital_signature: bool = False, key_cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign,
                         crl_sign=False, encipher_only=False, decipher_only=False)


def _serial(key: bytes) -> int:
    return int.from_bytes(hashlib.sha256(key).digest()[:16], "big") >> 1 or 1


def device_certificate(identity: LocalIdentity, tls_key: bytes) -> bytes:
    """The DER certificate of the TLS key ``tls_key`` (raw Ed25519 public key), issued and
    signed by ``identity``: subject ``O=igrs device, CN=<device id>``, TLS client and server."""
    check_public_key(tls_key)
    public = Ed25519PublicKey.from_public_bytes(tls_key)
    issuer_key = identity.private_key.public_key()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEVICE_ORG),
                         x509.NameAttribute(NameOID.COMMON_NAME, str(identity.device_id))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(identity_name(identity.public_key))
        .public_key(public)
        .serial_number(_serial(tls_key))
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False)
        .sign(identity.private_key, None)
    )
    return cert.public_bytes(Encoding.DER)


def pin_certificate(peer_key: bytes, pinned_by: LocalIdentity) -> bytes:
    """The trust anchor of a paired peer's identity key (DER): a CA certificate of ``peer_key``
    under its ``identity_name``, issued and signed by the local identity that pins it. Loaded as
    a partial-chain anchor, whose own signature TLS does not check: it only names the key that
    the peer's device certificate must be signed by."""
    public = Ed25519PublicKey.from_public_bytes(_checked(peer_key))
    pinner = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, PIN_ORG),
                        x509.NameAttribute(NameOID.COMMON_NAME, _hex(pinned_by.public_key))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(identity_name(peer_key))
        .issuer_name(pinner)
        .public_key(public)
        .serial_number(_serial(peer_key))
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(pinned_by.private_key, None)
    )
    return cert.public_bytes(Encoding.DER)


def _checked(key: bytes) -> bytes:
    check_public_key(key)
    return key


def issued_by(certificate: bytes, public_key: bytes) -> bool:
    """Whether the DER ``certificate`` is a device certificate of the identity ``public_key``:
    issued under its name and signed by it (the per-request pin check of a TLS peer)."""
    try:
        cert = x509.load_der_x509_certificate(certificate)
        if cert.issuer != identity_name(public_key):
            return False
        Ed25519PublicKey.from_public_bytes(public_key).verify(cert.signature, cert.tbs_certificate_bytes)
    except (ValueError, InvalidSignature, SecurityError):
        return False
    return True


__all__ = ["device_certificate", "identity_name", "issued_by", "pin_certificate"]
