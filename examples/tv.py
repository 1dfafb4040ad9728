#!/usr/bin/env python3
"""The TV of the IGRS demo as its own process: a media renderer (virtual output), its screen
page at http://<tv>:<port>/screen/, and a live programme the PC can record.

    python examples/tv.py --interface eth0            # on a LAN
    python examples/tv.py --interface lo --port 3999  # on one machine

stdout, one JSON object a line: {"event": "ready", "role": "tv", "id", "name", "location",
"screen"}; {"event": "pin", "role": "tv", "id", "name", "pin"} when a phone asks to pair
(the PIN the TV "shows": type it into the phone); {"event": "stopped"} on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys

from _example import emit, info, parser, until_signal

from igrs.apps.demo import setup_tv
from igrs.node.device import Device
from igrs.node.pin_text import pin_shown


async def main() -> int:
    args = parser(__doc__.split("\n\n")[0], "Living room TV").parse_args()
    device: Device

    def show_pin(pin: str) -> None:
        info(f"*** {pin_shown(args.name, pin, 'type it into the phone')} ***")
        emit("pin", role="tv", id=str(device.device_id), name=args.name, pin=pin)

    device = Device(
        name=args.name,
        device_type="TV",
        interfaces=args.interface,
        port=args.port,
        http_port=0,
        state_dir=args.state_dir,
        on_pin=show_pin,
        model_name="igrs example TV",
    )
    async with device:
        tv = await setup_tv(device)
        try:
            emit(
                "ready",
                role="tv",
                id=str(device.device_id),
                name=args.name,
                location=device.location,
                screen=tv.screen.url(),
            )
            info(f"{args.name} is up as {device.device_id} at {device.location}")
            info(f"its screen: {tv.screen.url()}   (Ctrl-C to stop)")
            await until_signal()
        finally:
            await tv.aclose()
    emit("stopped", role="tv")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
