"""The hot messages without lxml: a writer and a strict reader for the exact bytes the stack
itself emits for an invocation, its answer, a notification and a sealed SecureMessage.

The writer gives, byte for byte, what ``etree.tostring(message.body())`` gives (ASCII text,
scalar values), or None: anything else (lists, dicts, non-ASCII or control characters, the
RPC style, subclasses, values over a cap) takes the general lxml path, which also raises
the errors. The reader accepts only that canonical form and returns the message the general
path (``parse_xml`` + ``from_body``) returns for the same bytes, or None: anything else --
another dialect, order, spacing, entity, namespace prefix, or a value the general path
refuses -- goes through lxml, so every accepted dialect still parses and every refusal keeps
its reason. tests/unit/test_wire_canonical.py checks both claims on generated inputs.
Why: two lxml parses and an element-by-element build were about half of the codec's time
per sealed invocation (benchmarks/README.md, "Where the time goes per invocation").
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable

from igrs.constants import EVENT_BATCH_MAX, IGRS_NS, MAX_ARGUMENTS, MAX_HTTP_BODY, MAX_REASON, MAX_STRING_VALUE
from igrs.errors import ProtocolError
from igrs.wire import messages, strict_base64
from igrs.wire.bodies import sessions as ss
from igrs.wire.bodies.pipes import SECURE_MESSAGE, SecureMessage
from igrs.wire.ids import UINT32_MAX, parse_uint32
from igrs.wire.messages import SoapMessage, Status
from igrs.wire.soap import envelope_frame

_OPEN = f'<Session xmlns="{IGRS_NS}">'
_CLOSE = "</Session>"
_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}"  # = the names sessions.check_name accepts: no escaping
_NAME_RE = re.compile(_NAME + r"\Z")
# Text lxml writes as it is, but for & < > (escaped below): ASCII, no control character but
# TAB and LF (it writes CR as &#13;, and refuses most others).
_PLAIN_TEXT = re.compile(r"[\t\n\x20-\x7e]*\Z")
_KINDS = {str: "string", int: "int", bool: "bool", float: "float", bytes: "bytes"}
INT_MIN, INT_MAX = ss.INT_MIN, ss.INT_MAX


# --- writer ------------------------------------------------------------------------------------
def _text(text: str) -> str | None:
    if not (text.isascii() and text.isprintable()) and not _PLAIN_TEXT.match(text):  # (C first: cheaper)
        return None
    if "&" in text or "<" in text or ">" in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def _value(tag: str, name: str, value: object) -> str | None:
    """``<tag name=.. type=..>value</tag>`` as write_value writes a scalar, or None."""
    kind = _KINDS.get(type(value))
    if kind is None or not _NAME_RE.match(name):
        return None
    text: str | None
    if kind == "string":
        text = _text(value) if len(value) <= MAX_STRING_VALUE else None  # type: ignore[arg-type]
    elif kind == "int":
        text = str(value) if INT_MIN <= value <= INT_MAX else None  # type: ignore[operator]
    elif kind == "bool":
        text = "true" if value else "false"
    elif kind == "float":
        text = ss.format_float(value)  # type: ignore[arg-type]
    else:
        text = ss.b64encode(value)  # type: ignore[arg-type]
        if len(text) > MAX_STRING_VALUE:
            return None
    if text is None:
        return None
    return f'<{tag} name="{name}" type="{kind}">{text}</{tag}>'


def _named(parts: list[str], tag: str, values: ss.NamedValues) -> bool:
    for name, value in values:
        one = _value(tag, name, value)
        if one is None:
            return False
        parts.append(one)
    return True


def _uint_el(parts: list[str], local: str, value: object) -> bool:
    if type(value) is not int:
        return False
    parts.append(f"<{local}>{value}</{local}>")
    return True


def _arguments(parts: list[str], values: ss.NamedValues) -> bool:
    if not values:
        parts.append("<InvokeArguments/>")
        return True
    parts.append("<InvokeArguments>")
    ok = _named(parts, "Argument", values)
    parts.append("</InvokeArguments>")
    return ok


def _status(parts: list[str], status: Status) -> bool:
    if not (_uint_el(parts, "AcknowledgeId", status.acknowledge_id)
            and _uint_el(parts, "ReturnCode", int(status.return_code))):
        return False
    if status.reason:
        reason = _text(status.reason[:MAX_REASON])
        if reason is None:
            return False
        parts.append(f"<Reason>{reason}</Reason>")
    return True


def _invoke_request(m: ss.InvokeServiceRequest) -> bytes | None:
    if m.rpc_style or not _NAME_RE.match(m.action):
        return None
    parts = [_OPEN]
    if not (_uint_el(parts, "SourceClientId", m.client_id) and _uint_el(parts, "TargetServiceId", m.service_id)
            and _uint_el(parts, "SequenceId", m.sequence_id)):
        return None
    if m.session_id is not None and not _uint_el(parts, "SessionId", m.session_id):
        return None
    parts.append(f"<ActionName>{m.action}</ActionName>")
    if not _arguments(parts, m.arguments):
        return None
    parts.append(_CLOSE)
    return "".join(parts).encode("ascii")


def _invoke_response(m: ss.InvokeServiceResponse) -> bytes | None:
    parts = [_OPEN]
    if not (_status(parts, m.status) and _uint_el(parts, "SourceServiceId", m.service_id)
            and _uint_el(parts, "TargetClientId", m.client_id)):
        return None
    if m.results and not _arguments(parts, m.results):
        return None
    parts.append(_CLOSE)
    return "".join(parts).encode("ascii")


def _notification(m: ss.SendNotification) -> bytes | None:
    parts = [_OPEN]
    if not (_uint_el(parts, "SourceServiceId", m.service_id)
            and _uint_el(parts, "SubscriptionId", m.subscription_id)
            and _uint_el(parts, "EventSequence", m.sequence)):
        return None
    if m.coalesced:
        parts.append("<Coalesced>true</Coalesced>")
    if m.ended:
        ended = _text(m.ended[:256])
        if ended is None:
            return None
        parts.append(f"<SubscriptionEnded>{ended}</SubscriptionEnded>")
    if not _named(parts, "ServiceAttribute", m.attributes):
        return None
    parts.append(_CLOSE)
    return "".join(parts).encode("ascii")


WRITERS: dict[type, Callable[[SoapMessage], bytes | None]] = {
    ss.InvokeServiceRequest: _invoke_request,  # type: ignore[dict-item]
    ss.InvokeServiceResponse: _invoke_response,  # type: ignore[dict-item]
    ss.SendNotification: _notification,  # type: ignore[dict-item]
}


def write(message: SoapMessage) -> bytes | None:
    """``etree.tostring(message.body())`` without lxml, or None where only lxml may write it."""
    writer = WRITERS.get(type(message))
    return writer(message) if writer is not None else None


# --- reader ------------------------------------------------------------------------------------
# Character data exactly as lxml writes it: no CR (a parser turns a literal one into LF), no
# '>' (lxml escapes it), no control character, ASCII only; the three entities lxml writes.
_CHARS = rb"[\t\n\x20-\x25\x27-\x3b\x3d\x3f-\x7e]*"
_TEXT = _CHARS + rb"(?:&(?:lt|gt|amp);" + _CHARS + rb")*"  # unrolled: one class run at a time
_UINT = rb"([0-9]{1,10})"
_VALUE = (rb'<%s name="(' + _NAME.encode() + rb')" type="(string|int|bool|float|bytes)">(' + _TEXT
          + rb")</%s>")
_ARGUMENT = _VALUE % (b"Argument", b"Argument")
_ATTRIBUTE = _VALUE % (b"ServiceAttribute", b"ServiceAttribute")
_ARGUMENT_RE = re.compile(_ARGUMENT)
_ATTRIBUTE_RE = re.compile(_ATTRIBUTE)


def _uncaptured(pattern: bytes) -> bytes:
    """``pattern`` with its capturing groups made non-capturing."""
    return pattern.replace(b"(?:", b"\0").replace(b"(", b"(?:").replace(b"\0", b"(?:")


_ARGUMENTS = (rb"(?:<InvokeArguments>((?:" + _uncaptured(_ARGUMENT) + rb")*)</InvokeArguments>"
              rb"|<InvokeArguments/>)")
_OPEN_B, _CLOSE_B = _OPEN.encode(), _CLOSE.encode()
_REQUEST_RE = re.compile(
    re.escape(_OPEN_B) + rb"<SourceClientId>" + _UINT + rb"</SourceClientId><TargetServiceId>" + _UINT
    + rb"</TargetServiceId><SequenceId>" + _UINT + rb"</SequenceId>(?:<SessionId>" + _UINT
    + rb"</SessionId>)?<ActionName>(" + _NAME.encode() + rb")</ActionName>" + _ARGUMENTS
    + re.escape(_CLOSE_B) + rb"\Z")
_STATUS = (rb"<AcknowledgeId>" + _UINT + rb"</AcknowledgeId><ReturnCode>([0-9]{3})</ReturnCode>"
           rb"(?:<Reason>(" + _TEXT + rb")</Reason>)?")
_RESPONSE_RE = re.compile(
    re.escape(_OPEN_B) + _STATUS + rb"<SourceServiceId>" + _UINT + rb"</SourceServiceId><TargetClientId>"
    + _UINT + rb"</TargetClientId>(?:" + _ARGUMENTS + rb")?" + re.escape(_CLOSE_B) + rb"\Z")
_NOTIFICATION_RE = re.compile(
    re.escape(_OPEN_B) + rb"<SourceServiceId>" + _UINT + rb"</SourceServiceId><SubscriptionId>" + _UINT
    + rb"</SubscriptionId><EventSequence>" + _UINT + rb"</EventSequence>(<Coalesced>true</Coalesced>)?"
    rb"(?:<SubscriptionEnded>(" + _TEXT + rb")</SubscriptionEnded>)?((?:" + _uncaptured(_ATTRIBUTE) + rb")*)"
    + re.escape(_CLOSE_B) + rb"\Z")


def _unescape(raw: bytes) -> str:
    text = raw.decode("ascii")
    if "&" in text:
        text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text


def _read_named(block: bytes | None, pattern: re.Pattern[bytes], limit: int,
                duplicates: bool) -> ss.NamedValues:
    """The values of a block the outer pattern matched; ProtocolError where read_named fails."""
    if not block:
        return ()
    out: list[tuple[str, ss.Value]] = []
    seen: set[str] = set()
    for m in pattern.finditer(block):
        if len(out) >= limit:
            raise ProtocolError("over the limit")
        name = m.group(1).decode("ascii")
        if name in seen and not duplicates:
            raise ProtocolError("duplicate")
        seen.add(name)
        out.append((name, ss.scalar_value(m.group(2).decode("ascii"), _unescape(m.group(3)))))
    return tuple(out)


def _uint(raw: bytes | None, field: str, *, allow_zero: bool = False) -> int:
    """parse_uint32 of a group the patterns matched as ``[0-9]{1,10}``: its text checks hold,
    so only the range is left (parse_uint32 gives the refusal)."""
    if raw is None:
        return 0
    value = int(raw)
    if value > UINT32_MAX or (value == 0 and not allow_zero):
        return parse_uint32(raw.decode("ascii"), field, allow_zero=allow_zero)
    return value


def _status_of(ack: bytes, code: bytes, reason: bytes | None) -> Status:
    text = _unescape(reason).strip() if reason is not None else ""
    if len(text) > MAX_REASON:
        raise ProtocolError("reason too long")
    return Status(_uint(ack, "AcknowledgeId"), int(code), text)


def _read_request(data: bytes) -> SoapMessage | None:
    m = _REQUEST_RE.match(data)
    if m is None:
        return None
    cid, sid, seq, session, action, args = m.groups()
    return ss.InvokeServiceRequest(
        _uint(cid, "SourceClientId"), _uint(sid, "TargetServiceId"), _uint(seq, "SequenceId"),
        action.decode("ascii"), _read_named(args, _ARGUMENT_RE, MAX_ARGUMENTS, False),
        _uint(session, "SessionId") if session is not None else None)


def _read_response(data: bytes) -> SoapMessage | None:
    m = _RESPONSE_RE.match(data)
    if m is None:
        return None
    ack, code, reason, sid, cid, args = m.groups()
    return ss.InvokeServiceResponse(_status_of(ack, code, reason), _uint(sid, "SourceServiceId"),
                                    _uint(cid, "TargetClientId"),
                                    _read_named(args, _ARGUMENT_RE, MAX_ARGUMENTS, False))


def _read_notification(data: bytes) -> SoapMessage | None:
    m = _NOTIFICATION_RE.match(data)
    if m is None:
        return None
    sid, sub, seq, coalesced, ended, attrs = m.groups()
    ended_text = _unescape(ended).strip() if ended is not None else ""
    if len(ended_text) > 256:
        return None
    return ss.SendNotification(_uint(sid, "SourceServiceId"), _uint(sub, "SubscriptionId"),
                               _uint(seq, "EventSequence", allow_zero=True),
                               _read_named(attrs, _ATTRIBUTE_RE, EVENT_BATCH_MAX, True),
                               coalesced is not None, ended_text)


READERS: dict[str, Callable[[bytes], SoapMessage | None]] = {
    ss.InvokeServiceRequest.message_type: _read_request,
    ss.InvokeServiceResponse.message_type: _read_response,
    ss.SendNotification.message_type: _read_notification,
}


def read(message_type: str, data: bytes) -> SoapMessage | None:
    """The message of a body element in canonical form, or None (parse it with lxml)."""
    reader = READERS.get(message_type)
    if reader is None or len(data) > MAX_HTTP_BODY:
        return None
    try:
        return reader(data)
    except (ProtocolError, ValueError):
        return None  # the general path gives the refusal its reason


_PREFIX, _SUFFIX = envelope_frame()
_SEALED_HEAD = _PREFIX + f'<{SECURE_MESSAGE} xmlns="{IGRS_NS}"><PipeId>'.encode()
_SEALED_MIDDLE = b"</PipeId><Record>"
_SEALED_TAIL = f"</Record></{SECURE_MESSAGE}>".encode() + _SUFFIX
_SEALED_MIN = len(_SEALED_HEAD) + 1 + len(_SEALED_MIDDLE) + len(_SEALED_TAIL)
_HEAD_LEN, _MIDDLE_LEN, _TAIL_LEN = len(_SEALED_HEAD), len(_SEALED_MIDDLE), len(_SEALED_TAIL)


def read_sealed(body: bytes, message_type: str) -> SecureMessage | None:
    """A SecureMessage in the canonical envelope (as the stack writes it), or None.

    The fixed parts are compared and the record sliced out, no pattern: ``PipeId`` is 1-10
    ASCII digits, and the record between them is left to strict_base64, which refuses any
    byte outside its alphabet ('<' included) -- a regex scan of the record cost as much."""
    if len(body) < _SEALED_MIN or not body.startswith(_SEALED_HEAD) or not body.endswith(_SEALED_TAIL):
        return None
    start, end = _HEAD_LEN, len(body) - _TAIL_LEN
    middle = body.find(_SEALED_MIDDLE, start, start + 10 + _MIDDLE_LEN)  # after 1-10 digits
    if middle < 0 or middle + _MIDDLE_LEN > end:
        return None
    pipe_id = body[start:middle]
    if not pipe_id.isdigit():  # bytes.isdigit: ASCII digits only, and none when empty
        return None
    try:
        record = strict_base64.decode(body[middle + _MIDDLE_LEN:end])
        return SecureMessage(_uint(pipe_id, "PipeId"), record, message_type)
    except (ProtocolError, ValueError, binascii.Error):
        return None


messages.CANONICAL_WRITE = write
messages.CANONICAL_READ = read
messages.CANONICAL_READ_SEALED = read_sealed
