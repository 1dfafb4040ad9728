"""Device-group datagrams (clauses 9.5 and 9.8): the multicast/HTTPU half of specs/groups.md.

Four NOTIFYs (peer and centralised advertisement, their quits), the group search
(M-SEARCH) and its unicast answer (``HTTP/1.1 200 OK``). Headers only, no body, the same
framing and IGRS extension headers as the discovery datagrams of ``igrs.wire.isdp``. The
unicast SOAP messages of 9.5 (join, quit notify) are in ``igrs.wire.bodies.groups``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Final, Self

from igrs.constants import (
    GROUP_ST_ALL,
    IGRS_VERSION,
    MAN_DISCOVER,
    MAN_DISCOVER_ACCEPTED,
    MAX_DATAGRAM,
    MAX_ID_LENGTH,
    MAX_MX,
    MAX_NAME_LENGTH,
    NTS_ALIVE,
    NTS_BYEBYE,
    NTS_UPDATE,
    SERVER_PRODUCT,
    ST_ALL_ACCEPTED,
)
from igrs.errors import ProtocolError
from igrs.wire.httpu import Headers, HttpMessage, build_message, parse_message
from igrs.wire.ids import DEVICE_GROUP_PREFIX, DeviceId, check_igrs_version, is_digits
from igrs.wire.isdp import decode_name, encode_name, ext_headers, max_age_of, optional_device_id

SERVER: Final = f"{IGRS_VERSION} {SERVER_PRODUCT}"
_MAX_AGE = re.compile(r"(?:^|[,;\s])max-age\s*=\s*([0-9]{1,9})", re.IGNORECASE | re.ASCII)
# A foreign group id suffix: URN-safe characters (RFC 8141 NSS subset), kept verbatim.
_TOKEN_ID = re.compile(r"[A-Za-z0-9._~:-]{1,128}\Z", re.ASCII)


class NotGroupDatagram(ProtocolError):
    """A well-formed datagram that is not one of the group messages (e.g. a device search)."""


# --- identifiers -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, order=True)
class GroupId:
    """``urn:IGRS:DeviceGroup:<uuid>`` (emitted); other URN-safe suffixes accepted verbatim."""

    value: str  # the canonical text

    @classmethod
    def new(cls) -> Self:
        return cls(f"{DEVICE_GROUP_PREFIX}{uuid.uuid4()}")

    @classmethod
    def parse(cls, text: str) -> Self:
        text = text.strip()
        if len(text) > MAX_ID_LENGTH or text[: len(DEVICE_GROUP_PREFIX)].lower() != DEVICE_GROUP_PREFIX.lower():
            raise ProtocolError(f"not a device group id: {text[:60]!r}")
        suffix = text[len(DEVICE_GROUP_PREFIX):]
        try:
            return cls(f"{DEVICE_GROUP_PREFIX}{uuid.UUID(suffix)}")
        except ValueError:
            pass
        if suffix.lower() == GROUP_ST_ALL[len(DEVICE_GROUP_PREFIX):] or not _TOKEN_ID.match(suffix):
            raise ProtocolError(f"malformed device group id: {text[:60]!r}")
        return cls(f"{DEVICE_GROUP_PREFIX}{suffix}")

    def __str__(self) -> str:
        return self.value

    @property
    def short(self) -> str:
        return self.value[len(DEVICE_GROUP_PREFIX):][:8]


class GroupKind(StrEnum):
    PEER = "peer"
    CENTRALISED = "centralised"


def check_group_name(name: str) -> str:
    """A group name: at most MAX_NAME_LENGTH characters, no control characters."""
    if len(name) > MAX_NAME_LENGTH:
        raise ProtocolError("group name too long")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ProtocolError("control character in group name")
    return name


_NAME_HEADER = "01-DeviceGroupName"


def encode_group_name(name: str) -> str:
    """Percent-encode (UTF-8) a group name, cut at a whole character to fit one header line."""
    return encode_name(name, _NAME_HEADER)


# --- messages ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PeerDeviceGroupAdvertisement:
    """A member of a peer-to-peer group says: I am in this group (sent by every member)."""

    group_id: GroupId
    device_id: DeviceId
    max_age: int
    name: str = ""

    message_type: ClassVar[str] = "PeerDeviceGroupAdvertisement"


@dataclass(frozen=True, slots=True)
class QuitPeerDeviceGroupNotify:
    """A member leaves a peer-to-peer group."""

    group_id: GroupId
    device_id: DeviceId

    message_type: ClassVar[str] = "QuitPeerDeviceGroupNotify"


@dataclass(frozen=True, slots=True)
class CentralisedDeviceGroupAdvertisement:
    """The master of a centralised group says: this group exists and I am its master."""

    group_id: GroupId
    master_id: DeviceId
    max_age: int
    name: str = ""
    member_count: int = 0  # slaves in the master's table (informative)

    message_type: ClassVar[str] = "CentralisedDeviceGroupAdvertisement"


@dataclass(frozen=True, slots=True)
class QuitCentralisedDeviceGroupAdvertisement:
    """The master dissolves its centralised group."""

    group_id: GroupId
    master_id: DeviceId

    message_type: ClassVar[str] = "QuitCentralisedDeviceGroupAdvertisement"


@dataclass(frozen=True, slots=True)
class SearchDeviceGroupRequest:
    """Multicast search for one group (``target``) or every group (``target`` None)."""

    target: GroupId | None
    mx: int
    source_device_id: DeviceId | None = None

    message_type: ClassVar[str] = "SearchDeviceGroupRequest"


@dataclass(frozen=True, slots=True)
class SearchDeviceGroupResponse:
    """One group a device answers for (a device in several groups sends one per group)."""

    group_id: GroupId
    device_id: DeviceId  # the responder: a peer member, or the master
    kind: GroupKind
    max_age: int
    target: GroupId | None  # the request's ST (None = every group)
    name: str = ""
    master_id: DeviceId | None = None  # centralised groups only
    requester: DeviceId | None = None
    member_count: int | None = None  # centralised: slaves in the master's table right now

    message_type: ClassVar[str] = "SearchDeviceGroupResponse"


GroupDatagram = (
    PeerDeviceGroupAdvertisement | QuitPeerDeviceGroupNotify | CentralisedDeviceGroupAdvertisement
    | QuitCentralisedDeviceGroupAdvertisement | SearchDeviceGroupRequest | SearchDeviceGroupResponse
)
GROUP_DATAGRAM_TYPES: Final = frozenset({
    "PeerDeviceGroupAdvertisement", "QuitPeerDeviceGroupNotify", "CentralisedDeviceGroupAdvertisement",
    "QuitCentralisedDeviceGroupAdvertisement", "SearchDeviceGroupRequest", "SearchDeviceGroupResponse",
})


def _st(target: GroupId | None) -> str:
    return GROUP_ST_ALL if target is None else str(target)


# --- encoding ----------------------------------------------------------------------------------
_ext = ext_headers


def encode(msg: GroupDatagram, *, host: str, compact: bool = False) -> bytes:
    """Serialise a group datagram; ``host`` is the ``HOST`` value (unused for responses).
    ``compact``: a response with its required headers only (specs/groups.md §3.6)."""
    if isinstance(msg, PeerDeviceGroupAdvertisement | CentralisedDeviceGroupAdvertisement):
        sender = msg.device_id if isinstance(msg, PeerDeviceGroupAdvertisement) else msg.master_id
        headers = [
            ("HOST", host),
            ("CACHE-CONTROL", f"max-age={msg.max_age}"),
            ("NT", str(msg.group_id)),
            ("NTS", NTS_ALIVE),
            ("SERVER", SERVER),
            ("USN", str(sender)),
            *_ext(msg.message_type, sender),
        ]
        if isinstance(msg, CentralisedDeviceGroupAdvertisement):
            headers.append(("01-DeviceGroupMemberCount", str(msg.member_count)))
        if msg.name:
            headers.append((_NAME_HEADER, encode_group_name(msg.name)))
        return build_message("NOTIFY * HTTP/1.1", headers)
    if isinstance(msg, QuitPeerDeviceGroupNotify | QuitCentralisedDeviceGroupAdvertisement):
        sender = msg.device_id if isinstance(msg, QuitPeerDeviceGroupNotify) else msg.master_id
        headers = [
            ("HOST", host),
            ("NT", str(msg.group_id)),
            ("NTS", NTS_BYEBYE),
            ("USN", str(sender)),
            *_ext(msg.message_type, sender),
        ]
        return build_message("NOTIFY * HTTP/1.1", headers)
    if isinstance(msg, SearchDeviceGroupRequest):
        headers = [
            ("HOST", host),
            ("MAN", MAN_DISCOVER),
            ("MX", str(msg.mx)),
            ("ST", _st(msg.target)),
            *_ext(msg.message_type, msg.source_device_id),
        ]
        return build_message("M-SEARCH * HTTP/1.1", headers)
    if isinstance(msg, SearchDeviceGroupResponse):
        if compact:
            headers = [("CACHE-CONTROL", f"max-age={msg.max_age}"), ("ST", _st(msg.target)),
                       ("USN", str(msg.device_id)), ("01-IGRSMessageType", msg.message_type)]
        else:
            headers = [("CACHE-CONTROL", f"max-age={msg.max_age}"), ("EXT", ""), ("ST", _st(msg.target)),
                       ("USN", str(msg.device_id)), *_ext(msg.message_type, msg.device_id)]
        headers += [("01-DeviceGroupId", str(msg.group_id)), ("01-DeviceGroupType", msg.kind.value)]
        if msg.master_id is not None:
            headers.append(("01-MasterDeviceId", str(msg.master_id)))
        if compact:
            return build_message("HTTP/1.1 200 OK", headers)
        if msg.requester is not None:
            headers.append(("01-TargetDeviceId", str(msg.requester)))
        if msg.member_count is not None:
            headers.append(("01-DeviceGroupMemberCount", str(msg.member_count)))
        if msg.name:
            headers.append((_NAME_HEADER, encode_group_name(msg.name)))
        return build_message("HTTP/1.1 200 OK", headers)
    raise TypeError(f"not a group datagram: {type(msg).__name__}")


# --- decoding ----------------------------------------------------------------------------------
_max_age = max_age_of


def _name(headers: Headers, prefix: str) -> str:
    return check_group_name(decode_name(headers, f"{prefix}-DeviceGroupName", "group name"))


def _usn(headers: Headers) -> DeviceId:
    return DeviceId.parse(headers.one("USN").partition("::")[0])


def _target(text: str) -> GroupId | None:
    lowered = text.strip().lower()
    if lowered == GROUP_ST_ALL.lower() or lowered in ST_ALL_ACCEPTED:
        return None
    return GroupId.parse(text)


_optional_id = optional_device_id


def _group_type(msg: HttpMessage) -> str | None:
    """The group message type a parsed datagram claims, or None if it is not a group one."""
    h = msg.headers
    prefix = h.igrs_prefix()
    mtype = h.optional_one(f"{prefix}-IGRSMessageType")
    if mtype is not None:
        return mtype if mtype in GROUP_DATAGRAM_TYPES else None
    # No type header (a foreign sender): a group search is recognisable by its ST alone.
    st = h.get("ST") or ""
    if msg.method == "M-SEARCH" and st.lower().startswith(DEVICE_GROUP_PREFIX.lower()):
        return "SearchDeviceGroupRequest"
    return None


def is_group_datagram(data: bytes) -> bool:
    """Cheap routing test for the I/O layer: does this datagram belong to the group layer?

    True for the six group message types; False for discovery datagrams and for anything
    that does not even parse (those are the discovery decoder's to count)."""
    try:
        msg = parse_message(data, max_size=MAX_DATAGRAM, allow_body=False)
        return _group_type(msg) is not None
    except (ProtocolError, ValueError, UnicodeError):
        return False


def decode(data: bytes) -> GroupDatagram:
    """Decode one group datagram. Raises ProtocolError (NotGroupDatagram for well-formed
    datagrams of other layers) and nothing else."""
    try:
        msg = parse_message(data, max_size=MAX_DATAGRAM, allow_body=False)
        mtype = _group_type(msg)
        if mtype is None:
            raise NotGroupDatagram("not a device group datagram")
        return _decode(msg, mtype)
    except ProtocolError:
        raise
    except (ValueError, UnicodeError) as exc:
        raise ProtocolError(f"malformed datagram: {exc}") from None


def _member_count(text: str) -> int:
    if not is_digits(text) or len(text) > 4:
        raise ProtocolError("malformed DeviceGroupMemberCount")
    return int(text)


def _decode(msg: HttpMessage, mtype: str) -> GroupDatagram:
    h = msg.headers
    prefix = h.igrs_prefix()
    version = h.optional_one(f"{prefix}-IGRSVersion")
    if version is not None:
        check_igrs_version(version)
    if mtype == "SearchDeviceGroupRequest":
        if msg.method != "M-SEARCH" or msg.target != "*":
            raise ProtocolError("SearchDeviceGroupRequest must be M-SEARCH *")
        mans = [v.strip().strip('"').lower() for v in h.get_all("MAN")]
        if not any(m in MAN_DISCOVER_ACCEPTED for m in mans):
            raise ProtocolError('M-SEARCH without MAN: "isdp:discover"')
        mx_text = h.one("MX")
        if not is_digits(mx_text) or len(mx_text) > 3:
            raise ProtocolError("malformed MX")
        return SearchDeviceGroupRequest(_target(h.one("ST")), min(int(mx_text), MAX_MX),
                                        _optional_id(h, f"{prefix}-SourceDeviceId"))
    if mtype == "SearchDeviceGroupResponse":
        if msg.status != 200:
            raise ProtocolError("SearchDeviceGroupResponse must be 200 OK")
        kind_text = h.one(f"{prefix}-DeviceGroupType").strip().lower()
        if kind_text not in (GroupKind.PEER.value, GroupKind.CENTRALISED.value):
            raise ProtocolError(f"unknown group type {kind_text[:20]!r}")
        kind = GroupKind(kind_text)
        master = _optional_id(h, f"{prefix}-MasterDeviceId")
        responder = _usn(h)
        if kind is GroupKind.CENTRALISED and master is None:
            raise ProtocolError("centralised group without a master")
        if kind is GroupKind.PEER and master is not None:
            raise ProtocolError("peer group with a master")
        count_text = h.optional_one(f"{prefix}-DeviceGroupMemberCount")
        return SearchDeviceGroupResponse(
            GroupId.parse(h.one(f"{prefix}-DeviceGroupId")), responder, kind, _max_age(h),
            _target(h.one("ST")), _name(h, prefix), master, _optional_id(h, f"{prefix}-TargetDeviceId"),
            None if count_text is None else _member_count(count_text))
    # the four NOTIFYs
    if msg.method != "NOTIFY" or msg.target != "*":
        raise ProtocolError(f"{mtype} must be NOTIFY *")
    group_id = GroupId.parse(h.one("NT"))
    sender = _usn(h)
    nts = h.one("NTS").strip().lower()
    alive = mtype in ("PeerDeviceGroupAdvertisement", "CentralisedDeviceGroupAdvertisement")
    if alive and nts not in (NTS_ALIVE, NTS_UPDATE):
        raise ProtocolError(f"{mtype} with NTS {nts[:20]!r}")
    if not alive and nts != NTS_BYEBYE:
        raise ProtocolError(f"{mtype} with NTS {nts[:20]!r}")
    if mtype == "PeerDeviceGroupAdvertisement":
        return PeerDeviceGroupAdvertisement(group_id, sender, _max_age(h), _name(h, prefix))
    if mtype == "CentralisedDeviceGroupAdvertisement":
        count_text = h.optional_one(f"{prefix}-DeviceGroupMemberCount") or "0"
        return CentralisedDeviceGroupAdvertisement(group_id, sender, _max_age(h), _name(h, prefix),
                                                   _member_count(count_text))
    if mtype == "QuitPeerDeviceGroupNotify":
        return QuitPeerDeviceGroupNotify(group_id, sender)
    return QuitCentralisedDeviceGroupAdvertisement(group_id, sender)


__all__ = [
    "GROUP_DATAGRAM_TYPES", "CentralisedDeviceGroupAdvertisement", "GroupDatagram", "GroupId", "GroupKind",
    "NotGroupDatagram", "PeerDeviceGroupAdvertisement", "QuitCentralisedDeviceGroupAdvertisement",
    "QuitPeerDeviceGroupNotify", "SearchDeviceGroupRequest", "SearchDeviceGroupResponse",
    "check_group_name", "decode", "encode", "encode_group_name", "is_group_datagram",
]
