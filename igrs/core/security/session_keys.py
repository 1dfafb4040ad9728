"""Session keys (clause 10.5 Apply/TransferSessionKey) from a secure pipe's exported secret.

* ``derive``: both ends compute the same per-session key from the pipe secret, the session's
  client and service ids and a fresh nonce carried in ApplySessionKeyRequest.
* ``wrap``/``unwrap``: carry a key chosen by one end (e.g. a group key) to the other, sealed with
  a per-direction wrapping key, bound to the ids and an optional context (the request's nonce).
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from igrs.core.security._codec import (
    FORMAT_VERSION,
    KEY_LEN,
    Urandom,
    as_bytes,
    bad_message,
    crypto_errors,
    hkdf,
    lp,
    u32,
)
from igrs.wire.ids import UINT32_MAX

NONCE_MIN, NONCE_MAX, NONCE_LEN = 16, 32, 16
SESSION_KEY_MIN, SESSION_KEY_MAX = 16, 64
CHECK_LEN = 8
_WRAP_NONCE = 12
_L_KEY = b"igrs session v1 key"
_L_WRAP_I2R = b"igrs session v1 wrap i2r"
_L_WRAP_R2I = b"igrs session v1 wrap r2i"
_L_CHECK = b"igrs session v1 check"


def _ids(client_id: int, service_id: int) -> bytes:
    for value, what in ((client_id, "client id"), (service_id, "service id")):
        if not 0 < value <= UINT32_MAX:
            raise bad_message(f"{what} out of range")
    return u32(client_id) + u32(service_id)


def key_check_value(key: bytes) -> bytes:
    """Short public value proving possession of a session key (for the Apply response)."""
    return hmac.new(key, _L_CHECK, hashlib.sha256).digest()[:CHECK_LEN]


class SessionKeySchedule:
    """Per-pipe session-key operations; ``initiator`` is this end's role in the pipe."""

    def __init__(self, secret: bytes, *, initiator: bool, urandom: Urandom = os.urandom) -> None:
        if len(secret) != KEY_LEN:
            raise ValueError("pipe secret must be 32 bytes")
        self._secret = secret
        self._urandom = urandom
        out, inc = (_L_WRAP_I2R, _L_WRAP_R2I) if initiator else (_L_WRAP_R2I, _L_WRAP_I2R)
        self._wrap_out = ChaCha20Poly1305(hkdf(secret, salt=b"", info=out))
        self._wrap_in = ChaCha20Poly1305(hkdf(secret, salt=b"", info=inc))

    def new_nonce(self) -> bytes:
        return self._urandom(NONCE_LEN)

    def derive(self, *, client_id: int, service_id: int, nonce: bytes, length: int = KEY_LEN) -> bytes:
        nonce = as_bytes(nonce)
        if not NONCE_MIN <= len(nonce) <= NONCE_MAX:
            raise bad_message("session nonce must be 16..32 bytes")
        if not SESSION_KEY_MIN <= length <= SESSION_KEY_MAX:
            raise ValueError("session key length out of range")
        info = lp(_L_KEY) + _ids(client_id, service_id)
        return hkdf(self._secret, salt=nonce, info=info, length=length)

    def wrap(self, key: bytes, *, client_id: int, service_id: int, context: bytes = b"") -> bytes:
        if not SESSION_KEY_MIN <= len(key) <= SESSION_KEY_MAX:
            raise ValueError("session key length out of range")
        nonce = self._urandom(_WRAP_NONCE)
        aad = lp(_L_KEY) + _ids(client_id, service_id) + lp(context)
        return bytes((FORMAT_VERSION,)) + nonce + self._wrap_out.encrypt(nonce, key, aad)

    def unwrap(self, blob: bytes, *, client_id: int, service_id: int, context: bytes = b"") -> bytes:
        raw = as_bytes(blob)
        lo, hi = 1 + _WRAP_NONCE + SESSION_KEY_MIN + 16, 1 + _WRAP_NONCE + SESSION_KEY_MAX + 16
        if not lo <= len(raw) <= hi:
            raise bad_message("wrapped session key has bad length")
        if raw[0] != FORMAT_VERSION:
            raise bad_message("wrapped session key has unknown version")
        aad = lp(_L_KEY) + _ids(client_id, service_id) + lp(context)
        with crypto_errors("wrapped session key"):
            return self._wrap_in.decrypt(raw[1 : 1 + _WRAP_NONCE], raw[1 + _WRAP_NONCE :], aad)
