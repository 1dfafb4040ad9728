"""The resource-sharing manager end to end over loopback: a service shared by a Device,
called and watched by a paired ControlPoint through a secure pipe; refused to strangers."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pairing import pair_with

from igrs import ControlPoint, Device
from igrs.constants import IGRS_PATH, ReturnCode
from igrs.errors import IGRSError, RemoteError
from igrs.node.pipe import Pipe
from igrs.node.service import Service, action, attribute
from igrs.node.service_agent import DeviceLost
from igrs.node.service_host import PeerInfo, ServiceHost
from igrs.wire import messages
from igrs.wire.bodies import events as ev
from igrs.wire.bodies import services as sv
from igrs.wire.bodies import sessions as ss
from igrs.wire.httpu import Headers
from igrs.wire.isdp import SearchTarget
from igrs.wire.messages import Frame, SoapMessage

LO = ["lo"]
RENDERER = "urn:IGRS:ServiceType:Volume:1"


class Volume(Service):
    service_type = RENDERER
    name = "TV volume"
    level = attribute(int, 20, notifiable=True)
    muted = attribute(bool, False, notifiable=True)

    @action
    async def SetLevel(self, level: int) -> int:
        if not 0 <= level <= 100:
            raise IGRSError("level must be 0..100", return_code=ReturnCode.BAD_MESSAGE)
        self.level = level
        return self.level

    @action
    async def Add(self, a: int, b: int) -> int:
        return a + b


@pytest.fixture
async def tv(free_udp_port: int) -> AsyncIterator[tuple[Device, list[str]]]:
    pins: list[str] = []
    async with Device(name="TV", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0,
                      on_pin=pins.append, watch_interfaces=False) as dev:
        dev.add_service(Volume())
        yield dev, pins


async def paired_cp(port: int, tv: Device, pins: list[str]) -> ControlPoint:
    cp = ControlPoint(interfaces=LO, port=port, keepalive_interval=0)
    await cp.start()
    await pair_with(cp, tv, pins)
    return cp


async def test_session_invoke_and_attribute_events(tv: tuple[Device, list[str]], free_udp_port: int) -> None:
    dev, pins = tv
    cp = await paired_cp(free_udp_port, dev, pins)
    try:
        desc = await cp.describe(dev.device_id)
        assert [s.service_type for s in desc.services] == [RENDERER]
        async with cp.session(dev.device_id, RENDERER) as svc:
            assert await svc.Add(a=2, b=40) == 42
            async with svc.subscribe("level") as changes:
                stream = changes.__aiter__()
                first = await asyncio.wait_for(stream.__anext__(), 5)
                assert (first.name, first.value) == ("level", 20)  # the initial value
                assert await svc.SetLevel(level=55) == 55
                change = await asyncio.wait_for(stream.__anext__(), 5)
                assert (change.name, change.value) == ("level", 55)
            with pytest.raises(RemoteError) as err:
                await svc.SetLevel(level=500)
            assert err.value.return_code == ReturnCode.BAD_MESSAGE
            assert await svc.get("level") == 55
    finally:
        await cp.stop()


async def test_many_concurrent_invocations_are_not_mixed_up(tv: tuple[Device, list[str]],
                                                            free_udp_port: int) -> None:
    dev, pins = tv
    cp = await paired_cp(free_udp_port, dev, pins)
    try:
        async with cp.session(dev.device_id, RENDERER) as svc:
            results = await asyncio.gather(*(svc.Add(a=i, b=1000) for i in range(200)))
            assert results == [i + 1000 for i in range(200)]
    finally:
        await cp.stop()


async def test_an_unpaired_control_point_cannot_use_the_service(tv: tuple[Device, list[str]],
                                                               free_udp_port: int) -> None:
    dev, _ = tv
    async with ControlPoint(interfaces=LO, port=free_udp_port) as stranger:
        await stranger.locate(dev.device_id, mx=1)
        assert (await stranger.describe(dev.device_id)).name == "TV"  # the description: yes
        with pytest.raises(IGRSError):
            async with stranger.session(dev.device_id, RENDERER) as svc:  # anything else: no
                await svc.Add(a=1, b=2)


async def test_services_are_advertised_and_found_by_service_search(free_udp_port: int) -> None:
    async with (
        ControlPoint(interfaces=LO, port=free_udp_port) as cp,
        Device(name="Den TV", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0,
               watch_interfaces=False) as dev,
    ):
        sid = dev.add_service(Volume())
        await asyncio.sleep(0.3)  # the ServiceOnlineAdvertisement
        [heard] = [s for s in cp.discovery.services if s.device_id == dev.device_id]
        assert (heard.service_id, str(heard.service_type), heard.name) == (sid, RENDERER, "TV volume")
        found = await cp.search_services("Volume", timeout=1.2)
        assert [(s.device_id, s.service_id) for s in found] == [(dev.device_id, sid)]
        assert await cp.search_services("urn:IGRS:ServiceType:Volume:2", timeout=1.2) == []
        await dev.remove_service(sid)
        await asyncio.sleep(0.3)  # the ServiceOfflineAdvertisement
        assert [s for s in cp.discovery.services if s.device_id == dev.device_id] == []


async def test_device_event_subscription_reports_other_devices(tv: tuple[Device, list[str]],
                                                               free_udp_port: int) -> None:
    """9.7: the TV tells a subscriber when it hears another device come and go."""
    dev, pins = tv
    cp = await paired_cp(free_udp_port, dev, pins)
    try:
        agent = await cp.agent(dev.device_id)
        async with agent.device_events(duration=60) as events:
            stream = events.__aiter__()
            await asyncio.sleep(0.2)  # subscribed: the TV now listens to announcements
            pc = Device(name="PC", interfaces=LO, port=free_udp_port, http_port=0, watch_interfaces=False)
            await pc.start()
            try:
                seen = await asyncio.wait_for(stream.__anext__(), 5)
                while seen.device_id != pc.device_id:
                    seen = await asyncio.wait_for(stream.__anext__(), 5)
                assert seen.online is True
            finally:
                await pc.stop()
            gone = await asyncio.wait_for(stream.__anext__(), 5)
            while gone.device_id != pc.device_id:
                gone = await asyncio.wait_for(stream.__anext__(), 5)
            assert gone.online is False
    finally:
        await cp.stop()


def one_of_each(service_id: int, location: str) -> dict[str, SoapMessage]:
    """One request or notify of every message type a ServiceHost handles."""
    soon = ev.from_timestamp(time.time() + 300)
    msgs: list[SoapMessage] = [
        ev.SubscribeDeviceEventRequest(location, soon),
        ev.RenewSubscriptionDeviceEventRequest(9, location, soon), ev.UnSubscribeDeviceEventNotify(9),
        ev.SubscribeServiceEventRequest(location, soon),
        ev.RenewSubscriptionServiceEventRequest(9, location, soon), ev.UnSubscribeServiceEventNotify(9),
        sv.RegisterServiceNotify(sv.ServiceInfo(5, RENDERER, "x")), sv.UnRegisterServiceNotify(5, RENDERER),
        sv.SearchServiceRequestOnDevice(SearchTarget.all()), sv.GetServiceDescriptionRequest(service_id),
        ss.CreateSessionRequest(7, service_id, 1), ss.DestroySessionNotify(7, service_id, 1),
        ss.ApplySessionKeyRequest(7, service_id, 1, 2, b"n" * 16),
        ss.TransferSessionKeyRequest(7, service_id, 1, 3, b"k" * 40),
        ss.InvokeServiceRequest(7, service_id, 4, "SetLevel", (("level", 99),), 1),
    ]
    by_type = {m.message_type: m for m in msgs}
    assert set(by_type) == ServiceHost.HANDLED
    return by_type


def code_of_answer(frame: Frame | None) -> int | str:
    if frame is None:
        return "accepted"
    status = getattr(frame.message, "status", None)
    return int(status.return_code) if status is not None else "?"


async def test_one_access_rule_a_device_and_a_service_host_alone_answer_alike(
        tv: tuple[Device, list[str]], free_udp_port: int) -> None:
    """specs/pipes.md §1, one table (igrs.core.access): every service message sent unsealed is
    refused 401 by the Device and by a ServiceHost on its own; sealed, both answer the same."""
    dev, pins = tv
    sid = dev.services.services[0].service_id
    host = ServiceHost()
    host.add(Volume(), sid)
    cp = await paired_cp(free_udp_port, dev, pins)

    async def alone(message: SoapMessage, secure: bool) -> int | str:
        headers, body = messages.encode(message, source=cp.device_id, target=dev.device_id, sequence_id=1)
        frame = messages.decode(Headers(headers), body)
        try:
            reply = await host.handle(frame, PeerInfo(cp.device_id, "127.0.0.1", secure=secure))
        except IGRSError as exc:
            return int(exc.return_code)
        if reply is None:
            return "accepted"
        headers, body = messages.encode(reply, source=dev.device_id, target=cp.device_id, sequence_id=1)
        return code_of_answer(messages.decode(Headers(headers), body))

    async def via_device(message: SoapMessage, pipe: Pipe | None) -> int | str:
        try:
            _, frame = await (pipe.exchange(message) if pipe is not None
                              else cp.http.send(dev.location, message, dev.device_id))
        except IGRSError as exc:
            return f"raised {exc.return_code}"
        return code_of_answer(frame)

    try:
        asks = one_of_each(sid, f"http://127.0.0.1:9{IGRS_PATH}")
        unsealed = {name: (await alone(m, False), await via_device(m, None)) for name, m in asks.items()}
        assert unsealed == dict.fromkeys(asks, (401, 401)), unsealed
        pipe = await cp.open_pipe(dev.device_id)
        # Sealed: what changes no state (search, description, invoking in no session).
        for name in ("SearchServiceRequestOnDevice", "GetServiceDescriptionRequest", "InvokeServiceRequest"):
            assert await alone(asks[name], True) == await via_device(asks[name], pipe), name
        missing = sv.GetServiceDescriptionRequest(sid + 1)
        assert await alone(missing, True) == await via_device(missing, pipe) == 404
    finally:
        await cp.stop()


async def test_a_subscription_ends_with_device_lost_on_the_device_s_byebye(free_udp_port: int) -> None:
    pins: list[str] = []
    dev = Device(name="Porch TV", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0,
                 on_pin=pins.append, watch_interfaces=False)
    dev.add_service(Volume())
    await dev.start()
    cp = await paired_cp(free_udp_port, dev, pins)  # keep-alive off: only the byebye can tell
    try:
        async with cp.session(dev.device_id, RENDERER) as svc, svc.subscribe("level") as changes:
            assert (await asyncio.wait_for(anext(changes), 5)).value == 20
            await dev.stop()
            with pytest.raises(DeviceLost) as lost:
                await asyncio.wait_for(anext(changes), 5)
            assert "'Porch TV' is gone: it said goodbye" in lost.value.reason
            with pytest.raises(DeviceLost):  # and stays ended
                await anext(changes)
    finally:
        await cp.stop()
        await dev.stop()


async def test_a_subscription_ends_with_device_lost_when_the_device_process_dies(
        free_udp_port: int, tmp_path: Path) -> None:
    """kill -9: no byebye; the pipe's keep-alive (KEEPALIVE_MISSES x keepalive_interval) tells."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "igrs", "device", "run", "--name", "Shed TV", "--type", "TV", "--interface", "lo",
        "--port", str(free_udp_port), "--http-port", "0", "--json", "--sample-service",
        "--state-dir", str(tmp_path / "tv"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        async with ControlPoint(interfaces=LO, port=free_udp_port, keepalive_interval=0.3) as cp:
            await cp.locate(ready["id"], mx=1)

            async def shown_pin(_digits: int) -> str:
                return str(json.loads(await proc.stdout.readline())["pin"])  # type: ignore[union-attr]

            await cp.pair(ready["id"], shown_pin)
            async with cp.session(ready["id"], RENDERER) as svc, svc.subscribe("level") as changes:
                assert (await asyncio.wait_for(anext(changes), 5)).value == 20
                proc.kill()
                await proc.wait()
                with pytest.raises(DeviceLost) as lost:
                    await asyncio.wait_for(anext(changes), 3 * 0.3 + 5)
                assert "'Shed TV' is gone: the device stopped answering (keep-alive)" in lost.value.reason
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
