#!/usr/bin/env python3
"""The PC of the IGRS demo as its own process: shares a media folder (AV media server),
records streams into its Recordings sub-folder (media recorder), and takes files into an
inbox (File profile share "inbox", read-write for paired devices).

    python examples/pc.py --interface eth0 --media ~/Videos
    python examples/pc.py --interface lo --port 3999          # sample media, generated

stdout, one JSON object a line: {"event": "ready", "role": "pc", "id", "name", "location",
"media", "inbox"}; {"event": "pin", "role": "pc", "id", "name", "pin"} when a phone asks to
pair; {"event": "stopped"} on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from _example import emit, info, parser, until_signal

from igrs.apps.demo import setup_pc
from igrs.apps.sample_media import sample_media
from igrs.node.device import Device
from igrs.node.pin_text import pin_shown


async def main() -> int:
    p = parser(__doc__.split("\n\n")[0], "Study PC")
    p.add_argument(
        "--media", type=Path, help="folder to share (default: sample media generated into a temporary folder)"
    )
    p.add_argument("--inbox", type=Path, help="folder receiving files (default: a temporary folder)")
    args = p.parse_args()
    device: Device

    def show_pin(pin: str) -> None:
        info(f"*** {pin_shown(args.name, pin, 'type it into the phone')} ***")
        emit("pin", role="pc", id=str(device.device_id), name=args.name, pin=pin)

    with tempfile.TemporaryDirectory(prefix="igrs-pc-") as tmp:
        media = args.media
        if media is None:
            media = Path(tmp) / "media"
            made = sample_media(media)
            info(f"sample media in {media}: photo.png, tone.wav, clip.mp4 ({made['clip_how']})")
        inbox = args.inbox or Path(tmp) / "inbox"
        device = Device(
            name=args.name,
            device_type="PC",
            interfaces=args.interface,
            port=args.port,
            http_port=0,
            state_dir=args.state_dir,
            on_pin=show_pin,
            model_name="igrs example PC",
        )
        async with device:
            pc = await setup_pc(device, media, inbox)
            try:
                emit(
                    "ready",
                    role="pc",
                    id=str(device.device_id),
                    name=args.name,
                    location=device.location,
                    media=str(media),
                    inbox=str(inbox),
                )
                info(f"{args.name} is up as {device.device_id} at {device.location}")
                info(f"sharing {media} (and Recordings/ in it); inbox {inbox}   (Ctrl-C to stop)")
                await until_signal()
            finally:
                await pc.aclose()
    emit("stopped", role="pc")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
