"""Device groups of ``igrs.Device(groups=True)`` over real sockets on loopback: group
datagrams on each device's own ISDP endpoints (``lo``, IP_MULTICAST_IF set by IsdpEndpoints;
nothing leaves through the default route), joins and quits in real secure pipes between
devices paired with the PIN extension. A free ISDP port per test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from igrs.core import device_groups as cg
from igrs.node.device import Device
from igrs.node.group_manager import GroupManager
from igrs.wire.bodies.groups import QuitCentralisedDeviceGroupNotify
from igrs.wire.group_datagrams import GroupKind
from igrs.wire.ids import DeviceId
from igrs.wire.messages import ErrorResponse

GROUP_OPTIONS = {"policy": "group_policy", "lease": "group_lease"}


class Node:
    """One ``Device(groups=True)`` on ``lo`` and the group events it published."""

    def __init__(self, name: str, port: int, **kw: Any) -> None:
        options = {GROUP_OPTIONS.get(k, k): v for k, v in kw.items()}
        self.pins: asyncio.Queue[str] = asyncio.Queue()
        self.device = Device(name=name, interfaces=["lo"], port=port, http_port=0, watch_interfaces=False,
                             groups=True, on_pin=self.pins.put_nowait, **options)
        self.events: list[cg.GroupEvent] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def groups(self) -> GroupManager:
        return self.device.groups

    @property
    def device_id(self) -> DeviceId:
        return self.device.device_id

    async def start(self) -> None:
        await self.device.start()
        self._reader = asyncio.create_task(self._collect())
        await asyncio.sleep(0)

    async def _collect(self) -> None:
        async for event in self.groups.events():
            self.events.append(event)

    async def pair_with(self, other: Node) -> None:
        """The PIN pairing extension, from this device to ``other`` (which shows the PIN)."""

        async def typed(_digits: int) -> str:
            return await asyncio.wait_for(other.pins.get(), 5)

        await self.device.pair(other.device_id, typed)

    async def stop(self, dissolve: bool = True) -> None:
        if self.device.has_groups and self.groups._started:
            await self.groups.stop(dissolve=dissolve)
        if self._reader is not None:
            self._reader.cancel()
        await self.device.stop()

    async def vanish(self) -> None:
        """Fall silent without a word: no quit, no byebye (sockets closed, timers stopped)."""
        await self.groups.stop(dissolve=False)
        await self.device._driver.stop()
        await self.device._close_io()

    async def wait_for(self, kind: type, timeout: float = 3.0, count: int = 1) -> list:
        async def poll() -> list:
            while True:
                found = [e for e in self.events if isinstance(e, kind)]
                if len(found) >= count:
                    return found
                await asyncio.sleep(0.02)

        return await asyncio.wait_for(poll(), timeout)


@pytest.fixture
async def nodes(free_udp_port: int) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    """``await nodes(name, **group options)``: a started device, paired with each one made before."""
    made: list[Node] = []

    async def make(name: str, **kw: Any) -> Node:
        node = Node(name, free_udp_port, **kw)
        await node.start()
        for other in made:
            await node.pair_with(other)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.stop()


async def test_peer_group_over_multicast(nodes) -> None:  # type: ignore[no-untyped-def]
    a, b = await nodes("A"), await nodes("B")
    info = await a.groups.create_peer("Den")
    appeared = await b.wait_for(cg.GroupAppeared)  # b heard a's advertisement
    assert appeared[0].group.group_id == info.group_id and appeared[0].group.name == "Den"
    await b.groups.join_peer(info.group_id)
    joined = await a.wait_for(cg.MemberJoined)
    assert joined[0].device_id == b.device_id
    assert b.groups.joined_groups()[0].name == "Den"
    await b.groups.leave(info.group_id)
    left = await a.wait_for(cg.MemberLeft)
    assert (left[0].device_id, left[0].reason) == (b.device_id, "quit")


async def test_centralised_join_search_and_dissolve(nodes) -> None:  # type: ignore[no-untyped-def]
    master, slave, searcher = await nodes("TV"), await nodes("Phone"), await nodes("Tablet")
    info = await master.groups.create_centralised("Living room")
    found = await searcher.groups.search(timeout=1.2, target=None, mx=1)
    assert [(g.group_id, g.kind, g.master) for g in found] == [
        (info.group_id, GroupKind.CENTRALISED, master.device_id)]
    joined = await slave.groups.join(info.group_id, master.device_id)
    assert joined.state is cg.State.JOINED and joined.name == "Living room"
    assert master.groups.groups[0].members == (slave.device_id,)
    await master.groups.dissolve(info.group_id)
    dissolved = await slave.wait_for(cg.GroupDissolved)
    assert dissolved[0].reason == "dissolved"
    gone = await searcher.wait_for(cg.GroupGone)
    assert gone[0].reason == "dissolved"


async def test_join_refused_by_async_policy(nodes) -> None:  # type: ignore[no-untyped-def]
    async def policy(ctx: cg.JoinContext) -> bool:
        await asyncio.sleep(0.01)
        return ctx.device_name == "friend"

    master = await nodes("TV", policy=policy)
    stranger, friend = await nodes("stranger"), await nodes("friend")
    info = await master.groups.create_centralised("Private")
    with pytest.raises(Exception) as err:
        await stranger.groups.join(info.group_id, master.device_id)
    assert getattr(err.value, "return_code", None) == 403
    assert (await friend.groups.join(info.group_id, master.device_id)).state is cg.State.JOINED


async def test_master_loss_detected_by_lease(nodes) -> None:  # type: ignore[no-untyped-def]
    # Device max-age stays long: the slave's registry keeps the master, only the lease speaks.
    master = await nodes("TV", lease=2)
    slave = await nodes("Phone", lease=2)
    info = await master.groups.create_centralised("Kitchen")
    await slave.groups.join(info.group_id, master.device_id)
    await asyncio.sleep(1.5)  # a renewal happens in between; still joined
    assert slave.groups.groups[0].state is cg.State.JOINED
    await master.vanish()  # the master vanishes without a word
    lost = await slave.wait_for(cg.MasterLost, timeout=4.0)
    assert lost[0].master == master.device_id and lost[0].reason == "silent"
    assert slave.groups.joined_groups() == []


async def test_group_events_published_before_the_first_read_are_kept(nodes) -> None:  # type: ignore[no-untyped-def]
    """events() subscribes at the call, as ControlPoint.events() does (specs/events.md §9)."""
    a, b = await nodes("A"), await nodes("B")
    reader = b.groups.events()  # not read yet
    info = await a.groups.create_peer("Hall")
    await b.wait_for(cg.GroupAppeared)  # published to b's readers meanwhile
    first = await asyncio.wait_for(anext(reader), 2.0)
    assert isinstance(first, cg.GroupAppeared) and first.group.group_id == info.group_id
    await reader.aclose()


async def test_master_device_reaches_its_slaves_with_unicast_notifies(nodes) -> None:  # type: ignore[no-untyped-def]
    """A removal has no multicast: only the master's QuitCentralisedDeviceGroupNotify, in a
    pipe the master's Device opens to the slave, tells the slave (groups.md §5.3, §8)."""
    master, a, b = await nodes("TV"), await nodes("Phone"), await nodes("Tablet")
    info = await master.groups.create_centralised("Living room")
    await a.groups.join(info.group_id, master.device_id)
    await b.groups.join(info.group_id, master.device_id)
    await master.groups.remove_member(info.group_id, a.device_id)
    removed = await a.wait_for(cg.GroupDissolved)
    assert (removed[0].group_id, removed[0].reason) == (info.group_id, "removed")
    assert a.groups.joined_groups() == [] and a.device.description.groups == ()
    assert [(e.device_id, e.reason) for e in master.events if isinstance(e, cg.MemberLeft)] == [
        (a.device_id, "removed")]
    assert b.groups.groups[0].state is cg.State.JOINED  # the other slave stays
    # leaving, by the slave: the master drops it; a second quit is answered 404 (nothing left)
    await b.groups.leave(info.group_id)
    left = await master.wait_for(cg.MemberLeft, count=2)
    assert (left[1].device_id, left[1].reason) == (b.device_id, "quit")
    pipe = await b.device.pipe_to(master.device_id)
    _, frame = await pipe.exchange(QuitCentralisedDeviceGroupNotify(info.group_id))
    assert frame is not None and isinstance(frame.message, ErrorResponse)
    assert frame.message.status.return_code == 404
