"""Unicast SOAP messages over ``M-POST /IGRS`` (RFC 2774) and their typed bodies.

Every message of the catalogue (igrs.wire.catalogue) decodes: those with a typed body class
registered here become that class, the rest become ``OpaqueMessage`` holding the body XML
until a later layer gives them a type. Framing and body rules: specs/messages.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, ClassVar, Protocol, Self

from igrs.constants import (
    IGRS_EXT_URI,
    IGRS_NS,
    IGRS_PATH,
    IGRS_VERSION,
    MAX_HTTP_BODY,
    MAX_NAME_LENGTH,
    MAX_REASON,
    MAX_URL_LENGTH,
    SESSION_ELEMENT,
    SOAP12_NS,
    ReturnCode,
)
from igrs.errors import LimitExceeded, ProtocolError, UnknownMessage
from igrs.wire.catalogue import Framing, Kind, spec_for
from igrs.wire.httpu import Headers, build_message, man_header, parse_message
from igrs.wire.ids import (
    UNKNOWN_DEVICE,
    DeviceId,
    DeviceType,
    check_igrs_version,
    check_name,
    is_digits,
    is_empty_device_id,
    parse_uint32,
)
from igrs.wire.isdp import SearchTarget, encode_name
from igrs.wire.lazy_import import lazy_import
from igrs.wire.memo import Memo
from igrs.wire.soap import build_envelope, build_envelope_around, parse_envelope
from igrs.wire.xml import Element, child_text, etree, parse_xml, qname

if TYPE_CHECKING:
    from igrs.wire import description as ddesc
else:  # the description's model loads with the first description sent or read
    ddesc = lazy_import("igrs.wire.description")

CONTENT_TYPE = 'text/xml; charset="utf-8"'


class SoapMessage(Protocol):
    """A message body: typed bodies name their type as a class attribute, ``OpaqueMessage``
    and ``SecureMessage`` per instance; either way it is read, never set."""

    @property
    def message_type(self) -> str: ...

    def body(self) -> Element: ...


# Not frozen, for speed: made for every message (issue 15); never mutated, hashed as before.
@dataclass(slots=True, unsafe_hash=True)
class Routing:
    """What the ``01-`` extension headers carry."""

    message_type: str
    source: DeviceId
    target: DeviceId | None
    sequence_id: int


# Not frozen, for speed: made for every message (issue 15); never mutated, hashed as before.
@dataclass(slots=True, unsafe_hash=True)
class Frame:
    routing: Routing
    message: SoapMessage


# Helpers for every typed body (here and in igrs.wire.bodies): elements in the IGRS namespace.
_BODY_TEMPLATES: Memo[str, Element] = Memo(512)
_body_template = _BODY_TEMPLATES.get  # bound once: as fast as a plain dict's get


def body_element(local: str, text: str | None = None) -> Element:
    # Copying an empty parentless template is several times cheaper than etree.Element with
    # an nsmap, and gives the same element (a new document each time).
    template = _body_template(local)
    if template is None:
        template = _BODY_TEMPLATES.remember(local, etree.Element(qname(IGRS_NS, local), nsmap={None: IGRS_NS}))
    el: Element = template.__copy__()  # type: ignore[attr-defined]  # lxml has it; types-lxml omits it
    if text is not None:
        el.text = text
    return el


def sub_element(parent: Element, local: str, text: str | None = None) -> Element:
    el = etree.SubElement(parent, qname(IGRS_NS, local))
    if text is not None:
        el.text = text
    return el


def expect_element(el: Element, local: str) -> None:
    if el.tag != qname(IGRS_NS, local):
        raise ProtocolError(f"body element is not {local}")


_el, _sub, _expect = body_element, sub_element, expect_element


# --- response status shared by every response ---------------------------------------------
# Not frozen, for speed: made for every message (issue 15); never mutated, hashed as before.
@dataclass(slots=True, unsafe_hash=True)
class Status:
    acknowledge_id: int
    return_code: int = ReturnCode.SUCCESS
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.return_code == ReturnCode.SUCCESS

    def write(self, parent: Element) -> None:
        _sub(parent, "AcknowledgeId", str(self.acknowledge_id))
        _sub(parent, "ReturnCode", str(int(self.return_code)))
        if self.reason:
            _sub(parent, "Reason", self.reason[:MAX_REASON])

    @classmethod
    def read(cls, parent: Element, *, allow_zero_ack: bool = False) -> Status:
        ack = parse_uint32(child_text(parent, IGRS_NS, "AcknowledgeId", max_len=10) or "",
                           "AcknowledgeId", allow_zero=allow_zero_ack)
        code_text = child_text(parent, IGRS_NS, "ReturnCode", max_len=3) or ""
        if not (is_digits(code_text) and len(code_text) == 3):
            raise ProtocolError("ReturnCode is not a three-digit code")
        reason = child_text(parent, IGRS_NS, "Reason", required=False, max_len=MAX_REASON) or ""
        return cls(ack, int(code_text), reason)


# --- typed bodies (clause 9.3, 9.6) --------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GetDeviceDescriptionRequest:
    message_type: ClassVar[str] = "GetDeviceDescriptionRequest"

    def body(self) -> Element:
        return _el(self.message_type)

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        return cls()


@dataclass(frozen=True, slots=True)
class GetDeviceDescriptionResponse:
    status: Status
    description: ddesc.DeviceDescription | None = None
    message_type: ClassVar[str] = "GetDeviceDescriptionResponse"

    def body(self) -> Element:
        el = _el(self.message_type)
        self.status.write(el)
        if self.description is not None:
            el.append(ddesc.to_element(self.description))
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        status = Status.read(el)
        root = el.find(qname(ddesc.NS, "root"))
        if status.ok and root is None:
            raise ProtocolError("successful GetDeviceDescriptionResponse without a description")
        return cls(status, ddesc.from_element(root) if root is not None else None)


@dataclass(frozen=True, slots=True)
class SearchDeviceRequestOnDevice:
    target: SearchTarget
    message_type: ClassVar[str] = "SearchDeviceRequestOnDevice"

    def body(self) -> Element:
        el = _el(self.message_type)
        _sub(el, "SearchTarget", str(self.target))
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        return cls(SearchTarget.parse(child_text(el, IGRS_NS, "SearchTarget", max_len=MAX_URL_LENGTH) or ""))


@dataclass(frozen=True, slots=True)
class SearchDeviceResponseOnDevice:
    status: Status
    matched: bool = False
    device_type: DeviceType | None = None
    name: str = ""
    message_type: ClassVar[str] = "SearchDeviceResponseOnDevice"

    def body(self) -> Element:
        el = _el(self.message_type)
        self.status.write(el)
        _sub(el, "Matched", "true" if self.matched else "false")
        if self.device_type is not None:
            _sub(el, "DeviceType", str(self.device_type))
        if self.name:
            _sub(el, "DeviceName", check_name(self.name))
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        matched = child_text(el, IGRS_NS, "Matched", max_len=5)
        if matched not in ("true", "false"):
            raise ProtocolError("Matched must be true or false")
        dtype = child_text(el, IGRS_NS, "DeviceType", required=False, max_len=MAX_URL_LENGTH)
        return cls(Status.read(el), matched == "true",
                   DeviceType.parse(dtype) if dtype else None,
                   child_text(el, IGRS_NS, "DeviceName", required=False, max_len=MAX_NAME_LENGTH) or "")


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """Answer to a request that could not be understood well enough to answer in kind."""

    status: Status
    message_type: ClassVar[str] = "ErrorResponse"

    def body(self) -> Element:
        el = _el(self.message_type)
        self.status.write(el)
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        # AcknowledgeId 0: the request's SequenceId could not be read.
        return cls(Status.read(el, allow_zero_ack=True))


@dataclass(frozen=True, slots=True)
class OpaqueMessage:
    """A catalogued message whose body has no typed class yet: the body kept as XML."""

    name: str
    body_xml: bytes

    @property
    def message_type(self) -> str:
        return self.name

    def body(self) -> Element:
        return etree.fromstring(self.body_xml)


# Not frozen, for speed: made for every message (issue 15); never mutated, hashed as before.
@dataclass(slots=True, unsafe_hash=True)
class BuiltMessage:
    """A typed message whose body is already built (to learn early that its values can be
    encoded): sent as built, never built a second time. ``message`` stays the typed one;
    ``xml`` holds the canonical bytes where igrs.wire.bodies.canonical wrote them, else ``element``
    the tree."""

    message: SoapMessage
    element: Element | None
    xml: bytes | None = None

    @classmethod
    def of(cls, message: SoapMessage) -> BuiltMessage:
        """Build ``message``'s body now (TypeError/ValueError: a value that cannot be carried)."""
        _load_bodies()
        xml = CANONICAL_WRITE(message) if CANONICAL_WRITE is not None else None
        return cls(message, None, xml) if xml is not None else cls(message, message.body())

    @property
    def message_type(self) -> str:
        return self.message.message_type

    def body(self) -> Element:
        return self.element if self.element is not None else self.message.body()

    def wire_xml(self) -> bytes | None:
        return self.xml


# The canonical codec of the hot messages (igrs.wire.bodies.canonical sets these when loaded with
# the bodies): write(message) -> bytes | None, read(type, bytes) -> message | None,
# read_sealed(envelope, type) -> SecureMessage | None; None always means "use lxml".
CANONICAL_WRITE: Callable[[SoapMessage], bytes | None] | None = None
CANONICAL_READ: Callable[[str, bytes], SoapMessage | None] | None = None
CANONICAL_READ_SEALED: Callable[[bytes, str], SoapMessage | None] | None = None


def _canonical_xml(message: SoapMessage) -> bytes | None:
    _load_bodies()
    built: Callable[[], bytes | None] | None = getattr(message, "wire_xml", None)
    if built is not None:
        return built()
    return CANONICAL_WRITE(message) if CANONICAL_WRITE is not None else None


def body_xml(message: SoapMessage) -> bytes:
    """``etree.tostring(message.body())``, by the canonical writer where it can."""
    xml = _canonical_xml(message)
    return xml if xml is not None else etree.tostring(message.body())


def parse_body_xml(message_type: str, data: bytes) -> SoapMessage:
    """The typed message of a serialised body element (e.g. an opened sealed record): the
    canonical reader's where it accepts the bytes, else parse_xml and parse_body."""
    _load_bodies()
    message = CANONICAL_READ(message_type, data) if CANONICAL_READ is not None else None
    return message if message is not None else parse_body(message_type, parse_xml(data))


BodyParser = Callable[[Element], SoapMessage]
BODY_TYPES: dict[str, BodyParser] = {}
# Body elements that stand for another message's body (e.g. a sealed SecureMessage),
# keyed by element tag; the parser gets the element and the 01-IGRSMessageType value.
WRAPPERS: dict[str, Callable[[Element, str], SoapMessage]] = {}


# Message types whose typed body carries no field: an empty SOAP Body, or an empty body element
# (named after the type or ``Session``), stands for them (messages.md §5).
FIELDLESS: set[str] = set()


def register(cls: type) -> type:
    """Register a typed body class for its ``message_type`` (used by later layers too)."""
    BODY_TYPES[cls.message_type] = cls.from_body  # type: ignore[attr-defined]
    if dataclasses.is_dataclass(cls) and not dataclasses.fields(cls):
        FIELDLESS.add(cls.message_type)  # type: ignore[attr-defined]
    return cls


for _cls in (GetDeviceDescriptionRequest, GetDeviceDescriptionResponse,
             SearchDeviceRequestOnDevice, SearchDeviceResponseOnDevice, ErrorResponse):
    register(_cls)


# --- framing -------------------------------------------------------------------------------
def soap_action(message_type: str) -> str:
    spec = spec_for(message_type)
    return spec.soap_action if spec else f"IGRS-{message_type}"


_HeaderTemplate = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]
_HEADER_TEMPLATES: Memo[str, _HeaderTemplate] = Memo(512)
_header_template_of = _HEADER_TEMPLATES.get


def _header_template(mtype: str) -> _HeaderTemplate:
    """The headers of a message type around its ids (RFC 2774: constant per type), cached."""
    template = _header_template_of(mtype)
    if template is None:
        head = (
            man_header(IGRS_EXT_URI, "01"),
            ("01-IGRSVersion", IGRS_VERSION),
            ("01-IGRSMessageType", mtype),
        )
        tail = [
            ("Content-Type", CONTENT_TYPE),
            man_header(SOAP12_NS, "02"),
            ("02-SoapAction", f'"{soap_action(mtype)}"'),
        ]
        spec = spec_for(mtype)  # the catalogue and the pairing extensions (messages.md §1.1)
        if (spec is not None and spec.kind is Kind.RESPONSE) or mtype == ErrorResponse.message_type:
            tail += [("Ext", ""), ("Cache-Control", 'no-cache="Ext"')]
        template = _HEADER_TEMPLATES.remember(mtype, (head, tuple(tail)))
    return template


def encode(message: SoapMessage, *, source: DeviceId, target: DeviceId | None,
           sequence_id: int) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body of a unicast message (request, response or notify)."""
    head, tail = _header_template(message.message_type)
    headers = [*head, ("01-SourceDeviceId", str(source))]
    if target is not None:
        headers.append(("01-TargetDeviceId", str(target)))
    headers.append(("01-SequenceId", str(sequence_id)))
    headers += tail
    # A body that can serialise itself without a tree (a sealed SecureMessage) does so;
    # its bytes are those of body() (tests compare them).
    wire_body: Callable[[], bytes | None] | None = getattr(message, "wire_body", None)
    raw = wire_body() if wire_body is not None else None
    if raw is None:  # the canonical bytes of the body element, where they can be written so
        raw = _canonical_xml(message)
    return headers, build_envelope_around(raw) if raw is not None else build_envelope(message.body())


def decode(headers: Headers, body: bytes, *, answering: DeviceId | None = None) -> Frame:
    """Decode a unicast message from its headers and body; ProtocolError on any fault.

    ``answering``: for an answer, the device the request was sent to -- taken as the answer's
    source when its ``01-SourceDeviceId`` is empty (ezbox's answers, messages.md §3)."""
    try:
        return _decode(headers, body, answering)
    except ProtocolError:
        raise
    except (ValueError, UnicodeError, TypeError) as exc:
        raise ProtocolError(f"malformed message: {exc}") from None


_bodies_loaded = False


def _load_bodies() -> None:
    """Register the typed bodies of igrs.wire.bodies (imported late: they import us)."""
    global _bodies_loaded
    if not _bodies_loaded:
        _bodies_loaded = True
        from igrs.wire.bodies import load_all

        load_all()


_SOAP_PREFIXES: Memo[tuple[str, ...], str] = Memo(256)
_soap_prefix_of = _SOAP_PREFIXES.get


def _soap_prefix(headers: Headers) -> str:
    """headers.soap_prefix(), remembered per set of MAN values (all it depends on)."""
    key = tuple(headers.get_all("MAN"))
    prefix = _soap_prefix_of(key)
    if prefix is None:
        prefix = _SOAP_PREFIXES.remember(key, headers.soap_prefix())
    return prefix


_DEVICE_IDS: Memo[str, DeviceId] = Memo(256)
_device_id_of = _DEVICE_IDS.get


def _device_id(text: str) -> DeviceId:
    """DeviceId.parse with a small cache: a peer sends the same two ids on every message."""
    device_id = _device_id_of(text)
    if device_id is None:
        device_id = _DEVICE_IDS.remember(text, DeviceId.parse(text))  # raises on a bad id: only valid ids kept
    return device_id


_ROUTING_KEYS: Memo[str, tuple[str, ...]] = Memo(128)
_routing_keys_of = _ROUTING_KEYS.get
_ROUTING_FIELDS = ("IGRSVersion", "IGRSMessageType", "SourceDeviceId", "TargetDeviceId", "SequenceId")


def _routing_keys(prefix: str) -> tuple[str, ...]:
    """The index keys of the routing headers under an extension prefix (two digits), cached."""
    return _ROUTING_KEYS.remember(prefix, tuple(f"{prefix}-{name}".lower() for name in _ROUTING_FIELDS))


def _decode(headers: Headers, body: bytes, answering: DeviceId | None = None) -> Frame:
    _load_bodies()
    p = headers.igrs_prefix()
    # headers.one / optional_one on the index directly; they give the errors (missing, repeated)
    index = headers._index
    k_version, k_type, k_source, k_target, k_seq = _routing_keys_of(p) or _routing_keys(p)
    found = index.get(k_version)
    check_igrs_version(found[0] if found is not None and len(found) == 1 else headers.one(f"{p}-IGRSVersion"))
    found = index.get(k_type)
    mtype = found[0] if found is not None and len(found) == 1 else headers.one(f"{p}-IGRSMessageType")
    spec = spec_for(mtype)
    if spec is None and mtype != ErrorResponse.message_type:
        raise UnknownMessage(f"unknown message type {mtype[:60]!r}")
    if spec is not None and spec.framing is not Framing.SOAP:
        raise ProtocolError(f"{mtype} is not sent over M-POST")
    answer = spec is None or spec.kind is Kind.RESPONSE  # a response or an ErrorResponse
    found = index.get(k_source)
    source_text = found[0] if found is not None and len(found) == 1 else headers.one(f"{p}-SourceDeviceId")
    if answer and is_empty_device_id(source_text):
        source = answering or UNKNOWN_DEVICE  # ezbox's answers name no device (messages.md §3)
    else:
        source = _device_id(source_text)
    found = index.get(k_target)
    target_text = (None if found is None else found[0] if len(found) == 1
                   else headers.optional_one(f"{p}-TargetDeviceId"))
    empty_target = not target_text or (answer and is_empty_device_id(target_text))
    target = None if empty_target else _device_id(target_text or "")
    found = index.get(k_seq)
    seq_text = (None if found is None else found[0] if len(found) == 1
                else headers.optional_one(f"{p}-SequenceId"))
    if seq_text is None and (spec is None or spec.kind is not Kind.RESPONSE):
        raise ProtocolError("missing header 01-SequenceId")
    # ezbox's responses carry no SequenceId header (their AcknowledgeId is in the body).
    seq = parse_uint32(seq_text, "SequenceId") if seq_text is not None else 0
    action = headers.optional_one(f"{_soap_prefix(headers)}-SoapAction")
    if action is not None and action.strip().strip('"') != soap_action(mtype):
        raise ProtocolError(f"SoapAction {action[:60]!r} does not match {mtype}")
    if len(body) > MAX_HTTP_BODY:
        raise LimitExceeded("body too large", return_code=ReturnCode.PAYLOAD_TOO_LARGE)
    sealed = CANONICAL_READ_SEALED(body, mtype) if CANONICAL_READ_SEALED is not None else None
    if sealed is not None:  # a SecureMessage as the stack writes it: no tree needed
        return Frame(Routing(mtype, source, target, seq), sealed)
    el = parse_envelope(body, allow_empty=mtype in FIELDLESS)
    if el is None:  # an empty SOAP Body for a message without fields
        el = body_element(mtype)
    wrapper = WRAPPERS.get(el.tag)  # type: ignore[arg-type]  # a parsed tag is str; types-lxml widens it
    message = wrapper(el, mtype) if wrapper is not None else parse_body(mtype, el)
    return Frame(Routing(mtype, source, target, seq), message)


def parse_body(message_type: str, el: Element) -> SoapMessage:
    """The typed message for a body element (OpaqueMessage where no type is registered)."""
    _load_bodies()
    parser = BODY_TYPES.get(message_type)
    if parser is not None:
        if message_type in FIELDLESS and _empty_stand_in(el):
            el = body_element(message_type)
        return parser(el)
    if el.tag != qname(IGRS_NS, message_type):
        raise ProtocolError(f"body element is not {message_type}")
    return OpaqueMessage(message_type, etree.tostring(el))


def _empty_stand_in(el: Element) -> bool:
    """An empty ``Session`` element standing for a message without fields (ezbox's body element,
    messages.md §5; an empty element named after the type is the type's own form)."""
    return el.tag == qname(IGRS_NS, SESSION_ELEMENT) and not len(el) and not (el.text or "").strip()


def body_for_schema(el: Element, message_type: str) -> Element:
    """``el`` as the XSDs declare it: a ``Session`` body (10.5/10.6, which all share that element
    on the wire) as a copy named after ``message_type``, whose declaration gives its content
    (specs/schemas/igrs-services.xsd); any other body as it is."""
    if el.tag != qname(IGRS_NS, SESSION_ELEMENT) or message_type == SESSION_ELEMENT:
        return el
    renamed: Element = el.__copy__()  # type: ignore[attr-defined]  # lxml has it; types-lxml omits it
    renamed.tag = qname(IGRS_NS, message_type)
    return renamed


# --- whole HTTP messages (raw bytes: captures, fuzzing, non-aiohttp transports) ----------
def build_request(host: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    return build_message(f"M-POST {IGRS_PATH} HTTP/1.1", [("HOST", host), *headers], body)


def build_response(headers: list[tuple[str, str]], body: bytes, status: int = 200) -> bytes:
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return build_message(f"HTTP/1.1 {status} {reason}", headers, body)


def parse_http(data: bytes) -> Frame:
    """Decode a complete M-POST request or its response from raw bytes."""
    try:
        msg = parse_message(data, max_size=MAX_HTTP_BODY + 16 * 1024, allow_body=True)
    except ProtocolError:
        raise
    except (ValueError, UnicodeError) as exc:
        raise ProtocolError(f"malformed HTTP message: {exc}") from None
    if msg.method is not None:
        if msg.method not in ("M-POST", "POST"):
            raise ProtocolError(f"method {msg.method} is not M-POST")
        if msg.target != IGRS_PATH:
            raise ProtocolError(f"request target must be {IGRS_PATH}")
    return decode(msg.headers, msg.body)


__all__ = [
    "BODY_TYPES", "ErrorResponse", "Frame", "GetDeviceDescriptionRequest",
    "GetDeviceDescriptionResponse", "OpaqueMessage", "Routing", "SearchDeviceRequestOnDevice",
    "SearchDeviceResponseOnDevice", "SoapMessage", "Status", "body_for_schema", "decode", "encode",
    "encode_name", "parse_http", "register",
]
