"""Clause 9.7 (device online/offline events) and 10.3 (service online/offline events) bodies.

Message names: public source: EZ-H. The fields mirror the eventing pattern of the public
service-description template (EZ-SDT: ``subscribe(subscribeExpression, location,
expirationTime)`` -> ``subscribeResponse{subscriptionId, terminationTime?, returnCode}``,
``renewSubscription(subscriptionId, location, expirationTime)``,
``unsubscribe(subscriptionId)``); element spellings and the notification bodies are project
choice (specs/events.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Self

from igrs.constants import (
    EVENT_BATCH_MAX,
    IGRS_NS,
    MAX_ARGUMENTS,
    MAX_CALLBACK_URL,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
)
from igrs.errors import LimitExceeded, ProtocolError
from igrs.wire.bodies.sessions import el, expect, opt_uint, read_bool, sub, uint
from igrs.wire.ids import DeviceId, ServiceType, parse_uint32
from igrs.wire.messages import Status, register
from igrs.wire.xml import Element, child_text, qname


# --- xsd:dateTime ---------------------------------------------------------------------------
def format_time(moment: datetime) -> str:
    """Emit UTC with a ``Z`` (project choice)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def from_timestamp(t: float) -> datetime:
    """A POSIX time as an aware UTC datetime, whole seconds."""
    return datetime.fromtimestamp(t, UTC).replace(microsecond=0)


def parse_time(text: str) -> datetime:
    """Accept xsd:dateTime; without a zone it is taken as UTC (liberal)."""
    text = text.strip()
    if not 19 <= len(text) <= 40 or "T" not in text:
        raise ProtocolError(f"malformed dateTime {text[:40]!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ProtocolError(f"malformed dateTime {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _location(body: Element) -> str:
    loc = child_text(body, IGRS_NS, "Location", max_len=MAX_CALLBACK_URL) or ""
    if not loc:
        raise ProtocolError("empty Location")
    return loc


# --- shared shapes --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Subscribe:
    """``SubscribeExpression`` (targets; empty = everything), ``Location``, ``ExpirationTime``."""

    location: str
    expiration_time: datetime
    targets: tuple[str, ...] = ()
    message_type: ClassVar[str] = ""

    def body(self) -> Element:
        root = el(self.message_type)
        if self.targets:
            expr = sub(root, "SubscribeExpression")
            for target in self.targets:
                sub(expr, "Target", target)
        sub(root, "Location", self.location)
        sub(root, "ExpirationTime", format_time(self.expiration_time))
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type)
        targets: list[str] = []
        expr = body.find(qname(IGRS_NS, "SubscribeExpression"))
        if expr is not None:
            for node in expr.iterchildren(qname(IGRS_NS, "Target")):
                text = (node.text or "").strip()
                if not text or len(text) > MAX_ID_LENGTH:
                    raise ProtocolError("empty or over-long subscription Target")
                targets.append(text)
                if len(targets) > MAX_ARGUMENTS:
                    raise LimitExceeded("too many subscription targets")
        return cls(
            _location(body),
            parse_time(child_text(body, IGRS_NS, "ExpirationTime", max_len=40) or ""),
            tuple(targets),
        )


@dataclass(frozen=True, slots=True)
class _Renew:
    subscription_id: int
    location: str
    expiration_time: datetime
    message_type: ClassVar[str] = ""

    def body(self) -> Element:
        root = el(self.message_type)
        sub(root, "SubscriptionId", str(self.subscription_id))
        sub(root, "Location", self.location)
        sub(root, "ExpirationTime", format_time(self.expiration_time))
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type)
        return cls(
            uint(body, "SubscriptionId"),
            _location(body),
            parse_time(child_text(body, IGRS_NS, "ExpirationTime", max_len=40) or ""),
        )


@dataclass(frozen=True, slots=True)
class _SubscribeResponse:
    status: Status
    subscription_id: int | None = None
    termination_time: datetime | None = None
    message_type: ClassVar[str] = ""

    def body(self) -> Element:
        root = el(self.message_type)
        self.status.write(root)
        if self.subscription_id is not None:
            sub(root, "SubscriptionId", str(self.subscription_id))
        if self.termination_time is not None:
            sub(root, "TerminationTime", format_time(self.termination_time))
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type)
        status = Status.read(body)
        sid = opt_uint(body, "SubscriptionId")
        term = child_text(body, IGRS_NS, "TerminationTime", required=False, max_len=40)
        if status.ok and (sid is None or term is None):
            raise ProtocolError(f"successful {cls.message_type} without SubscriptionId/TerminationTime")
        return cls(status, sid, parse_time(term) if term else None)


@dataclass(frozen=True, slots=True)
class _Unsubscribe:
    subscription_id: int
    message_type: ClassVar[str] = ""

    def body(self) -> Element:
        root = el(self.message_type)
        sub(root, "SubscriptionId", str(self.subscription_id))
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type)
        return cls(uint(body, "SubscriptionId"))


def _write_notify_head(root: Element, sid: int, seq: int, coalesced: bool, ended: str) -> None:
    sub(root, "SubscriptionId", str(sid))
    sub(root, "EventSequence", str(seq))
    if coalesced:
        sub(root, "Coalesced", "true")
    if ended:
        sub(root, "SubscriptionEnded", ended[:256])


def _read_notify_head(body: Element) -> tuple[int, int, bool, str]:
    seq = parse_uint32(
        child_text(body, IGRS_NS, "EventSequence", max_len=10) or "", "EventSequence", allow_zero=True
    )
    ended = child_text(body, IGRS_NS, "SubscriptionEnded", required=False, max_len=256) or ""
    return uint(body, "SubscriptionId"), seq, read_bool(body, "Coalesced"), ended


def _state(node: Element) -> bool:
    state = child_text(node, IGRS_NS, "State", max_len=7)
    if state not in ("online", "offline"):
        raise ProtocolError("State must be online or offline")
    return state == "online"


# --- 9.7 device online/offline event subscription ------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceEvent:
    device_id: DeviceId
    online: bool


@dataclass(frozen=True, slots=True)
class SubscribeDeviceEventRequest(_Subscribe):
    message_type: ClassVar[str] = "SubscribeDeviceEventRequest"


@dataclass(frozen=True, slots=True)
class RenewSubscriptionDeviceEventRequest(_Renew):
    message_type: ClassVar[str] = "RenewSubscriptionDeviceEventRequest"


@dataclass(frozen=True, slots=True)
class SubscribeDeviceEventResponse(_SubscribeResponse):
    message_type: ClassVar[str] = "SubscribeDeviceEventResponse"


@dataclass(frozen=True, slots=True)
class UnSubscribeDeviceEventNotify(_Unsubscribe):
    message_type: ClassVar[str] = "UnSubscribeDeviceEventNotify"


@dataclass(frozen=True, slots=True)
class NotifyDeviceEvent:
    subscription_id: int
    sequence: int
    events: tuple[DeviceEvent, ...] = ()
    coalesced: bool = False
    ended: str = ""
    message_type: ClassVar[str] = "NotifyDeviceEvent"

    def body(self) -> Element:
        root = el(self.message_type)
        _write_notify_head(root, self.subscription_id, self.sequence, self.coalesced, self.ended)
        for event in self.events:
            node = sub(root, "DeviceEvent")
            sub(node, "DeviceId", str(event.device_id))
            sub(node, "State", "online" if event.online else "offline")
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type)
        sid, seq, coalesced, ended = _read_notify_head(body)
        events = []
        for node in body.iterchildren(qname(IGRS_NS, "DeviceEvent")):
            events.append(
                DeviceEvent(
                    DeviceId.parse(child_text(node, IGRS_NS, "DeviceId", max_len=MAX_ID_LENGTH) or ""),
                    _state(node),
                )
            )
            if len(events) > EVENT_BATCH_MAX:
                raise LimitExceeded("too many events in one notification")
        return cls(sid, seq, tuple(events), coalesced, ended)


# --- 10.3 service online/offline event subscription ----------------------------------------
@dataclass(frozen=True, slots=True)
class ServiceEvent:
    service_id: int
    service_type: str
    online: bool
    name: str = ""


@dataclass(frozen=True, slots=True)
class SubscribeServiceEventRequest(_Subscribe):
    message_type: ClassVar[str] = "SubscribeServiceEventRequest"


@dataclass(frozen=True, slots=True)
class RenewSubscriptionServiceEventRequest(_Renew):
    message_type: ClassVar[str] = "RenewSubscriptionServiceEventRequest"


@dataclass(frozen=True, slots=True)
class SubscribeServiceEventResponse(_SubscribeResponse):
    message_type: ClassVar[str] = "SubscribeServiceEventResponse"


@dataclass(frozen=True, slots=True)
class UnSubscribeServiceEventNotify(_Unsubscribe):
    message_type: ClassVar[str] = "UnSubscribeServiceEventNotify"


@dataclass(frozen=True, slots=True)
class NotifyServiceEvent:
    subscription_id: int
    sequence: int
    events: tuple[ServiceEvent, ...] = ()
    coalesced: bool = False
    ended: str = ""
    message_type: ClassVar[str] = "NotifyServiceEvent"

    def body(self) -> Element:
        root = el(self.message_type)
        _write_notify_head(root, self.subscription_id, self.sequence, self.coalesced, self.ended)
        for event in self.events:
            node = sub(root, "ServiceEvent")
            sub(node, "ServiceId", str(event.service_id))
            sub(node, "ServiceType", event.service_type)
            if event.name:
                sub(node, "ServiceName", event.name)
            sub(node, "State", "online" if event.online else "offline")
        return root

    @classmethod
    def from_body(cls, body: Element) -> Self:
        expect(body, cls.message_type)
        sid, seq, coalesced, ended = _read_notify_head(body)
        events = []
        for node in body.iterchildren(qname(IGRS_NS, "ServiceEvent")):
            stype = child_text(node, IGRS_NS, "ServiceType", max_len=MAX_ID_LENGTH) or ""
            ServiceType.parse(stype)
            events.append(
                ServiceEvent(
                    uint(node, "ServiceId"),
                    stype,
                    _state(node),
                    child_text(node, IGRS_NS, "ServiceName", required=False, max_len=MAX_NAME_LENGTH) or "",
                )
            )
            if len(events) > EVENT_BATCH_MAX:
                raise LimitExceeded("too many events in one notification")
        return cls(sid, seq, tuple(events), coalesced, ended)


for _cls in (
    SubscribeDeviceEventRequest,
    RenewSubscriptionDeviceEventRequest,
    SubscribeDeviceEventResponse,
    UnSubscribeDeviceEventNotify,
    NotifyDeviceEvent,
    SubscribeServiceEventRequest,
    RenewSubscriptionServiceEventRequest,
    SubscribeServiceEventResponse,
    UnSubscribeServiceEventNotify,
    NotifyServiceEvent,
):
    register(_cls)

__all__ = [
    "DeviceEvent",
    "NotifyDeviceEvent",
    "NotifyServiceEvent",
    "RenewSubscriptionDeviceEventRequest",
    "RenewSubscriptionServiceEventRequest",
    "ServiceEvent",
    "SubscribeDeviceEventRequest",
    "SubscribeDeviceEventResponse",
    "SubscribeServiceEventRequest",
    "SubscribeServiceEventResponse",
    "UnSubscribeDeviceEventNotify",
    "UnSubscribeServiceEventNotify",
    "format_time",
    "from_timestamp",
    "parse_time",
]
