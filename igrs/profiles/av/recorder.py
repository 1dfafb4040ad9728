"""Recording (specs/av-profile.md §8): :class:`MediaRecorder` is the IGRS service that records
a stream (HTTP or multicast UDP) to a file; :func:`record_stream` is the same as a client
helper.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp

from igrs.constants import ReturnCode
from igrs.errors import IGRSError
from igrs.node.service import Service, action, attribute
from igrs.profiles.av.fetch_policy import FetchPolicy, requester
from igrs.profiles.av.fetch_proxy import FetchProxy, FetchRoute
from igrs.profiles.av.live import TS_PACKET
from igrs.profiles.av.multicast import MulticastReceiver, parse_udp_uri

if TYPE_CHECKING:
    from igrs.node.device import Device

log = logging.getLogger(__name__)

MEDIA_RECORDER = "urn:IGRS:ServiceType:MediaRecorder:1"
MAX_RECORD_SECONDS = 3600.0
RECORD_SCHEMES = ("http", "https", "udp")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9 _.-]{0,63}")


async def record_stream(
    uri: str,
    path: str | os.PathLike[str],
    seconds: float,
    *,
    interface: str = "127.0.0.1",
    max_bytes: int = 1 << 32,
    route: FetchRoute | None = None,
) -> int:
    """Save ``seconds`` of the stream at ``uri`` (http(s):// or udp://group:port) to ``path``;
    written to ``path + '.part'`` and renamed when done. Returns the bytes saved. For udp the
    group is joined on ``interface`` (an address). ``route``: fetch through the fetch proxy
    (a peer's URI: every connection, redirects included, checked by the fetch policy)."""
    target = Path(path)
    part = target.with_name(target.name + ".part")
    scheme = urlsplit(uri).scheme.lower()
    written = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        with part.open("wb") as out:
            if scheme == "udp":

                group, port = parse_udp_uri(uri)
                async with MulticastReceiver(group, port, interface) as rx:
                    while (left := deadline - loop.time()) > 0 and written < max_bytes:
                        data = await rx.recv(timeout=left)
                        if data:
                            out.write(data)
                            written += len(data)
            else:
                timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=10)
                proxy = route.url if route is not None else None
                creds = route.headers if route is not None else None
                # aiohttp sends proxy_headers with CONNECT (https) only; an http request
                # through a proxy carries them itself (the proxy strips them).
                plain = creds if scheme == "http" else None
                async with aiohttp.ClientSession(timeout=timeout) as session, \
                        session.get(uri, proxy=proxy, proxy_headers=creds, headers=plain) as resp:
                    if resp.status != 200:
                        raise IGRSError(f"{uri}: HTTP {resp.status}", return_code=ReturnCode.NOT_FOUND)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(deadline):
                            async for chunk in resp.content.iter_chunked(64 * 1024):
                                out.write(chunk)
                                written += len(chunk)
                                if written >= max_bytes:
                                    break
        written = _trim_ts(part, written)
        os.replace(part, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    return written


def _trim_ts(path: Path, size: int) -> int:
    """Cut an MPEG-TS recording to whole packets (a live stream is cut at any byte)."""
    if size % TS_PACKET:
        with path.open("rb+") as f:
            if f.read(1) == b"\x47":
                size -= size % TS_PACKET
                f.truncate(size)
    return size


class MediaRecorder(Service):
    """Records a stream to a file in ``folder`` (e.g. a shared folder of the PC's MediaServer)."""

    service_type = MEDIA_RECORDER
    name = "Media recorder"
    RecordingState = attribute(str, "IDLE", notifiable=True)  # IDLE | RECORDING
    LastRecording = attribute(str, "", notifiable=True)  # file name of the last finished one
    LastSize = attribute(int, 0, notifiable=True)

    def __init__(
        self, folder: str | os.PathLike[str], *, interface: str = "127.0.0.1", policy: FetchPolicy | None = None
    ) -> None:
        self.folder = Path(folder)
        self.interface = interface
        self.policy = policy or FetchPolicy()  # what a peer may make it fetch (fetch_policy.py)
        self.fetcher = FetchProxy(self.policy)
        self._task: asyncio.Task[int] | None = None

    @action
    async def Record(self, URI: str, Seconds: float, Name: str = "", Wait: bool = False) -> str:
        """Record ``Seconds`` of ``URI`` (http, https or udp multicast) to ``Name`` (default
        ``recording-<time>.ts``) in the recorder's folder; returns the file name. One at a time."""
        scheme = urlsplit(URI).scheme.lower()
        if scheme not in RECORD_SCHEMES or len(URI) > 2048:
            raise IGRSError(
                f"URI scheme must be one of {', '.join(RECORD_SCHEMES)}", return_code=ReturnCode.BAD_MESSAGE
            )
        if not 0 < Seconds <= MAX_RECORD_SECONDS:
            raise IGRSError(
                f"Seconds must be in (0, {MAX_RECORD_SECONDS:g}]", return_code=ReturnCode.BAD_MESSAGE
            )
        name = Name or time.strftime("recording-%Y%m%d-%H%M%S.ts")
        if not _NAME.fullmatch(name) or ".." in name:
            raise IGRSError(
                "Name: letters, digits, space, _ . - only (no path)", return_code=ReturnCode.BAD_MESSAGE
            )
        target = self.folder / name
        if target.exists():
            raise IGRSError(f"{name} exists", return_code=ReturnCode.CONFLICT)
        if self._task is not None and not self._task.done():
            raise IGRSError("already recording", return_code=ReturnCode.BUSY)
        origin = requester()
        await self.policy.check_url(URI, origin)  # FetchRefused: 403
        route = await self.fetcher.route(origin) if origin is not None and scheme != "udp" else None
        if self._task is not None and not self._task.done():  # started while the check ran
            raise IGRSError("already recording", return_code=ReturnCode.BUSY)
        self.RecordingState = "RECORDING"
        self._task = asyncio.create_task(
            record_stream(URI, target, Seconds, interface=self.interface, route=route))
        self._task.add_done_callback(functools.partial(self._finished, name))
        if Wait:
            try:
                await asyncio.shield(self._task)
            except IGRSError:
                raise
            except Exception as exc:
                raise IGRSError(
                    f"recording failed: {type(exc).__name__}", return_code=ReturnCode.BAD_MESSAGE
                ) from None
        return name

    def _finished(self, name: str, task: asyncio.Task[int]) -> None:
        self.RecordingState = "IDLE"
        if task.cancelled():
            return
        if task.exception() is None:
            self.LastSize = task.result()
            self.LastRecording = name
        else:
            log.warning("recording %s failed: %s", name, task.exception())

    @action
    async def StopRecording(self) -> bool:
        """Abandon the running recording (nothing is kept); False if none was running."""
        if self._task is None or self._task.done():
            return False
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return True

    async def aclose(self) -> None:
        await self.StopRecording()
        await self.fetcher.aclose()


def attach_recorder(
    device: Device,
    folder: str | os.PathLike[str],
    *,
    service_id: int | None = None,
    fetch_allow: Iterable[str] = (),
) -> MediaRecorder:
    """Let ``device`` record streams into ``folder``; a peer's URIs follow the device's fetch
    policy, widened by the owner's ``fetch_allow`` list (fetch_policy.py)."""
    addr = next((i.address for i in device.interfaces if i.family == 4), "127.0.0.1")
    recorder = MediaRecorder(folder, interface=addr, policy=FetchPolicy.for_device(device, fetch_allow))
    device.add_service(recorder, service_id)
    return recorder
