"""Shared helpers: the length-prefixed payload layout, hashing, HKDF, HMAC, error mapping.

Payload layout (specs/security.md §2): ``version:u8 | kind:u8 | (len:u16be | bytes)*`` with a
fixed number of fields per kind, each length checked against an exact range, no trailing bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from igrs.constants import ReturnCode
from igrs.errors import ProtocolError, SecurityError

Urandom = Callable[[int], bytes]
"""Randomness source with the signature of ``os.urandom`` (injectable for tests)."""

FORMAT_VERSION = 1
MAX_PAYLOAD = 2048  # project choice: every handshake payload is far below this
KEY_LEN = 32
MAC_LEN = 32


def bad_message(reason: str) -> SecurityError:
    return SecurityError(reason, return_code=ReturnCode.BAD_MESSAGE)


def as_bytes(data: object) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise bad_message(f"payload must be bytes, not {type(data).__name__}")


def encode(kind: int, *fields: bytes) -> bytes:
    out = bytearray((FORMAT_VERSION, kind))
    for field in fields:
        out += struct.pack(">H", len(field))
        out += field
    return bytes(out)


def decode(data: object, kind: int, spec: Sequence[tuple[int, int]]) -> list[bytes]:
    """Split a payload into fields; ``spec`` gives (min, max) length per field."""
    raw = as_bytes(data)
    if len(raw) > MAX_PAYLOAD:
        raise bad_message("payload too large")
    if len(raw) < 2:
        raise bad_message("payload truncated")
    if raw[0] != FORMAT_VERSION:
        raise SecurityError(
            f"unsupported security format {raw[0]}", return_code=ReturnCode.VERSION_NOT_SUPPORTED
        )
    if raw[1] != kind:
        raise bad_message(f"unexpected payload kind 0x{raw[1]:02x}, want 0x{kind:02x}")
    fields: list[bytes] = []
    pos = 2
    for lo, hi in spec:
        if pos + 2 > len(raw):
            raise bad_message("payload truncated")
        (n,) = struct.unpack_from(">H", raw, pos)
        pos += 2
        if not lo <= n <= hi:
            raise bad_message(f"field {len(fields)} has bad length {n}")
        if pos + n > len(raw):
            raise bad_message("payload truncated")
        fields.append(raw[pos : pos + n])
        pos += n
    if pos != len(raw):
        raise bad_message("trailing bytes after payload")
    return fields


def lp(part: bytes) -> bytes:
    """Length-prefix (u32be) for unambiguous hashing of concatenated parts."""
    return struct.pack(">I", len(part)) + part


def thash(label: bytes, *parts: bytes) -> bytes:
    """SHA-256 over a label and length-prefixed parts (transcript hash)."""
    h = hashlib.sha256(lp(label))
    for part in parts:
        h.update(lp(part))
    return h.digest()


def hkdf(ikm: bytes, *, salt: bytes, info: bytes, length: int = KEY_LEN) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def check_mac(key: bytes, data: bytes, tag: bytes, what: str) -> None:
    if not hmac.compare_digest(mac(key, data), tag):
        raise SecurityError(f"{what}: MAC mismatch")


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def text_field(value: str, what: str, max_len: int) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > max_len:
        raise bad_message(f"{what} too long")
    return raw


def parse_text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_message(f"{what} is not UTF-8") from None


@contextmanager
def crypto_errors(what: str) -> Iterator[None]:
    """Map library exceptions raised on malformed input to SecurityError."""
    try:
        yield
    except SecurityError:
        raise
    except (InvalidSignature, InvalidTag) as exc:
        raise SecurityError(f"{what}: verification failed") from exc
    except ProtocolError as exc:
        raise SecurityError(f"{what}: {exc.reason}", return_code=ReturnCode.BAD_MESSAGE) from exc
    except (ValueError, TypeError, ArithmeticError) as exc:
        # cryptography / spake2 reject malformed keys and points with ValueError.
        raise SecurityError(f"{what}: invalid value", return_code=ReturnCode.BAD_MESSAGE) from exc
