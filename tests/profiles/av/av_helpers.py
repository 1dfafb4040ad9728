"""Helpers of the AV profile tests: ffprobe/ffmpeg checks (real decoders) and the Home record."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from igrs import ControlPoint, Device


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def ffprobe(target: str, *entries: str) -> dict[str, str]:
    """``ffprobe -show_entries format=…:stream=…`` as a flat dict (real decoder)."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            ":".join(entries) or "format=format_name",
            "-of",
            "default=noprint_wrappers=1",
            target,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    result: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        result.setdefault(key, value)
        if key == "codec_type":
            result[f"has_{value}"] = "1"
    return result


def decode_ok(target: str, *extra: str) -> bool:
    """Decode every frame with ffmpeg; True if it reports no error."""
    cp = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", *extra, "-i", target, "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return cp.returncode == 0 and not cp.stderr.strip()


def video_frames(target: str) -> int:
    """Video frames ffprobe decodes (-count_frames) in ``target``."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "default=nw=1:nk=1",
            target,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    return int(out[0]) if out and out[0].isdigit() else 0


@dataclass
class Home:
    pc: Device
    tv: Device
    cp: ControlPoint
    pins: dict[str, list[str]]
