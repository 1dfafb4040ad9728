"""The device layer's public extension hooks (igrs.node.extensions) over loopback: what a
bridge plugged in from above sees of a Device's lifecycle, and a ControlPoint fed by a
discovery source of its own. The DNS-SD bridge uses them (tests/integration/test_dnssd_loopback.py,
and through the CLI below)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace

from igrs import ControlPoint, Device
from igrs.core.discovery import DeviceAppeared, DeviceGone, DeviceRecord
from igrs.node.extensions import DeviceExtension, DiscoverySource
from igrs.node.service import Service
from igrs.wire import messages
from igrs.wire.isdp import SearchTarget

LO = ["lo"]


class Light(Service):
    service_type = "urn:IGRS:ServiceType:Light:1"


class Recorder:
    """A device extension that notes what it is told and what it can see of the device then."""

    def __init__(self, device: Device, cp: ControlPoint) -> None:
        self.device, self.cp = device, cp
        self.calls: list[tuple[str, object]] = []

    async def start(self) -> None:
        self.calls.append(("start", (self.device.http.port > 0, self.device.location)))

    async def update(self) -> None:
        self.calls.append(("update", [s.service_type for s in self.device.services.services]))

    async def stop(self) -> None:
        # Before the byebye: the device still answers at its (current) location.
        _, frame = await self.cp.http.send(self.device.location, messages.GetDeviceDescriptionRequest(),
                                           self.device.device_id)
        assert frame is not None and isinstance(frame.message, messages.GetDeviceDescriptionResponse)
        assert frame.message.description is not None
        self.calls.append(("stop", frame.message.description.name))


async def test_a_device_extension_is_started_updated_and_stopped_at_the_lifecycle_points(
        free_udp_port: int) -> None:
    async with ControlPoint(interfaces=LO, port=free_udp_port) as cp:
        events = cp.events()
        dev = Device(name="Hooked TV", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0,
                     watch_interfaces=False)
        ext = Recorder(dev, cp)
        assert isinstance(ext, DeviceExtension)
        await dev.add_extension(ext)
        assert ext.calls == []  # not running yet
        await dev.start()
        try:
            assert ext.calls == [("start", (True, dev.location))]
            while not isinstance(ev := await asyncio.wait_for(anext(events), 2), DeviceAppeared):
                pass
            dev.add_service(Light())  # the service list changed
            for _ in range(50):
                if len(ext.calls) > 1:
                    break
                await asyncio.sleep(0.02)
            assert ext.calls[1] == ("update", [Light.service_type])
            await dev.update_interfaces(dev.interfaces)  # the addresses "changed"
            assert ext.calls[-1][0] == "update"
        finally:
            await dev.stop()
        assert ext.calls[-1] == ("stop", "Hooked TV")
        while not isinstance(ev := await asyncio.wait_for(anext(events), 2), DeviceGone):
            pass
        assert ev.reason == "byebye"
        late = Recorder(dev, cp)
        await dev.remove_extension(ext)
        assert dev.extensions == []
        await dev.add_extension(late)
        async with dev:  # started with the device, in the order added
            assert [c[0] for c in late.calls] == ["start"]
            await dev.remove_extension(late)  # stopped at once: the device runs
            assert [c[0] for c in late.calls] == ["start", "stop"]


class Directory:
    """A discovery source that knows one device from elsewhere (a directory, mDNS, ...)."""

    def __init__(self, cp: ControlPoint, record: DeviceRecord) -> None:
        self.cp, self.record = cp, record
        self.searches: list[SearchTarget] = []
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    def searching(self, target: SearchTarget) -> None:
        self.searches.append(target)
        self.cp.offer(self.record)


async def test_a_discovery_source_feeds_a_control_point_that_sends_no_isdp_search(free_udp_port: int) -> None:
    """The device speaks ISDP on another port: only the source can bring it to the control point."""
    async with Device(name="Far NAS", device_type="MediaServer", interfaces=LO, port=free_udp_port + 1,
                      http_port=0, watch_interfaces=False) as dev:
        heard = DeviceRecord(dev.device_id, dev.device_type, dev.name, dev.location, "127.0.0.1", 60,
                             0.0, 0.0, frozenset({("lo", "127.0.0.1")}))
        cp = ControlPoint(interfaces=LO, port=free_udp_port, isdp_search=False)
        source = Directory(cp, heard)
        assert isinstance(source, DiscoverySource)
        await cp.add_discovery_source(source)
        assert not source.started  # with the control point
        async with cp:
            assert source.started
            events = cp.events()
            found = await cp.search(timeout=0.2, target="MediaServer")
            assert [r.device_id for r in found] == [dev.device_id] and len(source.searches) == 1
            appeared = await asyncio.wait_for(anext(events), 2)
            assert isinstance(appeared, DeviceAppeared) and appeared.device.device_id == dev.device_id
            assert (await cp.describe("Far NAS")).device_id == dev.device_id  # the usual API on it
            cp.withdraw(dev.device_id, "127.0.0.2")  # not where it was seen: ignored
            assert cp.discovery.get(dev.device_id) is not None
            cp.withdraw(dev.device_id, "127.0.0.1", "directory")
            gone = await asyncio.wait_for(anext(events), 2)
            assert isinstance(gone, DeviceGone) and gone.reason == "directory"
            cp.offer(replace(heard, name="Far NAS (moved)"))
            assert cp.find("Far NAS (moved)").device_id == dev.device_id
        assert not source.started


def test_cli_device_announced_and_found_over_mdns_only(free_udp_port: int) -> None:
    """``igrs device run --dnssd`` and ``igrs discover --via mdns`` plug the DNS-SD bridge in
    through the hooks; ISDP ports differ, so only mDNS can bring them together."""
    igrs = [sys.executable, "-m", "igrs"]
    dev = subprocess.Popen([*igrs, "device", "run", "--dnssd", "--name", "mDNS only TV", "--type", "TV",
                            "--interface", "lo", "--port", str(free_udp_port + 1), "--http-port", "0",
                            "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert dev.stdout is not None
        ready = json.loads(dev.stdout.readline())
        found = subprocess.run([*igrs, "discover", "--via", "mdns", "--json", "--interface", "lo",
                                "--port", str(free_udp_port), "--timeout", "3"],
                               capture_output=True, text=True, timeout=30, check=False)
        assert found.returncode == 0, found.stderr
        assert ready["id"] in [d["id"] for d in json.loads(found.stdout)]
    finally:
        dev.terminate()
        dev.wait(timeout=15)
