"""Frame payloads (sans-IO). Binary where it is hot (messages, errors), JSON for control.

MESSAGE / DELIVER:  ns_len u8 | namespace utf-8 | body (rest)
MULTICAST:          count u16 | count x 16-byte uuid | ns_len u8 | namespace | body
                    (count 0 with TARGET_USER set: every device bound to the target user)
ERROR / GOAWAY:     code u16 | reason utf-8 (rest)
AUTH, REQUEST, RESPONSE, RECEIPT, PRESENCE, NOTIFY, AUTH_OK: UTF-8 JSON object
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import construct as c

from igrs.relay.errors import RelayCode
from igrs.relay.frames import FrameError, Uuid
from igrs.wire.memo import Memo

DEFAULT_NAMESPACE = "urn:IGRS:relay:app"  # project choice: uniform application primitive
MAX_NAMESPACE = 255
MAX_MULTICAST_TARGETS = 256  # hard format cap; the node's limit is usually lower
_NS_RE = re.compile(r"[\x21-\x7e]{1,255}\Z")

Namespace = c.PascalString(c.Int8ub, "utf8")
MESSAGE_BODY = c.Struct("namespace" / Namespace, "body" / c.GreedyBytes)
MULTICAST_BODY = c.Struct(
    "targets" / c.PrefixedArray(c.Int16ub, Uuid),
    "namespace" / Namespace,
    "body" / c.GreedyBytes,
)
ERROR_BODY = c.Struct("code" / c.Int16ub, "reason" / c.GreedyString("utf8"))


@dataclass(slots=True, frozen=True)
class MessageBody:
    namespace: str
    body: bytes


def _check_ns(ns: str) -> str:
    if not _NS_RE.match(ns):
        raise FrameError(RelayCode.BAD_FRAME, "namespace must be 1-255 printable ASCII")
    return ns


# Checked namespaces, both ways (a handful repeat; hostile new ones cost a bounded memo).
_PREFIXES: Memo[str, bytes] = Memo(1024)  # namespace -> its length byte + ASCII
_prefix_get = _PREFIXES.get
_NAMESPACES: Memo[bytes, str] = Memo(1024)  # raw namespace bytes -> checked namespace
_namespace_get = _NAMESPACES.get


def _prefix(namespace: str) -> bytes:
    ns = _check_ns(namespace).encode()
    return _PREFIXES.remember(namespace, bytes((len(ns),)) + ns)


def encode_message(namespace: str, body: bytes) -> bytes:
    # hot path, equivalent to MESSAGE_BODY.build (tests check it): ns is ASCII, 1-255 bytes
    return (_prefix_get(namespace) or _prefix(namespace)) + body


def _namespace(raw: bytes) -> str:
    try:
        ns = raw.decode("ascii")
    except UnicodeDecodeError:
        raise FrameError(RelayCode.BAD_FRAME, "bad message payload: namespace not ASCII") from None
    return _NAMESPACES.remember(raw, _check_ns(ns))


def message_namespace(payload: bytes) -> str:
    """The checked namespace of a MESSAGE/DELIVER payload (FrameError if it is bad)."""
    n = payload[0] if payload else 0
    if n == 0 or len(payload) < 1 + n:
        raise FrameError(RelayCode.BAD_FRAME, "bad message payload: namespace missing/short")
    raw = payload[1 : 1 + n]
    return _namespace_get(raw) or _namespace(raw)


def decode_message(payload: bytes) -> MessageBody:
    # hot path, equivalent to MESSAGE_BODY.parse plus the namespace check
    return MessageBody(message_namespace(payload), payload[1 + payload[0] :])


def encode_multicast(targets: list[uuid.UUID], namespace: str, body: bytes) -> bytes:
    if len(targets) > MAX_MULTICAST_TARGETS:
        raise FrameError(RelayCode.BAD_FRAME, "too many multicast targets")
    return bytes(MULTICAST_BODY.build(
        {"targets": targets, "namespace": _check_ns(namespace), "body": body}
    ))


def decode_multicast(payload: bytes) -> tuple[list[uuid.UUID], MessageBody]:
    try:
        m = MULTICAST_BODY.parse(payload)
    except (c.ConstructError, UnicodeDecodeError) as e:
        raise FrameError(RelayCode.BAD_FRAME, f"bad multicast payload: {e}") from None
    if len(m.targets) > MAX_MULTICAST_TARGETS:
        raise FrameError(RelayCode.BAD_FRAME, "too many multicast targets")
    return list(m.targets), MessageBody(_check_ns(m.namespace), bytes(m.body))


def encode_error(code: int, reason: str) -> bytes:
    return bytes(ERROR_BODY.build({"code": int(code), "reason": reason[:1000]}))


def decode_error(payload: bytes) -> tuple[int, str]:
    try:
        e = ERROR_BODY.parse(payload)
    except (c.ConstructError, UnicodeDecodeError):
        return int(RelayCode.BAD_FRAME), "unparseable error frame"
    return int(e.code), str(e.reason)


def encode_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def decode_json(payload: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise FrameError(RelayCode.BAD_FRAME, f"payload is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise FrameError(RelayCode.BAD_FRAME, "payload is not a JSON object")
    return obj
