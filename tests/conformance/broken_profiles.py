"""Deliberately broken AV and File profile devices (the profile counterpart of ``broken.py``):
each is ``igrs.Device`` with the project's real MediaServer / MediaRenderer / FileServer, one
of which has ONE rule broken by a minimal override, and names the catalogue case that must
catch it (``CAUGHT_BY``). ``tests/conformance/test_profile_cases.py`` runs the suite against
each and expects that case to fail.

    dev = PathTraversalFileDevice(name="Broken", interfaces=["lo"], http_port=0, on_pin=...)
    await dev.start()
    await dev.attach_profiles(media={"Media": media_dir}, shares=[SharedFolder("pub", pub)])

Never use these outside tests and demos of the suite.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote

from aiohttp import web
from broken_core import BrokenDevice

from igrs.constants import FILE_HTTP_PREFIX, ReturnCode
from igrs.net.tls import TlsEndpoint
from igrs.node.service import action
from igrs.profiles.av.content import ContentDirectory, ContentError
from igrs.profiles.av.fetch_policy import FetchPolicy
from igrs.profiles.av.renderer import MediaRenderer, Track
from igrs.profiles.av.server import AV_PREFIX, MediaServer, device_base_url
from igrs.profiles.file import paths
from igrs.profiles.file.grants import Grant, same_host
from igrs.profiles.file.server import RW, Caller, FileServer, SharedFolder, _err
from igrs.profiles.file.transfer import Upload
from igrs.wire.ids import DeviceId


class ProfileDevice(BrokenDevice):
    """A device with the real profile services; a subclass swaps in one broken server class.
    ``attach_profiles`` does what ``attach_media_server``, ``attach_renderer`` and
    ``attach_file_server`` do, with the classes named here."""

    MEDIA_SERVER_CLASS: ClassVar[type[MediaServer]] = MediaServer
    RENDERER_CLASS: ClassVar[type[MediaRenderer]] = MediaRenderer
    FILE_SERVER_CLASS: ClassVar[type[FileServer]] = FileServer
    TLS_ENDPOINT_CLASS: ClassVar[type[TlsEndpoint]] = TlsEndpoint

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.media_server: MediaServer | None = None
        self.renderer: MediaRenderer | None = None
        self.file_server: FileServer | None = None

    async def attach_profiles(self, *, media: Mapping[str, str | os.PathLike[str]] | None = None,
                              shares: Sequence[SharedFolder] = (), renderer: bool = False) -> None:
        """Call after ``start()`` (the media URLs name the device's location)."""
        if media is not None:
            ms = self.MEDIA_SERVER_CLASS(ContentDirectory(media, use_ffprobe=False), device_base_url(self))
            await ms.start(None)
            self.http.mount(AV_PREFIX, ms.handle_http)
            self.add_service(ms)
            self.media_server = ms
        if renderer:
            tv = self.RENDERER_CLASS(probe=False, policy=FetchPolicy.for_device(self))
            await tv.start()
            self.add_service(tv)
            self.renderer = tv
        if shares:
            fs = self.FILE_SERVER_CLASS(shares)
            self.add_service(fs)
            self.http.mount(FILE_HTTP_PREFIX, fs.handle_http)
            fs.serve_tls(lambda: self.TLS_ENDPOINT_CLASS(self.http, lambda: self.identity,
                                                         self.keystore.peer_key))
            self.file_server = fs

    async def stop(self) -> None:
        for service in (self.media_server, self.renderer):
            if service is not None:
                await service.aclose()
        await super().stop()


# --- File profile -----------------------------------------------------------------------------------
def _lax_resolve(share: SharedFolder, rel: Sequence[str]) -> Path:
    """The share root joined with ``rel``, ``..`` resolved textually and never confined."""
    return Path(os.path.normpath(os.path.join(share.root, *rel)))


class _TraversalFileServer(FileServer):
    def _target(self, path: str, *, write: bool = False) -> tuple[SharedFolder, paths.Resolved]:
        parts = [p for p in path.split("/") if p]
        if ".." not in parts[1:]:
            return super()._target(path, write=write)
        paths.split("/".join(p for p in parts if p != ".."))  # every other rule still holds
        share, access = self._share_of(parts[0], self._caller())
        if write and access != RW:
            raise _err(ReturnCode.FORBIDDEN, f"share {share.name!r} is read-only for this device")
        return share, paths.Resolved(share.name, tuple(parts[1:]), _lax_resolve(share, parts[1:]))

    async def handle_http(self, request: web.BaseRequest) -> web.StreamResponse:
        grant = self._grants.get(request.path[len(FILE_HTTP_PREFIX):])
        if grant is not None and grant.kind == "get" and ".." in grant.rel \
                and same_host(request.remote or "", grant.address):
            return web.FileResponse(_lax_resolve(self.shares[grant.share], grant.rel))
        return await super().handle_http(request)


class PathTraversalFileDevice(ProfileDevice):
    """Resolves ``..`` in file-profile paths instead of refusing it (422): Stat, BeginGet and
    the download reach files beside the share; MakeDirectory creates folders there."""

    RULE = "a path with a .. component is refused with 422 and never leaves the share"
    CAUGHT_BY = ("FILE-008",)
    FILE_SERVER_CLASS = _TraversalFileServer


class _UnverifiedFileServer(FileServer):
    async def _receive(self, request: web.BaseRequest, grant: Grant, up: Upload,
                       target: paths.Resolved) -> web.StreamResponse:
        def finish(final: Path, overwrite: bool, mode: int | None = None) -> str:  # whatever arrived is taken
            up.prepare()
            assert up._hash is not None
            up.sha256 = up._hash.hexdigest()
            return Upload.finish(up, final, overwrite, mode)

        up.finish = finish  # type: ignore[method-assign]
        return await super()._receive(request, grant, up, target)


class UploadNotVerifiedDevice(ProfileDevice):
    """Stores an upload whose bytes do not have the declared SHA-256 (should be 460, discarded)."""

    RULE = "an upload whose SHA-256 differs from the declared one is refused (460), nothing stored"
    CAUGHT_BY = ("FILE-006",)
    FILE_SERVER_CLASS = _UnverifiedFileServer


class _PartialVisibleFileServer(FileServer):
    async def _receive(self, request: web.BaseRequest, grant: Grant, up: Upload,
                       target: paths.Resolved) -> web.StreamResponse:
        try:
            return await super()._receive(request, grant, up, target)
        finally:
            if up.state == "receiving" and 0 < up.offset < up.size and up.part.exists():
                shutil.copyfile(up.part, target.real)  # the bytes so far, under the final name


class PartialUploadVisibleDevice(ProfileDevice):
    """Puts the bytes of an unfinished upload under the final name (should stay in the partial)."""

    RULE = "an interrupted upload leaves no file under its final name"
    CAUGHT_BY = ("FILE-007",)
    FILE_SERVER_CLASS = _PartialVisibleFileServer


class _UnboundFileServer(FileServer):
    async def handle_http(self, request: web.BaseRequest) -> web.StreamResponse:
        grant = self._grants.get(request.path[len(FILE_HTTP_PREFIX):])
        if grant is not None and request.remote:
            grant.address = request.remote  # whoever holds the URL is taken for the caller
        return await super().handle_http(request)


class UnboundCapabilityFileDevice(ProfileDevice):
    """Serves a /files/ capability URL to any address, not only the invocation's (should be 403)."""

    RULE = "a capability URL is refused to another address than the caller's (403)"
    CAUGHT_BY = ("FILE-009",)
    FILE_SERVER_CLASS = _UnboundFileServer


class _NoEndFileServer(FileServer):
    @action
    async def Browse(self, path: str, offset: int = 0, limit: int = 100) -> list[dict[str, str]]:
        return await super().Browse(path, 0, limit)  # offset ignored: the first page, again and again


class BrowseOffsetIgnoredFileDevice(ProfileDevice):
    """Ignores Browse's offset: every page is the first one, so no page is ever empty."""

    RULE = "Browse pages from offset; an empty page is the end"
    CAUGHT_BY = ("FILE-002",)
    FILE_SERVER_CLASS = _NoEndFileServer


class _AllocatedSizeFileServer(FileServer):
    @action
    async def Stat(self, path: str, checksum: bool = False) -> dict[str, str]:
        out = await super().Stat(path, checksum)
        if out.get("type") == "file":
            _, target = self._target(path)
            out["size"] = str(os.stat(target.real).st_blocks * 512)  # the space used, not the bytes
        return out


class StatAllocatedSizeFileDevice(ProfileDevice):
    """Stat reports a file's allocated disk space as its size (Browse gives the byte count)."""

    RULE = "Stat's size is the file's size in bytes, as Browse says"
    CAUGHT_BY = ("FILE-003",)
    FILE_SERVER_CLASS = _AllocatedSizeFileServer


class _RangeIgnoringFileServer(FileServer):
    async def handle_http(self, request: web.BaseRequest) -> web.StreamResponse:
        return _ignoring_ranges(await super().handle_http(request))


class RangeIgnoredFileDevice(ProfileDevice):
    """Answers every /files/ range request with 200 and the whole file: no resumption, no 416."""

    RULE = "a download honours Range (206) and answers 416 beyond the end"
    CAUGHT_BY = ("FILE-004",)
    FILE_SERVER_CLASS = _RangeIgnoringFileServer


class _DeleteIgnoredFileServer(FileServer):
    @action
    async def Delete(self, path: str, recursive: bool = False) -> None:
        self._target(path, write=True)  # checked, answered... and nothing is deleted


class DeleteIgnoredFileDevice(ProfileDevice):
    """Answers Delete with success and keeps the file."""

    RULE = "a file Delete answered with success is gone (Stat 404)"
    CAUGHT_BY = ("FILE-005",)
    FILE_SERVER_CLASS = _DeleteIgnoredFileServer


class _CleartextFileServer(FileServer):
    async def _transport(self, caller: Caller, transport: str) -> dict[str, str]:
        return {"transport": "http"}  # asked for TLS, answers plain HTTP


class CleartextFileDevice(ProfileDevice):
    """Carries every transfer over plain HTTP, also when the paired device asks for TLS."""

    RULE = "a transfer asked for with transport tls travels inside TLS"
    CAUGHT_BY = ("FILE-011",)
    FILE_SERVER_CLASS = _CleartextFileServer


class _AnyClientTls(TlsEndpoint):
    """TLS without client authentication: any client gets the transfers of the paired one."""

    async def port_for(self, peer: str | DeviceId) -> int | None:
        self.tls.server_context().verify_mode = ssl.CERT_NONE  # no client certificate asked for
        return await super().port_for(peer)

    def verified(self, transport: Any, peer: str | DeviceId) -> bool:
        return True


class UnpinnedTlsFileDevice(ProfileDevice):
    """Serves TLS transfers to any client: it asks for no certificate, so pins no identity."""

    RULE = "a TLS transfer is served only to the client certified by the paired identity"
    CAUGHT_BY = ("FILE-011",)
    TLS_ENDPOINT_CLASS = _AnyClientTls


# --- AV profile -------------------------------------------------------------------------------------
def _ignoring_ranges(response: web.StreamResponse) -> web.StreamResponse:
    """A file response that prepares itself as if the request had no Range / If-Range."""
    if isinstance(response, web.FileResponse):
        prepare = response.prepare

        async def whole(request: web.BaseRequest) -> Any:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("range", "if-range")}
            return await prepare(request.clone(headers=headers))

        response.prepare = whole  # type: ignore[method-assign]
    return response


class _RangeIgnoringMediaServer(MediaServer):
    async def _serve_file(self, request: web.BaseRequest, ident: str) -> web.StreamResponse:
        return _ignoring_ranges(await super()._serve_file(request, ident))


class RangeIgnoredAVDevice(ProfileDevice):
    """Answers every byte-range request with 200 and the whole file (a bad range too: no 416)."""

    RULE = "a byte range is answered 206 with Content-Range, an unsatisfiable one 416"
    CAUGHT_BY = ("AV-004", "AV-006")
    MEDIA_SERVER_CLASS = _RangeIgnoringMediaServer


class _NameServingMediaServer(MediaServer):
    async def handle_http(self, request: web.BaseRequest) -> web.StreamResponse:
        parts = request.raw_path.split("?", 1)[0][len(self.prefix):].split("/", 2)
        obj = self.directory.objects.get(parts[1]) if len(parts) == 3 and parts[0] == "res" else None
        if obj is not None and obj.path is not None:
            try:  # the name selects the file, relative to the item's folder, unchecked
                wanted = Path(os.path.normpath(obj.path.parent / unquote(parts[2])))
                if wanted.is_file():
                    return web.FileResponse(wanted)
            except (ValueError, OSError):
                pass
        return await super().handle_http(request)


class PathTraversalAVDevice(ProfileDevice):
    """Serves /av/res/<id>/<name> by the name (relative to the item's folder) instead of by the
    id alone, without refusing ``..``: ``..%2f`` climbs out of the shared folder."""

    RULE = "stream URLs select items by id only; .., %2e%2e, backslash and NUL are refused"
    CAUGHT_BY = ("AV-007",)
    MEDIA_SERVER_CLASS = _NameServingMediaServer


class _PagingIgnoredMediaServer(MediaServer):
    @action
    async def Browse(self, ObjectID: str, BrowseFlag: str = "BrowseDirectChildren", StartingIndex: int = 0,
                     RequestedCount: int = 0, SortCriteria: str = "") -> dict[str, str]:
        return await super().Browse(ObjectID, BrowseFlag, StartingIndex, 0, SortCriteria)


class PagingIgnoredAVDevice(ProfileDevice):
    """Ignores Browse's RequestedCount: every page holds everything from StartingIndex on."""

    RULE = "Browse returns at most RequestedCount objects"
    CAUGHT_BY = ("AV-003",)
    MEDIA_SERVER_CLASS = _PagingIgnoredMediaServer


class _EmptyForUnknownMediaServer(MediaServer):
    @action
    async def Browse(self, ObjectID: str, BrowseFlag: str = "BrowseDirectChildren", StartingIndex: int = 0,
                     RequestedCount: int = 0, SortCriteria: str = "") -> dict[str, str]:
        try:
            return await super().Browse(ObjectID, BrowseFlag, StartingIndex, RequestedCount, SortCriteria)
        except ContentError as exc:
            if exc.return_code != ReturnCode.NOT_FOUND:
                raise
            return {"Result": _EMPTY_DIDL, "NumberReturned": "0", "TotalMatches": "0",
                    "UpdateID": str(self.directory.update_id)}


_EMPTY_DIDL = '<DIDL-Lite xmlns="urn:schemas-upnp-org:metadata-1-0/DIDL-Lite/"/>'


class UnknownObjectEmptyAVDevice(ProfileDevice):
    """Answers Browse of an unknown object with 200 and an empty Result (should be 404)."""

    RULE = "an unknown object id is answered 404"
    CAUGHT_BY = ("AV-008",)
    MEDIA_SERVER_CLASS = _EmptyForUnknownMediaServer


class _ClasslessMediaServer(MediaServer):
    def _result(self, page: Any, count: int) -> dict[str, str]:
        out = super()._result(page, count)
        out["Result"] = re.sub(r"<upnp:class>[^<]*</upnp:class>", "", out["Result"])
        return out


class DidlWithoutClassAVDevice(ProfileDevice):
    """Leaves upnp:class out of every DIDL-Lite object."""

    RULE = "every DIDL-Lite object has a dc:title and a upnp:class"
    CAUGHT_BY = ("AV-002",)
    MEDIA_SERVER_CLASS = _ClasslessMediaServer


class _HeadTypeMediaServer(MediaServer):
    async def _serve_file(self, request: web.BaseRequest, ident: str) -> web.StreamResponse:
        response = await super()._serve_file(request, ident)
        if request.method == "HEAD":  # HEAD computed apart from GET, the MIME type forgotten
            response.headers["Content-Type"] = "application/octet-stream"
        return response


class HeadDiffersAVDevice(ProfileDevice):
    """Answers HEAD on a stream URL with another Content-Type than GET."""

    RULE = "HEAD answers the headers GET would"
    CAUGHT_BY = ("AV-005",)
    MEDIA_SERVER_CLASS = _HeadTypeMediaServer


class _AnyUriRenderer(MediaRenderer):
    @action
    async def PlayTo(self, URI: str = "", ItemID: str = "", Metadata: str = "", Title: str = "",
                     AutoPlay: bool = True) -> str:
        if not URI:
            return await super().PlayTo(URI, ItemID, Metadata, Title, AutoPlay)
        async with self.lock:  # the URI is not checked: file:, javascript:, no host...
            self.queue = [Track(URI, Title)]
            self.QueueLength = 1
            await self._select(0, play=AutoPlay)
            return self.TransportState


class AnyUriRendererDevice(ProfileDevice):
    """A renderer that accepts any PlayTo URI, file: included (should be 400)."""

    RULE = "PlayTo refuses URIs other than http, https, udp, rtp with a host (400)"
    CAUGHT_BY = ("AV-009",)
    RENDERER_CLASS = _AnyUriRenderer


class _QuietPauseRenderer(MediaRenderer):
    @action
    async def Pause(self) -> str:
        listener, self._igrs_listener = self._igrs_listener, None  # the change is not evented
        try:
            return await super().Pause()
        finally:
            self._igrs_listener = listener


class QuietPauseRendererDevice(ProfileDevice):
    """A renderer whose Pause changes TransportState without a notification."""

    RULE = "every TransportState change is evented to subscribers"
    CAUGHT_BY = ("AV-010",)
    RENDERER_CLASS = _QuietPauseRenderer


PROFILE_BROKEN_DEVICES: tuple[type[ProfileDevice], ...] = (
    PathTraversalFileDevice, UploadNotVerifiedDevice, PartialUploadVisibleDevice, UnboundCapabilityFileDevice,
    BrowseOffsetIgnoredFileDevice, StatAllocatedSizeFileDevice, RangeIgnoredFileDevice, DeleteIgnoredFileDevice,
    CleartextFileDevice, UnpinnedTlsFileDevice,
    RangeIgnoredAVDevice, PathTraversalAVDevice, PagingIgnoredAVDevice, UnknownObjectEmptyAVDevice,
    DidlWithoutClassAVDevice, HeadDiffersAVDevice, AnyUriRendererDevice, QuietPauseRendererDevice,
)
