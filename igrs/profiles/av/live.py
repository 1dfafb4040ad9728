"""Live streams (specs/av-profile.md §8).

:class:`LiveSource` is one MPEG-TS stream fanned out to many subscribers (HTTP clients at
``/av/live/<name>``, a multicast sender, a recorder). It comes from ffmpeg — a generated test
signal (``lavfi testsrc`` + ``sine``) or a file played at its own pace — or, without ffmpeg,
from :func:`synthetic_ts`: valid MPEG-TS (PAT, PMT, one private-data stream of counters).

Recording a stream is in ``igrs.profiles.av.recorder``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from igrs.profiles.av.dlna import dlna_features, transfer_mode
from igrs.profiles.av.media import MediaInfo, ffmpeg_path

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

TS_PACKET = 188
CHUNK_PACKETS = 56  # packets per fan-out chunk (10528 bytes)
SUBSCRIBER_QUEUE = 256  # chunks buffered per subscriber; the oldest are dropped beyond it
MAX_LIVE_CLIENTS = 64  # HTTP clients of one live stream (503 beyond; project choice)
LIVE_MIME = "video/mp2t"
LIVE_FEATURES = dlna_features(MediaInfo(LIVE_MIME, 0), live=True)  # = the live item's protocolInfo


# --- synthetic MPEG-TS (no ffmpeg) -----------------------------------------------------------------
def _crc32_mpeg(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def _section_packet(pid: int, table: bytes, cc: int) -> bytes:
    section = table + _crc32_mpeg(table).to_bytes(4, "big")
    payload = b"\x00" + section  # pointer field
    head = bytes([0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x10 | (cc & 0x0F)])
    return (head + payload).ljust(TS_PACKET, b"\xff")


def synthetic_packets(index: int) -> bytes:
    """Packet group ``index`` of the synthetic stream: PAT, PMT, one PES of private data."""
    pat = bytes([0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00])
    pmt = bytes(
        [0x02, 0xB0, 0x12, 0x00, 0x01, 0xC1, 0x00, 0x00, 0xE1, 0x00, 0xF0, 0x00, 0x06, 0xE1, 0x00, 0xF0, 0x00]
    )
    text = f"igrs synthetic live stream {index}\n".encode()
    pes = b"\x00\x00\x01\xbd" + (len(text) + 3).to_bytes(2, "big") + b"\x80\x00\x00" + text
    head = bytes([0x47, 0x41, 0x00, 0x10 | (index & 0x0F)])
    data = (head + pes).ljust(TS_PACKET, b"\xff")
    return _section_packet(0, pat, index) + _section_packet(0x1000, pmt, index) + data


async def synthetic_ts(rate: float = 25.0) -> AsyncIterator[bytes]:
    """The synthetic stream, ``rate`` packet groups a second, forever."""
    start, i = time.monotonic(), 0
    while True:
        yield synthetic_packets(i)
        i += 1
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))


# --- the source ------------------------------------------------------------------------------------
def test_signal_argv(size: str = "320x240", rate: int = 25, bitrate: str = "800k") -> list[str]:
    return [
        "-re",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size={size}:rate={rate}",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:sample_rate=48000",
        "-c:v",
        "mpeg2video",
        "-b:v",
        bitrate,
        "-g",
        str(rate),
        "-c:a",
        "mp2",
        "-b:a",
        "128k",
        "-f",
        "mpegts",
    ]


def file_argv(path: str | os.PathLike[str], loop: bool = True) -> list[str]:
    return [
        "-re",
        *(["-stream_loop", "-1"] if loop else []),
        "-i",
        str(path),
        "-map",
        "0",
        "-c",
        "copy",
        "-f",
        "mpegts",
    ]


class LiveSource:
    """One MPEG-TS stream, started on the first subscriber, shared by all of them.

    ``LiveSource.test_signal()`` / ``LiveSource.from_file(path)`` need ffmpeg;
    ``LiveSource.synthetic()`` needs nothing. Chunks are whole TS packets.
    """

    def __init__(
        self, ffmpeg_args: list[str] | None = None, generator: Callable[[], AsyncIterator[bytes]] | None = None
    ) -> None:
        if (ffmpeg_args is None) == (generator is None):
            raise ValueError("give ffmpeg_args or generator")
        self.ffmpeg_args = ffmpeg_args
        self.generator = generator
        self.subscribers: set[asyncio.Queue[bytes | None]] = set()
        self.dropped = 0
        self.sent = 0
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def test_signal(cls, size: str = "320x240", rate: int = 25) -> LiveSource:
        """The generated test signal (ffmpeg), or the synthetic stream when ffmpeg is missing."""
        if ffmpeg_path() is None:
            return cls.synthetic()
        return cls(test_signal_argv(size, rate))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], loop: bool = True) -> LiveSource:
        if ffmpeg_path() is None:
            raise RuntimeError("playing a file live needs ffmpeg (apt-get install ffmpeg)")
        return cls(file_argv(path, loop))

    @classmethod
    def synthetic(cls, rate: float = 25.0) -> LiveSource:
        return cls(generator=lambda: synthetic_ts(rate))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _ensure_started(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            if self.generator is not None:
                async for chunk in self.generator():
                    self._publish(chunk)
                return
            assert self.ffmpeg_args is not None
            self.proc = await asyncio.create_subprocess_exec(
                ffmpeg_path() or "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                *self.ffmpeg_args,
                "pipe:1",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
            assert self.proc.stdout is not None
            while True:
                try:
                    chunk = await self.proc.stdout.readexactly(TS_PACKET * CHUNK_PACKETS)
                except asyncio.IncompleteReadError as exc:
                    tail = exc.partial[: len(exc.partial) - len(exc.partial) % TS_PACKET]
                    if tail:
                        self._publish(tail)
                    break
                self._publish(chunk)
        finally:
            await self._kill()
            for q in self.subscribers:
                _put(q, None)  # end of stream

    def _publish(self, chunk: bytes) -> None:
        self.sent += len(chunk)
        for q in self.subscribers:
            if not _put(q, chunk):
                self.dropped += 1

    async def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[bytes]]:
        """``async with source.subscribe() as chunks: async for chunk in chunks: ...``"""
        q: asyncio.Queue[bytes | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.subscribers.add(q)
        self._ensure_started()

        async def chunks() -> AsyncIterator[bytes]:
            while (chunk := await q.get()) is not None:
                yield chunk

        try:
            yield chunks()
        finally:
            self.subscribers.discard(q)

    async def serve(self, request: web.BaseRequest) -> web.StreamResponse:
        """The HTTP live stream: chunked MPEG-TS, no length, no ranges."""
        mode = transfer_mode(request, streaming=True)
        if isinstance(mode, web.Response):
            return mode
        headers = {
            "Content-Type": LIVE_MIME,
            "Accept-Ranges": "none",
            "Cache-Control": "no-cache",
            "transferMode.dlna.org": mode,
            "contentFeatures.dlna.org": LIVE_FEATURES,
        }
        if request.method == "HEAD":
            return web.Response(headers=headers)
        if len(self.subscribers) >= MAX_LIVE_CLIENTS:
            return web.Response(status=503, text="too many live clients\n")
        resp = web.StreamResponse(headers=headers)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        async with self.subscribe() as chunks:
            with contextlib.suppress(ConnectionError):
                async for chunk in chunks:
                    await resp.write(chunk)
        return resp

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._kill()


def _put(q: asyncio.Queue[bytes | None], item: bytes | None) -> bool:
    """Queue ``item``, dropping the oldest chunk if full; False if one was dropped."""
    dropped = False
    if q.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            q.get_nowait()
            dropped = True
    q.put_nowait(item)
    return not dropped


# --- recording -------------------------------------------------------------------------------------
