"""Sample media for demos, examples and tests: a PNG photo, a WAV tone and an MP4 clip made
on the spot with the standard library (and ffmpeg when it is installed; otherwise the small
clip bundled in ``igrs/demo_media``)."""

from __future__ import annotations

import array
import contextlib
import math
import shutil
import struct
import subprocess
import sys
import wave
import zlib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

Painter = Callable[[int, int, int, int], tuple[int, int, int]]


def write_png(path: Path, width: int, height: int, paint: Painter) -> Path:
    """An 8-bit RGB PNG from ``paint(x, y, width, height) -> (r, g, b)`` (zlib and struct only)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = bytearray()
    for y in range(height):
        raw.append(0)  # filter: none
        for x in range(width):
            raw += bytes(paint(x, y, width, height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(raw), 6))
        + chunk(b"IEND", b"")
    )
    return path


def holiday_photo(x: int, y: int, w: int, h: int) -> tuple[int, int, int]:
    """A sunny landscape: sky, sun, sea, hills."""
    sx, sy, r = w * 0.72, h * 0.28, h * 0.12
    horizon = h * 0.62 + math.sin(x / w * 9.0) * h * 0.05
    if (x - sx) ** 2 + (y - sy) ** 2 < r * r:
        return 255, 214, 64
    if y < h * 0.55:
        t = y / (h * 0.55)
        return int(90 + 100 * t), int(150 + 70 * t), 235
    if y < horizon:
        return 30, int(110 + 40 * math.sin(x / 7.0) ** 2), 170
    t = (y - horizon) / max(1.0, h - horizon)
    return int(60 + 40 * t), int(140 - 40 * t), 50


def night_photo(x: int, y: int, w: int, h: int) -> tuple[int, int, int]:
    """The phone's own snapshot: a night sky with a moon and a few stars."""
    if (x - w * 0.3) ** 2 + (y - h * 0.35) ** 2 < (h * 0.15) ** 2:
        return 235, 235, 210
    if (x * 7919 + y * 104729) % 997 == 0:
        return 255, 255, 255
    if y > h * 0.8:
        return 20, 30, 20
    return 10, 14, int(40 + 50 * y / h)


def write_tone(path: Path, seconds: float = 2.0, frequency: float = 440.0, rate: int = 22050) -> Path:
    """A mono 16-bit WAV sine tone with a short fade in and out (the ``wave`` module only)."""
    n = int(seconds * rate)
    fade = rate // 50
    samples = array.array(
        "h",
        (
            int(12000 * min(1.0, i / fade, (n - i) / fade) * math.sin(2 * math.pi * frequency * i / rate))
            for i in range(n)
        ),
    )
    if sys.byteorder == "big":
        samples.byteswap()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def bundled_clip() -> Path:
    """The small sample video shipped in the package (``igrs/demo_media/clip.mp4``, 4 s)."""
    return Path(str(resources.files("igrs") / "demo_media" / "clip.mp4"))


def write_clip(path: Path, seconds: float = 4.0) -> str:
    """A short H.264/AAC MP4 test clip: made with ffmpeg when installed, else the bundled one.
    Returns how it was made ("ffmpeg" or "bundled sample")."""
    exe = shutil.which("ffmpeg")
    if exe is not None:
        argv = [
            exe,
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc=duration={seconds}:size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=660:duration={seconds}:sample_rate=44100",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-profile:v",
            "baseline",
            "-c:a",
            "aac",
            "-b:a",
            "48k",
            "-ac",
            "1",
            "-movflags",
            "+faststart",
            "-shortest",
            str(path),
        ]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
            if done.returncode == 0 and path.stat().st_size > 0:
                return "ffmpeg"
    shutil.copyfile(bundled_clip(), path)
    return "bundled sample"


def sample_media(folder: Path) -> dict[str, Any]:
    """Fill ``folder`` with photo.png, tone.wav and clip.mp4; returns what was made."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = write_png(folder / "photo.png", 480, 320, holiday_photo)
    tone = write_tone(folder / "tone.wav")
    clip_how = write_clip(folder / "clip.mp4")
    return {"photo": photo, "tone": tone, "clip": folder / "clip.mp4", "clip_how": clip_how}
