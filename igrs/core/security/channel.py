"""Secure channel inside a secure pipe: ChaCha20-Poly1305 per direction, counter nonces,
associated data binding the IGRS message header, sliding-window replay protection.

Record layout (specs/security.md §5): ``version:u8 | counter:u64be | ciphertext||tag``.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from igrs.constants import MAX_HTTP_BODY, ReturnCode
from igrs.core.security._codec import (
    FORMAT_VERSION,
    KEY_LEN,
    as_bytes,
    bad_message,
    crypto_errors,
    lp,
    u64,
)
from igrs.errors import SecurityError
from igrs.wire.memo import Memo

NONCE_LEN = 12
TAG_LEN = 16
HEADER_LEN = 9
DEFAULT_WINDOW = 256  # project choice: tolerates moderate reordering (records, not bytes)
DEFAULT_MAX_RECORDS = 1 << 48  # project choice: hard stop long before the 64-bit counter wraps
MAX_RECORD = MAX_HTTP_BODY + HEADER_LEN + TAG_LEN
U64_MAX = (1 << 64) - 1
_AAD_LABEL = b"igrs chan v1"


class ReplayWindow:
    """Accepts each counter at most once; counters more than ``size`` below the highest seen
    are too old. Call :meth:`check` before and :meth:`accept` after authenticating a record."""

    __slots__ = ("_full", "_mask", "_top", "size")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 1:
            raise ValueError("window size must be positive")
        self.size = size
        self._top = -1
        self._mask = 0  # bit i set: counter (top - i) seen
        self._full = (1 << size) - 1

    @property
    def highest(self) -> int:
        return self._top

    def check(self, counter: int) -> None:
        if counter > self._top:
            return
        offset = self._top - counter
        if offset >= self.size:
            raise SecurityError(f"record {counter} too old (replay window)")
        if self._mask >> offset & 1:
            raise SecurityError(f"record {counter} replayed")

    def accept(self, counter: int) -> None:
        self.check(counter)
        if counter > self._top:
            shift = counter - self._top
            self._mask = ((self._mask << shift) | 1) & self._full
            self._top = counter
        else:
            self._mask |= 1 << (self._top - counter)


_AAD_HEAD = lp(_AAD_LABEL)
_U64 = struct.Struct(">Q")
_AAD_MIDDLES: Memo[tuple[str, str, str], bytes] = Memo(512)
_aad_middle_of = _AAD_MIDDLES.get  # bound once: as fast as a plain dict's get


def _aad_middle(message_type: str, source: str, target: str) -> bytes:
    """The length-prefixed header fields of the AAD; a pipe repeats the same few, so cached."""
    key = (message_type, source, target)
    middle = _aad_middle_of(key)
    if middle is None:
        middle = _AAD_MIDDLES.remember(
            key, lp(message_type.encode()) + lp(source.encode()) + lp(target.encode()))
    return middle


def _aad(counter: int, message_type: str, source: str, target: str, sequence_id: int) -> bytes:
    if not 0 <= sequence_id <= U64_MAX:
        raise bad_message("sequence id out of range")
    return b"".join(
        (_AAD_HEAD, _U64.pack(counter), _aad_middle(message_type, source, target), _U64.pack(sequence_id))
    )


def _nonce(iv: bytes, counter: int) -> bytes:
    """iv XOR (4 zero bytes || 64-bit counter), as one integer operation."""
    return (int.from_bytes(iv, "big") ^ counter).to_bytes(len(iv), "big")


class SecureChannel:
    """One pipe's record protection. ``seal`` for outgoing messages, ``open`` for incoming.

    Keys and IVs come from the pipe handshake. There is no in-band rekey: when the send
    counter reaches ``max_records`` sealing stops and the pipe must be created again
    (project choice: a fresh handshake also gives fresh ephemeral keys).
    """

    def __init__(
        self,
        send_key: bytes,
        send_iv: bytes,
        recv_key: bytes,
        recv_iv: bytes,
        *,
        window: int = DEFAULT_WINDOW,
        max_records: int = DEFAULT_MAX_RECORDS,
    ) -> None:
        if len(send_key) != KEY_LEN or len(recv_key) != KEY_LEN:
            raise ValueError("channel keys must be 32 bytes")
        if len(send_iv) != NONCE_LEN or len(recv_iv) != NONCE_LEN:
            raise ValueError("channel IVs must be 12 bytes")
        if not 0 < max_records <= U64_MAX:
            raise ValueError("max_records out of range")
        self._send = ChaCha20Poly1305(send_key)
        self._send_iv = send_iv
        self._recv = ChaCha20Poly1305(recv_key)
        self._recv_iv = recv_iv
        self._next = 0
        self._window = ReplayWindow(window)
        self.max_records = max_records

    @property
    def sent(self) -> int:
        return self._next

    @property
    def remaining(self) -> int:
        """Records that may still be sealed before the pipe must be renewed."""
        return self.max_records - self._next

    def seal(
        self, plaintext: bytes, *, message_type: str, source: str, target: str, sequence_id: int
    ) -> bytes:
        if self._next >= self.max_records:
            raise SecurityError(
                "channel record limit reached; create the pipe again",
                return_code=ReturnCode.PRECONDITION_FAILED,
            )
        if len(plaintext) > MAX_HTTP_BODY:
            raise SecurityError("plaintext too large", return_code=ReturnCode.PAYLOAD_TOO_LARGE)
        counter = self._next
        aad = _aad(counter, message_type, source, target, sequence_id)
        body = self._send.encrypt(_nonce(self._send_iv, counter), plaintext, aad)
        self._next += 1
        return bytes((FORMAT_VERSION,)) + u64(counter) + body

    def open(
        self, record: bytes, *, message_type: str, source: str, target: str, sequence_id: int
    ) -> bytes:
        raw = record if type(record) is bytes else as_bytes(record)
        if not HEADER_LEN + TAG_LEN <= len(raw) <= MAX_RECORD:
            raise bad_message("record length out of range")
        if raw[0] != FORMAT_VERSION:
            raise SecurityError(
                f"unsupported record version {raw[0]}",
                return_code=ReturnCode.VERSION_NOT_SUPPORTED,
            )
        counter = int.from_bytes(raw[1:HEADER_LEN], "big")
        if counter >= self.max_records:
            raise SecurityError("record counter beyond the limit")
        self._window.check(counter)
        aad = _aad(counter, message_type, source, target, sequence_id)
        try:  # crypto_errors("record"), inline: a generator context manager per record costs more
            plaintext = self._recv.decrypt(_nonce(self._recv_iv, counter), raw[HEADER_LEN:], aad)
        except Exception as exc:
            with crypto_errors("record"):
                raise exc
        self._window.accept(counter)  # only authenticated records move the window
        return plaintext
