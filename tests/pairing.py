"""Pairing a ControlPoint with a Device of the same test: find it, then type the PIN it showed.

``locate`` ends at the device's first answer (uniform within MX, 0.5 s on average with
``mx=1``) where a ``search(timeout=1.0)`` used to wait out the whole second: the tests that
pair only to use a device (file transfers, AV, services) are not about the search window.
"""

from __future__ import annotations

from collections.abc import Sequence

from igrs import ControlPoint, Device


async def pair_with(cp: ControlPoint, device: Device, pins: Sequence[str]) -> None:
    """Locate ``device`` and pair with it by the last PIN it showed (``on_pin=pins.append``)."""
    await cp.locate(device.device_id, mx=1)

    async def read_pin(_digits: int) -> str:
        return pins[-1]

    await cp.pair(device.device_id, read_pin)


class Pairings:
    """New ControlPoints on ``interfaces`` paired with ``device`` (``await pairings()``), all
    stopped by ``close()``."""

    def __init__(self, device: Device, port: int, pins: Sequence[str],
                 interfaces: Sequence[str] = ("lo",)) -> None:
        self.device, self.port, self.pins, self.interfaces = device, port, pins, list(interfaces)
        self.cps: list[ControlPoint] = []

    async def __call__(self) -> ControlPoint:
        cp = ControlPoint(interfaces=self.interfaces, port=self.port, keepalive_interval=0)
        await cp.start()
        self.cps.append(cp)
        await pair_with(cp, self.device, self.pins)
        return cp

    async def close(self) -> None:
        for cp in self.cps:
            await cp.stop()
