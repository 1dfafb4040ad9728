"""IGRS over DNS-SD (specs/dnssd.md) on loopback: a Device announced with zeroconf is found,
resolved and validated by the browser, reaches a ControlPoint that cannot hear its ISDP, and
its goodbye is seen. Hostile TXT records are refused.

Root namespace: every zeroconf instance gets ``interfaces=["127.0.0.1"]`` only (TESTBED.md
hard rule 1). mDNS port 5353 is shared with anything else on ``lo``, so every check filters
by this test's own device ids and instance names.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

pytest.importorskip("zeroconf")

from zeroconf import ServiceInfo
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from igrs import ControlPoint, Device
from igrs.bridges import dnssd
from igrs.constants import DESCRIPTION_PATH, IGRS_VERSION
from igrs.core.discovery import DeviceAppeared, DeviceGone
from igrs.net import interfaces as netifaces
from igrs.wire.ids import DeviceId, DeviceType

LO = ["lo"]
LOOPBACK_ONLY = ["127.0.0.1"]


class Collector:
    """Reads an event stream in the background from now on; ``wait`` for a matching event."""

    def __init__(self, events) -> None:  # type: ignore[no-untyped-def]
        self.seen: list = []  # type: ignore[type-arg]
        self._changed = asyncio.Event()
        self._task = asyncio.ensure_future(self._read(events))

    async def _read(self, events) -> None:  # type: ignore[no-untyped-def]
        async for ev in events:
            self.seen.append(ev)
            self._changed.set()

    async def wait(self, predicate, timeout: float):  # type: ignore[no-untyped-def]
        async def first():  # type: ignore[no-untyped-def]
            while True:
                match = next((ev for ev in self.seen if predicate(ev)), None)
                if match is not None:
                    return match
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(first(), timeout)
        except TimeoutError:
            raise AssertionError(f"no matching event within {timeout}s; seen {self.seen}") from None

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def appeared(device_id: DeviceId):  # type: ignore[no-untyped-def]
    return lambda e: isinstance(e, DeviceAppeared) and e.device.device_id == device_id


def gone(device_id: DeviceId):  # type: ignore[no-untyped-def]
    return lambda e: isinstance(e, DeviceGone) and e.device.device_id == device_id


def txt(**props: str) -> bytes:
    out = b""
    for key, value in props.items():
        entry = f"{key}={value}".encode()
        out += bytes([len(entry)]) + entry
    return out


# --- pure checks of the TXT rules ---------------------------------------------------------------
def test_txt_round_trip_and_limits() -> None:
    dev_id = DeviceId.new()
    props = dnssd.txt_properties(dev_id, DeviceType("TV"), "Salon TV " + "é" * 119)  # 128 chars
    assert list(props) == ["txtvers", "id", "type", "name", "version", "desc"]
    raw = txt(**props)
    info = dnssd.validate_txt(raw)
    assert info.device_id == dev_id and info.device_type == DeviceType("TV")
    assert info.version == IGRS_VERSION and info.desc == DESCRIPTION_PATH
    assert len(("name=" + props["name"]).encode()) <= 255  # cut to fit one TXT string
    # Keys are case-insensitive, the first occurrence wins, "1.0" is accepted for version.
    alt = txt(ID=str(dev_id), type="TV", version="1.0") + txt(id="urn:IGRS:Device:DeviceId:bogus")
    assert dnssd.validate_txt(alt).device_id == dev_id


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (txt(type="TV", version="IGRS/1.0"), "missing_id"),
        (txt(id="urn:IGRS:Device:DeviceId:not-a-uuid", type="TV", version="IGRS/1.0"), "bad_id"),
        (txt(id="x" * 240, type="TV", version="IGRS/1.0"), "bad_id"),
        (txt(id=str(DeviceId.new()), type="urn:IGRS:DeviceType:T V:1", version="1.0"), "bad_type"),
        (txt(id=str(DeviceId.new()), type="TV", version="IGRS/2.0"), "bad_version"),
        (txt(id=str(DeviceId.new()), type="TV", version="1.0", txtvers="2"), "bad_txtvers"),
        (txt(id=str(DeviceId.new()), type="TV", version="1.0", desc="/IGRS/../../etc/passwd"), "bad_desc"),
        (txt(id=str(DeviceId.new()), type="TV", version="1.0", desc="http://evil/x"), "bad_desc"),
        (txt(id=str(DeviceId.new()), type="TV", version="1.0", name=" padded"), "bad_name"),
        (txt(id=str(DeviceId.new()), type="TV", version="1.0") + b"\x09id=\xff", "txt_truncated"),
        (b"\x0aname=\xff\xfe\xfd\xfc\xfb", "txt_encoding"),
        (b"\x03a=1" * 33, "txt_too_many_entries"),
        (b"\xff" + b"k" * 255 + b"\x00" * 1100, "txt_too_long"),
        (b"\x04\x01=ab", "txt_bad_key"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_txt_refused(raw: bytes, key: str) -> None:
    with pytest.raises(dnssd.DnsSdError) as err:
        dnssd.validate_txt(raw)
    assert err.value.key == key


def test_address_must_be_on_link() -> None:
    lo = netifaces.resolve(LO)
    assert dnssd.pick_address(["10.77.9.9", "127.0.0.1"], lo) == ("127.0.0.1", lo[0].name)
    for bad in (["10.77.9.9"], ["224.0.0.251"], ["0.0.0.0"], ["nonsense"], []):
        with pytest.raises(dnssd.DnsSdError) as err:
            dnssd.pick_address(bad, lo)
        assert err.value.key == "off_link_address"


def test_zeroconf_gets_explicit_addresses_only() -> None:
    assert dnssd.zeroconf_interfaces(netifaces.resolve(LO)) == LOOPBACK_ONLY


# --- over the wire ------------------------------------------------------------------------------
async def test_advertised_device_found_with_txt_and_removal(free_udp_port: int) -> None:
    name = f"DNS-SD TV {uuid.uuid4().hex[:6]}"
    async with (
        Device(name=name, device_type="TV", interfaces=LO, port=free_udp_port, http_port=0) as dev,
        dnssd.DnsSdBrowser(netifaces.resolve(LO)) as browser,
    ):
        events = Collector(browser.events())
        adv = await dnssd.attach_dnssd(dev)
        try:
            assert adv.registered and adv.service_name == f"{name}.{dnssd.SERVICE_TYPE}"
            rec = (await events.wait(appeared(dev.device_id), timeout=8.0)).device
            assert rec.name == name and rec.device_type == DeviceType("TV")
            assert rec.address == "127.0.0.1" and rec.location == dev.location
            assert rec.location == f"http://127.0.0.1:{dev.http.port}/IGRS"
            assert rec.interfaces == ["lo"]

            # The TXT record as any DNS-SD client sees it.
            async with AsyncZeroconf(interfaces=LOOPBACK_ONLY) as aiozc:
                info = AsyncServiceInfo(dnssd.SERVICE_TYPE, adv.service_name)
                assert await info.async_request(aiozc.zeroconf, 3000)
                assert info.port == dev.http.port
                assert info.parsed_addresses() == ["127.0.0.1"]
                assert info.server == f"igrs-{dev.device_id.uuid}.local."
                assert info.decoded_properties == {
                    "txtvers": "1", "id": str(dev.device_id), "type": "urn:IGRS:DeviceType:TV:1",
                    "name": name, "version": IGRS_VERSION, "desc": DESCRIPTION_PATH,
                }
        finally:
            await adv.stop()
        try:
            ev = await events.wait(gone(dev.device_id), timeout=5.0)
            assert ev.reason == "byebye"
            assert all(r.device_id != dev.device_id for r in browser.devices)
        finally:
            await events.close()


async def test_control_point_finds_describes_via_mdns_when_isdp_is_filtered(free_udp_port: int) -> None:
    """The device speaks ISDP on another UDP port than the control point listens on: only the
    DNS-SD announcement can bring them together; describe then works on the mDNS record."""
    name = f"Hidden NAS {uuid.uuid4().hex[:6]}"
    async with ControlPoint(interfaces=LO, port=free_udp_port) as cp:
        feed = await dnssd.attach_dnssd(cp)
        events = Collector(cp.events())
        try:
            async with Device(name=name, device_type="MediaServer", interfaces=LO,
                              port=free_udp_port + 1, http_port=0) as dev:
                adv = await dnssd.attach_dnssd(dev)
                try:
                    rec = (await events.wait(appeared(dev.device_id), timeout=8.0)).device
                    assert rec.location == dev.location
                    assert cp.find(name).device_id == dev.device_id
                    desc = await cp.describe(dev.device_id)
                    assert desc.device_id == dev.device_id and desc.name == name
                    # A later search still lists it: the feed refreshes live mDNS records.
                    await asyncio.sleep(0.1)
                    started = asyncio.get_running_loop().time()
                    feed.refresh()
                    assert cp.find(dev.device_id).last_seen >= started
                finally:
                    await adv.stop()
                ev = await events.wait(gone(dev.device_id), timeout=5.0)
                assert ev.device.name == name
                assert cp.discovery.get(dev.device_id) is None
        finally:
            await events.close()
            await feed.stop()


async def test_hostile_services_are_refused() -> None:
    """Instances with a bad TXT record or an off-link address never become devices."""
    tag = uuid.uuid4().hex[:8]
    good_id = DeviceId.new()
    base = {"type": "TV", "version": "IGRS/1.0"}
    cases = {
        "good": (txt(id=str(good_id), **base), "127.0.0.1"),
        "bad_id": (txt(id="urn:IGRS:Device:DeviceId:1234", **base), "127.0.0.1"),
        "missing_id": (txt(**base), "127.0.0.1"),
        "bad_version": (txt(id=str(DeviceId.new()), type="TV", version="IGRS/9.0"), "127.0.0.1"),
        "off_link_address": (txt(id=str(DeviceId.new()), **base), "10.77.250.1"),
    }
    infos = [
        ServiceInfo(dnssd.SERVICE_TYPE, f"hostile-{key}-{tag}.{dnssd.SERVICE_TYPE}", port=4000,
                    properties=raw, server=f"hostile-{key}-{tag}.local.", parsed_addresses=[addr])
        for key, (raw, addr) in cases.items()
    ]
    async with (
        AsyncZeroconf(interfaces=LOOPBACK_ONLY) as publisher,
        dnssd.DnsSdBrowser(netifaces.resolve(LO)) as browser,
    ):
        events = Collector(browser.events())
        try:
            await asyncio.wait_for(asyncio.gather(
                *[await publisher.async_register_service(i) for i in infos]), timeout=10)
            await events.wait(appeared(good_id), timeout=8.0)

            def refused() -> bool:
                return all(browser.drops.reasons[k] >= 1 for k in cases if k != "good")

            for _ in range(60):
                if refused():
                    break
                await asyncio.sleep(0.1)
            assert refused(), dict(browser.drops.reasons)
            ours = [r for r in browser.devices if r.location.endswith(":4000/IGRS")]
            assert [r.device_id for r in ours] == [good_id]
        finally:
            await events.close()
            await asyncio.wait_for(publisher.async_unregister_all_services(), timeout=5)


async def test_browse_dnssd_one_shot(free_udp_port: int) -> None:
    async with Device(name=f"One shot {uuid.uuid4().hex[:6]}", device_type="PC", interfaces=LO,
                      port=free_udp_port, http_port=0) as dev, dnssd.DnsSdAdvertiser(dev):
        found = await dnssd.browse_dnssd(LO, timeout=2.0)
    assert dev.device_id in {r.device_id for r in found}
