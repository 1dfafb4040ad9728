"""``igrs demo``: a small simulated home on loopback, narrated.

A TV, a PC and a phone come up as IGRS devices; a control point (you) watches them
appear, fetches each description, and sees them say goodbye at the end. Later issues grow
this into the TV/PC sharing demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from igrs.control import ControlPoint
from igrs.core.discovery import DeviceAppeared, DeviceGone, DeviceUpdated
from igrs.device import Device
from igrs.service import Service, action, attribute


class Volume(Service):
    """A sample service: a TV's volume, to call and watch from a control point."""

    service_type = "urn:IGRS:ServiceType:Volume:1"
    name = "Volume"
    level = attribute(int, 20, notifiable=True)
    muted = attribute(bool, False, notifiable=True)

    @action
    async def SetLevel(self, level: int) -> int:
        self.level = max(0, min(100, level))
        return self.level

    @action
    async def Mute(self, muted: bool) -> bool:
        self.muted = muted
        return self.muted


HOME = (("Living room TV", "TV"), ("Study PC", "PC"), ("Alice's phone", "MobilePhone"))


def say(text: str) -> None:
    print(text, flush=True)


async def _narrate(cp: ControlPoint, seen: asyncio.Event, expected: int) -> None:
    appeared = 0
    async for ev in cp.events():
        rec = ev.device
        if isinstance(ev, DeviceAppeared):
            appeared += 1
            say(f"  + {rec.name} ({rec.device_type.name}) appeared at {rec.address} — {rec.device_id.uuid}")
            desc = await cp.describe(rec.device_id)
            say(f"      description: {desc.manufacturer} {desc.model_name}, type {desc.device_type}")
            if appeared >= expected:
                seen.set()
        elif isinstance(ev, DeviceGone):
            say(f"  - {rec.name} is gone ({ev.reason})")
        elif isinstance(ev, DeviceUpdated):
            say(f"  ~ {rec.name} updated")


async def run_demo(interfaces: Sequence[str] = ("lo",), port: int = 3880,
                   duration: float | None = None) -> int:
    say("IGRS demo: a simulated home on loopback (ISDP multicast 224.0.0.110, "
        f"UDP port {port})")
    say("1. You are a control point watching the network.")
    async with ControlPoint(interfaces=list(interfaces), port=port) as cp:
        all_seen = asyncio.Event()
        narrator = asyncio.create_task(_narrate(cp, all_seen, len(HOME)))
        say("2. The TV, the PC and the phone switch on and announce themselves:")
        devices = [Device(name=n, device_type=t, interfaces=list(interfaces), port=port, http_port=0)
                   for n, t in HOME]
        for dev in devices:
            await dev.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_seen.wait(), 5)
        say("3. A search (M-SEARCH, MX 1) finds the same devices:")
        for rec in await cp.search(timeout=1.2):
            say(f"  * {rec.name:<16} {rec.device_type.name:<12} {rec.location}")
        if duration is None:
            say("Running. In another shell: igrs discover --interface lo. Ctrl-C to stop.")
            await _wait_for_signal()
        else:
            await asyncio.sleep(duration)
        say("4. The devices switch off and say goodbye (DeviceOfflineAdvertisement):")
        for dev in devices:
            await dev.stop()
        await asyncio.sleep(0.3)
        narrator.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await narrator
    say("Demo finished.")
    return 0


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


if __name__ == "__main__":
    sys.exit(asyncio.run(run_demo(duration=3)))
