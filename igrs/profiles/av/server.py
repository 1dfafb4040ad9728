"""The media server (5-21 "media server"): the ``MediaServer`` IGRS service (content directory
with Browse/Search and a notifiable ``SystemUpdateID``) and the stream transport, plain HTTP
under ``/av/`` on the device's own port. specs/av-profile.md §4-§6.

    server = await attach_media_server(device, {"Videos": "/srv/videos"})
    ...
    await server.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from aiohttp import web

from igrs.constants import MAX_STRING_VALUE, ReturnCode
from igrs.errors import IGRSError
from igrs.node.service import Service, action, attribute
from igrs.profiles.av.content import (
    SEARCH_PROPERTIES,
    SORT_PROPERTIES,
    ContentDirectory,
    ContentError,
    MediaObject,
    Page,
    inside,
)
from igrs.profiles.av.didl import Entry, to_didl
from igrs.profiles.av.dlna import dlna_features, transfer_mode
from igrs.profiles.av.media import MediaInfo, ffmpeg_path
from igrs.profiles.av.watch import Watchable

if TYPE_CHECKING:
    from igrs.node.device import Device
    from igrs.profiles.av.live import LiveSource

log = logging.getLogger(__name__)

MEDIA_SERVER = "urn:IGRS:ServiceType:MediaServer:1"
AV_PREFIX = "/av/"
MAX_PAGE = 100  # objects one Browse/Search answer carries at most (project choice)
MAX_RESULT_CHARS = MAX_STRING_VALUE - 4096  # the DIDL-Lite string must fit one typed value
WATCH_INTERVAL = 5.0  # s between rescans of the shared folders (project choice)
CHUNK = 256 * 1024  # bytes per sendfile / read step
THUMB_CACHE = 256  # thumbnails kept in memory
THUMB_TIMEOUT = 10.0
BROWSE_FLAGS = ("BrowseDirectChildren", "BrowseMetadata")
_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")


class MediaServer(Watchable, Service):
    """Content directory of a device's shared folders (plus live streams)."""

    service_type = MEDIA_SERVER
    name = "Media server"
    SystemUpdateID = attribute(int, 0, notifiable=True)

    def __init__(
        self, directory: ContentDirectory, base_url: Callable[[], str], prefix: str = AV_PREFIX
    ) -> None:
        self.directory = directory
        self.base_url = base_url
        self.prefix = prefix
        self.live: dict[str, LiveSource] = {}
        self.thumbnails = ffmpeg_path() is not None
        self._watch: asyncio.Task[None] | None = None
        self._thumbs: OrderedDict[tuple[str, float], bytes] = OrderedDict()

    # --- lifecycle ---
    async def start(self, watch_interval: float | None = WATCH_INTERVAL) -> None:
        await self.rescan()
        if watch_interval:
            self._watch = asyncio.create_task(self._watch_loop(watch_interval))

    async def _watch_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.rescan()
            except Exception:
                log.exception("rescan failed")

    async def rescan(self) -> bool:
        changed = await self.directory.scan()
        self.SystemUpdateID = self.directory.update_id
        return changed

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        for source in list(self.live.values()):
            await source.aclose()
        self.live.clear()

    def add_live(self, name: str, source: LiveSource, title: str | None = None) -> Entry:
        """Serve ``source`` at ``/av/live/<name>`` and list it under the ``live`` container."""
        obj = self.directory.add_live(name, title)
        self.live[name] = source
        self.SystemUpdateID = self.directory.update_id
        return self.entry(obj)

    # --- entries and URLs ---
    def url(self, path: str) -> str:
        return self.base_url().rstrip("/") + self.prefix + path

    def entry(self, obj: MediaObject) -> Entry:
        info = obj.info
        url = thumb = ""
        if obj.live:
            url = self.url(f"live/{obj.live}")
        elif info is not None and obj.path is not None:
            url = self.url(f"res/{obj.id}/{quote(obj.path.name)}")
            if self.thumbnails and obj.cls.startswith(("object.item.videoItem", "object.item.imageItem")):
                thumb = self.url(f"thumb/{obj.id}.jpg")
        date = (
            datetime.datetime.fromtimestamp(obj.mtime, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
            if obj.mtime
            else ""
        )
        return Entry(
            id=obj.id,
            parent_id=obj.parent_id,
            title=obj.title,
            cls=obj.cls,
            url=url,
            mime=info.mime if info else "",
            size=info.size if info and not obj.live else None,
            duration=info.duration if info else None,
            resolution=(info.resolution or "") if info else "",
            bitrate=info.bitrate if info else None,
            thumbnail=thumb,
            date=date,
            child_count=len(obj.children) if obj.is_container else None,
            protocol=f"http-get:*:{info.mime}:{self.features(obj)}" if info and url else "",
            sample_rate=info.sample_rate if info else None,
            channels=info.channels if info else None,
        )

    @staticmethod
    def features(obj: MediaObject) -> str:
        """The DLNA 4th protocolInfo field of an item — also its ``contentFeatures.dlna.org``."""
        return dlna_features(obj.info or MediaInfo("application/octet-stream", 0), live=bool(obj.live))

    def _result(self, page: Page, count: int) -> dict[str, str]:
        objs = page.objects[: min(count or MAX_PAGE, MAX_PAGE)]
        entries = [self.entry(o) for o in objs]
        didl = to_didl(entries)
        while len(didl) > MAX_RESULT_CHARS and entries:  # fewer, never a truncated document
            entries = entries[: max(1, len(entries) * 3 // 4)] if len(entries) > 1 else []
            didl = to_didl(entries)
        return {
            "Result": didl,
            "NumberReturned": str(len(entries)),
            "TotalMatches": str(page.total),
            "UpdateID": str(self.directory.update_id),
        }

    # --- actions (names: project choice after UPnP ContentDirectory, anchors §6-8) ---
    @action
    async def Browse(
        self,
        ObjectID: str,
        BrowseFlag: str = "BrowseDirectChildren",
        StartingIndex: int = 0,
        RequestedCount: int = 0,
        SortCriteria: str = "",
    ) -> dict[str, str]:
        """Children of a container (or one object's metadata), as DIDL-Lite in ``Result``."""
        if BrowseFlag not in BROWSE_FLAGS:
            raise ContentError(f"BrowseFlag must be one of {', '.join(BROWSE_FLAGS)}")
        page = self.directory.browse(
            ObjectID,
            metadata=BrowseFlag == "BrowseMetadata",
            start=StartingIndex,
            count=RequestedCount,
            sort=SortCriteria,
        )
        return self._result(page, RequestedCount)

    @action
    async def Search(
        self,
        ContainerID: str,
        SearchCriteria: str = "*",
        StartingIndex: int = 0,
        RequestedCount: int = 0,
        SortCriteria: str = "",
    ) -> dict[str, str]:
        page = self.directory.search(
            ContainerID, SearchCriteria, start=StartingIndex, count=RequestedCount, sort=SortCriteria
        )
        return self._result(page, RequestedCount)

    @action
    async def GetSearchCapabilities(self) -> str:
        return ",".join(SEARCH_PROPERTIES)

    @action
    async def GetSortCapabilities(self) -> str:
        return ",".join(SORT_PROPERTIES)

    @action
    async def GetSystemUpdateID(self) -> int:
        return self.directory.update_id

    @action
    async def Rescan(self) -> int:
        """Look at the shared folders now (instead of at the next watch interval)."""
        await self.rescan()
        return self.directory.update_id

    # --- the stream transport (plain HTTP under the prefix) ---
    async def handle_http(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        raw = request.raw_path.split("?", 1)[0]
        if ".." in raw or "%2e%2e" in raw.lower() or "\\" in request.path or "\0" in request.path:
            return web.Response(status=400, text="bad path\n")
        parts = request.path[len(self.prefix) :].split("/")
        kind, ident = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
        if kind == "thumb":
            ident = ident.removesuffix(".jpg")
        if not _ID.fullmatch(ident) or len(parts) > 3:
            return web.Response(status=404, text="not found\n")
        if kind == "res":
            return await self._serve_file(request, ident)
        if kind == "thumb":
            return await self._serve_thumb(request, ident)
        if kind == "live" and ident in self.live:
            return await self.live[ident].serve(request)
        return web.Response(status=404, text="not found\n")

    def _file_of(self, ident: str) -> tuple[MediaObject, Path] | web.Response:
        obj = self.directory.objects.get(ident)
        if obj is None or obj.path is None or obj.info is None or obj.root is None:
            return web.Response(status=404, text="no such item\n")
        real = obj.path.resolve()
        if not inside(real, obj.root):  # a symlink changed to point outside since the scan
            return web.Response(status=403, text="outside the shared folder\n")
        if not real.is_file():
            return web.Response(status=404, text="no such item\n")
        return obj, real

    async def _serve_file(self, request: web.BaseRequest, ident: str) -> web.StreamResponse:
        found = self._file_of(ident)
        if isinstance(found, web.Response):
            return found
        obj, real = found
        assert obj.info is not None
        log.debug("%s %s from %s, Range: %s", request.method, request.path, request.remote,
                  request.headers.get("Range", "-"))
        mode = transfer_mode(request, streaming=obj.cls.startswith(("object.item.video", "object.item.audio")))
        if isinstance(mode, web.Response):
            return mode
        headers = {
            "Content-Type": obj.info.mime,
            "Accept-Ranges": "bytes",
            "transferMode.dlna.org": mode,
            "contentFeatures.dlna.org": self.features(obj),
            "Cache-Control": "no-cache",
        }
        return web.FileResponse(real, chunk_size=CHUNK, headers=headers)

    async def _serve_thumb(self, request: web.BaseRequest, ident: str) -> web.StreamResponse:
        found = self._file_of(ident)
        if isinstance(found, web.Response):
            return found
        obj, real = found
        if not self.thumbnails:
            return web.Response(status=404, text="no thumbnails here (ffmpeg missing)\n")
        key = (ident, obj.mtime)
        data = self._thumbs.get(key)
        if data is None:
            data = await make_thumbnail(real, obj.info.duration if obj.info else None)
            if data is None:
                return web.Response(status=404, text="no thumbnail for this item\n")
            self._thumbs[key] = data
            while len(self._thumbs) > THUMB_CACHE:
                self._thumbs.popitem(last=False)
        self._thumbs.move_to_end(key)
        return web.Response(body=data, content_type="image/jpeg")


async def make_thumbnail(path: Path, duration: float | None) -> bytes | None:
    """A 160-pixel-wide JPEG of an image or of a video frame (ffmpeg), or None."""
    exe = ffmpeg_path()
    if exe is None:
        return None
    at = ["-ss", f"{min(duration / 3, 10.0):.2f}"] if duration else []
    proc = await asyncio.create_subprocess_exec(
        exe,
        "-v",
        "error",
        *at,
        "-i",
        str(path),
        "-frames:v",
        "1",
        "-vf",
        "scale=160:-2",
        "-f",
        "image2",
        "-c:v",
        "mjpeg",
        "pipe:1",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), THUMB_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return out if proc.returncode == 0 and out else None


def device_base_url(device: Device) -> Callable[[], str]:
    def base() -> str:
        loc = device.location
        if not loc:
            raise IGRSError("the device is not started", return_code=ReturnCode.BUSY)
        parts = urlsplit(loc)
        return f"{parts.scheme}://{parts.netloc}"

    return base


async def attach_media_server(
    device: Device,
    folders: Sequence[str | os.PathLike[str]] | Mapping[str, str | os.PathLike[str]] = (),
    *,
    prefix: str = AV_PREFIX,
    use_ffprobe: bool = True,
    watch_interval: float | None = WATCH_INTERVAL,
    service_id: int | None = None,
) -> MediaServer:
    """Share ``folders`` from ``device``: scan them (awaited), add the ``MediaServer`` service,
    mount the stream transport at ``prefix``, watch for changes every ``watch_interval`` s.
    Call ``await server.aclose()`` when the device stops."""
    server = MediaServer(ContentDirectory(folders, use_ffprobe=use_ffprobe), device_base_url(device), prefix)
    await server.start(watch_interval)
    device.http.mount(prefix, server.handle_http)
    device.add_service(server, service_id)
    return server
