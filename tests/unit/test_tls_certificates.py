"""Certificates bound to the identity keys and the pinned TLS 1.3 contexts (specs/security.md §11):
the certificate names and signs what the spec says; a handshake (TLS engine on memory buffers)
succeeds between paired identities only."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from igrs.core.security.certificates import device_certificate, identity_name, issued_by, pin_certificate
from igrs.core.security.identity import LocalIdentity
from igrs.net.tls import PinnedTls


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_device_certificate_is_issued_by_the_identity_key() -> None:
    me, other = LocalIdentity.generate(), LocalIdentity.generate()
    tls_key = Ed25519PrivateKey.generate()
    der = device_certificate(me, _raw(tls_key))
    cert = x509.load_der_x509_certificate(der)
    assert cert.issuer == identity_name(me.public_key)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == str(me.device_id)
    assert cert.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) == _raw(tls_key)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert issued_by(der, me.public_key)
    assert not issued_by(der, other.public_key)
    assert not issued_by(der[:-1] + bytes([der[-1] ^ 1]), me.public_key)  # a flipped signature bit
    assert not issued_by(b"not a certificate", me.public_key)
    # the same name with another key's signature (an impostor's certificate under my issuer name)
    forged = device_certificate(LocalIdentity.from_key(me.device_id, other.private_key), _raw(tls_key))
    assert not issued_by(forged, me.public_key)


def test_pin_certificate_is_a_ca_of_the_peer_key_under_its_name() -> None:
    me, peer = LocalIdentity.generate(), LocalIdentity.generate()
    cert = x509.load_der_x509_certificate(pin_certificate(peer.public_key, me))
    assert cert.subject == identity_name(peer.public_key) != identity_name(me.public_key)
    assert cert.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) == peer.public_key
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext) -> tuple[str | None, str | None]:
    """Run a TLS handshake between two contexts over memory buffers, then one application
    record each way; returns (client error, server error)."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_side=False)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    errors: dict[str, str | None] = {"c": None, "s": None}
    done = {"c": False, "s": False}
    for _ in range(20):
        for name, obj in (("c", c), ("s", s)):
            if errors[name] or done[name]:
                continue
            try:
                obj.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                errors[name] = exc.reason or str(exc)
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    if done["c"] and done["s"]:  # TLS 1.3: the server checks the client's certificate last
        try:
            c.write(b"ping")
            s_in.write(c_out.read())
            assert s.read(4) == b"ping"
        except ssl.SSLError as exc:
            errors["s"] = exc.reason or str(exc)
    elif done["c"] and errors["s"]:
        try:  # the client learns of the refusal when it reads the server's alert
            c_in.write(s_out.read())
            c.read(1)
        except ssl.SSLError as exc:
            errors["c"] = exc.reason or str(exc)
    return errors["c"], errors["s"]


@pytest.fixture(scope="module")
def parties() -> dict[str, LocalIdentity]:
    return {name: LocalIdentity.generate() for name in ("tv", "pc", "stranger")}


def test_paired_identities_agree_on_tls13(parties: dict[str, LocalIdentity]) -> None:
    tv, pc = PinnedTls(parties["tv"]), PinnedTls(parties["pc"])
    tv.trust(parties["pc"].public_key)
    client = pc.client_context(parties["tv"].public_key)
    assert _handshake(client, tv.server_context()) == (None, None)
    assert client.minimum_version == ssl.TLSVersion.TLSv1_3


def test_a_client_of_another_key_is_refused(parties: dict[str, LocalIdentity]) -> None:
    tv, stranger = PinnedTls(parties["tv"]), PinnedTls(parties["stranger"])
    tv.trust(parties["pc"].public_key)  # the TV trusts the PC, not the stranger
    client = stranger.client_context(parties["tv"].public_key)
    client_error, server_error = _handshake(client, tv.server_context())
    assert server_error is not None and client_error is not None


def test_a_server_of_another_key_is_refused(parties: dict[str, LocalIdentity]) -> None:
    impostor, pc = PinnedTls(parties["stranger"]), PinnedTls(parties["pc"])
    impostor.trust(parties["pc"].public_key)
    client_error, _ = _handshake(pc.client_context(parties["tv"].public_key), impostor.server_context())
    assert client_error == "CERTIFICATE_VERIFY_FAILED"


def test_a_certificate_under_the_pinned_name_but_another_signature_is_refused(
        parties: dict[str, LocalIdentity], tmp_path: Path) -> None:
    """The pin is the key, not the name: a certificate naming the PC's identity as its issuer
    but signed by another key does not pass the chain check."""
    tv = PinnedTls(parties["tv"])
    tv.trust(parties["pc"].public_key)
    tls_key = Ed25519PrivateKey.generate()
    genuine = x509.load_der_x509_certificate(device_certificate(parties["pc"], _raw(tls_key)))
    forged = (x509.CertificateBuilder().subject_name(genuine.subject).issuer_name(genuine.issuer)
              .public_key(tls_key.public_key()).serial_number(genuine.serial_number)
              .not_valid_before(genuine.not_valid_before_utc).not_valid_after(genuine.not_valid_after_utc))
    for ext in genuine.extensions:
        forged = forged.add_extension(ext.value, ext.critical)
    signed = forged.sign(Ed25519PrivateKey.generate(), None)  # not the PC's identity key
    chain = tmp_path / "forged.pem"
    chain.write_bytes(signed.public_bytes(Encoding.PEM) + tls_key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.load_cert_chain(chain)
    _, server_error = _handshake(client, tv.server_context())
    assert server_error is not None
    chain.write_bytes(genuine.public_bytes(Encoding.PEM) + tls_key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    client.load_cert_chain(chain)  # the genuine certificate of the same key passes
    assert _handshake(client, tv.server_context()) == (None, None)
