"""Media types, object classes and metadata probing (ffprobe when installed, else the file).

Metadata of one file is a :class:`MediaInfo`; ``probe_file`` never raises for a bad or
unknown file (it returns what the file system tells). specs/av-profile.md §3.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import os
import shutil
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 10.0  # s one ffprobe may take (project choice)

# project choice: explicit table first (mimetypes differs between systems), then mimetypes.
MIME_TYPES: dict[str, str] = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".ts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".mts": "video/mp2t",
    ".mpg": "video/mpeg",
    ".mpeg": "video/mpeg",
    ".avi": "video/x-msvideo",
    ".mov": "video/quicktime",
    ".ogv": "video/ogg",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".flac": "audio/flac",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".srt": "text/srt",
    ".txt": "text/plain",
}

# UPnP-AV classes (anchors §6-8: Platinum/Rygel/MiniDLNA all use them; DIDL-Lite compatible).
CLASS_CONTAINER = "object.container.storageFolder"
CLASS_VIDEO = "object.item.videoItem"
CLASS_AUDIO = "object.item.audioItem.musicTrack"
CLASS_IMAGE = "object.item.imageItem.photo"
CLASS_BROADCAST = "object.item.videoItem.videoBroadcast"
CLASS_ITEM = "object.item"


def mime_type(path: str | os.PathLike[str]) -> str:
    ext = Path(path).suffix.lower()
    return MIME_TYPES.get(ext) or mimetypes.guess_type(str(path))[0] or "application/octet-stream"


def media_class(mime: str) -> str:
    major = mime.partition("/")[0]
    return {"video": CLASS_VIDEO, "audio": CLASS_AUDIO, "image": CLASS_IMAGE}.get(major, CLASS_ITEM)


def is_media(mime: str) -> bool:
    return mime.partition("/")[0] in ("video", "audio", "image")


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a media item is: every field but ``mime``/``size`` may be unknown (None / "")."""

    mime: str
    size: int
    duration: float | None = None  # seconds
    width: int | None = None
    height: int | None = None
    bitrate: int | None = None  # bit/s
    codecs: tuple[str, ...] = ()
    container: str = ""  # ffprobe format_name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "mpegts"
    video_codec: str = ""  # ffprobe codec_name of the first video stream ("h264", "mpeg2video")
    video_profile: str = ""  # its profile ("High", "Main", "Constrained Baseline")
    fps: float | None = None
    audio_codec: str = ""  # of the first audio stream ("aac", "mp3", "mp2")
    sample_rate: int | None = None  # Hz
    channels: int | None = None

    @property
    def resolution(self) -> str | None:
        return f"{self.width}x{self.height}" if self.width and self.height else None


def ffprobe_path() -> str | None:
    return shutil.which("ffprobe")


def ffmpeg_path() -> str | None:
    return shutil.which("ffmpeg")


def _image_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG or JPEG header (no decoder needed)."""
    try:
        with path.open("rb") as f:
            head = f.read(32)
            if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return w, h
            if head[:2] != b"\xff\xd8":
                return None
            f.seek(2)
            for _ in range(256):
                marker = f.read(2)
                if len(marker) < 2 or marker[0] != 0xFF:
                    return None
                (length,) = struct.unpack(">H", f.read(2) or b"\0\0")
                if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
                    data = f.read(5)
                    h, w = struct.unpack(">HH", data[1:5])
                    return w, h
                f.seek(length - 2, os.SEEK_CUR)
    except (OSError, struct.error):
        return None
    return None


def file_info(path: Path, size: int | None = None) -> MediaInfo:
    """Metadata from the file alone: MIME type by extension, size, image dimensions."""
    mime = mime_type(path)
    if size is None:
        size = path.stat().st_size
    info = MediaInfo(mime, size)
    if mime in ("image/png", "image/jpeg"):
        dims = _image_size(path)
        if dims:
            info = replace(info, width=dims[0], height=dims[1])
    return info


def parse_ffprobe(data: dict[str, object], base: MediaInfo) -> MediaInfo:
    """Merge ffprobe ``-show_format -show_streams`` JSON into ``base``."""
    fmt = data.get("format")
    if not isinstance(fmt, dict):
        fmt = {}
    listed = data.get("streams")
    streams = [s for s in listed if isinstance(s, dict)] if isinstance(listed, list) else []

    def num(value: object, kind: type = float) -> float | int | None:
        try:
            return kind(value) if value not in (None, "N/A") else None
        except (TypeError, ValueError):
            return None

    duration = num(fmt.get("duration"))
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
        ),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    width = num(video.get("width"), int) if video else None
    height = num(video.get("height"), int) if video else None
    if base.mime.startswith("image/"):
        duration = None  # a still image has no playing time
    fps = None
    if video and isinstance(rate := video.get("avg_frame_rate"), str) and "/" in rate:
        n, d = (num(x) for x in rate.split("/", 1))
        fps = round(float(n) / float(d), 3) if n and d else None
    return replace(
        base,
        duration=float(duration) if duration and duration > 0 else None,
        width=int(width) if width else base.width,
        height=int(height) if height else base.height,
        bitrate=int(b) if (b := num(fmt.get("bit_rate"), int)) else None,
        codecs=tuple(str(s.get("codec_name")) for s in streams if s.get("codec_name")),
        container=str(fmt.get("format_name") or ""),
        video_codec=str(video.get("codec_name") or "") if video else "",
        video_profile=str(video.get("profile") or "") if video else "",
        fps=fps,
        audio_codec=str(audio.get("codec_name") or "") if audio else "",
        sample_rate=int(r) if audio and (r := num(audio.get("sample_rate"), int)) else None,
        channels=int(c) if audio and (c := num(audio.get("channels"), int)) else None,
    )


async def probe_file(path: Path, *, use_ffprobe: bool = True, size: int | None = None) -> MediaInfo:
    """Metadata of one file: ffprobe when installed and ``use_ffprobe``, else :func:`file_info`."""
    base = await asyncio.to_thread(file_info, path, size)
    exe = ffprobe_path() if use_ffprobe and is_media(base.mime) else None
    if exe is None:
        return base
    return await probe_uri(str(path), base, exe)


async def probe_uri(
    uri: str,
    base: MediaInfo,
    exe: str | None = None,
    *,
    options: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> MediaInfo:
    """``base`` completed by ffprobe of ``uri`` (``options`` before ``-i``, ``env`` for the
    process: the fetch proxy's, for a URI a peer gave)."""
    exe = exe or ffprobe_path()
    if exe is None:
        return base
    try:
        proc = await asyncio.create_subprocess_exec(
            exe,
            "-v",
            "error",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
            *options,
            "-i",
            uri,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
    except OSError:
        return base
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT)
    except TimeoutError:
        log.warning("ffprobe timed out on %s", uri)
        return base
    finally:
        if proc.returncode is None:  # timed out or cancelled: no ffprobe left behind
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
    if proc.returncode != 0:
        return base
    try:
        return parse_ffprobe(json.loads(out or b"{}"), base)
    except (ValueError, TypeError):
        return base


def format_duration(seconds: float | None) -> str:
    """DIDL-Lite ``res@duration``: ``H+:MM:SS.FFF``."""
    if seconds is None:
        return ""
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h}:{m:02d}:{s:02d}.{ms:03d}"


def parse_duration(text: str) -> float | None:
    """Inverse of :func:`format_duration` (also accepts plain seconds); None if not a time."""
    text = text.strip()
    if not text:
        return None
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        return None
    if len(parts) > 3 or any(p < 0 for p in parts):
        return None
    total = 0.0
    for p in parts:
        total = total * 60 + p
    return total

