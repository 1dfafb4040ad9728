"""Bodies of the device pipe messages (clause 9.2) and of the pairing extension.

The security payloads of the handshake (specs/security.md) travel base64-encoded in
``HandshakeData``; the responder names the handshake with ``HandshakeId`` in its first
answer and assigns the ``PipeId`` in AuthenticateResultResponse. Layout: specs/pipes.md.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import ClassVar, Self

from igrs.constants import IGRS_NS, MAX_HANDSHAKE_DATA, MAX_HTTP_BODY, MAX_REASON
from igrs.errors import ProtocolError
from igrs.wire import strict_base64
from igrs.wire.ids import parse_uint32
from igrs.wire.messages import WRAPPERS, Status, body_element, expect_element, register, sub_element
from igrs.wire.xml import Element, child_text, qname

_B64_MAX = (MAX_HANDSHAKE_DATA * 4) // 3 + 8


_el, _sub, _expect = body_element, sub_element, expect_element


def _b64(el: Element, local: str, *, required: bool = True) -> bytes:
    text = child_text(el, IGRS_NS, local, required=required, max_len=_B64_MAX)
    if not text:
        return b""
    try:
        return strict_base64.decode(text)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{local} is not base64") from None


def _uint(el: Element, local: str, *, required: bool = True, allow_zero: bool = False) -> int:
    text = child_text(el, IGRS_NS, local, required=required, max_len=10)
    return parse_uint32(text, local, allow_zero=allow_zero) if text else 0


def _bool(el: Element, local: str) -> bool:
    text = child_text(el, IGRS_NS, local, max_len=5)
    if text not in ("true", "false"):
        raise ProtocolError(f"{local} must be true or false")
    return text == "true"


def _put_b64(parent: Element, local: str, data: bytes) -> None:
    _sub(parent, local, base64.b64encode(data).decode("ascii"))


# --- generic shapes ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _HandshakeStep:
    """A request carrying ``HandshakeId`` and ``HandshakeData``."""

    handshake_id: int
    data: bytes
    message_type: ClassVar[str] = ""

    def body(self) -> Element:
        el = _el(self.message_type)
        _sub(el, "HandshakeId", str(self.handshake_id))
        _put_b64(el, "HandshakeData", self.data)
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        # HandshakeId 0: the first step, before the responder has named the handshake.
        return cls(_uint(el, "HandshakeId", allow_zero=True), _b64(el, "HandshakeData"))


@dataclass(frozen=True, slots=True)
class _HandshakeReply:
    """A response: ``Status``, then ``HandshakeData`` and optional ids."""

    status: Status
    data: bytes = b""
    handshake_id: int = 0
    pipe_id: int = 0
    message_type: ClassVar[str] = ""

    def body(self) -> Element:
        el = _el(self.message_type)
        self.status.write(el)
        if self.handshake_id:
            _sub(el, "HandshakeId", str(self.handshake_id))
        if self.pipe_id:
            _sub(el, "PipeId", str(self.pipe_id))
        if self.data:
            _put_b64(el, "HandshakeData", self.data)
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        return cls(Status.read(el), _b64(el, "HandshakeData", required=False),
                   _uint(el, "HandshakeId", required=False), _uint(el, "PipeId", required=False))


# --- 9.2 pipe set-up ---------------------------------------------------------------------------
@register
@dataclass(frozen=True, slots=True)
class CreatePipeRequest:
    secure: bool
    data: bytes
    message_type: ClassVar[str] = "CreatePipeRequest"

    def body(self) -> Element:
        el = _el(self.message_type)
        _sub(el, "Secure", "true" if self.secure else "false")
        _put_b64(el, "HandshakeData", self.data)
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        return cls(_bool(el, "Secure"), _b64(el, "HandshakeData"))


@register
@dataclass(frozen=True, slots=True)
class CreatePipeResponse(_HandshakeReply):
    message_type: ClassVar[str] = "CreatePipeResponse"


@register
@dataclass(frozen=True, slots=True)
class AuthenticateRequest(_HandshakeStep):
    message_type: ClassVar[str] = "AuthenticateRequest"


@register
@dataclass(frozen=True, slots=True)
class AuthenticateResponse(_HandshakeReply):
    message_type: ClassVar[str] = "AuthenticateResponse"


@register
@dataclass(frozen=True, slots=True)
class AuthenticateResultRequest(_HandshakeStep):
    message_type: ClassVar[str] = "AuthenticateResultRequest"


@register
@dataclass(frozen=True, slots=True)
class AuthenticateResultResponse(_HandshakeReply):
    message_type: ClassVar[str] = "AuthenticateResultResponse"


@register
@dataclass(frozen=True, slots=True)
class CreatePipeResultRequest(_HandshakeStep):
    message_type: ClassVar[str] = "CreatePipeResultRequest"


@register
@dataclass(frozen=True, slots=True)
class CreatePipeResultResponse(_HandshakeReply):
    message_type: ClassVar[str] = "CreatePipeResultResponse"


@register
@dataclass(frozen=True, slots=True)
class DetachPipeNotify:
    pipe_id: int
    reason: str = ""
    message_type: ClassVar[str] = "DetachPipeNotify"

    def body(self) -> Element:
        el = _el(self.message_type)
        _sub(el, "PipeId", str(self.pipe_id))
        if self.reason:
            _sub(el, "Reason", self.reason[:MAX_REASON])
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        return cls(_uint(el, "PipeId"),
                   child_text(el, IGRS_NS, "Reason", required=False, max_len=MAX_REASON) or "")


@register
@dataclass(frozen=True, slots=True)
class DeviceOnlineDetectionRequest:
    pipe_id: int
    message_type: ClassVar[str] = "DeviceOnlineDetectionRequest"

    def body(self) -> Element:
        el = _el(self.message_type)
        _sub(el, "PipeId", str(self.pipe_id))
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        return cls(_uint(el, "PipeId"))


@register
@dataclass(frozen=True, slots=True)
class DeviceOnlineDetectionResponse:
    status: Status
    message_type: ClassVar[str] = "DeviceOnlineDetectionResponse"

    def body(self) -> Element:
        el = _el(self.message_type)
        self.status.write(el)
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        return cls(Status.read(el))


# --- pairing extension (project choice: no IGRS pairing message is public) --------------------
@register
@dataclass(frozen=True, slots=True)
class PairingModeRequest:
    """Ask the device to show a PIN (it answers 403 when it has no way to show one)."""

    message_type: ClassVar[str] = "PairingModeRequest"

    def body(self) -> Element:
        return _el(self.message_type)

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        return cls()


@register
@dataclass(frozen=True, slots=True)
class PairingModeResponse:
    status: Status
    digits: int = 0
    lifetime: int = 0
    message_type: ClassVar[str] = "PairingModeResponse"

    def body(self) -> Element:
        el = _el(self.message_type)
        self.status.write(el)
        if self.status.ok:
            _sub(el, "PinDigits", str(self.digits))
            _sub(el, "PinLifetime", str(self.lifetime))
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        return cls(Status.read(el), _uint(el, "PinDigits", required=False),
                   _uint(el, "PinLifetime", required=False))


@register
@dataclass(frozen=True, slots=True)
class PairingStartRequest(_HandshakeStep):
    message_type: ClassVar[str] = "PairingStartRequest"


@register
@dataclass(frozen=True, slots=True)
class PairingStartResponse(_HandshakeReply):
    message_type: ClassVar[str] = "PairingStartResponse"


@register
@dataclass(frozen=True, slots=True)
class PairingConfirmRequest(_HandshakeStep):
    message_type: ClassVar[str] = "PairingConfirmRequest"


@register
@dataclass(frozen=True, slots=True)
class PairingConfirmResponse(_HandshakeReply):
    message_type: ClassVar[str] = "PairingConfirmResponse"


# --- the secured body of any message inside a secure pipe --------------------------------------
SECURE_MESSAGE = "SecureMessage"


_SECURE_OPEN = f'<{SECURE_MESSAGE} xmlns="{IGRS_NS}"><PipeId>'.encode("ascii")
_SECURE_MIDDLE = b"</PipeId><Record>"
_SECURE_CLOSE = f"</Record></{SECURE_MESSAGE}>".encode("ascii")


# Not frozen, for speed: made for every message (issue 15); never mutated, hashed as before.
@dataclass(slots=True, unsafe_hash=True)
class SecureMessage:
    """Replaces the body of a message sent in a secure pipe: the sealed inner body.

    The ``01-IGRSMessageType`` header still names the inner message; the AEAD's associated
    data binds it, the source and target device ids and the SequenceId (specs/security.md).
    """

    pipe_id: int
    record: bytes
    inner_type: str = ""

    @property
    def message_type(self) -> str:
        return self.inner_type

    def body(self) -> Element:
        el = _el(SECURE_MESSAGE)
        _sub(el, "PipeId", str(self.pipe_id))
        _put_b64(el, "Record", self.record)
        return el

    def wire_body(self) -> bytes | None:
        """``body()`` serialised, byte for byte, without building the tree (None: use body())."""
        if not self.record or type(self.pipe_id) is not int or type(self) is not SecureMessage:
            return None
        return b"".join((_SECURE_OPEN, str(self.pipe_id).encode("ascii"), _SECURE_MIDDLE,
                         binascii.b2a_base64(self.record, newline=False), _SECURE_CLOSE))  # = b64encode

    @classmethod
    def parse(cls, el: Element, inner_type: str) -> SecureMessage:
        _expect(el, SECURE_MESSAGE)
        record = child_text(el, IGRS_NS, "Record", max_len=MAX_HTTP_BODY * 2)
        try:
            raw = strict_base64.decode(record or "")
        except (binascii.Error, ValueError):
            raise ProtocolError("Record is not base64") from None
        return cls(_uint(el, "PipeId"), raw, inner_type)


WRAPPERS[qname(IGRS_NS, SECURE_MESSAGE)] = SecureMessage.parse
