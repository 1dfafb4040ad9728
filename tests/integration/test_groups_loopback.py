"""GroupManager over real UDP multicast on loopback (unicast SOAP carried in-process).

Each manager has its own ISDP endpoints on ``lo`` (IP_MULTICAST_IF set by IsdpEndpoints;
nothing leaves through the default route) and a free port per test. ``send_request`` runs
the message through the real SOAP codec to the target manager's ``handle_request`` — the
stand-in for the pipe the Device will provide.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from igrs.core import device_groups as cg
from igrs.net import interfaces as netifaces
from igrs.net.isdp import IsdpEndpoints
from igrs.node.group_manager import GroupManager
from igrs.wire import messages
from igrs.wire.group_datagrams import GroupKind
from igrs.wire.httpu import Headers
from igrs.wire.ids import DeviceId
from igrs.wire.messages import Frame, SoapMessage


class Node:
    def __init__(self, hub: dict[DeviceId, Node], name: str, port: int, **kw: object) -> None:
        self.hub = hub
        self.device_id = DeviceId.new()
        self.ifaces = netifaces.resolve(["lo"])
        self.endpoints = IsdpEndpoints(self.ifaces, port, self._on_datagram)
        self.groups = GroupManager(self.device_id, name, execute=self.endpoints.execute,
                                   send_request=self.send_request, interfaces=self.ifaces, port=port,
                                   **kw)  # type: ignore[arg-type]
        self.events: list[cg.GroupEvent] = []
        self.reachable = True
        self._reader: asyncio.Task[None] | None = None
        hub[self.device_id] = self

    def _on_datagram(self, data: bytes, source: tuple[str, int], interface: str) -> None:
        self.groups.on_datagram(data, source, interface)

    async def send_request(self, device_id: DeviceId, message: SoapMessage) -> Frame:
        target = self.hub.get(device_id)
        if target is None or not target.reachable:
            raise ConnectionRefusedError("unreachable")
        headers, body = messages.encode(message, source=self.device_id, target=device_id, sequence_id=4)
        response = await target.groups.handle_request(messages.decode(Headers(headers), body), "127.0.0.1")
        if response is None:
            return Frame(messages.Routing("ack", device_id, self.device_id, 1), message)
        rh, rb = messages.encode(response, source=device_id, target=self.device_id, sequence_id=8)
        return messages.decode(Headers(rh), rb)

    async def start(self) -> None:
        await self.endpoints.start()
        await self.groups.start()
        self._reader = asyncio.create_task(self._collect())
        await asyncio.sleep(0)

    async def _collect(self) -> None:
        async for event in self.groups.events():
            self.events.append(event)

    async def stop(self, dissolve: bool = True) -> None:
        await self.groups.stop(dissolve=dissolve)
        if self._reader is not None:
            self._reader.cancel()
        await self.endpoints.close()

    async def wait_for(self, kind: type, timeout: float = 3.0, count: int = 1) -> list:
        async def poll() -> list:
            while True:
                found = [e for e in self.events if isinstance(e, kind)]
                if len(found) >= count:
                    return found
                await asyncio.sleep(0.02)

        return await asyncio.wait_for(poll(), timeout)


@pytest.fixture
async def nodes(free_udp_port: int) -> AsyncIterator:
    hub: dict[DeviceId, Node] = {}
    made: list[Node] = []

    async def make(name: str, **kw: object) -> Node:
        node = Node(hub, name, free_udp_port, **kw)
        await node.start()
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
    master = await nodes("TV", lease=2, max_age=2)
    slave = await nodes("Phone", lease=2, max_age=2)
    info = await master.groups.create_centralised("Kitchen")
    await slave.groups.join(info.group_id, master.device_id)
    await asyncio.sleep(1.5)  # a renewal happens in between; still joined
    assert slave.groups.groups[0].state is cg.State.JOINED
    master.reachable = False
    await master.stop(dissolve=False)  # the master vanishes without a word
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
