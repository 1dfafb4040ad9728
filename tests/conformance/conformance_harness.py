"""What the conformance tests share: a free UDP port for module-scoped fixtures (the
``free_udp_port`` fixture is per test) and the PIN a device under test shows."""

from __future__ import annotations

import asyncio

import netbed


def free_udp() -> int:
    return netbed.free_port("udp")


class PinShown:
    """``on_pin`` of a device under test, and the suite's PIN source: the PIN it showed."""

    def __init__(self) -> None:
        self.pins: asyncio.Queue[str] = asyncio.Queue()

    def __call__(self, pin: str) -> None:
        self.pins.put_nowait(pin)

    async def read(self, _digits: int) -> str:
        async with asyncio.timeout(10):
            return await self.pins.get()
