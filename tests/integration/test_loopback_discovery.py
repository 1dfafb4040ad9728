"""Device and ControlPoint over real UDP multicast and HTTP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from igrs import ControlPoint, Device
from igrs.constants import IPV4_GROUP, IPV4_GROUP_ALT
from igrs.core.discovery import DeviceAppeared, DeviceGone, DeviceUpdated
from igrs.wire import isdp
from igrs.wire.ids import DeviceId, DeviceType

LO = ["lo"]


async def next_event(events, kind, timeout: float = 3.0):  # type: ignore[no-untyped-def]
    async def wait():  # type: ignore[no-untyped-def]
        async for ev in events:
            if isinstance(ev, kind):
                return ev
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(wait(), timeout)


def send_raw(payload: bytes, port: int, group: str = IPV4_GROUP) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    s.sendto(payload, (group, port))
    s.close()


async def test_announce_find_describe_byebye(free_udp_port: int) -> None:
    async with ControlPoint(interfaces=LO, port=free_udp_port) as cp:
        events = cp.events()
        dev = Device(name="Living room TV", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0)
        await dev.start()
        try:
            appeared = await next_event(events, DeviceAppeared, timeout=1.0)
            assert appeared.device.device_id == dev.device_id
            assert appeared.device.name == "Living room TV"
            assert appeared.device.location == dev.location
            desc = await cp.describe(dev.device_id)
            assert desc.device_id == dev.device_id and desc.name == "Living room TV"
            assert desc.device_type == DeviceType("TV")
        finally:
            await dev.stop()
        gone = await next_event(events, DeviceGone, timeout=1.0)
        assert gone.device.device_id == dev.device_id and gone.reason == "byebye"
        assert cp.devices == []


async def test_search_finds_only_matching_targets(free_udp_port: int) -> None:
    async with (
        Device(name="TV", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0) as tv,
        Device(name="PC", device_type="PC", interfaces=LO, port=free_udp_port, http_port=0) as pc,
        ControlPoint(interfaces=LO, port=free_udp_port) as cp,
    ):
        found = await cp.search(timeout=1.2, mx=1)
        assert {r.device_id for r in found} == {tv.device_id, pc.device_id}
        only_tv = await cp.search(timeout=1.2, target="TV", mx=1)
        assert [r.device_id for r in only_tv] == [tv.device_id]
        by_id = await cp.search(timeout=1.2, target=pc.device_id, mx=1)
        assert [r.device_id for r in by_id] == [pc.device_id]
        assert await cp.search_on_device(tv.device_id, "TV") is True
        assert await cp.search_on_device(tv.device_id, "PC") is False


async def test_control_point_started_late_finds_device_by_search(free_udp_port: int) -> None:
    async with Device(name="PC", interfaces=LO, port=free_udp_port, http_port=0) as pc:
        await asyncio.sleep(0.3)  # its start-up announcements are over
        async with ControlPoint(interfaces=LO, port=free_udp_port) as cp:
            assert cp.devices == []
            found = await cp.search(timeout=1.2, mx=1)
            assert [r.device_id for r in found] == [pc.device_id]


async def test_reannounce_with_a_new_name_is_an_update(free_udp_port: int) -> None:
    async with (
        Device(name="Old", interfaces=LO, port=free_udp_port, http_port=0) as dev,
        ControlPoint(interfaces=LO, port=free_udp_port) as cp,
    ):
        events = cp.events()
        await cp.search(timeout=1.2)
        dev.discovery.name = "New"
        await dev.update_interfaces(dev.interfaces)  # re-announces at once
        updated = await next_event(events, DeviceUpdated, timeout=2.0)
        assert updated.device.name == "New" and updated.previous.name == "Old"


async def test_both_groups_heard(free_udp_port: int) -> None:
    """A device announcing on the ezbox group 239.255.255.250 is heard too."""
    async with ControlPoint(interfaces=LO, port=free_udp_port) as cp:
        events = cp.events()
        dev_id = DeviceId.new()
        msg = isdp.DeviceOnlineAdvertisement(dev_id, DeviceType("STB"), "http://127.0.0.1:9/IGRS", 60, "Box")
        send_raw(isdp.encode(msg, host=f"{IPV4_GROUP_ALT}:{free_udp_port}"), free_udp_port, IPV4_GROUP_ALT)
        appeared = await next_event(events, DeviceAppeared, timeout=1.0)
        assert appeared.device.device_id == dev_id


def alt_group_listener(port: int) -> socket.socket:
    """An ezbox-era listener: joined to 239.255.255.250 only (on loopback), bound to that group."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((IPV4_GROUP_ALT, port))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 struct.pack("4s4s", socket.inet_aton(IPV4_GROUP_ALT), socket.inet_aton("127.0.0.1")))
    s.setblocking(False)
    return s


async def heard_on(sock: socket.socket, wanted: bytes, seconds: float) -> list[bytes]:
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), deadline - loop.time())
        except TimeoutError:
            break
        if wanted in data:
            got.append(data)
    return got


@pytest.mark.parametrize("alt", [True, False], ids=["send_on_alt_group", "default"])
async def test_announcements_on_the_ezbox_group_only_when_asked(free_udp_port: int, alt: bool) -> None:
    """send_on_alt_group: every announcement (alive, service alive, byebye) also goes to
    239.255.255.250, HOST naming that group; by default that group hears nothing."""
    from igrs.apps.sample_service import Volume

    listener = alt_group_listener(free_udp_port)
    try:
        dev = Device(name="Alt", interfaces=LO, port=free_udp_port, http_port=0, watch_interfaces=False,
                     send_on_alt_group=alt)
        dev.add_service(Volume())
        async with dev:
            alive = await heard_on(listener, str(dev.device_id).encode(), 1.0)
        byebye = await heard_on(listener, b"isdp:byebye", 0.5)
    finally:
        listener.close()
    if not alt:
        assert alive == [] and byebye == []
        return
    decoded = [isdp.decode(d) for d in alive]
    assert any(isinstance(m, isdp.DeviceOnlineAdvertisement) for m in decoded)
    assert any(isinstance(m, isdp.ServiceOnlineAdvertisement) for m in decoded)
    assert all(f"HOST: {IPV4_GROUP_ALT}:{free_udp_port}".encode() in d for d in alive)
    assert any(isinstance(isdp.decode(d), isdp.DeviceOfflineAdvertisement) for d in byebye)


async def test_hostile_datagrams_are_dropped_counted_and_harmless(free_udp_port: int) -> None:
    async with (
        Device(name="TV", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0) as tv,
        ControlPoint(interfaces=LO, port=free_udp_port) as cp,
    ):
        junk = [
            b"\xff" * 100,  # not UTF-8
            b"M-SEARCH * HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",  # header flood
            b"NOTIFY * HTTP/1.1\r\nNTS: isdp:alive\r\n\r\n",  # missing headers
            b"A" * 9000,  # oversized
        ]
        for payload in junk:
            send_raw(payload, free_udp_port)
        await asyncio.sleep(0.3)
        assert tv.discovery.drops.reasons["malformed"] >= 1  # the broken M-SEARCH
        assert cp.discovery.drops.reasons["malformed"] >= 3
        # ... and the device still answers.
        found = await cp.search(timeout=1.2, mx=1)
        assert [r.device_id for r in found] == [tv.device_id]


async def test_flood_of_fake_devices_cannot_grow_the_registry(free_udp_port: int) -> None:
    async with ControlPoint(interfaces=LO, port=free_udp_port, max_devices=50) as cp:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        for _ in range(400):
            msg = isdp.DeviceOnlineAdvertisement(
                DeviceId.new(), DeviceType("TV"), "http://127.0.0.1:9/IGRS", 60
            )
            s.sendto(isdp.encode(msg, host="x"), (IPV4_GROUP, free_udp_port))
        s.close()
        await asyncio.sleep(0.5)
        # (Some datagrams may already be lost in the kernel's receive buffer.)
        assert len(cp.devices) == 50
        assert cp.discovery.drops.reasons["registry_full"] > 0


@pytest.mark.parametrize("group", [IPV4_GROUP])
def test_sockets_never_use_the_default_multicast_route(group: str) -> None:
    """Every sending socket sets IP_MULTICAST_IF (TESTBED.md hard rule 1)."""
    from igrs.core.discovery import Interface
    from igrs.net.isdp import _v4_unicast_socket

    sock = _v4_unicast_socket(Interface.from_cidr("lo", "127.0.0.1/8"))
    try:
        raw = sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)
        assert socket.inet_ntoa(struct.pack("4s", raw)) == "127.0.0.1"
    finally:
        sock.close()


async def test_control_point_sees_the_update_when_services_or_groups_change(free_udp_port: int) -> None:
    """isdp.md §8, groups.md §5.7: a changed description is re-announced with isdp:update."""
    from igrs.apps.sample_service import Volume

    async with ControlPoint(interfaces=LO, port=free_udp_port) as cp:
        async def updated_by(change: Callable[[], Awaitable[object]]) -> None:
            await asyncio.sleep(0.3)  # the copies of the previous announcement are over
            events = cp.events()  # from now on
            try:
                await change()
                updated = await next_event(events, DeviceUpdated)
                assert updated.device.device_id == tv.device_id
            finally:
                await events.aclose()  # type: ignore[attr-defined]

        async with Device(name="TV", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0,
                          groups=True) as tv:
            await cp.search(timeout=1.0, mx=1)

            async def add() -> int:
                return tv.add_service(Volume())

            await updated_by(add)
            assert [s.name for s in (await cp.describe(tv.device_id)).services] == ["Volume"]
            await updated_by(lambda: tv.groups.create_peer("Den"))
            [group] = (await cp.describe(tv.device_id)).groups
            assert group.name == "Den"
            await updated_by(lambda: tv.groups.leave(tv.groups.groups[0].group_id))
            assert (await cp.describe(tv.device_id)).groups == ()


async def test_smallest_search_is_answered_with_at_most_four_times_its_size(free_udp_port: int) -> None:
    """isdp.md §9 rule 5: a 55-byte search gets at most 220 bytes back (the base code: 542)."""
    smallest = b"M-SEARCH * HTTP/1.1\nMAN:isdp:discover\nMX:0\nST:isdp:all\n"
    async with Device(name="Living room TV", device_type="TV", interfaces=LO, port=free_udp_port,
                      http_port=0) as tv:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        try:
            await loop.sock_sendto(sock, smallest, (IPV4_GROUP, free_udp_port))
            answers: list[bytes] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    while True:
                        answers.append((await loop.sock_recvfrom(sock, 4096))[0])
        finally:
            sock.close()
    assert answers, "no answer to the smallest search"
    assert sum(map(len, answers)) <= 4 * len(smallest), [len(a) for a in answers]
    msg = isdp.decode(answers[0])
    assert isinstance(msg, isdp.SearchDeviceResponse) and msg.device_id == tv.device_id
    assert msg.location == tv.location


async def test_timer_driver_polls_only_when_a_deadline_is_due(free_udp_port: int) -> None:
    """A received datagram costs the registry's work, not a poll of every timer."""
    async with ControlPoint(interfaces=LO, port=free_udp_port) as cp:
        dev = DeviceId.new()
        msg = isdp.DeviceOnlineAdvertisement(dev, DeviceType("TV"), "http://127.0.0.7:3880/IGRS", 600, "TV")
        data = isdp.encode(msg, host="x")
        await asyncio.sleep(0.1)
        polls = cp._driver.polls
        for _ in range(150):
            cp._on_datagram(data, ("127.0.0.7", 4000), "lo")
            await asyncio.sleep(0)
        assert cp.find(dev).name == "TV"
        assert cp._driver.polls - polls <= 2, cp._driver.polls - polls
