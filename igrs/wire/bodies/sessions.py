"""Clause 10.5 (sessions) and 10.6 (service invocation) bodies, and the typed-value codec.

Element names follow ezbox where public (EZ-CS, EZ-IS: ``SourceClientId``, ``TargetServiceId``,
``SequenceId``, ``UserInfo``, ``InvokeArguments``, ``AcknowledgeId``, ``ReturnCode``); the rest
is project choice, written down in specs/sessions.md and specs/services.md. Every body of these
clauses goes out as ezbox's ``<Session>`` element -- the only public evidence; the
``01-IGRSMessageType`` header names the message -- and the element named after the message
type is accepted too (specs/messages.md §5).

Typed values (specs/services.md "Typed values")::

    <Argument name="level" type="int">10</Argument>
    <Argument name="tags" type="list"><Item type="string">a</Item></Argument>
    <Argument name="map" type="dict"><Item key="k" type="bytes">AAE=</Item></Argument>

Types: ``int`` (signed 64-bit), ``float`` (xsd:double lexical), ``bool`` (``true``/``false``),
``string``, ``bytes`` (base64), ``list``, ``dict`` (string keys).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from typing import ClassVar, Self

from igrs.constants import (
    EVENT_BATCH_MAX,
    IGRS_NS,
    MAX_ARGUMENTS,
    MAX_NAME_LENGTH,
    MAX_STRING_VALUE,
    MAX_TOKEN_LENGTH,
    MAX_USER_ID_LENGTH,
    MAX_VALUE_DEPTH,
    MAX_VALUE_ITEMS,
    SESSION_ELEMENT,
)
from igrs.errors import LimitExceeded, ProtocolError
from igrs.wire.ids import parse_uint32
from igrs.wire.messages import Status, body_element, register, sub_element
from igrs.wire.xml import Element, child_text, etree, local_name, qname

Value = int | float | bool | str | bytes | list["Value"] | dict[str, "Value"]
WIRE_TYPES = ("int", "float", "bool", "string", "bytes", "list", "dict")
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}\Z")
_INT_RE = re.compile(r"[+-]?[0-9]{1,19}\Z")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?\Z")
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}\Z")


# --- small helpers shared by the body modules ---------------------------------------------
el, sub = body_element, sub_element


_SESSION_TAG = qname(IGRS_NS, SESSION_ELEMENT)


def expect(body: Element, message_type: str, *, session_wrapper: bool = False) -> None:
    tag = body.tag
    if tag != qname(IGRS_NS, message_type) and not (session_wrapper and tag == _SESSION_TAG):
        raise ProtocolError(f"body element is not {message_type}")


def uint(parent: Element, local: str) -> int:
    return parse_uint32(child_text(parent, IGRS_NS, local, max_len=10) or "", local)


def opt_uint(parent: Element, local: str) -> int | None:
    text = child_text(parent, IGRS_NS, local, required=False, max_len=10)
    return None if text is None else parse_uint32(text, local)


def check_name(name: str, what: str = "name") -> str:
    if not _NAME_RE.match(name):
        raise ProtocolError(f"malformed {what} {name[:40]!r}")
    return name


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    compact = "".join(text.split())
    if len(compact) % 4 or not _B64_RE.match(compact):
        raise ProtocolError(f"{what} is not base64")
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error:
        raise ProtocolError(f"{what} is not base64") from None


def read_bool(parent: Element, local: str, *, required: bool = False) -> bool:
    text = child_text(parent, IGRS_NS, local, required=required, max_len=5)
    if text is None:
        return False
    if text not in ("true", "false", "1", "0"):
        raise ProtocolError(f"{local} must be true or false")
    return text in ("true", "1")


# --- typed values -------------------------------------------------------------------------
def wire_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "dict"
    raise TypeError(f"cannot carry a value of type {type(value).__name__}")


def format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    return repr(value)


def write_value(
    parent: Element, tag: str, value: object, *, name: str | None = None, key: str | None = None, depth: int = 0
) -> Element:
    """Append ``<tag name=.. type=..>value</tag>``; TypeError/ValueError if not encodable."""
    if depth > MAX_VALUE_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_VALUE_DEPTH}")
    kind = wire_type(value)
    child = etree.SubElement(parent, qname(IGRS_NS, tag))
    if name is not None:
        child.set("name", name)
    if key is not None:
        child.set("key", key)
    child.set("type", kind)
    if kind == "bool":
        child.text = "true" if value else "false"
    elif kind == "int":
        if not INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            raise ValueError("int value outside the signed 64-bit range")
        child.text = str(value)
    elif kind == "float":
        child.text = format_float(value)  # type: ignore[arg-type]
    elif kind == "string":
        if len(value) > MAX_STRING_VALUE:  # type: ignore[arg-type]
            raise ValueError("string value too long")
        child.text = value  # type: ignore[assignment]  # lxml refuses non-XML characters
    elif kind == "bytes":
        text = b64encode(bytes(value))  # type: ignore[call-overload]
        if len(text) > MAX_STRING_VALUE:
            raise ValueError("bytes value too long")
        child.text = text
    elif kind == "list":
        for item in value:  # type: ignore[attr-defined]
            write_value(child, "Item", item, depth=depth + 1)
    else:
        for k, item in value.items():  # type: ignore[attr-defined]
            if not isinstance(k, str):
                raise TypeError("dict keys must be strings")
            write_value(child, "Item", item, key=k, depth=depth + 1)
    return child


class _Budget:
    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items = 0


def read_value(node: Element, *, depth: int = 0, budget: _Budget | None = None) -> Value:
    """Decode one typed value element; ProtocolError on anything malformed or over a cap."""
    if depth > MAX_VALUE_DEPTH:
        raise LimitExceeded(f"value nested deeper than {MAX_VALUE_DEPTH}")
    budget = budget or _Budget()
    kind = node.get("type")
    text = node.text or ""
    if kind in ("list", "dict"):
        result_list: list[Value] = []
        result_dict: dict[str, Value] = {}
        for item in node:
            if not isinstance(item.tag, str):
                continue
            if item.tag != qname(IGRS_NS, "Item"):
                raise ProtocolError("list/dict values hold Item elements only")
            budget.items += 1
            if budget.items > MAX_VALUE_ITEMS:
                raise LimitExceeded(f"value has more than {MAX_VALUE_ITEMS} items")
            inner = read_value(item, depth=depth + 1, budget=budget)
            if kind == "list":
                result_list.append(inner)
            else:
                k = item.get("key")
                if k is None:
                    raise ProtocolError("dict Item without key")
                if len(k) > MAX_NAME_LENGTH * 8:
                    raise LimitExceeded("dict key too long")
                result_dict[k] = inner
        return result_list if kind == "list" else result_dict
    if len(node):
        raise ProtocolError(f"a {kind} value has no child elements")
    return scalar_value(kind, text)


_SPECIAL_FLOATS = {"INF": math.inf, "+INF": math.inf, "-INF": -math.inf, "NaN": math.nan}


def scalar_value(kind: str | None, text: str) -> Value:
    """The value of a scalar typed value's text (everything but ``list`` / ``dict``); the
    general reader and the canonical one (igrs.wire.bodies.canonical) both read values here."""
    if kind == "string":
        if len(text) > MAX_STRING_VALUE:
            raise LimitExceeded("string value too long")
        return text
    text = text.strip()
    if kind == "int":
        if not _INT_RE.match(text):
            raise ProtocolError("malformed int value")
        number = int(text)
        if not INT_MIN <= number <= INT_MAX:
            raise ProtocolError("int value outside the signed 64-bit range")
        return number
    if kind == "float":
        if text in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[text]
        if not _FLOAT_RE.match(text):
            raise ProtocolError("malformed float value")
        return float(text)
    if kind == "bool":
        if text not in ("true", "false", "1", "0"):
            raise ProtocolError("malformed bool value")
        return text in ("true", "1")
    if kind == "bytes":
        if len(text) > MAX_STRING_VALUE:
            raise LimitExceeded("bytes value too long")
        return b64decode(text, "bytes value")
    raise ProtocolError(f"unknown value type {str(kind)[:20]!r}")


class BareText(str):
    """A value given as bare text, without a ``type`` (an RPC-style argument such as
    ``<level>40</level>``, specs/services.md §3.1): the host converts it to the parameter's type
    (``value_from_text``); everywhere else it is a string."""

    __slots__ = ()


def value_from_text(text: str, kind: str) -> Value:
    """The value of bare ``text`` read as a scalar wire type (the lexical forms of the typed
    values); ProtocolError if it is not one, or for ``list`` / ``dict`` (they need a type)."""
    if kind == "string":
        return str(text)
    if kind not in ("int", "float", "bool", "bytes"):
        raise ProtocolError(f"a {kind.partition('[')[0]} value needs a type attribute, not bare text")
    node = etree.Element("v", type=kind)
    node.text = text
    return read_value(node)


NamedValues = tuple[tuple[str, Value], ...]


def write_named(parent: Element, tag: str, values: NamedValues) -> None:
    for name, value in values:
        write_value(parent, tag, value, name=name)


def read_named(
    parent: Element, tag: str, *, limit: int = MAX_ARGUMENTS, duplicates: bool = False
) -> NamedValues:
    out: list[tuple[str, Value]] = []
    seen: set[str] = set()
    budget = _Budget()
    for node in parent.iterchildren(qname(IGRS_NS, tag)):
        if len(out) >= limit:
            raise LimitExceeded(f"more than {limit} {tag} elements")
        name = check_name(node.get("name") or "", f"{tag} name")
        if name in seen and not duplicates:
            raise ProtocolError(f"duplicate {tag} {name}")
        seen.add(name)
        out.append((name, read_value(node, budget=budget)))
    return tuple(out)


# --- 10.5 session ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class UserInfo:
    """public source: EZ-CS ``UserInfo{SourceUserId, ServiceSecurityId, Token}``."""

    source_user_id: str = ""
    service_security_id: str = ""
    token: str = ""

    def write(self, parent: Element) -> None:
        info = sub(parent, "UserInfo")
        sub(info, "SourceUserId", self.source_user_id)
        sub(info, "ServiceSecurityId", self.service_security_id)
        sub(info, "Token", self.token)

    @classmethod
    def read(cls, parent: Element) -> UserInfo:
        info = parent.find(qname(IGRS_NS, "UserInfo"))
        if info is None:
            return cls()
        user = child_text(info, IGRS_NS, "SourceUserId", required=False, max_len=MAX_USER_ID_LENGTH) or ""
        sec = child_text(info, IGRS_NS, "ServiceSecurityId", required=False, max_len=256) or ""
        token = child_text(info, IGRS_NS, "Token", required=False, max_len=MAX_TOKEN_LENGTH) or ""
        # ezbox writes the literal NULL for an absent user / security id (EZ-CS).
        if user == "NULL":
            user = ""
        if sec.endswith(":NULL") or sec == "NULL":
            sec = ""
        return cls(user, sec, token)


@dataclass(frozen=True, slots=True)
class CreateSessionRequest:
    client_id: int
    service_id: int
    sequence_id: int
    user: UserInfo = UserInfo()
    message_type: ClassVar[str] = "CreateSessionRequest"

    def body(self) -> Element:
        root = el(SESSION_ELEMENT)
        sub(root, "SourceClientId", str(self.client_id))
        sub(root, "TargetServiceId", str(self.service_id))
        sub(root, "SequenceId", str(self.sequence_id))
        self.user.write(root)
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type, session_wrapper=True)
        return cls(
            uint(body, "SourceClientId"),
            uint(body, "TargetServiceId"),
            uint(body, "SequenceId"),
            UserInfo.read(body),
        )


@dataclass(frozen=True, slots=True)
class CreateSessionResponse:
    status: Status
    service_id: int
    client_id: int
    session_id: int | None = None  # project choice, always emitted on 200; ezbox-era answers lack it
    message_type: ClassVar[str] = "CreateSessionResponse"

    def body(self) -> Element:
        root = el(SESSION_ELEMENT)
        self.status.write(root)
        sub(root, "SourceServiceId", str(self.service_id))
        sub(root, "TargetClientId", str(self.client_id))
        if self.session_id is not None:
            sub(root, "SessionId", str(self.session_id))
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type, session_wrapper=True)
        # Without SessionId (ezbox's answers carry none) the session is known by its id pair.
        return cls(Status.read(body), uint(body, "SourceServiceId"), uint(body, "TargetClientId"),
                   opt_uint(body, "SessionId"))


def _write_direction(root: Element, client_id: int, service_id: int, from_service: bool) -> None:
    if from_service:
        sub(root, "SourceServiceId", str(service_id))
        sub(root, "TargetClientId", str(client_id))
    else:
        sub(root, "SourceClientId", str(client_id))
        sub(root, "TargetServiceId", str(service_id))


def _read_direction(body: Element) -> tuple[int, int, bool]:
    """(client id, service id, sent by the service) from either id pair."""
    if body.find(qname(IGRS_NS, "SourceServiceId")) is not None:
        return uint(body, "TargetClientId"), uint(body, "SourceServiceId"), True
    return uint(body, "SourceClientId"), uint(body, "TargetServiceId"), False


@dataclass(frozen=True, slots=True)
class DestroySessionNotify:
    """Either end ends a session: the client (Source/TargetClient.. pair) or the service."""

    client_id: int
    service_id: int
    session_id: int | None  # None: a session known by its id pair only (no SessionId given)
    from_service: bool = False
    reason: str = ""
    message_type: ClassVar[str] = "DestroySessionNotify"

    def body(self) -> Element:
        root = el(SESSION_ELEMENT)
        _write_direction(root, self.client_id, self.service_id, self.from_service)
        if self.session_id is not None:
            sub(root, "SessionId", str(self.session_id))
        if self.reason:
            sub(root, "Reason", self.reason[:256])
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type, session_wrapper=True)
        client, service, from_service = _read_direction(body)
        reason = child_text(body, IGRS_NS, "Reason", required=False, max_len=256) or ""
        return cls(client, service, opt_uint(body, "SessionId"), from_service, reason)


@dataclass(frozen=True, slots=True)
class ApplySessionKeyRequest:
    client_id: int
    service_id: int
    session_id: int
    sequence_id: int
    nonce: bytes
    key_length: int = 32
    message_type: ClassVar[str] = "ApplySessionKeyRequest"

    def body(self) -> Element:
        root = el(SESSION_ELEMENT)
        sub(root, "SourceClientId", str(self.client_id))
        sub(root, "TargetServiceId", str(self.service_id))
        sub(root, "SessionId", str(self.session_id))
        sub(root, "SequenceId", str(self.sequence_id))
        sub(root, "Nonce", b64encode(self.nonce))
        sub(root, "KeyLength", str(self.key_length))
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type, session_wrapper=True)
        nonce = b64decode(child_text(body, IGRS_NS, "Nonce", max_len=64) or "", "Nonce")
        if not 16 <= len(nonce) <= 32:
            raise ProtocolError("Nonce must be 16 to 32 bytes")
        length = opt_uint(body, "KeyLength") or 32
        if not 16 <= length <= 64:
            raise ProtocolError("KeyLength must be 16 to 64")
        return cls(
            uint(body, "SourceClientId"),
            uint(body, "TargetServiceId"),
            uint(body, "SessionId"),
            uint(body, "SequenceId"),
            nonce,
            length,
        )


@dataclass(frozen=True, slots=True)
class ApplySessionKeyResponse:
    status: Status
    service_id: int
    client_id: int
    session_id: int
    key_check: bytes = b""
    message_type: ClassVar[str] = "ApplySessionKeyResponse"

    def body(self) -> Element:
        root = el(SESSION_ELEMENT)
        self.status.write(root)
        sub(root, "SourceServiceId", str(self.service_id))
        sub(root, "TargetClientId", str(self.client_id))
        sub(root, "SessionId", str(self.session_id))
        if self.key_check:
            sub(root, "KeyCheckValue", b64encode(self.key_check))
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type, session_wrapper=True)
        kcv = child_text(body, IGRS_NS, "KeyCheckValue", required=False, max_len=64)
        return cls(
            Status.read(body),
            uint(body, "SourceServiceId"),
            uint(body, "TargetClientId"),
            uint(body, "SessionId"),
            b64decode(kcv, "KeyCheckValue") if kcv else b"",
        )


@dataclass(frozen=True, slots=True)
class TransferSessionKeyRequest:
    client_id: int
    service_id: int
    session_id: int
    sequence_id: int
    wrapped_key: bytes
    context: bytes = b""
    from_service: bool = False
    message_type: ClassVar[str] = "TransferSessionKeyRequest"

    def body(self) -> Element:
        root = el(SESSION_ELEMENT)
        _write_direction(root, self.client_id, self.service_id, self.from_service)
        sub(root, "SessionId", str(self.session_id))
        sub(root, "SequenceId", str(self.sequence_id))
        sub(root, "WrappedKey", b64encode(self.wrapped_key))
        if self.context:
            sub(root, "Context", b64encode(self.context))
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type, session_wrapper=True)
        client, service, from_service = _read_direction(body)
        wrapped = b64decode(child_text(body, IGRS_NS, "WrappedKey", max_len=256) or "", "WrappedKey")
        if not wrapped:
            raise ProtocolError("empty WrappedKey")
        ctx = child_text(body, IGRS_NS, "Context", required=False, max_len=256)
        return cls(
            client,
            service,
            uint(body, "SessionId"),
            uint(body, "SequenceId"),
            wrapped,
            b64decode(ctx, "Context") if ctx else b"",
            from_service,
        )


@dataclass(frozen=True, slots=True)
class TransferSessionKeyResponse:
    status: Status
    session_id: int
    message_type: ClassVar[str] = "TransferSessionKeyResponse"

    def body(self) -> Element:
        root = el(SESSION_ELEMENT)
        self.status.write(root)
        sub(root, "SessionId", str(self.session_id))
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type, session_wrapper=True)
        return cls(Status.read(body), uint(body, "SessionId"))


# --- 10.6 invocation ------------------------------------------------------------------------
def _rpc_arguments(parent: Element) -> NamedValues | None:
    """``parent``'s element children read as RPC-style arguments: ``<Argument name= type=>``, or
    an element named after the argument with a ``type`` (a typed value) or with bare text
    (``BareText``); local names only, any namespace (ezbox compares local names). None when they
    cannot be read so (an untyped element with element children; a name that is no argument
    name; a name twice)."""
    out: list[tuple[str, Value]] = []
    seen: set[str] = set()
    budget = _Budget()
    for node in parent:
        if not isinstance(node.tag, str):
            continue
        if len(out) >= MAX_ARGUMENTS:
            raise LimitExceeded(f"more than {MAX_ARGUMENTS} arguments")
        local = local_name(node)
        name = node.get("name", "") if local == "Argument" and node.get("type") else local
        if not _NAME_RE.match(name) or name in seen:
            return None
        seen.add(name)
        if node.get("type") is not None:
            out.append((name, read_value(node, budget=budget)))
        elif len(node):
            return None
        else:
            text = node.text or ""
            if len(text) > MAX_STRING_VALUE:
                raise LimitExceeded("argument text too long")
            out.append((name, BareText(text)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class RpcCall:
    """``InvokeArguments`` of an InvokeServiceRequest that names no operation (RPC style, as
    ezbox sends it: no ``ActionName``). The host picks the action (specs/services.md §3.1)
    from what this holds, read both ways it can be read."""

    operation: str = ""  # local name of InvokeArguments' one element child, unless it holds text
    operation_arguments: NamedValues | None = None  # that child's children as arguments
    arguments: NamedValues | None = None  # InvokeArguments' own children as arguments
    text: str = ""  # InvokeArguments' text, when it has no element child

    @classmethod
    def read(cls, args: Element | None) -> RpcCall:
        if args is None:
            return cls(arguments=())
        children = [c for c in args if isinstance(c.tag, str)]
        text = "" if children else (args.text or "").strip()
        if len(text) > MAX_STRING_VALUE:
            raise LimitExceeded("InvokeArguments text too long")
        # The one element child names the operation unless it holds a value (text, no children).
        one = children[0] if len(children) == 1 else None
        wrapper = one is not None and (len(one) > 0 or not (one.text or "").strip())
        operation = local_name(one) if one is not None and wrapper and _NAME_RE.match(local_name(one)) else ""
        return cls(operation, _rpc_arguments(one) if operation and one is not None else None,
                   _rpc_arguments(args), text)


# Not frozen, for speed: made for every message (issue 15); never mutated, hashed as before.
@dataclass(slots=True, unsafe_hash=True)
class InvokeServiceRequest:
    """``action`` names the operation (``ActionName``, project choice); a request without it
    (RPC style, the public record's form) decodes with ``action`` empty and ``call`` set.
    ``rpc_style`` emits that form: no ``ActionName``, the operation as the one element child of
    ``InvokeArguments``, each argument an element named after it carrying a typed value."""

    client_id: int
    service_id: int
    sequence_id: int
    action: str
    arguments: NamedValues = ()
    session_id: int | None = None  # project choice; ezbox identifies the session by the id pair
    call: RpcCall | None = None  # what an RPC-style request held (decoded only)
    rpc_style: bool = False  # emit the RPC-style form (for peers that know no ActionName)
    message_type: ClassVar[str] = "InvokeServiceRequest"

    def body(self) -> Element:
        root = el(SESSION_ELEMENT)
        sub(root, "SourceClientId", str(self.client_id))
        sub(root, "TargetServiceId", str(self.service_id))
        sub(root, "SequenceId", str(self.sequence_id))
        if self.session_id is not None:
            sub(root, "SessionId", str(self.session_id))
        if self.rpc_style:
            operation = sub(sub(root, "InvokeArguments"), check_name(self.action, "ActionName"))
            for name, value in self.arguments:
                write_value(operation, check_name(name, "argument name"), value)
            return root
        sub(root, "ActionName", self.action)
        args = sub(root, "InvokeArguments")
        write_named(args, "Argument", self.arguments)
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type, session_wrapper=True)
        args = next(body.iterchildren(qname(IGRS_NS, "InvokeArguments")), None)
        ids = (uint(body, "SourceClientId"), uint(body, "TargetServiceId"), uint(body, "SequenceId"))
        named = child_text(body, IGRS_NS, "ActionName", required=False, max_len=64)
        if named is None:  # RPC style: the host resolves the operation
            return cls(*ids, "", (), opt_uint(body, "SessionId"), RpcCall.read(args))
        action = check_name(named, "ActionName")
        return cls(
            *ids,
            action,
            read_named(args, "Argument") if args is not None else (),
            opt_uint(body, "SessionId"),
        )


# Not frozen, for speed: made for every message (issue 15); never mutated, hashed as before.
@dataclass(slots=True, unsafe_hash=True)
class InvokeServiceResponse:
    status: Status
    service_id: int
    client_id: int
    results: NamedValues = ()
    message_type: ClassVar[str] = "InvokeServiceResponse"

    def body(self) -> Element:
        root = el(SESSION_ELEMENT)
        self.status.write(root)
        sub(root, "SourceServiceId", str(self.service_id))
        sub(root, "TargetClientId", str(self.client_id))
        if self.results:
            # public source: EZ-IS carries the result in InvokeArguments too.
            write_named(sub(root, "InvokeArguments"), "Argument", self.results)
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type, session_wrapper=True)
        args = next(body.iterchildren(qname(IGRS_NS, "InvokeArguments")), None)
        results = read_named(args, "Argument") if args is not None else ()
        if args is not None and not results and not len(args) and (args.text or "").strip():
            # EZ-IS: InvokeArguments as opaque text (ezbox echoes the request's): the result.
            text = args.text or ""
            if len(text) > MAX_STRING_VALUE:
                raise LimitExceeded("InvokeArguments text too long")
            results = (("result", text),)
        return cls(Status.read(body), uint(body, "SourceServiceId"), uint(body, "TargetClientId"), results)


@dataclass(frozen=True, slots=True)
class SendNotification:
    """sendNotification (EZ-SDT) of attribute changes to one subscription, batched.

    ``sequence`` counts notifications of the subscription from 0 (the initial values);
    ``coalesced`` says intermediate values were dropped (slow subscriber, specs/events.md);
    ``ended`` non-empty says the service ended the subscription, with this reason.
    """

    service_id: int
    subscription_id: int
    sequence: int
    attributes: NamedValues = ()
    coalesced: bool = False
    ended: str = ""
    message_type: ClassVar[str] = "SendNotification"

    def body(self) -> Element:
        root = el(SESSION_ELEMENT)
        sub(root, "SourceServiceId", str(self.service_id))
        sub(root, "SubscriptionId", str(self.subscription_id))
        sub(root, "EventSequence", str(self.sequence))
        if self.coalesced:
            sub(root, "Coalesced", "true")
        if self.ended:
            sub(root, "SubscriptionEnded", self.ended[:256])
        write_named(root, "ServiceAttribute", self.attributes)
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type, session_wrapper=True)
        seq = parse_uint32(
            child_text(body, IGRS_NS, "EventSequence", max_len=10) or "", "EventSequence", allow_zero=True
        )
        ended = child_text(body, IGRS_NS, "SubscriptionEnded", required=False, max_len=256) or ""
        return cls(
            uint(body, "SourceServiceId"),
            uint(body, "SubscriptionId"),
            seq,
            read_named(body, "ServiceAttribute", limit=EVENT_BATCH_MAX, duplicates=True),
            read_bool(body, "Coalesced"),
            ended,
        )


for _cls in (
    CreateSessionRequest,
    CreateSessionResponse,
    DestroySessionNotify,
    ApplySessionKeyRequest,
    ApplySessionKeyResponse,
    TransferSessionKeyRequest,
    TransferSessionKeyResponse,
    InvokeServiceRequest,
    InvokeServiceResponse,
    SendNotification,
):
    register(_cls)

__all__ = [
    "WIRE_TYPES",
    "ApplySessionKeyRequest",
    "ApplySessionKeyResponse",
    "BareText",
    "CreateSessionRequest",
    "CreateSessionResponse",
    "DestroySessionNotify",
    "InvokeServiceRequest",
    "InvokeServiceResponse",
    "NamedValues",
    "RpcCall",
    "SendNotification",
    "TransferSessionKeyRequest",
    "TransferSessionKeyResponse",
    "UserInfo",
    "Value",
    "read_value",
    "value_from_text",
    "write_value",
]
