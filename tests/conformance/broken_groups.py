"""Reference devices for the device-group cases (``specs/conformance/cases-groups.toml``).

``GroupHostDevice`` is ``igrs.Device(groups=True)`` mastering one centralised group it creates
at start: the good reference. Each ``Broken…`` device below is that device with ONE group
rule broken, and names the case that must catch it (``CAUGHT_BY``).

Never use the broken ones outside tests and demos of the suite.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from broken_core import BrokenDevice

from igrs.constants import GROUP_LEASE, ReturnCode
from igrs.core.device_groups import GroupInfo
from igrs.errors import ProtocolError
from igrs.net.http import Reply
from igrs.node.device import Device, RequestContext
from igrs.wire import group_datagrams as wg
from igrs.wire.bodies.groups import (
    JoinCentralisedDeviceGroupRequest,
    JoinCentralisedDeviceGroupResponse,
    QuitCentralisedDeviceGroupNotify,
)
from igrs.wire.messages import Frame, Status


class GroupHostDevice(Device):
    """``igrs.Device(groups=True)``; masters the centralised group ``group_name`` (none if
    ``None``) from its start until its stop (the stop dissolves it)."""

    def __init__(self, *args: Any, group_name: str | None = "Conformance group", lease: int = GROUP_LEASE,
                 **kwargs: Any) -> None:
        super().__init__(*args, groups=True, group_lease=lease, **kwargs)
        self.group_name = group_name
        self.master_group: GroupInfo | None = None

    async def start(self) -> None:
        await super().start()
        if self.group_name is not None:
            self.master_group = await self.groups.create_centralised(self.group_name)


class BrokenGroupDevice(GroupHostDevice, BrokenDevice):
    """A ``GroupHostDevice`` with one group rule broken."""

    RULE: ClassVar[str] = ""
    CAUGHT_BY: ClassVar[tuple[str, ...]] = ()


def _join_answer(frame: Frame, code: int, reason: str = "", lease: int = 0) -> Reply:
    assert isinstance(frame.message, JoinCentralisedDeviceGroupRequest)
    return JoinCentralisedDeviceGroupResponse(Status(frame.routing.sequence_id, code, reason),
                                              frame.message.group_id, "", lease)


class GroupSearchIgnoredDevice(BrokenGroupDevice):
    """Masters a group, advertises it, but never answers a SearchDeviceGroupRequest."""

    RULE = "a device answers group searches for the groups it advertises (groups.md §5.5)"
    CAUGHT_BY = ("GRP-001",)

    def _on_datagram(self, data: bytes, source: tuple[str, int], interface: str) -> None:
        if data.startswith(b"M-SEARCH") and wg.is_group_datagram(data):
            return
        super()._on_datagram(data, source, interface)


class UnknownGroupJoinAcceptedDevice(BrokenGroupDevice):
    """Admits a join to a group it does not master: 200 instead of 404."""

    RULE = "a join for a group this device does not master is answered 404 (groups.md §4)"
    CAUGHT_BY = ("GRP-004",)

    async def _on_group_request(self, frame: Frame, ctx: RequestContext) -> Reply:
        msg = frame.message
        if isinstance(msg, JoinCentralisedDeviceGroupRequest) and self.groups.core.get(msg.group_id) is None:
            return _join_answer(frame, ReturnCode.SUCCESS, lease=int(self.groups.core.lease))
        return await super()._on_group_request(frame, ctx)


class RejoinConflictDevice(BrokenGroupDevice):
    """Answers a member's renewal (a second join) with 409 instead of 200."""

    RULE = "a join from a member is its lease renewal: 200, not 409 (groups.md §4)"
    CAUGHT_BY = ("GRP-005",)

    async def _on_group_request(self, frame: Frame, ctx: RequestContext) -> Reply:
        msg = frame.message
        if isinstance(msg, JoinCentralisedDeviceGroupRequest):
            info = self.groups.core.get(msg.group_id)
            if info is not None and frame.routing.source in info.members:
                return _join_answer(frame, ReturnCode.CONFLICT, "already a member")
        return await super()._on_group_request(frame, ctx)


class QuitIgnoredDevice(BrokenGroupDevice):
    """Acknowledges a member's QuitCentralisedDeviceGroupNotify but keeps it in the table."""

    RULE = "a quit notify removes the member from the master's table (groups.md §5.3)"
    CAUGHT_BY = ("GRP-006",)

    async def _on_group_request(self, frame: Frame, ctx: RequestContext) -> Reply:
        if isinstance(frame.message, QuitCentralisedDeviceGroupNotify):
            return None
        return await super()._on_group_request(frame, ctx)


class SpoofedQuitAppliedDevice(BrokenGroupDevice):
    """Dissolves a group it masters on any QuitCentralisedDeviceGroupAdvertisement naming it,
    whoever sent it (a spoofed quit breaks the group up)."""

    RULE = "a master ignores quit advertisements for its group it did not send (groups.md §5.3)"
    CAUGHT_BY = ("GRP-009",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dissolving: set[asyncio.Task[None]] = set()

    def _on_datagram(self, data: bytes, source: tuple[str, int], interface: str) -> None:
        try:
            msg = wg.decode(data)
        except ProtocolError:
            msg = None
        if isinstance(msg, wg.QuitCentralisedDeviceGroupAdvertisement) and self.groups.core.get(msg.group_id):
            task = asyncio.ensure_future(self.groups.dissolve(msg.group_id))
            self._dissolving.add(task)
            task.add_done_callback(self._dissolving.discard)
            return
        super()._on_datagram(data, source, interface)


class WedgedByGroupGarbageDevice(BrokenGroupDevice):
    """Stops handling group datagrams after the first one it cannot decode."""

    RULE = "malformed group datagrams do not stop the device answering group searches"
    CAUGHT_BY = ("GRP-010",)
    wedged = False

    def _on_datagram(self, data: bytes, source: tuple[str, int], interface: str) -> None:
        if b"DeviceGroup" not in data:
            super()._on_datagram(data, source, interface)
            return
        if self.wedged:
            return
        try:
            wg.decode(data)
        except wg.NotGroupDatagram:
            pass
        except ProtocolError:
            self.wedged = True
            return
        super()._on_datagram(data, source, interface)


class GroupsUnlistedDevice(BrokenGroupDevice):
    """Masters a group but leaves joinedGroupList of its description empty."""

    RULE = "the description lists the groups the device is in (groups.md §5.7)"
    CAUGHT_BY = ("GRP-008",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group_source = None


GROUP_BROKEN_DEVICES: tuple[type[BrokenGroupDevice], ...] = (
    GroupSearchIgnoredDevice, UnknownGroupJoinAcceptedDevice, RejoinConflictDevice, QuitIgnoredDevice,
    GroupsUnlistedDevice, SpoofedQuitAppliedDevice, WedgedByGroupGarbageDevice,
)
