"""Rules checked on one ISDP or device-group datagram alone (specs/conformance/passive.md §2)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final
from urllib.parse import urlsplit

from igrs.conformance.passive.violations import Problem, endpoint_text
from igrs.constants import (
    GROUP_ST_ALL,
    IGRS_EXT_URI,
    IGRS_PATH,
    IGRS_PORT,
    IPV4_GROUP,
    IPV4_GROUP_ALT,
    IPV6_GROUP,
    MAN_DISCOVER,
    MAN_DISCOVER_ACCEPTED,
    MAX_DATAGRAM,
    MULTICAST_TTL,
    NTS_ALIVE,
    NTS_BYEBYE,
    NTS_UPDATE,
)
from igrs.wire import group_datagrams as groups
from igrs.wire import isdp
from igrs.wire.httpu import Headers, parse_message
from igrs.wire.ids import DeviceId

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
RESPONSES: Final = (isdp.SearchDeviceResponse, isdp.SearchServiceResponse, groups.SearchDeviceGroupResponse)
SEARCHES: Final = (isdp.SearchDeviceRequest, isdp.SearchServiceRequest, groups.SearchDeviceGroupRequest)


def decode_datagram(payload: bytes) -> Any:
    """The ISDP or device-group message of a datagram (ProtocolError if it is neither)."""
    if groups.is_group_datagram(payload):
        return groups.decode(payload)
    return isdp.decode(payload)


def sender_of(msg: Any) -> DeviceId | None:
    """The device a datagram speaks for (None for searches)."""
    if isinstance(msg, SEARCHES):
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
    if isinstance(msg, RESPONSES):
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
