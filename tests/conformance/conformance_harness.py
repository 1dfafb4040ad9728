"""What the conformance tests share: a free UDP port for module-scoped fixtures (the
``free_udp_port`` fixture is per test), the PIN a device under test shows, and the folders
it shares for the AV and File profiles."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import netbed

from igrs.apps.sample_media import bundled_clip, holiday_photo, night_photo, write_png, write_tone
from igrs.profiles.file import SharedFolder

SECRET = "top secret, beside the shares"


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


@dataclass
class Home:
    """What a device under test shares: media (AV) and two folders (File), a secret beside them."""

    root: Path
    media: Path
    pub: Path
    inbox: Path
    secret: Path

    def shares(self) -> list[SharedFolder]:
        return [SharedFolder("pub", self.pub), SharedFolder("inbox", self.inbox, writable=True)]

    def outside(self) -> set[str]:
        """Names beside the shares (where a traversal would leave traces)."""
        return {p.name for p in self.root.iterdir()} - {"media", "pub", "inbox", "secret.txt"}


def make_home(root: Path) -> Home:
    media, pub, inbox = root / "media", root / "pub", root / "inbox"
    for d in (media, media / "Night", pub, pub / "sub", inbox):
        d.mkdir(parents=True)
    write_png(media / "holiday.png", 48, 32, holiday_photo)
    write_tone(media / "tone.wav", 0.3)
    shutil.copyfile(bundled_clip(), media / "clip.mp4")
    write_png(media / "Night" / "moon.png", 32, 24, night_photo)
    (pub / "hello.txt").write_text("hello from the shared folder\n")
    (pub / "sub" / "data.bin").write_bytes(bytes(range(256)) * 200)
    secret = root / "secret.txt"
    secret.write_text(SECRET)
    return Home(root, media, pub, inbox, secret)
