"""Passive checker: every IGRS message seen on the network or in a capture, checked against
specs/ without sending anything. Sans-IO: ``PassiveChecker`` is fed datagrams and TCP
segments with their timestamps (by ``check_capture`` from a file, by ``igrs.conformance.watch``
from live sockets) and returns the violations it finds, each naming the spec rule it breaks.

What is checked, and the limits: specs/conformance/passive.md.
"""

from __future__ import annotations

import ipaddress
import os
import re
import struct
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import urlsplit

from lxml import etree

from igrs.conformance.capture import (
    TCP,
    UDP,
    CaptureStats,
    Endpoint,
    FlowKey,
    Packet,
    StreamData,
    TcpReassembler,
    open_capture,
    packets,
)
from igrs.conformance.cases import GRACE, SCHEMA_DIRS, schema_errors
from igrs.constants import (
    DESCRIPTION_PATH,
    GROUP_ST_ALL,
    IGRS_EXT_URI,
    IGRS_NS,
    IGRS_PATH,
    IGRS_PORT,
    IPV4_GROUP,
    IPV4_GROUP_ALT,
    IPV6_GROUP,
    MAN_DISCOVER,
    MAN_DISCOVER_ACCEPTED,
    MAX_DATAGRAM,
    MAX_HEADER_LINE,
    MAX_HEADERS,
    MAX_HTTP_BODY,
    MULTICAST_TTL,
    NTS_ALIVE,
    NTS_BYEBYE,
    NTS_UPDATE,
    REGISTRY_MAX_DEVICES,
)
from igrs.wire import group_datagrams as groups
from igrs.wire import isdp, messages
from igrs.wire.catalogue import Kind, spec_for
from igrs.wire.httpu import Headers, parse_head, parse_message
from igrs.wire.ids import DeviceId
from igrs.wire.soap import parse_envelope
from igrs.wire.xml import Element, parse_xml, qname

# --- limits (project choice: a hostile capture or a flood must not exhaust memory) ---------------
MAX_SEARCHERS: Final = 1024  # searcher endpoints remembered (least recently used evicted)
SEARCHES_PER_SEARCHER: Final = 16  # recent searches remembered per endpoint
MAX_ANNOUNCERS: Final = REGISTRY_MAX_DEVICES  # announcement schedules tracked (oldest evicted)
MAX_TCP_STREAMS: Final = 256  # TCP directions reassembled at once; later ones are not checked
HEAD_LIMIT: Final = (MAX_HEADERS + 1) * (MAX_HEADER_LINE + 2) + 2  # bytes of one HTTP head
STREAM_BUFFER: Final = MAX_HTTP_BODY + HEAD_LIMIT  # bytes buffered per TCP direction, at most
MAX_PENDING_REQUESTS: Final = 64  # pipelined requests awaiting their responses, per connection
MAX_NOTES: Final = 100  # notes kept (further ones are counted)

Problem = tuple[str, str]  # (what is wrong, the spec rule)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: when, between whom, in which message, what, and the rule in specs/."""

    ts: float
    where: str  # "src:port -> dst:port", "(tcp)" appended for M-POST traffic
    what: str  # the message's start line or type
    text: str
    rule: str

    def __str__(self) -> str:
        return f"{self.ts:.6f} {self.where} [{self.what}]: {self.text} ({self.rule})"

    def to_json(self) -> dict[str, Any]:
        return {"time": round(self.ts, 6), "where": self.where, "message": self.what,
                "violation": self.text, "rule": self.rule}


def endpoint_text(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


# --- one ISDP datagram -----------------------------------------------------------------------------
_SECTION: Final = {
    "DeviceOnlineAdvertisement": "isdp.md §2", "DeviceOfflineAdvertisement": "isdp.md §3",
    "SearchDeviceRequest": "isdp.md §4", "SearchDeviceResponse": "isdp.md §5",
    **dict.fromkeys(("ServiceOnlineAdvertisement", "ServiceOfflineAdvertisement", "SearchServiceRequest",
                     "SearchServiceResponse"), "isdp.md §6a"),
    **dict.fromkeys(groups.GROUP_DATAGRAM_TYPES, "groups.md §3"),
}
# Headers every datagram of a type emits beyond what the decoder requires ("Emit: yes").
_EMITTED: Final = {
    "DeviceOnlineAdvertisement": ("HOST", "SERVER"), "ServiceOnlineAdvertisement": ("HOST", "SERVER"),
    "PeerDeviceGroupAdvertisement": ("HOST", "SERVER"),
    "CentralisedDeviceGroupAdvertisement": ("HOST", "SERVER"),
    "SearchDeviceResponse": ("EXT", "SERVER", "{p}-DeviceType"),
    "SearchServiceResponse": ("EXT", "SERVER", "{p}-DeviceType"), "SearchDeviceGroupResponse": ("EXT",),
}
_CANONICAL: Final = {n.lower(): n for n in ("HOST", "CACHE-CONTROL", "LOCATION", "NT", "NTS", "SERVER", "USN",
                                              "MAN", "MX", "ST", "EXT")}
_EXT_NAMES: Final = {n.lower(): n for n in (
    "IGRSVersion", "IGRSMessageType", "SourceDeviceId", "TargetDeviceId", "DeviceType", "DeviceName",
    "ServiceId", "ServiceName", "DeviceGroupId", "DeviceGroupType", "DeviceGroupName", "MasterDeviceId",
    "DeviceGroupMemberCount")}
_NAME_HEADERS: Final = ("DeviceName", "ServiceName", "DeviceGroupName")
_ENCODED_NAME: Final = re.compile(r"(?:[A-Za-z0-9 !$&'()*+,\-./:;=?@_~]|%[0-9A-Fa-f]{2})*\Z")
_GROUPS: Final = frozenset({IPV4_GROUP, IPV4_GROUP_ALT, IPV6_GROUP})
_RESPONSES: Final = (isdp.SearchDeviceResponse, isdp.SearchServiceResponse, groups.SearchDeviceGroupResponse)
_SEARCHES: Final = (isdp.SearchDeviceRequest, isdp.SearchServiceRequest, groups.SearchDeviceGroupRequest)


def decode_datagram(payload: bytes) -> Any:
    """The ISDP or device-group message of a datagram (ProtocolError if it is neither)."""
    if groups.is_group_datagram(payload):
        return groups.decode(payload)
    return isdp.decode(payload)


def sender_of(msg: Any) -> DeviceId | None:
    """The device a datagram speaks for (None for searches)."""
    if isinstance(msg, _SEARCHES):
        return None
    return getattr(msg, "device_id", None) or getattr(msg, "master_id", None)


def check_datagram(payload: bytes, src: str, dst: str, dport: int = IGRS_PORT,
                   ttl: int | None = None) -> tuple[Any, list[Problem]]:
    """The decoded message (None if it does not decode) and the violations of one datagram
    that can be judged from it alone."""
    if len(payload) > MAX_DATAGRAM:
        return None, [(f"datagram of {len(payload)} bytes exceeds MAX_DATAGRAM {MAX_DATAGRAM}", "isdp.md §1")]
    try:
        msg = decode_datagram(payload)
        head = parse_message(payload, max_size=MAX_DATAGRAM, allow_body=False)
    except Exception as exc:  # the codecs raise ProtocolError; anything else is still "does not decode"
        return None, [(f"does not decode: {exc}", "isdp.md §7")]
    try:
        multicast = ipaddress.ip_address(dst.partition("%")[0]).is_multicast
    except ValueError:
        multicast = False
    problems = _framing(payload, msg, head)
    problems += _addressing(msg, head, dst, dport, ttl, multicast)
    problems += _headers(msg, head)
    location = getattr(msg, "location", None)
    if location is not None:
        problems += _location(location, src)
    return msg, problems


def _framing(payload: bytes, msg: Any, head: Any) -> list[Problem]:
    out: list[Problem] = []
    if payload.count(b"\n") != payload.count(b"\r\n"):
        out.append(("bare LF line ends: datagrams are emitted with CRLF", "isdp.md §1"))
    start = payload.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    expected = f"{head.method} * HTTP/1.1" if head.method else "HTTP/1.1 200 OK"
    if start != expected:
        out.append((f"start line {start[:60]!r} is not {expected!r}", _SECTION[msg.message_type]))
    return out


def _addressing(msg: Any, head: Any, dst: str, dport: int, ttl: int | None, multicast: bool) -> list[Problem]:
    out: list[Problem] = []
    section = _SECTION[msg.message_type]
    if isinstance(msg, _RESPONSES):
        if multicast:
            group = msg.message_type == "SearchDeviceGroupResponse"
            rule = "groups.md §5.5 rule 7" if group else "isdp.md §9 rule 8"
            out.append((f"{msg.message_type} sent to a multicast group, not unicast to the searcher", rule))
        return out
    if head.method == "NOTIFY" and not multicast:
        out.append(("advertisement sent unicast, not to the ISDP group", "isdp.md §1"))
    if multicast and dst.partition("%")[0] not in _GROUPS:
        out.append((f"sent to {dst}, not an ISDP group", "transport.md Multicast groups"))
    if multicast and ttl is not None and ttl != MULTICAST_TTL:
        out.append((f"multicast with TTL/hop limit {ttl}, not MULTICAST_TTL {MULTICAST_TTL}",
                    "transport.md TTL / hop limit"))
    host = head.headers.get("HOST")
    if host is None:
        out.append(("no HOST header", section))
    elif multicast and host.lower() != endpoint_text(dst.partition("%")[0], dport).lower():
        out.append((f"HOST {host[:60]!r} is not the group:port it was sent to "
                    f"({endpoint_text(dst, dport)})", section))
    return out


def _headers(msg: Any, head: Any) -> list[Problem]:
    h: Headers = head.headers
    p = h.igrs_prefix()
    mtype = msg.message_type
    section = _SECTION[mtype]
    out: list[Problem] = []
    wrong = sorted({n for n, _ in h if _canonical_name(n, p) not in (None, n)})
    if wrong:
        out.append((f"header names not in the case the spec shows: {', '.join(wrong)}", "isdp.md §1"))
    missing = [] if IGRS_EXT_URI in h.extension_prefixes() else [f'MAN "{IGRS_EXT_URI}"; ns=..']
    missing += [f"{p}-{n}" for n in ("IGRSVersion", "IGRSMessageType") if f"{p}-{n}" not in h]
    sender = sender_of(msg)
    source_text = h.get(f"{p}-SourceDeviceId")
    if sender is not None and source_text is None:
        missing.append(f"{p}-SourceDeviceId")
    if missing:
        out.append((f"IGRS extension headers missing: {', '.join(missing)}", "isdp.md §1"))
    emitted = [n.format(p=p) for n in _EMITTED.get(mtype, ()) if n.format(p=p) not in h]
    if emitted:
        out.append((f"headers every {mtype} carries are missing: {', '.join(emitted)}", section))
    if sender is not None and source_text is not None and source_text.strip() != str(sender):
        out.append((f"{p}-SourceDeviceId {source_text[:60]} is not the sender's device id {sender}",
                    "isdp.md §1"))
    if h.get("EXT"):
        out.append(("EXT header is not empty", section))
    if head.method == "NOTIFY" and h.get("NTS") not in (NTS_ALIVE, NTS_UPDATE, NTS_BYEBYE):
        out.append((f"NTS {(h.get('NTS') or '')[:30]!r} is not emitted in lower case", section))
    if mtype in ("DeviceOfflineAdvertisement", "ServiceOfflineAdvertisement"):
        extra = [n for n in ("LOCATION", "CACHE-CONTROL", "SERVER") if n in h]
        if extra:
            out.append((f"byebye carries {', '.join(extra)}", section))
    if head.method == "M-SEARCH":
        discover = [v.strip() for v in h.get_all("MAN")
                    if v.strip().strip('"').lower() in MAN_DISCOVER_ACCEPTED]
        if MAN_DISCOVER not in discover:
            out.append((f"MAN {discover[0] if discover else ''!r} is not {MAN_DISCOVER}", "isdp.md §4"))
    out += _st_and_names(msg, h, p)
    return out


def _canonical_name(name: str, prefix: str) -> str | None:
    lowered = name.lower()
    if lowered in _CANONICAL:
        return _CANONICAL[lowered]
    pre, dash, rest = lowered.partition("-")
    if dash and pre == prefix and rest in _EXT_NAMES:
        return f"{prefix}-{_EXT_NAMES[rest]}"
    return None


def _st_and_names(msg: Any, h: Headers, p: str) -> list[Problem]:
    out: list[Problem] = []
    canonical = None
    if isinstance(msg, isdp.SearchDeviceRequest | isdp.SearchDeviceResponse | isdp.SearchServiceRequest):
        canonical = str(msg.target)
    elif isinstance(msg, groups.SearchDeviceGroupRequest | groups.SearchDeviceGroupResponse):
        canonical = GROUP_ST_ALL if msg.target is None else str(msg.target)
    st = h.get("ST")
    if canonical is not None and st != canonical:
        out.append((f"ST {st!r} is not in its emitted (canonical) form {canonical!r}", "isdp.md §6"))
    for name in _NAME_HEADERS:
        value = h.get(f"{p}-{name}")
        if value and not _ENCODED_NAME.match(value):
            out.append((f"{p}-{name} is not percent-encoded UTF-8", "isdp.md §1 01-DeviceName"))
    return out


def _location(location: str, src: str) -> list[Problem]:
    parts = urlsplit(location)
    host = parts.hostname or ""
    out: list[Problem] = []
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        out.append((f"LOCATION host {host} is not an IP literal", "transport.md Interfaces 4"))
    else:
        if "%" in host:
            out.append((f"LOCATION host {host} carries a zone id", "transport.md Interfaces 5"))
        elif addr != ipaddress.ip_address(src.partition("%")[0]):
            out.append((f"LOCATION host {host} != source address {src}", "transport.md Interfaces 4"))
    if parts.path != IGRS_PATH:
        out.append((f"LOCATION path {parts.path!r} is not {IGRS_PATH}", "isdp.md §2"))
    return out


# --- timing across datagrams -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Search:
    ts: float
    kind: str
    mx: int
    source: DeviceId | None
    target: str


@dataclass(frozen=True, slots=True)
class _Announcement:
    ts: float
    max_age: int
    rule: str
    where: str
    what: str


_KIND: Final = {
    isdp.SearchDeviceRequest: "device", isdp.SearchDeviceResponse: "device",
    isdp.SearchServiceRequest: "service", isdp.SearchServiceResponse: "service",
    groups.SearchDeviceGroupRequest: "group", groups.SearchDeviceGroupResponse: "group",
}


def _announcement_key(msg: Any) -> tuple[tuple[str, ...], str] | None:
    """(schedule key, rule) of an announcement; None for other datagrams."""
    if isinstance(msg, isdp.DeviceOnlineAdvertisement):
        return ("device", str(msg.device_id)), "isdp.md §8"
    if isinstance(msg, isdp.ServiceOnlineAdvertisement):
        return ("service", str(msg.device_id), str(msg.service_id)), "isdp.md §6a"
    if isinstance(msg, groups.PeerDeviceGroupAdvertisement):
        return ("group", str(msg.group_id), str(msg.device_id)), "groups.md §5.1"
    if isinstance(msg, groups.CentralisedDeviceGroupAdvertisement):
        return ("group", str(msg.group_id), str(msg.master_id)), "groups.md §5.1"
    return None


def _farewell(msg: Any) -> tuple[str, ...] | None:
    """What a byebye/quit ends: a key, or ("*", device) for every schedule of a device."""
    if isinstance(msg, isdp.DeviceOfflineAdvertisement):
        return ("*", str(msg.device_id))
    if isinstance(msg, isdp.ServiceOfflineAdvertisement):
        return ("service", str(msg.device_id), str(msg.service_id))
    if isinstance(msg, groups.QuitPeerDeviceGroupNotify):
        return ("group", str(msg.group_id), str(msg.device_id))
    if isinstance(msg, groups.QuitCentralisedDeviceGroupAdvertisement):
        return ("group", str(msg.group_id), str(msg.master_id))
    return None


class IsdpTiming:
    """Search-response deadlines (MX + GRACE) and re-announcement before max-age."""

    def __init__(self, grace: float = GRACE) -> None:
        self.grace = grace
        self.searches: OrderedDict[Endpoint, deque[_Search]] = OrderedDict()
        self.announced: OrderedDict[tuple[str, ...], _Announcement] = OrderedDict()

    def is_searcher(self, endpoint: Endpoint) -> bool:
        return endpoint in self.searches

    def observe(self, ts: float, msg: Any, src: Endpoint, dst: Endpoint, where: str,
                what: str) -> list[Problem]:
        """Follow one decoded datagram; the timing violations it shows."""
        if isinstance(msg, _SEARCHES):
            self._search(ts, msg, src)
            return []
        if isinstance(msg, _RESPONSES):
            return self._response(ts, msg, dst)
        farewell = _farewell(msg)
        if farewell is not None:
            ended = [k for k in self.announced if k == farewell or (farewell[0] == "*" and farewell[1] in k)]
            for key in ended:
                del self.announced[key]
            return []
        found = _announcement_key(msg)
        return [] if found is None else self._announce(ts, msg, found[0], found[1], where, what)

    def _search(self, ts: float, msg: Any, src: Endpoint) -> None:
        target = str(msg.target) if not isinstance(msg, groups.SearchDeviceGroupRequest) else (
            GROUP_ST_ALL if msg.target is None else str(msg.target))
        queue = self.searches.pop(src, None) or deque(maxlen=SEARCHES_PER_SEARCHER)
        queue.append(_Search(ts, _KIND[type(msg)], msg.mx, msg.source_device_id, target))
        self.searches[src] = queue
        while len(self.searches) > MAX_SEARCHERS:
            self.searches.popitem(last=False)

    def _response(self, ts: float, msg: Any, dst: Endpoint) -> list[Problem]:
        kind = _KIND[type(msg)]
        rule = "groups.md §5.5 rule 7" if kind == "group" else "isdp.md §9 rule 7"
        candidates = [s for s in self.searches.get(dst, ()) if s.kind == kind and s.ts <= ts]
        if not candidates:
            return []  # no search of this capture asked for it
        out: list[Problem] = []
        requester = msg.requester
        ids = {s.source for s in candidates if s.source is not None}
        if requester is not None and ids and requester not in ids:
            return [(f"01-TargetDeviceId {requester} is not the searcher's 01-SourceDeviceId "
                     f"{sorted(map(str, ids))[0]}", "isdp.md §9 rule 8")]
        if requester is None and ids:
            out.append((f"no 01-TargetDeviceId although the search carried 01-SourceDeviceId "
                        f"{sorted(map(str, ids))[0]}", "isdp.md §9 rule 8"))
        if kind == "device" and all(s.target != str(msg.target) for s in candidates):
            out.append((f"ST {msg.target} does not echo the search's target {candidates[-1].target}",
                        "isdp.md §5"))
        latest = max(candidates, key=lambda s: s.ts)
        delay = ts - latest.ts
        if delay > latest.mx + self.grace:
            out.append((f"answered {delay:.2f} s after the search, later than MX {latest.mx} s + "
                        f"{self.grace:g} s grace", rule))
        return out

    def _announce(self, ts: float, msg: Any, key: tuple[str, ...], rule: str, where: str,
                  what: str) -> list[Problem]:
        out: list[Problem] = []
        prev = self.announced.pop(key, None)
        if prev is not None and ts - prev.ts > prev.max_age:
            out.append((f"re-announced {ts - prev.ts:.1f} s after the previous announcement, "
                        f"beyond its max-age {prev.max_age} s", rule))
        self.announced[key] = _Announcement(ts, msg.max_age, rule, where, what)
        while len(self.announced) > MAX_ANNOUNCERS:
            self.announced.popitem(last=False)
        return out

    def overdue(self, now: float) -> list[Violation]:
        """Announcements whose max-age passed by ``now`` without another or a byebye (each
        reported once)."""
        late = [(k, a) for k, a in self.announced.items() if now - a.ts > a.max_age]
        for key, _ in late:
            del self.announced[key]
        return [Violation(a.ts + a.max_age, a.where, a.what,
                          f"no re-announcement (and no byebye) within max-age {a.max_age} s of the "
                          f"announcement at {a.ts:.6f}", a.rule) for _, a in late]


# --- M-POST over TCP ---------------------------------------------------------------------------------
_REQUEST_LINE: Final = re.compile(rb"[A-Z][A-Z-]{0,15} \S{1,2048} HTTP/\d\.\d\Z")
_STATUS_LINE: Final = re.compile(rb"HTTP/\d\.\d \d{3}(?: .*)?\Z")
_HEAD_END: Final = re.compile(rb"\r?\n\r?\n")
_SECURE_MESSAGE: Final = qname(IGRS_NS, "SecureMessage")


@dataclass(slots=True)
class HttpHead:
    start: str
    method: str | None
    target: str | None
    status: int | None
    version: str
    headers: Headers
    raw: bytes

    @property
    def igrs_type(self) -> str | None:
        """The ``NN-IGRSMessageType`` value, when the message carries the IGRS routing headers."""
        for name, value in self.headers:
            if name.lower().endswith("-igrsmessagetype"):
                return value
        return None

    def what(self) -> str:
        return self.igrs_type or self.start[:60]


def parse_http_head(raw: bytes) -> HttpHead | None:
    """Start line and headers, leniently (only framing depends on them); None if not HTTP."""
    lines = raw.split(b"\n")
    first = lines[0].rstrip(b"\r")
    request = _REQUEST_LINE.match(first)
    if not request and not _STATUS_LINE.match(first):
        return None
    items = []
    for line in lines[1:]:
        name, sep, value = line.rstrip(b"\r").partition(b":")
        if sep and name and not name[:1].isspace():
            items.append((name.decode("latin-1").strip(), value.decode("latin-1").strip()))
    words = first.decode("latin-1").split(" ", 2)
    if request:
        return HttpHead(first.decode("latin-1"), words[0], words[1], None, words[2][5:], Headers(items), raw)
    return HttpHead(first.decode("latin-1"), None, None, int(words[1]), words[0][5:], Headers(items), raw)


@dataclass(slots=True)
class _Request:
    head: HttpHead
    kind: str  # "igrs" (M-POST / routing headers), "description", "endpoint" (other method on /IGRS), "other"
    frame: messages.Frame | None = None
    error: str | None = None  # why it does not decode
    seq: int = 0  # its SequenceId, if readable


def _classify(head: HttpHead) -> str:
    path = head.target or ""
    if (head.method in ("M-POST", "POST") and path == IGRS_PATH) or head.igrs_type is not None:
        return "igrs"
    if head.method in ("GET", "HEAD") and path == DESCRIPTION_PATH:
        return "description"
    return "endpoint" if path == IGRS_PATH else "other"


@lru_cache(maxsize=1)
def body_schemas() -> dict[str, tuple[str, etree.XMLSchema]]:
    """Body element tag -> (schema file, schema), from every igrs-*.xsd."""
    out: dict[str, tuple[str, etree.XMLSchema]] = {}
    directory = next(d for d in SCHEMA_DIRS if os.path.isfile(os.path.join(d, "igrs-messages.xsd")))
    for name in sorted(os.listdir(directory)):
        if not (name.startswith("igrs-") and name.endswith(".xsd")):
            continue
        doc = etree.parse(os.path.join(directory, name))
        schema = etree.XMLSchema(doc)
        target = doc.getroot().get("targetNamespace", "")
        for el in doc.getroot().findall("{http://www.w3.org/2001/XMLSchema}element"):
            out.setdefault(qname(target, el.get("name", "")), (name, schema))
    return out


def _schema_problems(el: Element) -> list[Problem]:
    found = body_schemas().get(str(el.tag))
    if found is None:
        return []
    name, schema = found
    if schema.validate(el):
        return []
    errors = "; ".join(f"line {e.line}: {e.message}" for e in list(schema.error_log)[:3])
    return [(f"body not valid against {name}: {errors}", "messages.md §5")]


def _readable_sequence(headers: Headers) -> int:
    try:
        text = headers.optional_one(f"{headers.igrs_prefix()}-SequenceId") or ""
    except Exception:
        return 0
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else 0


def check_request(req: _Request, body: bytes) -> list[Problem]:
    """An IGRS request or notify (fills ``req.frame`` / ``req.error`` for its response)."""
    head = req.head
    out: list[Problem] = []
    if head.start != f"M-POST {IGRS_PATH} HTTP/1.1":
        out.append((f"request line {head.start[:60]!r} is not 'M-POST {IGRS_PATH} HTTP/1.1'", "messages.md §2"))
    req.seq = _readable_sequence(head.headers)
    try:
        frame = messages.decode(parse_head(head.raw)[1], body)
        el = parse_envelope(body)
    except Exception as exc:  # ProtocolError from the codec; anything else still "does not decode"
        req.error = str(exc)
        return [*out, (f"does not decode: {exc}", "messages.md §2-§5")]
    req.frame = frame
    spec = spec_for(frame.routing.message_type)
    if spec is None or spec.kind not in (Kind.REQUEST, Kind.NOTIFY):
        out.append((f"{frame.routing.message_type} is not a request or notify a client sends",
                    "messages.md §7"))
    return out + _schema_problems(el)


def check_response(req: _Request | None, head: HttpHead, body: bytes) -> list[Problem]:
    """An answer on the IGRS endpoint, judged against its request when that is known."""
    if req is not None and req.kind == "description":
        return check_description(head, body, with_body=req.head.method != "HEAD")
    if req is not None and req.kind == "endpoint":
        allow = head.headers.get("Allow") or ""
        if head.status != 405 or "M-POST" not in allow:
            return [(f"{req.head.method} {IGRS_PATH} answered {head.status} (Allow {allow!r}), not 405 with "
                     "Allow: M-POST, POST", "messages.md §7")]
        return []
    if head.igrs_type is None:
        return _bare_answer(req, head, body)
    try:
        frame = messages.decode(parse_head(head.raw)[1], body)
        el = parse_envelope(body)
    except Exception as exc:
        return [(f"does not decode: {exc}", "messages.md §2-§5")]
    out = _response_framing(head, frame)
    if req is not None and req.frame is not None:
        out += _matches_request(req, frame, el)
    elif req is not None and req.error is not None:
        if frame.routing.message_type != messages.ErrorResponse.message_type:
            out.append((f"a request that does not decode ({req.error[:80]}) answered with "
                        f"{frame.routing.message_type}, not an ErrorResponse", "messages.md §7"))
        else:
            ack = _acknowledge_id(el)
            if ack not in (None, 0, req.seq):
                out.append((f"AcknowledgeId {ack} is neither the request's SequenceId {req.seq} nor 0",
                            "messages.md §6"))
    return out + _schema_problems(el)


def _bare_answer(req: _Request | None, head: HttpHead, body: bytes) -> list[Problem]:
    """An answer without IGRS headers: only a notify's bare 200 may look like that."""
    if req is None or req.kind != "igrs":
        return []
    spec = spec_for(req.frame.routing.message_type) if req.frame is not None else None
    if spec is not None and spec.kind is Kind.NOTIFY and head.status == 200 and not body:
        if "Ext" not in head.headers or "no-cache" not in (head.headers.get("Cache-Control") or ""):
            return [("a notify's 200 answer lacks Ext / Cache-Control: no-cache=\"Ext\"", "messages.md §3")]
        return []
    if req.error is not None:
        return [(f"a request that does not decode ({req.error[:80]}) answered {head.status} without an "
                 "ErrorResponse", "messages.md §7")]
    expected = spec.response if spec is not None else None
    wanted = f" ({expected} expected)" if expected else ""
    return [(f"answered {head.status} without an IGRS message{wanted}", "messages.md §3")]


def _response_framing(head: HttpHead, frame: messages.Frame) -> list[Problem]:
    out: list[Problem] = []
    mtype = frame.routing.message_type
    if "Ext" not in head.headers or "no-cache" not in (head.headers.get("Cache-Control") or ""):
        out.append(('no Ext / Cache-Control: no-cache="Ext" on a response', "messages.md §3"))
    if isinstance(frame.message, messages.ErrorResponse):
        code = frame.message.status.return_code
        if head.status != code:
            out.append((f"ErrorResponse sent with HTTP status {head.status}, not its ReturnCode {code}",
                        "return-codes.md"))
        elif code in HTTPStatus._value2member_map_ and head.start.split(" ", 2)[2:] != [
                HTTPStatus(code).phrase]:
            out.append((f"status line {head.start!r} lacks the standard reason phrase", "messages.md §6"))
        return out
    spec = spec_for(mtype)
    if spec is None or spec.kind is not Kind.RESPONSE:
        out.append((f"{mtype} is not a response type", "messages.md §1"))
    if head.status != 200:
        out.append((f"typed response sent with HTTP status {head.status}, not 200", "return-codes.md"))
    return out


def _acknowledge_id(el: Element) -> int | None:
    """The body's AcknowledgeId (None when sealed or absent, -1 when not a number)."""
    if el.tag == _SECURE_MESSAGE:
        return None
    ack = el.find(qname(IGRS_NS, "AcknowledgeId"))
    if ack is None:
        return None
    text = (ack.text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else -1


def _matches_request(req: _Request, frame: messages.Frame, el: Element) -> list[Problem]:
    assert req.frame is not None
    out: list[Problem] = []
    asked, mtype = req.frame.routing, frame.routing.message_type
    spec = spec_for(asked.message_type)
    expected = spec.response if spec is not None else None
    resolved = spec_for(mtype)
    if (mtype != messages.ErrorResponse.message_type and expected
            and (resolved.name if resolved else mtype) != expected):
        out.append((f"{asked.message_type} answered with {mtype}, not {expected}", "messages.md §1"))
    if frame.routing.target != asked.source:
        out.append((f"01-TargetDeviceId {frame.routing.target} is not the requester {asked.source}",
                    "messages.md §3"))
    if asked.target is not None and frame.routing.source != asked.target:
        out.append((f"01-SourceDeviceId {frame.routing.source} is not the request's target {asked.target}",
                    "messages.md §3"))
    ack = _acknowledge_id(el)
    if ack is None and el.tag != _SECURE_MESSAGE:
        out.append(("response without AcknowledgeId", "messages.md §5.1"))
    elif ack is not None and ack != asked.sequence_id:
        out.append((f"AcknowledgeId {ack} != the request's SequenceId {asked.sequence_id}", "messages.md §3"))
    return out


def check_description(head: HttpHead, body: bytes, *, with_body: bool = True) -> list[Problem]:
    """The answer to ``GET`` (or, without its body, ``HEAD``) ``/IGRS/description.xml``."""
    if head.status != 200:
        return [(f"GET {DESCRIPTION_PATH} answered {head.status}, not 200", "messages.md §7")]
    content_type = head.headers.get("Content-Type") or ""
    out: list[Problem] = []
    if not content_type.lower().startswith("text/xml"):
        out.append((f"description served as {content_type[:60]!r}, not text/xml", "messages.md §7"))
    if not with_body:
        return out
    try:
        doc = parse_xml(body)
    except Exception as exc:
        return [*out, (f"description does not parse: {exc}", "description.md")]
    errors = schema_errors(doc)
    if errors:
        out.append((f"description not valid against device-description.xsd: {errors}", "description.md"))
    return out


class _Reader:
    """One direction of an HTTP connection, split into messages; buffers at most one head and
    (only for messages that are checked) one body of at most MAX_HTTP_BODY bytes."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.head: HttpHead | None = None
        self.req: _Request | None = None  # the request being read, or the one a response answers
        self.mode = ""  # "length" | "chunk-size" | "chunk-data" | "chunk-crlf" | "trailer" | "close"
        self.scanned = 0  # bytes of ``buf`` known to hold no end of head
        self.left = 0
        self.keep = False
        self.body = bytearray()
        self.too_big = False

    def start_body(self, mode: str, left: int, keep: bool) -> None:
        self.mode, self.left, self.keep = mode, left, keep
        self.body, self.too_big = bytearray(), False

    def reset(self) -> None:
        self.head, self.req, self.mode, self.scanned = None, None, "", 0

    def _append(self, data: bytes | bytearray) -> None:
        if not self.keep:
            return
        if len(self.body) + len(data) > MAX_HTTP_BODY:
            self.keep, self.too_big, self.body = False, True, bytearray()
        else:
            self.body += data

    def body_done(self) -> bool:
        """Consume body bytes; True when the message is complete. ValueError: bad chunking."""
        while True:
            if self.mode == "":
                return True
            if self.mode == "close":
                self._append(self.buf)
                self.buf.clear()
                return False
            if self.mode in ("length", "chunk-data"):
                take = min(self.left, len(self.buf))
                self._append(self.buf[:take])
                del self.buf[:take]
                self.left -= take
                if self.left:
                    return False
                self.mode = "" if self.mode == "length" else "chunk-crlf"
                continue
            end = self.buf.find(b"\n")
            if end < 0:
                if len(self.buf) > MAX_HEADER_LINE:
                    raise ValueError("chunk line too long")
                return False
            line = bytes(self.buf[:end]).strip()
            del self.buf[:end + 1]
            self._chunk_line(line)

    def _chunk_line(self, line: bytes) -> None:
        if self.mode == "chunk-crlf":
            if line:
                raise ValueError("chunk not followed by CRLF")
            self.mode = "chunk-size"
        elif self.mode == "chunk-size":
            size = line.split(b";", 1)[0].strip()
            if not size or len(size) > 8 or any(c not in b"0123456789abcdefABCDEF" for c in size):
                raise ValueError(f"malformed chunk size {size[:20]!r}")
            self.left = int(size, 16)
            self.mode = "chunk-data" if self.left else "trailer"
        elif not line:  # the empty line that ends the trailers
            self.mode = ""


class HttpConnection:
    """The HTTP messages of one TCP connection, paired request -> response in order."""

    def __init__(self, checker: PassiveChecker, synced: bool) -> None:
        self.checker = checker
        self.synced = synced  # both directions seen from their SYN: requests and responses pair up
        self.readers: dict[Endpoint, _Reader] = {}
        self.client: Endpoint | None = None
        self.pending: deque[_Request] = deque()
        self.state = "new"  # "new" | "http" | "ignored" | "done"
        self.closed: set[Endpoint] = set()

    def feed(self, ts: float, flow: FlowKey, data: bytes) -> None:
        if self.state in ("ignored", "done"):
            return
        r = self.readers.setdefault(flow[0], _Reader())
        r.buf += data
        try:
            while self.state not in ("ignored", "done"):
                if r.head is None and not self._head(flow, r):
                    return
                if not r.body_done():
                    return
                self._complete(ts, flow, r)
        except ValueError as exc:
            self._stop(f"{self._where(flow)}: {exc}: the rest of this connection is not checked")

    def close(self, ts: float, flow: FlowKey) -> None:
        r = self.readers.get(flow[0])
        self.closed.add(flow[0])
        if r is not None and self.state == "http" and r.head is not None:
            if r.mode == "close":
                r.mode = ""
                self._complete(ts, flow, r)
            elif r.head.igrs_type is not None or (r.req is not None and r.req.kind != "other"):
                self.checker.note(f"{self._where(flow)}: closed inside an HTTP message ({r.head.what()})")

    def gap(self, flow: FlowKey) -> None:
        if self.state not in ("ignored", "done"):
            self._stop(f"TCP stream {self._where(flow)} has a gap, not checked from there on")

    def _stop(self, note: str, state: str = "done") -> None:
        """Stop reading this connection (``note`` says why, if it was HTTP)."""
        if self.state == "http":
            self.checker.note(note)
        self.state = state
        self.readers.clear()
        self.pending.clear()

    @staticmethod
    def _where(flow: FlowKey) -> str:
        return f"{endpoint_text(*flow[0])} -> {endpoint_text(*flow[1])} (tcp)"

    def _head(self, flow: FlowKey, r: _Reader) -> bool:
        if r.buf[:1] in (b"\r", b"\n"):  # empty lines between messages
            del r.buf[:len(r.buf) - len(r.buf.lstrip(b"\r\n"))]
            r.scanned = 0
        match = _HEAD_END.search(r.buf, max(0, r.scanned - 3))
        if match is None:
            r.scanned = len(r.buf)
            line_end = r.buf.find(b"\n")
            if self.state == "new" and (line_end >= 0 or len(r.buf) > MAX_HEADER_LINE):
                first = bytes(r.buf[:line_end if line_end >= 0 else MAX_HEADER_LINE]).rstrip(b"\r")
                if not (_REQUEST_LINE.match(first) or _STATUS_LINE.match(first)):
                    self._stop("", "ignored")  # not HTTP at all
                    return False
                self.state = "http"
            if len(r.buf) > HEAD_LIMIT:
                raise ValueError(f"HTTP head longer than {HEAD_LIMIT} bytes")
            return False
        raw = bytes(r.buf[:match.start()])
        del r.buf[:match.end()]
        r.scanned = 0
        head = parse_http_head(raw)
        if head is None:
            if self.state == "new":
                self._stop("", "ignored")
                return False
            raise ValueError(f"malformed HTTP start line {raw[:40]!r}")
        self.state = "http"
        r.head = head
        self._framing(flow, r, head)
        return True

    def _framing(self, flow: FlowKey, r: _Reader, head: HttpHead) -> None:
        h = head.headers
        chunked = "chunked" in (h.get("Transfer-Encoding") or "").lower()
        length_text = h.get("Content-Length")
        if length_text is not None and not (length_text.isascii() and length_text.isdigit()):
            raise ValueError(f"malformed Content-Length {length_text[:20]!r}")
        length = int(length_text) if length_text is not None else None
        if head.method is not None:
            if self.client is None:
                self.client = flow[0]
            r.req = _Request(head, _classify(head))
            if len(self.pending) >= MAX_PENDING_REQUESTS:
                raise ValueError(f"more than {MAX_PENDING_REQUESTS} requests awaiting answers")
            self.pending.append(r.req)
            keep = r.req.kind == "igrs"
            mode = "chunk-size" if chunked else "length" if length else ""
        else:
            r.req = self.pending[0] if self.pending and self.synced else None
            keep = head.igrs_type is not None or (r.req is None or r.req.kind in ("igrs", "description"))
            no_body = (r.req is not None and r.req.head.method == "HEAD") or head.status in (204, 304) or (
                head.status is not None and 100 <= head.status < 200)
            mode = "" if no_body else "chunk-size" if chunked else "length" if length else (
                "" if length == 0 else "close")
        r.start_body(mode, length or 0, keep)

    def _complete(self, ts: float, flow: FlowKey, r: _Reader) -> None:
        head, req, body = r.head, r.req, bytes(r.body)
        assert head is not None
        too_big = r.too_big
        r.reset()
        if head.method is not None:
            if req is not None and req.kind == "igrs":
                problems = [("body over MAX_HTTP_BODY, not checked", "timers-and-limits.md MAX_HTTP_BODY")] \
                    if too_big else check_request(req, body)
                kind = req.frame.routing.message_type if req.frame is not None else "undecodable"
                self.checker.report(ts, self._where(flow), head.what(), problems, kind)
            return
        if head.status is not None and 100 <= head.status < 200:
            return  # an interim answer: the request still waits for its final one
        if req is not None and self.pending and self.pending[0] is req:
            self.pending.popleft()
        if head.igrs_type is None and (req is None or req.kind == "other"):
            return
        problems = [("body over MAX_HTTP_BODY, not checked", "timers-and-limits.md MAX_HTTP_BODY")] \
            if too_big else check_response(req, head, body)
        if req is None or req.kind == "igrs":
            what, kind = head.what(), head.igrs_type or f"HTTP {head.status}"
        else:
            what, kind = f"{head.start[:40]} ({req.head.start[:40]})", req.kind
        self.checker.report(ts, self._where(flow), what, problems, kind)


# --- the checker -------------------------------------------------------------------------------------
@dataclass
class PassiveChecker:
    """Feed it ``datagram()``s and ``packet()``s in time order; read ``violations``/``notes``.

    ``port``: the ISDP UDP port. A UDP datagram is an ISDP one when it goes to or from that
    port, or to the address:port an M-SEARCH of this capture came from (search answers).
    ``keep``: keep every violation in ``violations`` (a live watch sets False and takes the
    returned lists instead).
    """

    port: int = IGRS_PORT
    grace: float = GRACE
    keep: bool = True
    seen: int = 0  # IGRS messages checked
    kinds: Counter[str] = field(default_factory=Counter)  # checked messages by type
    count: int = 0  # violations found
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    notes_dropped: int = 0

    def __post_init__(self) -> None:
        self.timing = IsdpTiming(self.grace)
        self.tcp = TcpReassembler(max_streams=MAX_TCP_STREAMS, max_buffer=STREAM_BUFFER)
        self.connections: dict[frozenset[Endpoint], HttpConnection] = {}
        self._found: list[Violation] = []

    # --- output ---
    def report(self, ts: float, where: str, what: str, problems: Iterable[Problem], kind: str = "") -> None:
        """One IGRS message checked (``kind``: its type), with its violations."""
        self.seen += 1
        self.kinds[kind or what] += 1
        for text, rule in problems:
            self._add(Violation(ts, where, what, text, rule))

    def _add(self, violation: Violation) -> None:
        self.count += 1
        self._found.append(violation)
        if self.keep:
            self.violations.append(violation)

    def note(self, text: str) -> None:
        if not text:
            return
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)
        else:
            self.notes_dropped += 1

    def _take(self) -> list[Violation]:
        found, self._found = self._found, []
        return found

    # --- input ---
    def datagram(self, ts: float, src: str, sport: int, dst: str, dport: int, payload: bytes,
                 ttl: int | None = None) -> list[Violation]:
        """Check one UDP datagram (ignored unless it is an ISDP one); the violations found."""
        if self.port not in (sport, dport) and not self.timing.is_searcher((dst, dport)):
            return []
        where = f"{endpoint_text(src, sport)} -> {endpoint_text(dst, dport)}"
        what = payload.split(b"\n", 1)[0][:60].decode("utf-8", "replace").rstrip("\r")
        msg, problems = check_datagram(payload, src, dst, dport, ttl)
        if msg is not None:
            problems += self.timing.observe(ts, msg, (src, sport), (dst, dport), where, what)
        self.report(ts, where, what, problems, msg.message_type if msg is not None else "undecodable")
        return self._take()

    def packet(self, p: Packet) -> list[Violation]:
        if p.proto == UDP:
            if p.truncated:
                if self.port in (p.sport, p.dport):
                    self.note(f"{p.ts:.6f} {endpoint_text(p.src, p.sport)} -> {endpoint_text(p.dst, p.dport)}: "
                              "datagram cut by the capture's snap length, not checked")
                return []
            return self.datagram(p.ts, p.src, p.sport, p.dst, p.dport, p.payload, p.ttl)
        if p.proto == TCP:
            refused = self.tcp.refused
            for item in self.tcp.segment(p):
                self._stream(p.ts, item)
            if self.tcp.refused > refused and not refused:
                self.note(f"more than {MAX_TCP_STREAMS} TCP streams at once: later ones are not checked")
        return self._take()

    def _stream(self, ts: float, item: StreamData) -> None:
        key = frozenset(item.flow)
        conn = self.connections.get(key)
        if conn is None:
            if not item.data:
                return
            back = self.tcp.streams.get((item.flow[1], item.flow[0]))
            this = self.tcp.streams.get(item.flow)
            synced = this is not None and this.from_syn and (back is None or back.from_syn)
            conn = self.connections[key] = HttpConnection(self, synced)
        if item.data:
            conn.feed(ts, item.flow, item.data)
        if item.gap:
            conn.gap(item.flow)
        if item.closed:
            conn.close(ts, item.flow)
        if conn.state in ("ignored", "done"):  # not HTTP, or given up on: stop following it
            for flow in (item.flow, (item.flow[1], item.flow[0])):
                self.tcp.forget(flow)
            del self.connections[key]
        elif len(conn.closed) == 2:
            del self.connections[key]

    def expire(self, now: float) -> list[Violation]:
        """Announcements overdue at ``now`` (a live watch calls this periodically)."""
        for violation in self.timing.overdue(now):
            self._add(violation)
        return self._take()

    def finish(self, end: float | None) -> list[Violation]:
        """End of input at time ``end``: open TCP streams end, overdue announcements count."""
        for item in self.tcp.finish():
            self._stream(end or 0.0, item)
        if end is not None:
            for violation in self.timing.overdue(end):
                self._add(violation)
        return self._take()


# --- captures --------------------------------------------------------------------------------------
@dataclass
class CaptureReport:
    violations: list[Violation]
    notes: list[str]
    seen: int
    kinds: Counter[str]  # checked messages by type ("description": GET description.xml answers)
    stats: CaptureStats


def check_capture(path: str | os.PathLike[str], *, port: int = IGRS_PORT,
                  grace: float = GRACE) -> CaptureReport:
    """Check every IGRS message of a pcap/pcapng file (CaptureError if it is not one)."""
    checker = PassiveChecker(port=port, grace=grace)
    stats = CaptureStats()
    with open_capture(path) as buf:
        for p in packets(buf, stats):
            checker.packet(p)
    checker.finish(stats.last_ts)
    notes = []
    if stats.truncated_at is not None:
        notes.append(f"capture truncated at record {stats.truncated_at}: checked what was read before it")
    if stats.fragments:
        notes.append(f"{stats.fragments} IP fragment(s) skipped (not reassembled)")
    notes += [f"{n} record(s) skipped: {reason}" for reason, n in sorted(stats.skipped.items())
              if reason.startswith("link type")]
    notes += checker.notes
    if checker.notes_dropped:
        notes.append(f"{checker.notes_dropped} more note(s) not shown")
    return CaptureReport(checker.violations, notes, checker.seen, checker.kinds, stats)


def check_pcap(path: str | os.PathLike[str], *, port: int = IGRS_PORT) -> tuple[list[str], int]:
    """(violations as text lines, number of IGRS messages checked)."""
    report = check_capture(path, port=port)
    return [str(v) for v in report.violations], report.seen


# --- writing captures (tests, examples) -----------------------------------------------------------------
UdpTuple = tuple[float, str, int, str, int, bytes]


def ip_bytes(p: Packet) -> bytes:
    """An IPv4 or IPv6 packet (no options, checksums 0) carrying a Packet's UDP/TCP payload."""
    if p.proto == UDP:
        l4 = struct.pack("!HHHH", p.sport, p.dport, 8 + len(p.payload), 0) + p.payload
    else:
        l4 = struct.pack("!HHIIBBHHH", p.sport, p.dport, p.seq, 0, 5 << 4, p.flags, 65535, 0, 0) + p.payload
    if ":" in p.src:
        return (struct.pack("!IHBB", 6 << 28, len(l4), p.proto, p.ttl) + ipaddress.IPv6Address(p.src).packed
                + ipaddress.IPv6Address(p.dst).packed + l4)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, p.ttl, p.proto, 0,
                       ipaddress.IPv4Address(p.src).packed, ipaddress.IPv4Address(p.dst).packed) + l4


def write_pcap(path: str | os.PathLike[str], items: Sequence[UdpTuple | Packet]) -> None:
    """Write packets as a raw-IP libpcap file; a tuple is a UDP datagram (TTL MULTICAST_TTL)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for item in items:
            p = item if isinstance(item, Packet) else Packet(item[0], UDP, item[1], item[2], item[3], item[4],
                                                              item[5], MULTICAST_TTL)
            ip = ip_bytes(p)
            f.write(struct.pack("<IIII", int(p.ts), round((p.ts % 1) * 1e6) % 1000000, len(ip), len(ip)) + ip)
