"""Typed SOAP bodies of the unicast device-group messages (clause 9.5), specs/groups.md §4.

``JoinCentralisedDeviceGroupRequest`` / ``-Response`` (a slave asks the master; also the
lease renewal) and ``QuitCentralisedDeviceGroupNotify`` (a slave leaves, or the master
removes a slave). Conventions of ``igrs.wire.messages``: root named after the message type
in the IGRS namespace, children qualified, responses start with ``Status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from igrs.constants import GROUP_MAX_MEMBERS, IGRS_NS, MAX_ID_LENGTH, MAX_MAX_AGE, MAX_NAME_LENGTH, MIN_MAX_AGE
from igrs.errors import LimitExceeded, ProtocolError
from igrs.wire.group_datagrams import GroupId, check_group_name
from igrs.wire.ids import DeviceId, is_digits
from igrs.wire.messages import Status, body_element, expect_element, register, sub_element
from igrs.wire.xml import Element, child_text, qname

_el, _sub, _expect = body_element, sub_element, expect_element


def _group_id(el: Element) -> GroupId:
    return GroupId.parse(child_text(el, IGRS_NS, "DeviceGroupId", max_len=MAX_ID_LENGTH) or "")


def _name(el: Element, local: str) -> str:
    return check_group_name(child_text(el, IGRS_NS, local, required=False, max_len=MAX_NAME_LENGTH) or "")


@register
@dataclass(frozen=True, slots=True)
class JoinCentralisedDeviceGroupRequest:
    """Slave -> master: let me join (or: renew my membership of) this group."""

    group_id: GroupId
    device_name: str = ""  # the joining device's friendly name, informative
    message_type: ClassVar[str] = "JoinCentralisedDeviceGroupRequest"

    def body(self) -> Element:
        el = _el(self.message_type)
        _sub(el, "DeviceGroupId", str(self.group_id))
        if self.device_name:
            _sub(el, "DeviceName", self.device_name[:MAX_NAME_LENGTH])
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        return cls(_group_id(el), _name(el, "DeviceName"))


@register
@dataclass(frozen=True, slots=True)
class JoinCentralisedDeviceGroupResponse:
    """Master -> slave. On success: the group's name, the lease and the current members."""

    status: Status
    group_id: GroupId
    group_name: str = ""
    lease: int = 0  # seconds; required (>= 1) when the status is 200, absent otherwise
    members: tuple[DeviceId, ...] = ()  # the slaves in the master's table (the master excluded)
    message_type: ClassVar[str] = "JoinCentralisedDeviceGroupResponse"

    def body(self) -> Element:
        el = _el(self.message_type)
        self.status.write(el)
        _sub(el, "DeviceGroupId", str(self.group_id))
        if self.group_name:
            _sub(el, "DeviceGroupName", self.group_name)
        if self.status.ok:
            _sub(el, "LeaseTime", str(self.lease))
            members = _sub(el, "MemberList")
            for member in self.members[:GROUP_MAX_MEMBERS]:
                _sub(members, "MemberDeviceId", str(member))
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        status = Status.read(el)
        group_id = _group_id(el)
        name = _name(el, "DeviceGroupName")
        lease_text = child_text(el, IGRS_NS, "LeaseTime", required=status.ok, max_len=9)
        lease = 0
        if lease_text is not None:
            if not is_digits(lease_text) or int(lease_text) == 0:
                raise ProtocolError("LeaseTime is not a positive number of seconds")
            lease = min(max(int(lease_text), MIN_MAX_AGE), MAX_MAX_AGE)
        members: list[DeviceId] = []
        member_list = el.find(qname(IGRS_NS, "MemberList"))
        if member_list is not None:
            items = member_list.findall(qname(IGRS_NS, "MemberDeviceId"))
            if len(items) > GROUP_MAX_MEMBERS:
                raise LimitExceeded(f"more than {GROUP_MAX_MEMBERS} members")
            members = [DeviceId.parse((m.text or "").strip()) for m in items]
        return cls(status, group_id, name, lease, tuple(members))


@register
@dataclass(frozen=True, slots=True)
class QuitCentralisedDeviceGroupNotify:
    """Slave -> master: I leave. Master -> slave: you are no longer a member (``dissolved``
    true: because the master dissolved the whole group)."""

    group_id: GroupId
    dissolved: bool = False
    message_type: ClassVar[str] = "QuitCentralisedDeviceGroupNotify"

    def body(self) -> Element:
        el = _el(self.message_type)
        _sub(el, "DeviceGroupId", str(self.group_id))
        if self.dissolved:
            _sub(el, "Dissolved", "true")
        return el

    @classmethod
    def from_body(cls, el: Element) -> Self:
        _expect(el, cls.message_type)
        dissolved = child_text(el, IGRS_NS, "Dissolved", required=False, max_len=5)
        if dissolved not in (None, "true", "false"):
            raise ProtocolError("Dissolved must be true or false")
        return cls(_group_id(el), dissolved == "true")


GroupSoapMessage = (
    JoinCentralisedDeviceGroupRequest | JoinCentralisedDeviceGroupResponse | QuitCentralisedDeviceGroupNotify
)

__all__ = ["GroupSoapMessage", "JoinCentralisedDeviceGroupRequest", "JoinCentralisedDeviceGroupResponse",
           "QuitCentralisedDeviceGroupNotify"]
