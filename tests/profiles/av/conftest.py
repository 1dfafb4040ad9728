"""AV profile fixtures: small sample media made with ffmpeg (never committed), a loopback PC
with a MediaServer, a TV with a MediaRenderer, and a control point paired with both."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from av_helpers import Home, have_ffmpeg
from pairing import pair_with

from igrs import ControlPoint, Device

LO = ["lo"]
FF = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
SRC = ["-f", "lavfi", "-i", "testsrc=duration=2:size=160x120:rate=25"]
TONE = ["-f", "lavfi", "-i", "sine=frequency=440:duration=2"]


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clip.mp4 (h264+aac), clip.ts (mpeg2+mp2), tone.mp3, still.png, still.jpg, sub/deep.ts,
    notes.txt (not media), .hidden.ts (hidden) — about 300 KB in all."""
    root = tmp_path_factory.mktemp("media")
    if not have_ffmpeg():
        (root / "notes.txt").write_text("no ffmpeg here\n")
        return root
    (root / "sub").mkdir()
    jobs = [
        [
            *SRC,
            *TONE,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(root / "clip.mp4"),
        ],
        [*SRC, *TONE, "-c:v", "mpeg2video", "-c:a", "mp2", "-shortest", "-f", "mpegts", str(root / "clip.ts")],
        [*TONE, "-c:a", "libmp3lame", str(root / "tone.mp3")],
        ["-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1", str(root / "still.png")],
        ["-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1", str(root / "still.jpg")],
        [*SRC, "-t", "1", "-c:v", "mpeg2video", "-f", "mpegts", str(root / "sub" / "deep.ts")],
    ]
    for job in jobs:
        subprocess.run([*FF, *job], check=True, timeout=60)
    shutil.copy(root / "clip.ts", root / ".hidden.ts")
    (root / "notes.txt").write_text("not media\n")
    return root


@pytest.fixture
def need_ffmpeg(require_cmd) -> None:  # type: ignore[no-untyped-def]
    require_cmd("ffmpeg")
    require_cmd("ffprobe", "ffmpeg")


@pytest.fixture
async def home(free_udp_port: int) -> AsyncIterator[Home]:
    """A PC and a TV on loopback, and a control point (the phone) paired with both."""
    pins: dict[str, list[str]] = {"pc": [], "tv": []}
    pc = Device(
        name="PC",
        device_type="PC",
        interfaces=LO,
        port=free_udp_port,
        http_port=0,
        on_pin=pins["pc"].append,
        watch_interfaces=False,
    )
    tv = Device(
        name="TV",
        device_type="TV",
        interfaces=LO,
        port=free_udp_port,
        http_port=0,
        on_pin=pins["tv"].append,
        watch_interfaces=False,
    )
    cp = ControlPoint(interfaces=LO, port=free_udp_port, keepalive_interval=0)
    await pc.start()
    await tv.start()
    await cp.start()
    try:
        for dev, key in ((pc, "pc"), (tv, "tv")):
            await pair_with(cp, dev, pins[key])
        yield Home(pc, tv, cp, pins)
    finally:
        await cp.stop()
        await tv.stop()
        await pc.stop()
