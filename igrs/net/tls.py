"""TLS 1.3 between paired devices, authenticated by their Ed25519 identity keys (no CA; each side
pins the other). Design: specs/security.md §11; certificates: igrs/core/security/certificates.py.

    tls = PinnedTls(identity)                 # an ephemeral TLS key certified by the identity key
    server_ctx = tls.server_context()         # asks every client for its certificate ...
    tls.trust(peer_key)                       # ... and accepts those of the keys trusted so far
    client_ctx = tls.client_context(peer_key) # accepts only a server certified by peer_key

    endpoint = TlsEndpoint(device.http, lambda: device.identity, device.keystore.peer_key)
    port = await endpoint.port_for(peer)      # the device's TLS port, the peer's key pinned
    endpoint.verified(transport, peer)        # the connection's client is that peer (now)

A context pins identity keys, not certificates: its only trust anchors are the pin
certificates of those keys, loaded as partial-chain anchors, so a certificate is accepted if
and only if one of the pinned keys signed it. The chain check of OpenSSL admits any peer the
server trusts; ``TlsEndpoint.verified`` then checks, per request, that the certificate was
signed by the key of the device a transfer belongs to, as stored in the keystore now (an
unpaired device is refused even with an established connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from igrs.constants import TLS_CLIENT_CONTEXTS
from igrs.core.security.certificates import device_certificate, issued_by, pin_certificate
from igrs.core.security.handshake import PeerLookup
from igrs.core.security.identity import LocalIdentity
from igrs.errors import ProtocolError
from igrs.net.http import IgrsHttpServer
from igrs.wire.ids import DeviceId
from igrs.wire.memo import Memo

log = logging.getLogger(__name__)


class PinnedTls:
    """The TLS contexts of one local identity. Its TLS key is generated here and lives only in
    memory: the identity key certifies it (``device_certificate``) and never signs a TLS
    handshake itself."""

    def __init__(self, identity: LocalIdentity) -> None:
        self.identity = identity
        key = Ed25519PrivateKey.generate()
        cert = device_certificate(identity, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
        self._chain = ssl.DER_cert_to_PEM_cert(cert).encode() + key.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        self._server: ssl.SSLContext | None = None
        self._trusted: set[bytes] = set()
        self._clients: Memo[bytes, ssl.SSLContext] = Memo(TLS_CLIENT_CONTEXTS)

    def _context(self, protocol: int) -> ssl.SSLContext:
        ctx = ssl.SSLContext(protocol)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False  # identities are keys, not names
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a pin certificate is an anchor by itself
        _load_chain(ctx, self._chain)
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """The one server context: it requires a client certificate signed by a trusted key."""
        if self._server is None:
            self._server = self._context(ssl.PROTOCOL_TLS_SERVER)
            self._server.num_tickets = 0  # no resumption: every connection proves its key
        return self._server

    def trust(self, peer_key: bytes) -> None:
        """Accept the client certificates ``peer_key`` signs (from now on; never withdrawn from
        the context: ``TlsEndpoint.verified`` applies unpairing)."""
        if peer_key not in self._trusted:
            self.server_context().load_verify_locations(cadata=pin_certificate(peer_key, self.identity))
            self._trusted.add(peer_key)

    def client_context(self, peer_key: bytes) -> ssl.SSLContext:
        """A client context that accepts only a server whose certificate ``peer_key`` signed,
        and shows this identity's certificate."""
        ctx = self._clients.get(peer_key)
        if ctx is None:
            ctx = self._context(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(cadata=pin_certificate(peer_key, self.identity))
            self._clients.remember(peer_key, ctx)
        return ctx


def _load_chain(ctx: ssl.SSLContext, pem: bytes) -> None:
    """``load_cert_chain`` reads files only: hand it the PEM through an anonymous memory file
    (Linux), else a private temporary file deleted at once."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("igrs-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="igrs-tls-") as folder:  # mode 0700
        path = os.path.join(folder, "chain.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        ctx.load_cert_chain(path)


def peer_certificate(transport: asyncio.BaseTransport | None) -> bytes | None:
    """The DER certificate the peer of a TLS connection showed (None: not TLS, or none)."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    with contextlib.suppress(ValueError):
        cert = ssl_object.getpeercert(binary_form=True)
        return cert or None
    return None


def is_tls(transport: asyncio.BaseTransport | None) -> bool:
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class TlsEndpoint:
    """The TLS 1.3 port of a device's HTTP server, for the peers it is paired with: listening
    from the first ``port_for`` (after a restart of the HTTP server, again from the next)."""

    def __init__(self, http: IgrsHttpServer, identity: Callable[[], LocalIdentity],
                 peer_key: PeerLookup) -> None:
        self.http = http
        self._identity = identity
        self.peer_key = peer_key
        self._tls: PinnedTls | None = None
        self._lock = asyncio.Lock()

    @property
    def tls(self) -> PinnedTls:
        if self._tls is None:
            self._tls = PinnedTls(self._identity())
        return self._tls

    def _key(self, peer: str | DeviceId) -> bytes | None:
        try:
            return self.peer_key(peer if isinstance(peer, DeviceId) else DeviceId.parse(peer))
        except ProtocolError:
            return None

    async def port_for(self, peer: str | DeviceId) -> int | None:
        """Pin ``peer``'s identity key and return the TLS port (None: ``peer`` is not paired)."""
        key = self._key(peer)
        if key is None:
            return None
        self.tls.trust(key)
        async with self._lock:
            return await self.http.listen_tls(self.tls.server_context())

    def verified(self, transport: asyncio.BaseTransport | None, peer: str | DeviceId) -> bool:
        """Whether the client of this TLS connection showed a certificate signed by ``peer``'s
        identity key, as paired now."""
        cert = peer_certificate(transport)
        key = self._key(peer)
        return cert is not None and key is not None and issued_by(cert, key)


__all__ = ["PinnedTls", "TlsEndpoint", "is_tls", "peer_certificate"]
