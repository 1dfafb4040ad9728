"""Device identity: a long-term Ed25519 key pair bound to a device id."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from igrs.core.security._codec import Urandom, bad_message, crypto_errors
from igrs.errors import SecurityError
from igrs.wire.ids import DeviceId

PUBLIC_KEY_LEN = 32
PRIVATE_KEY_LEN = 32
SIGNATURE_LEN = 64


def fingerprint(public_key: bytes) -> str:
    """SHA-256 of the raw public key as 16 groups of 4 hex digits, for people to compare.

    Project choice: plain SHA-256 of the 32 raw key bytes, so anyone can recompute it with
    standard tools (``sha256sum``) from the key.
    """
    check_public_key(public_key)
    digest = hashlib.sha256(public_key).hexdigest()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def check_public_key(public_key: bytes) -> None:
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_LEN:
        raise bad_message("identity public key must be 32 bytes")


def verify_signature(public_key: bytes, signature: bytes, data: bytes, what: str) -> None:
    """Raise SecurityError unless ``signature`` is a valid Ed25519 signature of ``data``."""
    check_public_key(public_key)
    if len(signature) != SIGNATURE_LEN:
        raise bad_message(f"{what}: signature must be 64 bytes")
    with crypto_errors(what):
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)


@dataclass(frozen=True, slots=True, eq=False)
class LocalIdentity:
    """This device's id and identity key (the private half never leaves this object/keystore)."""

    device_id: DeviceId
    _key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, device_id: DeviceId | None = None, urandom: Urandom = os.urandom) -> LocalIdentity:
        return cls.from_private_bytes(device_id or DeviceId.new(), urandom(PRIVATE_KEY_LEN))

    @classmethod
    def from_private_bytes(cls, device_id: DeviceId, raw: bytes) -> LocalIdentity:
        if len(raw) != PRIVATE_KEY_LEN:
            raise SecurityError("identity private key must be 32 bytes")
        return cls(device_id, Ed25519PrivateKey.from_private_bytes(raw))

    @classmethod
    def from_key(cls, device_id: DeviceId, key: Ed25519PrivateKey) -> LocalIdentity:
        return cls(device_id, key)

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._key

    @property
    def public_key(self) -> bytes:
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)
