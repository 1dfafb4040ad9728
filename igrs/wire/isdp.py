"""ISDP datagrams: device advertisement (9.1) and multicast device search (9.6).

Wire shape (specs/isdp.md): SSDP-like HTTPU/HTTPMU with RFC 2774 IGRS extension headers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from typing import ClassVar, Final, NamedTuple
from urllib.parse import quote, unquote, urlsplit

from igrs.constants import (
    IGRS_EXT_URI,
    IGRS_VERSION,
    MAN_DISCOVER,
    MAN_DISCOVER_ACCEPTED,
    MAX_DATAGRAM,
    MAX_HEADER_LINE,
    MAX_HEADERS,
    MAX_MAX_AGE,
    MAX_MX,
    MAX_NAME_LENGTH,
    MAX_URL_LENGTH,
    MIN_MAX_AGE,
    NTS_ALIVE,
    NTS_BYEBYE,
    NTS_UPDATE,
    SERVER_PRODUCT,
    ST_ALL,
    ST_ALL_ACCEPTED,
)
from igrs.errors import LimitExceeded, ProtocolError
from igrs.wire.httpu import Headers, build_message, man_header, parse_parts
from igrs.wire.ids import (
    DEVICE_ID_PREFIX,
    DeviceId,
    DeviceType,
    ServiceType,
    canonical_device_id,
    check_igrs_version,
    check_name,
    is_digits,
    parse_uint32,
)
from igrs.wire.memo import Memo

SERVER: Final = f"{IGRS_VERSION} {SERVER_PRODUCT}"
_MAX_AGE = re.compile(r"(?:^|[,;\s])max-age\s*=\s*([0-9]{1,9})", re.IGNORECASE | re.ASCII)


# --- search targets -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SearchTarget:
    """An ST value: everything, one device, a device type, or a service type."""

    kind: str  # "all" | "device" | "device_type" | "service_type"
    device_id: DeviceId | None = None
    device_type: DeviceType | None = None
    service_type: ServiceType | None = None

    @classmethod
    def all(cls) -> SearchTarget:
        return cls("all")

    @classmethod
    def parse(cls, text: str) -> SearchTarget:
        text = text.strip()
        if text.lower() in ST_ALL_ACCEPTED:
            return cls("all")
        lowered = text.lower()
        if lowered.startswith("urn:igrs:device:deviceid:"):
            return cls("device", device_id=DeviceId.parse(text))
        if lowered.startswith("urn:igrs:devicetype:"):
            return cls("device_type", device_type=DeviceType.parse(text))
        if lowered.startswith("urn:igrs:servicetype:"):
            return cls("service_type", service_type=ServiceType.parse(text))
        raise ProtocolError(f"unsupported search target: {text[:60]!r}")

    def __str__(self) -> str:
        if self.kind == "device":
            return str(self.device_id)
        if self.kind == "device_type":
            return str(self.device_type)
        if self.kind == "service_type":
            return str(self.service_type)
        return ST_ALL


# --- messages --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceOnlineAdvertisement:
    device_id: DeviceId
    device_type: DeviceType
    location: str
    max_age: int
    name: str = ""
    server: str = SERVER
    update: bool = False  # NTS isdp:update (same meaning, a changed description)

    message_type: ClassVar[str] = "DeviceOnlineAdvertisement"


@dataclass(frozen=True, slots=True)
class DeviceOfflineAdvertisement:
    device_id: DeviceId
    device_type: DeviceType

    message_type: ClassVar[str] = "DeviceOfflineAdvertisement"


@dataclass(frozen=True, slots=True)
class SearchDeviceRequest:
    target: SearchTarget
    mx: int
    source_device_id: DeviceId | None = None

    message_type: ClassVar[str] = "SearchDeviceRequest"


@dataclass(frozen=True, slots=True)
class SearchDeviceResponse:
    device_id: DeviceId
    device_type: DeviceType
    location: str
    max_age: int
    target: SearchTarget
    name: str = ""
    requester: DeviceId | None = None
    server: str = SERVER

    message_type: ClassVar[str] = "SearchDeviceResponse"


# --- services (10.1, 10.2) ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ServiceOnlineAdvertisement:
    device_id: DeviceId
    service_type: ServiceType
    service_id: int
    location: str
    max_age: int
    name: str = ""

    message_type: ClassVar[str] = "ServiceOnlineAdvertisement"


@dataclass(frozen=True, slots=True)
class ServiceOfflineAdvertisement:
    device_id: DeviceId
    service_type: ServiceType
    service_id: int

    message_type: ClassVar[str] = "ServiceOfflineAdvertisement"


@dataclass(frozen=True, slots=True)
class SearchServiceRequest:
    target: SearchTarget  # kind "service_type"
    mx: int
    source_device_id: DeviceId | None = None

    message_type: ClassVar[str] = "SearchServiceRequest"


@dataclass(frozen=True, slots=True)
class SearchServiceResponse:
    device_id: DeviceId
    device_type: DeviceType
    service_type: ServiceType
    service_id: int
    location: str
    max_age: int
    name: str = ""
    requester: DeviceId | None = None

    message_type: ClassVar[str] = "SearchServiceResponse"


IsdpMessage = (
    DeviceOnlineAdvertisement | DeviceOfflineAdvertisement | SearchDeviceRequest | SearchDeviceResponse
    | ServiceOnlineAdvertisement | ServiceOfflineAdvertisement | SearchServiceRequest
    | SearchServiceResponse
)


# --- encoding ------------------------------------------------------------------------------
def ext_headers(message_type: str, source: DeviceId | None) -> list[tuple[str, str]]:
    """The IGRS extension headers every ISDP datagram carries (also used by igrs.wire.group_datagrams)."""
    headers = [
        man_header(IGRS_EXT_URI, "01"),
        ("01-IGRSVersion", IGRS_VERSION),
        ("01-IGRSMessageType", message_type),
    ]
    if source is not None:
        headers.append(("01-SourceDeviceId", str(source)))
    return headers


_NAME_SAFE = " !$&'()*+,-./:;=?@_~"
_NAME_CTL = re.compile(r"[\x00-\x1f\x7f]")


def encode_name(name: str, header: str = "01-DeviceName") -> str:
    """Percent-encode (UTF-8) a friendly name, cut at a character boundary so that the
    ``header`` line stays within MAX_HEADER_LINE (a long CJK or emoji name otherwise would not)."""
    budget = MAX_HEADER_LINE - len(header) - 2
    encoded = quote(name, safe=_NAME_SAFE)
    if len(encoded) <= budget:
        return encoded
    out, size = [], 0
    for ch in name:
        piece = quote(ch, safe=_NAME_SAFE)
        if size + len(piece) > budget:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def encode(msg: IsdpMessage, *, host: str, compact: bool = False) -> bytes:
    """Serialise an ISDP message; ``host`` is the ``HOST`` value, e.g. ``224.0.0.110:3880``.
    ``compact``: a search response with its required headers only (specs/isdp.md §5)."""
    if compact and isinstance(msg, SearchDeviceResponse | SearchServiceResponse):
        return _encode_compact(msg)
    if isinstance(msg, DeviceOnlineAdvertisement):
        headers = [
            ("HOST", host),
            ("CACHE-CONTROL", f"max-age={msg.max_age}"),
            ("LOCATION", msg.location),
            ("NT", str(msg.device_type)),
            ("NTS", NTS_UPDATE if msg.update else NTS_ALIVE),
            ("SERVER", msg.server),
            ("USN", str(msg.device_id)),
            *ext_headers(msg.message_type, msg.device_id),
        ]
        if msg.name:
            headers.append(("01-DeviceName", encode_name(check_name(msg.name))))
        return build_message("NOTIFY * HTTP/1.1", headers)
    if isinstance(msg, DeviceOfflineAdvertisement):
        headers = [
            ("HOST", host),
            ("NT", str(msg.device_type)),
            ("NTS", NTS_BYEBYE),
            ("USN", str(msg.device_id)),
            *ext_headers(msg.message_type, msg.device_id),
        ]
        return build_message("NOTIFY * HTTP/1.1", headers)
    if isinstance(msg, SearchDeviceRequest):
        headers = [
            ("HOST", host),
            ("MAN", MAN_DISCOVER),
            ("MX", str(msg.mx)),
            ("ST", str(msg.target)),
            *ext_headers(msg.message_type, msg.source_device_id),
        ]
        return build_message("M-SEARCH * HTTP/1.1", headers)
    if isinstance(msg, SearchDeviceResponse):
        headers = [
            ("CACHE-CONTROL", f"max-age={msg.max_age}"),
            ("EXT", ""),
            ("LOCATION", msg.location),
            ("SERVER", msg.server),
            ("ST", str(msg.target)),
            ("USN", str(msg.device_id)),
            *ext_headers(msg.message_type, msg.device_id),
            ("01-DeviceType", str(msg.device_type)),
        ]
        if msg.requester is not None:
            headers.append(("01-TargetDeviceId", str(msg.requester)))
        if msg.name:
            headers.append(("01-DeviceName", encode_name(check_name(msg.name))))
        return build_message("HTTP/1.1 200 OK", headers)
    return _encode_service(msg, host)


def _encode_compact(msg: SearchDeviceResponse | SearchServiceResponse) -> bytes:
    headers = [("CACHE-CONTROL", f"max-age={msg.max_age}"), ("LOCATION", msg.location)]
    if isinstance(msg, SearchDeviceResponse):
        headers += [("ST", str(msg.target)), ("USN", str(msg.device_id))]
    else:
        headers += [("ST", str(msg.service_type)), ("USN", f"{msg.device_id}::{msg.service_type}"),
                    ("01-IGRSMessageType", msg.message_type), ("01-ServiceId", str(msg.service_id))]
    headers.append(("01-DeviceType", str(msg.device_type)))
    return build_message("HTTP/1.1 200 OK", headers)


def _service_headers(msg: ServiceOnlineAdvertisement | ServiceOfflineAdvertisement
                     | SearchServiceResponse) -> list[tuple[str, str]]:
    headers = [
        ("USN", f"{msg.device_id}::{msg.service_type}"),
        *ext_headers(msg.message_type, msg.device_id),
        ("01-ServiceId", str(msg.service_id)),
    ]
    name = getattr(msg, "name", "")
    if name:
        headers.append(("01-ServiceName", encode_name(check_name(name))))
    return headers


def _encode_service(msg: IsdpMessage, host: str) -> bytes:
    if isinstance(msg, ServiceOnlineAdvertisement):
        return build_message("NOTIFY * HTTP/1.1", [
            ("HOST", host), ("CACHE-CONTROL", f"max-age={msg.max_age}"), ("LOCATION", msg.location),
            ("NT", str(msg.service_type)), ("NTS", NTS_ALIVE), ("SERVER", SERVER), *_service_headers(msg),
        ])
    if isinstance(msg, ServiceOfflineAdvertisement):
        return build_message("NOTIFY * HTTP/1.1", [
            ("HOST", host), ("NT", str(msg.service_type)), ("NTS", NTS_BYEBYE), *_service_headers(msg),
        ])
    if isinstance(msg, SearchServiceRequest):
        return build_message("M-SEARCH * HTTP/1.1", [
            ("HOST", host), ("MAN", MAN_DISCOVER), ("MX", str(msg.mx)), ("ST", str(msg.target)),
            *ext_headers(msg.message_type, msg.source_device_id),
        ])
    if isinstance(msg, SearchServiceResponse):
        headers = [
            ("CACHE-CONTROL", f"max-age={msg.max_age}"), ("EXT", ""), ("LOCATION", msg.location),
            ("SERVER", SERVER), ("ST", str(msg.service_type)), *_service_headers(msg),
            ("01-DeviceType", str(msg.device_type)),
        ]
        if msg.requester is not None:
            headers.append(("01-TargetDeviceId", str(msg.requester)))
        return build_message("HTTP/1.1 200 OK", headers)
    raise TypeError(f"not an ISDP message: {type(msg).__name__}")


# --- decoding ------------------------------------------------------------------------------
# Small memos of pure parses, keyed by the exact header text: peers repeat a handful of values
# (device types, max-age, search targets) in every datagram (igrs.wire.memo: bounded).
_MEMO_MAX = 256
_MAX_AGES: Memo[str, int] = Memo(_MEMO_MAX)
_DEVICE_TYPES: Memo[str, DeviceType] = Memo(_MEMO_MAX)
_TARGETS: Memo[str, SearchTarget] = Memo(_MEMO_MAX)
# Bound once: as fast as a plain dict's get.
_max_age_of, _device_type_of, _target_of = _MAX_AGES.get, _DEVICE_TYPES.get, _TARGETS.get


def _max_age(value: str) -> int:
    age = _max_age_of(value)
    if age is None:
        m = _MAX_AGE.search(value)
        if not m:
            raise ProtocolError("CACHE-CONTROL without max-age")
        age = _MAX_AGES.remember(value, min(max(int(m.group(1)), MIN_MAX_AGE), MAX_MAX_AGE))
    return age


def max_age_of(headers: Headers) -> int:
    """CACHE-CONTROL max-age, clamped to [MIN_MAX_AGE, MAX_MAX_AGE]."""
    return _max_age(headers.one("CACHE-CONTROL"))


def _device_type(text: str) -> DeviceType:
    device_type = _device_type_of(text)
    if device_type is None:
        device_type = _DEVICE_TYPES.remember(text, DeviceType.parse(text))
    return device_type


def _search_target(text: str) -> SearchTarget:
    target = _target_of(text)
    if target is None:
        target = _TARGETS.remember(text, SearchTarget.parse(text))
    return target


# The usual LOCATION, http(s)://<IPv4 or name>[:port][/...], accepted without urlsplit: a value
# it matches (port checked apart) is one _valid_location accepts. Anything else goes there.
_PLAIN_LOCATION = re.compile(r"https?://[A-Za-z0-9._~-]+(?::([0-9]{1,5}))?(?:[/?#].*)?\Z", re.DOTALL)


@lru_cache(maxsize=1024)
def _valid_location(value: str) -> str | None:
    """None if ``value`` is a usable http(s) URL with a host, else the reason (cached: a
    device repeats its LOCATION in every datagram)."""
    if len(value) > MAX_URL_LENGTH:
        return "LOCATION too long"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "LOCATION is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        return "LOCATION must be an http(s) URL with a host"
    return None


def _location(value: str) -> str:
    if len(value) <= MAX_URL_LENGTH and (m := _PLAIN_LOCATION.match(value)):
        port = m.group(1)
        if port is None or 0 < int(port) <= 65535:
            return value
    reason = _valid_location(value)
    if reason is not None:
        raise ProtocolError(reason)
    return value


def _usn(value: str) -> DeviceId:
    # Accept SSDP-style "<id>::<suffix>" on input.
    return DeviceId.parse(value.partition("::")[0])


_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def _unescape(m: re.Match[str]) -> str:
    return bytes.fromhex(m[0].replace("%", "")).decode()


def _unquote(raw: str) -> str:
    """``unquote(raw, errors="strict")``, faster for ASCII text: each run of escapes is whole
    UTF-8 characters in any text that decodes (the bytes between runs are ASCII), so decoding
    run by run gives the same text; when a run does not decode, unquote raises the error."""
    if raw.isascii():
        try:
            return _ESCAPES.sub(_unescape, raw)
        except UnicodeDecodeError:
            pass
    return unquote(raw, errors="strict")


def _name(raw: str | None, what: str = "device name") -> str:
    """A friendly name from its percent-encoded header value ("" when absent), checked."""
    if not raw:
        return ""
    name = _unquote(raw) if "%" in raw else raw
    if len(name) > MAX_NAME_LENGTH:
        raise ProtocolError(f"{what} too long")
    if not name.isprintable() and _NAME_CTL.search(name):  # isprintable: no control character
        raise ProtocolError(f"control character in {what}")
    return name


def decode_name(headers: Headers, header: str, what: str = "device name") -> str:
    """A percent-encoded friendly name header ("" when absent), length- and content-checked."""
    return _name(headers.optional_one(header), what)


def optional_device_id(headers: Headers, name: str) -> DeviceId | None:
    value = headers.optional_one(name)
    return DeviceId.parse(value) if value else None


def _sent_once(h: Headers) -> dict[str, str]:
    """Header name as sent -> value, for the headers sent once. The decoder reads a header as
    ``s.get(NAME) or h.one(NAME)``: absent from ``s`` (sent in another case, repeated, absent)
    or empty, ``h`` answers the same value or raises the reason."""
    s = dict(h._items)
    index = h._index
    if len(index) != len(h):  # some name repeated (in any case): leave it to h, which refuses it
        repeated = {key for key, values in index.items() if len(values) > 1}
        for name in [name for name in s if name.lower() in repeated]:
            del s[name]
    return s


class _Ext(NamedTuple):
    """Names of the IGRS extension headers under one prefix."""

    version: str
    message_type: str
    device_type: str
    target_device_id: str
    source_device_id: str
    device_name: str


_EXT_NAMES = ("IGRSVersion", "IGRSMessageType", "DeviceType", "TargetDeviceId", "SourceDeviceId", "DeviceName")
_EXTS: Memo[str, _Ext] = Memo(100)  # by prefix: two digits, so at most 100 entries
_ext_of = _EXTS.get


def _ext(prefix: str) -> _Ext:
    ext = _ext_of(prefix)
    if ext is None:
        ext = _EXTS.remember(prefix, _Ext(*(f"{prefix}-{name}" for name in _EXT_NAMES)))
    return ext


def _check_ext(h: Headers, s: dict[str, str], x: _Ext, mtype: str | None, expected: str) -> None:
    """Validate the IGRS extension headers if present (``mtype``: the message type header)."""
    version = s.get(x.version) or h.optional_one(x.version)
    if version is not None and version != IGRS_VERSION:
        check_igrs_version(version)
    if mtype is not None and mtype != expected:
        raise ProtocolError(f"message type {mtype[:40]!r} does not match {expected}")


# --- the common wire form, decoded without the general header parser ----------------------
# Every datagram the stack itself sends (and any peer writing the same spellings) is ASCII,
# CRLF-ended, one ``Name: value`` per line with the header names spelled as ``encode`` spells
# them. Such a datagram needs none of the general parser's work per line (case folding,
# token and control-character checks, whitespace stripping): its header block is split into a
# dict in C. Anything else (another spelling, an extension prefix other than 01, a service
# datagram, any irregularity) takes the general path, which also gives every refusal its
# reason: the fast path never raises, it answers None instead. Tested against the general
# path in tests/unit/test_wire_fast_paths.py.
_CANONICAL_NAMES = frozenset({
    "HOST", "CACHE-CONTROL", "LOCATION", "NT", "NTS", "SERVER", "USN", "MAN", "MX", "ST", "EXT",
    "01-IGRSVersion", "01-IGRSMessageType", "01-SourceDeviceId", "01-DeviceName", "01-DeviceType",
    "01-TargetDeviceId",
})
_CANONICAL_MAN = f'"{IGRS_EXT_URI}"; ns=01'
_MAN_LINE = f"MAN: {_CANONICAL_MAN}"
_DISCOVER_LINE = f"MAN: {MAN_DISCOVER}"
_CONTROLS = bytes([*range(0x20), 0x7F])
_COLON_SPACE, _ONE = repeat(": "), repeat(1)


def _decode_common(data: bytes) -> IsdpMessage | None:
    """The device datagram in ``data`` if it is in the common wire form, else None."""
    if not data.isascii() or not data.endswith(b"\r\n\r\n"):
        return None
    text = data.decode("ascii")
    if text[0] == "H" and (response := _layout_response(text)) is not None:  # "HTTP/1.1 200 OK"
        return response
    parts = text.split("\r\n")  # start line, header lines, "", ""
    start, lines = parts[0], parts[1:-2]  # an empty line (a body follows) fails the split below
    # No control character (tab included) but the CRLFs that end the start line, each header
    # line and the head: translate() removes exactly two bytes for each of them.
    if len(lines) > MAX_HEADERS or len(data) - len(data.translate(None, _CONTROLS)) != 2 * len(parts) - 2:
        return None
    if len(data) > MAX_HEADER_LINE and max(map(len, lines)) > MAX_HEADER_LINE:
        return None
    try:
        # "Name: value" -> {Name: value}; values are stripped where read (only spaces to strip)
        s = dict(map(str.split, lines, _COLON_SPACE, _ONE))  # ValueError: a line without ": "
    except ValueError:
        return None
    repeats = len(lines) - len(s)
    if not s.keys() <= _CANONICAL_NAMES:
        return None
    one_man = repeats == 0 and s.get("MAN", _CANONICAL_MAN) == _CANONICAL_MAN  # nothing repeated
    try:
        if start == "NOTIFY * HTTP/1.1":
            return _common_notify(s) if one_man else None
        if start == "M-SEARCH * HTTP/1.1":
            # MAN twice: the discover declaration and the IGRS extension's, nothing else repeated
            if repeats == 1 and lines.count(_DISCOVER_LINE) == 1 and lines.count(_MAN_LINE) == 1:
                return _common_search(s)
            return None
        if start == "HTTP/1.1 200 OK":
            return _common_response(s) if one_man else None
    except (ProtocolError, KeyError, ValueError):  # refused, a header missing: the general path says why
        return None
    return None


def _common_ext(s: dict[str, str], expected: str) -> bool:
    """The extension headers are those the general path accepts without a question."""
    version = s.get("01-IGRSVersion")
    mtype = s.get("01-IGRSMessageType")
    return (version is None or version == IGRS_VERSION) and (mtype is None or mtype == expected)


# The two largest messages are built by setting their slots: a frozen dataclass's __init__
# goes through object.__setattr__ once per field, twice as slow (same objects: no field has a
# default factory and there is no __post_init__; tests/unit/test_wire_fast_paths.py).
_new = object.__new__
(_set_online_id, _set_online_type, _set_online_location, _set_online_max_age, _set_online_name,
 _set_online_server, _set_online_update) = (
    vars(DeviceOnlineAdvertisement)[name].__set__ for name in DeviceOnlineAdvertisement.__slots__
)
(_set_response_id, _set_response_type, _set_response_location, _set_response_max_age, _set_response_target,
 _set_response_name, _set_response_requester, _set_response_server) = (
    vars(SearchDeviceResponse)[name].__set__ for name in SearchDeviceResponse.__slots__
)


# Values are read as split, except where a space around them would change the answer
# (LOCATION, names, SERVER): the validators of the others refuse a value with spaces or
# read through them (DeviceId.parse, the memos of parsed device types, targets and max-ages).
def _common_notify(s: dict[str, str]) -> IsdpMessage | None:
    nts = s["NTS"]
    device_id = _usn(s["USN"])
    device_type = _device_type(s["NT"])
    if nts == NTS_BYEBYE:
        if _common_ext(s, "DeviceOfflineAdvertisement"):
            return DeviceOfflineAdvertisement(device_id, device_type)
        return None
    if (nts != NTS_ALIVE and nts != NTS_UPDATE) or not _common_ext(s, "DeviceOnlineAdvertisement"):
        return None
    location = _location(s["LOCATION"].strip())
    max_age = _max_age(s["CACHE-CONTROL"])
    name = _name(s.get("01-DeviceName", "").strip())
    msg = _new(DeviceOnlineAdvertisement)
    _set_online_id(msg, device_id)
    _set_online_type(msg, device_type)
    _set_online_location(msg, location)
    _set_online_max_age(msg, max_age)
    _set_online_name(msg, name)
    _set_online_server(msg, s.get("SERVER", "").strip()[:256])
    _set_online_update(msg, nts == NTS_UPDATE)
    return msg


def _common_search(s: dict[str, str]) -> IsdpMessage | None:
    mx_text = s["MX"]
    if not is_digits(mx_text) or len(mx_text) > 3 or not _common_ext(s, "SearchDeviceRequest"):
        return None
    source = s.get("01-SourceDeviceId")
    return SearchDeviceRequest(
        _search_target(s["ST"]), min(int(mx_text), MAX_MX), DeviceId.parse(source) if source else None
    )


def _common_response(s: dict[str, str]) -> IsdpMessage | None:
    version, mtype = s.get("01-IGRSVersion"), s.get("01-IGRSMessageType")  # _common_ext, inlined
    if (version is not None and version != IGRS_VERSION) or mtype not in (None, "SearchDeviceResponse"):
        return None
    type_text = s.get("01-DeviceType")
    target = _search_target(s["ST"])
    if type_text:
        device_type = _device_type(type_text)
    elif target.device_type is not None:
        device_type = target.device_type
    else:
        return None
    usn = s["USN"]
    device_id = DeviceId.parse(usn if "::" not in usn else usn.partition("::")[0])  # _usn, inlined
    location = _location(s["LOCATION"].strip())
    max_age = _max_age(s["CACHE-CONTROL"])
    name = _name(s.get("01-DeviceName", "").strip())
    requester = s.get("01-TargetDeviceId")
    msg = _new(SearchDeviceResponse)
    _set_response_id(msg, device_id)
    _set_response_type(msg, device_type)
    _set_response_location(msg, location)
    _set_response_max_age(msg, max_age)
    _set_response_target(msg, target)
    _set_response_name(msg, name)
    _set_response_requester(msg, DeviceId.parse(requester) if requester else None)
    _set_response_server(msg, s.get("SERVER", "").strip()[:256])
    return msg


# --- the search response in the encoder's own layout, read by one regular expression ---------
# The answer every igrs device sends (``encode``, not compact): its 13 lines in this order, the
# constant ones as written, each value in the form the dict path above reads without a
# question (no space around it, a canonical device id, a plain LOCATION with a valid port, each
# line within MAX_HEADER_LINE). One match checks the lines and finds the values; what it does
# not match (another order or spelling, a compact answer) goes on to the dict path. Values
# are checked as there (LOCATION's length, the memos' parses, the name), so both give the same
# message, tested against the general path in tests/unit/test_wire_fast_paths.py.
def _value(header: str) -> str:
    """A value with no space around it, its line ``header: value`` within MAX_HEADER_LINE."""
    return f"([!-~](?:[ -~]{{0,{MAX_HEADER_LINE - len(header) - 4}}}[!-~])?)"


def _token(header: str) -> str:
    return f"([!-~]{{1,{MAX_HEADER_LINE - len(header) - 2}}})"


_UUID_TEXT = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_ID_TEXT = f"({re.escape(DEVICE_ID_PREFIX)}{_UUID_TEXT})"
_PORT = "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_response_layout = re.compile(
    "HTTP/1\\.1 200 OK\r\n"
    "CACHE-CONTROL: (max-age=[0-9]{1,9})\r\n"
    "EXT: \r\n"
    f"LOCATION: (https?://[A-Za-z0-9._~-]+(?::{_PORT})?(?:[/?#][!-~]*)?)\r\n"
    f"SERVER: {_value('SERVER')}\r\n"
    f"ST: {_token('ST')}\r\n"
    f"USN: {_ID_TEXT}\r\n"
    f"{re.escape(_MAN_LINE)}\r\n"
    f"01-IGRSVersion: {re.escape(IGRS_VERSION)}\r\n"
    "01-IGRSMessageType: SearchDeviceResponse\r\n"
    f"01-SourceDeviceId: {re.escape(DEVICE_ID_PREFIX)}{_UUID_TEXT}\r\n"
    f"01-DeviceType: {_token('01-DeviceType')}\r\n"
    f"(?:01-TargetDeviceId: {_ID_TEXT}\r\n)?"
    f"(?:01-DeviceName: {_value('01-DeviceName')}\r\n)?"
    "\r\n"
).fullmatch


def _layout_response(text: str) -> SearchDeviceResponse | None:
    """The search response in ``text`` if it is in the encoder's layout, else None."""
    if (m := _response_layout(text)) is None:
        return None
    max_age, location, server, target, usn, device_type, requester, name = m.groups()
    if len(location) > MAX_URL_LENGTH:
        return None
    msg = _new(SearchDeviceResponse)
    try:
        _set_response_type(msg, _device_type_of(device_type) or _device_type(device_type))
        _set_response_max_age(msg, _max_age_of(max_age) or _max_age(max_age))
        _set_response_target(msg, _target_of(target) or _search_target(target))
        _set_response_name(msg, _name(name) if name else "")
    except (ProtocolError, ValueError):  # a refused value (or name): the general path says why
        return None
    _set_response_id(msg, canonical_device_id(usn))
    _set_response_location(msg, location)
    _set_response_requester(msg, canonical_device_id(requester) if requester else None)
    _set_response_server(msg, server[:256])
    return msg


def decode(data: bytes) -> IsdpMessage:
    """Decode one datagram. Raises ProtocolError (with a reason) and nothing else.

    Devices repeat the same bytes in every announcement, so recent results are cached (the
    messages are immutable); the cache is small and keyed by the whole datagram.
    """
    if len(data) > MAX_DATAGRAM:
        raise LimitExceeded(f"message of {len(data)} bytes exceeds {MAX_DATAGRAM}")
    return _decode_cached(bytes(data))


@lru_cache(maxsize=256)
def _decode_cached(data: bytes) -> IsdpMessage:
    try:
        common = _decode_common(data)
        if common is not None:
            return common
        method, target, status, _, _, headers, _ = parse_parts(data, max_size=MAX_DATAGRAM, allow_body=False)
        return _decode(method, target, status, headers)
    except ProtocolError:
        raise
    except (ValueError, UnicodeError) as exc:  # defensive: stdlib parsers inside
        raise ProtocolError(f"malformed datagram: {exc}") from None


def _service_id(headers: Headers, prefix: str) -> int:
    return parse_uint32(headers.one(f"{prefix}-ServiceId"), "ServiceId")


def _service_name(headers: Headers, prefix: str) -> str:
    return decode_name(headers, f"{prefix}-ServiceName", "service name")


def _service_usn(headers: Headers, service_type: ServiceType) -> DeviceId:
    device, sep, stype = headers.one("USN").partition("::")
    if sep and stype != str(service_type):
        raise ProtocolError("USN names another service type than NT/ST")
    return DeviceId.parse(device)


def _decode_service(method: str | None, status: int | None, h: Headers, mtype: str, prefix: str) -> IsdpMessage:
    if mtype == "ServiceOnlineAdvertisement" and method == "NOTIFY":
        stype = ServiceType.parse(h.one("NT"))
        if h.one("NTS").lower() not in (NTS_ALIVE, NTS_UPDATE):
            raise ProtocolError("ServiceOnlineAdvertisement must be isdp:alive")
        return ServiceOnlineAdvertisement(_service_usn(h, stype), stype, _service_id(h, prefix),
                                          _location(h.one("LOCATION")), max_age_of(h),
                                          _service_name(h, prefix))
    if mtype == "ServiceOfflineAdvertisement" and method == "NOTIFY":
        stype = ServiceType.parse(h.one("NT"))
        if h.one("NTS").lower() != NTS_BYEBYE:
            raise ProtocolError("ServiceOfflineAdvertisement must be isdp:byebye")
        return ServiceOfflineAdvertisement(_service_usn(h, stype), stype, _service_id(h, prefix))
    if mtype == "SearchServiceRequest" and method == "M-SEARCH":
        target = _search_target(h.one("ST"))
        if target.kind != "service_type":
            raise ProtocolError("SearchServiceRequest needs a service type ST")
        return SearchServiceRequest(target, _mx(h), optional_device_id(h, f"{prefix}-SourceDeviceId"))
    if mtype == "SearchServiceResponse" and status == 200:
        stype = ServiceType.parse(h.one("ST"))
        return SearchServiceResponse(
            _service_usn(h, stype), _device_type(h.one(f"{prefix}-DeviceType")), stype,
            _service_id(h, prefix), _location(h.one("LOCATION")), max_age_of(h), _service_name(h, prefix),
            optional_device_id(h, f"{prefix}-TargetDeviceId"))
    raise ProtocolError(f"{mtype} in the wrong kind of datagram")


def _mx(headers: Headers) -> int:
    mans = [v.strip().strip('"').lower() for v in headers.get_all("MAN")]
    if not any(m in MAN_DISCOVER_ACCEPTED for m in mans):
        raise ProtocolError('M-SEARCH without MAN: "isdp:discover"')
    mx_text = headers.one("MX")
    if not is_digits(mx_text) or len(mx_text) > 3:
        raise ProtocolError("malformed MX")
    return min(int(mx_text), MAX_MX)


_SERVICE_TYPES = frozenset({"ServiceOnlineAdvertisement", "ServiceOfflineAdvertisement",
                            "SearchServiceRequest", "SearchServiceResponse"})


def _decode(method: str | None, target: str | None, status: int | None, h: Headers) -> IsdpMessage:
    s = _sent_once(h)
    prefix = h.igrs_prefix()
    x = _ext(prefix)
    mtype = s.get(x.message_type) or h.optional_one(x.message_type)
    if mtype in _SERVICE_TYPES:
        _check_ext(h, s, x, mtype, mtype)
        return _decode_service(method, status, h, mtype, prefix)
    if method == "NOTIFY":
        if target != "*":
            raise ProtocolError("NOTIFY target must be *")
        nts = (s.get("NTS") or h.one("NTS")).lower()
        device_id = _usn(s.get("USN") or h.one("USN"))
        device_type = _device_type(s.get("NT") or h.one("NT"))
        if nts == NTS_BYEBYE:
            _check_ext(h, s, x, mtype, "DeviceOfflineAdvertisement")
            return DeviceOfflineAdvertisement(device_id, device_type)
        if nts in (NTS_ALIVE, NTS_UPDATE):
            _check_ext(h, s, x, mtype, "DeviceOnlineAdvertisement")
            return DeviceOnlineAdvertisement(
                device_id, device_type, _location(s.get("LOCATION") or h.one("LOCATION")),
                _max_age(s.get("CACHE-CONTROL") or h.one("CACHE-CONTROL")),
                _name(s.get(x.device_name) or h.optional_one(x.device_name)),
                (s.get("SERVER") or h.optional_one("SERVER") or "")[:256], nts == NTS_UPDATE,
            )
        raise ProtocolError(f"unknown NTS {nts[:40]!r}")
    if method == "M-SEARCH":
        if target != "*":
            raise ProtocolError("M-SEARCH target must be *")
        mx = _mx(h)
        _check_ext(h, s, x, mtype, "SearchDeviceRequest")
        search_target = _search_target(s.get("ST") or h.one("ST"))
        source = s.get(x.source_device_id) or h.optional_one(x.source_device_id)
        return SearchDeviceRequest(search_target, mx, DeviceId.parse(source) if source else None)
    if status is not None:
        if status != 200:
            raise ProtocolError(f"search response status {status}")
        _check_ext(h, s, x, mtype, "SearchDeviceResponse")
        type_text = s.get(x.device_type) or h.optional_one(x.device_type)
        search_target = _search_target(s.get("ST") or h.one("ST"))
        if type_text:
            device_type = _device_type(type_text)
        elif search_target.device_type is not None:
            device_type = search_target.device_type
        else:
            raise ProtocolError("search response without a device type")
        device_id = _usn(s.get("USN") or h.one("USN"))
        location = _location(s.get("LOCATION") or h.one("LOCATION"))
        max_age = _max_age(s.get("CACHE-CONTROL") or h.one("CACHE-CONTROL"))
        name = _name(s.get(x.device_name) or h.optional_one(x.device_name))
        requester = s.get(x.target_device_id) or h.optional_one(x.target_device_id)
        return SearchDeviceResponse(
            device_id, device_type, location, max_age, search_target, name,
            DeviceId.parse(requester) if requester else None,
            (s.get("SERVER") or h.optional_one("SERVER") or "")[:256],
        )
    raise ProtocolError(f"unexpected ISDP method {method!r}")
