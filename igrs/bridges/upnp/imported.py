"""UPnP -> IGRS: ``igrs bridge upnp`` represents each DLNA media server and renderer on the LAN
as a virtual IGRS device — its own identity (kept in the state directory), PIN pairing, the
igrs ``MediaServer`` / ``MediaRenderer`` services — so that ``igrs discover``, ``igrs pair``,
``AvController`` and the three-box flow work on them unchanged (specs/upnp-bridge.md §6).

A DLNA server becomes a ``MediaServer`` whose Browse/Search ask the server (its DIDL-Lite
re-read by the hardened parser, ``protocolInfo`` kept as given, so ``DLNA.ORG_PN`` survives);
a DLNA renderer becomes an igrs renderer (the same transport state machine, queue and events
as an igrs TV) whose output back end drives the renderer over AVTransport/RenderingControl:
the URI is set again when the renderer cleared it at the end of a stream, and a renderer
that refuses subscriptions is polled. The renderer fetches the media itself, from where the
URL points; the URL first passes the bridge's fetch policy for the phone that asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from async_upnp_client.aiohttp import AiohttpNotifyServer
from async_upnp_client.client import UpnpDevice, UpnpRequester, UpnpService
from async_upnp_client.client_factory import UpnpFactory
from async_upnp_client.const import HttpRequest, HttpResponse
from async_upnp_client.exceptions import (
    UpnpActionResponseError,
    UpnpCommunicationError,
    UpnpConnectionError,
    UpnpError,
)
from async_upnp_client.profiles.dlna import DmrDevice
from async_upnp_client.utils import CaseInsensitiveDict

from igrs.bridges.upnp import errors, ssdp
from igrs.bridges.upnp.constants import (
    END_GRACE,
    IMPORT_MISSES,
    IMPORT_SEARCH_INTERVAL,
    IMPORT_SEARCH_MX,
    MAX_IMPORTED,
    MAX_UPNP_BODY,
    MODEL_NAME,
    POLL_INTERVAL,
    POLL_INTERVAL_UNEVENTED,
    UPNP_HTTP_TIMEOUT,
)
from igrs.bridges.upnp.expose_renderer import hms
from igrs.constants import IGRS_PORT, MAX_NAME_LENGTH, ReturnCode
from igrs.core.discovery import Interface
from igrs.errors import IGRSError, ProtocolError
from igrs.net import interfaces as netifaces
from igrs.node.device import Device
from igrs.node.service import Service, action, attribute
from igrs.profiles.av.content import ContentError
from igrs.profiles.av.didl import Entry, from_didl, to_didl
from igrs.profiles.av.media import media_class
from igrs.profiles.av.renderer import MediaRenderer, Track, attach_renderer
from igrs.profiles.av.server import BROWSE_FLAGS, MAX_PAGE, MAX_RESULT_CHARS, MEDIA_SERVER
from igrs.profiles.av.watch import Watchable

log = logging.getLogger(__name__)

MEDIA_SERVER_TYPES = ":device:MediaServer:"
MEDIA_RENDERER_TYPES = ":device:MediaRenderer:"
SEARCH_TARGETS = ("urn:schemas-upnp-org:device:MediaServer:1", "urn:schemas-upnp-org:device:MediaRenderer:1")


# --- talking to one DLNA device -----------------------------------------------------------------
class BoundedRequester(UpnpRequester):
    """async-upnp-client's requester for one DLNA device: only to that device's address (a
    description cannot point the bridge elsewhere), answers at most MAX_UPNP_BODY bytes, each
    request at most UPNP_HTTP_TIMEOUT s."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._session: aiohttp.ClientSession | None = None

    async def async_http_request(self, http_request: HttpRequest) -> HttpResponse:
        if urlsplit(http_request.url).hostname != self.host:
            raise UpnpCommunicationError(f"{http_request.url[:80]}: not the device's own address {self.host}")
        if self._session is None:  # one connection per request: UPnP stacks often close idle ones
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        timeout = aiohttp.ClientTimeout(total=http_request.timeout or UPNP_HTTP_TIMEOUT)
        try:
            async with self._session.request(http_request.method, http_request.url,
                                             headers=dict(http_request.headers or {}), data=http_request.body,
                                             timeout=timeout, allow_redirects=False) as resp:
                body = bytearray()
                while chunk := await resp.content.read(65536):
                    body += chunk
                    if len(body) > MAX_UPNP_BODY:
                        raise UpnpCommunicationError(f"answer over {MAX_UPNP_BODY} bytes")
                return HttpResponse(resp.status, resp.headers, body.decode(resp.charset or "utf-8", "replace"))
        except TimeoutError as exc:
            raise UpnpConnectionError(repr(exc)) from exc
        except aiohttp.ClientError as exc:
            raise UpnpConnectionError(repr(exc)) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class EventServer(AiohttpNotifyServer):
    """async-upnp-client's GENA callback server on one interface; a connection from any
    address but the renderers the bridge subscribed to is closed at once (a LAN peer cannot
    hold its connections), and a NOTIFY body is at most MAX_UPNP_BODY bytes."""

    def __init__(self, requester: UpnpRequester, address: str) -> None:
        super().__init__(requester, (address, 0))
        self.hosts: set[str] = set()

    async def async_start_server(self) -> None:
        import aiohttp.web

        self._aiohttp_server = aiohttp.web.Server(self._handle_request, client_max_size=MAX_UPNP_BODY)
        server = self._aiohttp_server
        self._server = await self._loop.create_server(lambda: _Guard(server(), self.hosts), *self._source[:2])
        self._source = self._server.sockets[0].getsockname()


class _Guard(asyncio.Protocol):
    """Hands a connection to aiohttp's protocol only if it comes from one of ``hosts``."""

    def __init__(self, inner: asyncio.Protocol, hosts: set[str]) -> None:
        self.inner, self.hosts, self.passed = inner, hosts, False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        if not peer or peer[0] not in self.hosts:
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            else:
                transport.close()
            return
        self.passed = True
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.passed:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.passed else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.passed:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def find_service(device: UpnpDevice, kind: str) -> UpnpService | None:
    return next((s for s in device.all_services if f":service:{kind}:" in s.service_type), None)


def _fail(what: str, exc: UpnpError, code_of: Callable[[int | None], int]) -> IGRSError:
    if isinstance(exc, UpnpActionResponseError):
        return IGRSError(f"{what}: UPnP error {exc.error_code}", return_code=code_of(exc.error_code))
    return IGRSError(f"{what}: the DLNA device does not answer ({type(exc).__name__})",
                     return_code=ReturnCode.BUSY)


# --- a DLNA server as an igrs MediaServer -------------------------------------------------------
class DlnaMediaServer(Watchable, Service):
    """The igrs ``MediaServer`` service of a DLNA server (its actions and attribute; answers
    from the DLNA server, re-encoded within the igrs limits)."""

    service_type = MEDIA_SERVER
    name = "Media server (DLNA)"
    SystemUpdateID = attribute(int, 0, notifiable=True)

    def __init__(self, cds: UpnpService) -> None:
        self.cds = cds

    async def _call(self, name: str, **kwargs: Any) -> Mapping[str, Any]:
        try:
            return await self.cds.action(name).async_call(**kwargs)
        except UpnpError as exc:
            raise _fail(name, exc, errors.cds_return_code) from None

    async def _page(self, name: str, **kwargs: Any) -> dict[str, str]:
        count = kwargs.pop("RequestedCount")
        start = kwargs.pop("StartingIndex")
        if start < 0 or count < 0:
            raise ContentError("negative StartingIndex or RequestedCount")
        raw = await self._call(name, Filter="*", StartingIndex=start,
                               RequestedCount=min(count or MAX_PAGE, MAX_PAGE), **kwargs)
        try:
            entries = from_didl(str(raw.get("Result") or ""))
        except ProtocolError as exc:
            raise IGRSError(f"{name}: the DLNA server answered {exc.reason}",
                            return_code=ReturnCode.INTERNAL_ERROR) from None
        didl = to_didl(entries)
        while len(didl) > MAX_RESULT_CHARS and entries:  # fewer, never a truncated document
            entries = entries[: len(entries) * 3 // 4]
            didl = to_didl(entries)
        return {"Result": didl, "NumberReturned": str(len(entries)),
                "TotalMatches": str(raw.get("TotalMatches") or 0), "UpdateID": str(raw.get("UpdateID") or 0)}

    @action
    async def Browse(self, ObjectID: str, BrowseFlag: str = "BrowseDirectChildren", StartingIndex: int = 0,
                     RequestedCount: int = 0, SortCriteria: str = "") -> dict[str, str]:
        if BrowseFlag not in BROWSE_FLAGS:
            raise ContentError(f"BrowseFlag must be one of {', '.join(BROWSE_FLAGS)}")
        return await self._page("Browse", ObjectID=ObjectID, BrowseFlag=BrowseFlag, StartingIndex=StartingIndex,
                                RequestedCount=RequestedCount, SortCriteria=SortCriteria)

    @action
    async def Search(self, ContainerID: str, SearchCriteria: str = "*", StartingIndex: int = 0,
                     RequestedCount: int = 0, SortCriteria: str = "") -> dict[str, str]:
        return await self._page("Search", ContainerID=ContainerID, SearchCriteria=SearchCriteria,
                                StartingIndex=StartingIndex, RequestedCount=RequestedCount,
                                SortCriteria=SortCriteria)

    @action
    async def GetSearchCapabilities(self) -> str:
        return str((await self._call("GetSearchCapabilities")).get("SearchCaps") or "")

    @action
    async def GetSortCapabilities(self) -> str:
        return str((await self._call("GetSortCapabilities")).get("SortCaps") or "")

    @action
    async def GetSystemUpdateID(self) -> int:
        await self.refresh()
        return self.SystemUpdateID

    async def refresh(self) -> None:
        """Follow the server's SystemUpdateID (minidlna sends no reliable events: asked)."""
        value = (await self._call("GetSystemUpdateID")).get("Id")
        if isinstance(value, int):
            self.SystemUpdateID = value


# --- a DLNA renderer as the output back end of an igrs renderer ---------------------------------------
class DmrOutput:
    """An igrs renderer's output back end that drives a DLNA renderer (AVTransport and
    RenderingControl actions). It reports the end of a stream (``reports_end``): STOPPED after
    PLAYING, seen in a LastChange event or, for a renderer without events, by polling."""

    def __init__(self, device: UpnpDevice, events: EventServer | None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.end: Callable[[], None] | None = None
        self.reports_end = True
        self.clock = clock
        self.dmr = DmrDevice(device, events.event_handler if events is not None else None)
        self.subscribe = events is not None
        avt = find_service(device, "AVTransport")
        if avt is None:
            raise IGRSError("the DLNA renderer has no AVTransport service")
        self.avt: UpnpService = avt
        self.rcs = find_service(device, "RenderingControl")
        self.track: Track | None = None
        self.evented = False  # subscribed to its events
        self.heard = False  # and some event arrived
        self._since: float | None = None  # when Play was sent (None: not expecting play)
        self._seen_playing = False
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.dmr.on_event = self._on_event
        if self.subscribe:
            try:
                await self.dmr.async_subscribe_services(auto_resubscribe=True)
                self.evented = True
            except UpnpError as exc:
                log.info("%s refuses event subscriptions (%s): polling it", self.dmr.name, exc)
        self._poller = asyncio.create_task(self._poll())

    async def _call(self, service: UpnpService, name: str, **kwargs: Any) -> Mapping[str, Any]:
        try:
            return await service.action(name).async_call(**kwargs)
        except UpnpError as exc:
            raise _fail(name, exc, errors.avt_return_code) from None

    def _on_event(self, service: UpnpService, variables: Sequence[Any]) -> None:
        if not self.heard:
            log.info("%s: events arrive", self.dmr.name)
        self.heard = True
        for var in variables:
            if var.name == "TransportState" and isinstance(var.value, str):
                self._state(var.value)

    def _state(self, state: str) -> None:
        if self._since is None:
            return
        if state == "PLAYING":
            self._seen_playing = True
        elif state in ("STOPPED", "NO_MEDIA_PRESENT") and (
            self._seen_playing or self.clock() - self._since > END_GRACE
        ):
            self._since = None
            if self.end is not None:
                self.end()

    async def _poll(self) -> None:
        while True:
            # subscribed but no event ever came (a firewall, a broken renderer): poll as without
            await asyncio.sleep(POLL_INTERVAL if self.evented and self.heard else POLL_INTERVAL_UNEVENTED)
            if self._since is None:
                continue
            try:
                info = await self._call(self.avt, "GetTransportInfo", InstanceID=0)
            except IGRSError as exc:
                log.debug("polling %s: %s", self.dmr.name, exc.reason)
                continue
            self._state(str(info.get("CurrentTransportState") or ""))

    def _metadata(self, track: Track) -> str:
        return to_didl([Entry(track.item_id or "0", "-1", track.title or track.uri.rsplit("/", 1)[-1],
                              media_class(track.mime) if track.mime else "object.item", url=track.uri,
                              mime=track.mime, duration=track.duration, protocol=track.protocol_info)])

    async def _set_uri(self) -> None:
        assert self.track is not None
        await self._call(self.avt, "SetAVTransportURI", InstanceID=0, CurrentURI=self.track.uri,
                         CurrentURIMetaData=self._metadata(self.track))

    # --- the OutputBackend protocol -----------------------------------------------------------------
    async def load(self, track: Track) -> None:
        self.track = track
        self._since = None
        await self._set_uri()

    async def play(self, position: float) -> None:
        media = await self._call(self.avt, "GetMediaInfo", InstanceID=0)
        if not media.get("CurrentURI"):  # cleared at the end of the last stream (gmediarender)
            await self._set_uri()
        await self._call(self.avt, "Play", InstanceID=0, Speed="1")
        self._since, self._seen_playing = self.clock(), False
        if position > 0:
            await self._call(self.avt, "Seek", InstanceID=0, Unit="REL_TIME", Target=hms(position))

    async def pause(self) -> None:
        self._since = None
        await self._call(self.avt, "Pause", InstanceID=0)

    async def stop(self) -> None:
        self._since = None
        with contextlib.suppress(IGRSError):  # a renderer with no media refuses Stop (701)
            await self._call(self.avt, "Stop", InstanceID=0)

    async def seek(self, position: float, playing: bool) -> None:
        try:
            await self._call(self.avt, "Seek", InstanceID=0, Unit="REL_TIME", Target=hms(position))
        except IGRSError:
            if not playing:
                raise
            await self.play(position)  # the renderer lost the stream: start it again there

    async def set_volume(self, volume: int, mute: bool) -> None:
        if self.rcs is not None:
            await self._call(self.rcs, "SetVolume", InstanceID=0, Channel="Master", DesiredVolume=volume)
            await self._call(self.rcs, "SetMute", InstanceID=0, Channel="Master", DesiredMute=mute)

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self.evented:
            with contextlib.suppress(Exception):
                await self.dmr.async_unsubscribe_services()


# --- the bridge ------------------------------------------------------------------------------------
def _name(text: str) -> str:
    """A DLNA friendly name as an IGRS name (control characters out, within the length cap)."""
    clean = re.sub(r"[\x00-\x1f\x7f]", " ", text).strip()[:MAX_NAME_LENGTH].strip()
    return clean or "DLNA device"


@dataclass
class Imported:
    """One DLNA device and the virtual IGRS device standing for it."""

    udn: str
    kind: str  # "MediaServer" | "MediaRenderer"
    location: str
    upnp: UpnpDevice
    device: Device
    requester: BoundedRequester
    service: DlnaMediaServer | MediaRenderer
    misses: int = 0
    closers: list[Callable[[], Any]] = field(default_factory=list)

    async def aclose(self) -> None:
        for closer in reversed(self.closers):
            with contextlib.suppress(Exception):
                await closer()
        await self.requester.aclose()


class UpnpImportBridge:
    """Finds DLNA servers and renderers by SSDP search on ``interfaces`` and keeps one virtual
    IGRS device per device found (at most MAX_IMPORTED), until it misses IMPORT_MISSES searches.

    ``on_device(kind, imported)`` is called with "appeared" / "gone"; ``on_pin(imported, pin)``
    when a phone asks one of them to pair."""

    def __init__(
        self,
        *,
        interfaces: Sequence[str] | None = None,
        port: int = IGRS_PORT,
        state_dir: str | os.PathLike[str],
        on_pin: Callable[[Imported, str], None] | None = None,
        on_device: Callable[[str, Imported], None] | None = None,
        fetch_allow: Iterable[str] = (),
        search_interval: float = IMPORT_SEARCH_INTERVAL,
    ) -> None:
        self.interface_specs = list(interfaces) if interfaces is not None else None
        self.port = port
        self.state_dir = Path(state_dir)
        self.on_pin = on_pin
        self.on_device = on_device
        self.fetch_allow = tuple(fetch_allow)
        self.search_interval = search_interval
        self.imported: dict[str, Imported] = {}
        self.interfaces: list[Interface] = []
        self._events: dict[str, EventServer] = {}
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self.interfaces = [i for i in netifaces.resolve(self.interface_specs) if i.family == 4]
        await self.search()
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.search_interval)
            try:
                await self.search()
            except Exception:
                log.exception("DLNA search failed")

    async def search(self) -> None:
        """One round: M-SEARCH for servers and renderers on every interface; devices found are
        imported, those missing IMPORT_MISSES rounds in a row go."""
        seen: set[str] = set()
        jobs: list[asyncio.Task[None]] = []

        async def heard(headers: CaseInsensitiveDict, iface: Interface) -> None:
            udn, location = headers.get_lower("_udn"), headers.get_lower("location")
            remote = headers.get_lower("_remote_addr")
            if not udn or not location or not remote:
                return
            seen.add(udn)
            if udn in self.imported or udn in self._pending or len(self.imported) >= MAX_IMPORTED:
                return
            if urlsplit(location).hostname != str(remote[0]):
                log.info("ignoring %s: LOCATION %s is not on its source address", udn, location[:80])
                return
            self._pending.add(udn)
            jobs.append(asyncio.create_task(self._import(udn, location, iface)))

        await asyncio.gather(*(ssdp.search(iface, st, IMPORT_SEARCH_MX, functools.partial(heard, iface=iface))
                               for iface in self.interfaces for st in SEARCH_TARGETS))
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
        for udn, imp in list(self.imported.items()):
            imp.misses = 0 if udn in seen else imp.misses + 1
            if imp.misses >= IMPORT_MISSES:
                await self._drop(udn)
            elif isinstance(imp.service, DlnaMediaServer) and udn in seen:
                with contextlib.suppress(IGRSError):
                    await imp.service.refresh()

    async def _import(self, udn: str, location: str, iface: Interface) -> None:
        host = urlsplit(location).hostname or ""
        requester = BoundedRequester(host)
        try:
            upnp = await UpnpFactory(requester, non_strict=True).async_create_device(location)
            kind = ("MediaServer" if MEDIA_SERVER_TYPES in upnp.device_type else
                    "MediaRenderer" if MEDIA_RENDERER_TYPES in upnp.device_type else "")
            if not kind or upnp.model_name == MODEL_NAME:  # not AV, or an igrs device already
                await requester.aclose()
                return
            imported = await self._represent(udn, kind, location, upnp, requester, iface)
        except (UpnpError, IGRSError, OSError, ValueError) as exc:
            log.warning("cannot import %s at %s: %r", udn, location[:80], exc)
            await requester.aclose()
            return
        finally:
            self._pending.discard(udn)
        self.imported[udn] = imported
        log.info("DLNA %s %r at %s is IGRS device %s", kind, upnp.friendly_name, location,
                 imported.device.device_id)
        if self.on_device is not None:
            self.on_device("appeared", imported)

    async def _represent(self, udn: str, kind: str, location: str, upnp: UpnpDevice,
                         requester: BoundedRequester, iface: Interface) -> Imported:
        holder: list[Imported] = []

        def show_pin(pin: str) -> None:
            if holder and self.on_pin is not None:
                self.on_pin(holder[0], pin)

        slug = re.sub(r"[^A-Za-z0-9_-]", "-", udn.removeprefix("uuid:"))[:64]
        device_type = "MediaServer" if kind == "MediaServer" else "TV"
        device = Device(name=_name(upnp.friendly_name), device_type=device_type,
                        interfaces=[iface.address], port=self.port,
                        state_dir=self.state_dir / slug, on_pin=show_pin, watch_interfaces=False,
                        manufacturer=_name(upnp.manufacturer or "DLNA"),
                        model_name=_name(upnp.model_name or "DLNA"))
        await device.start()
        closers: list[Callable[[], Any]] = [device.stop]
        try:
            service: DlnaMediaServer | MediaRenderer
            if kind == "MediaServer":
                cds = find_service(upnp, "ContentDirectory")
                if cds is None:
                    raise IGRSError("the DLNA server has no ContentDirectory service")
                service = DlnaMediaServer(cds)
                with contextlib.suppress(IGRSError):
                    await service.refresh()
                device.add_service(service)
            else:
                events = await self._event_server(iface)
                events.hosts.add(urlsplit(location).hostname or "")
                backend = DmrOutput(upnp, events)
                await backend.start()
                service = await attach_renderer(device, backend=backend, fetch_allow=self.fetch_allow)
                closers.append(service.aclose)
        except BaseException:
            for closer in reversed(closers):
                with contextlib.suppress(Exception):
                    await closer()
            raise
        imported = Imported(udn, kind, location, upnp, device, requester, service, closers=closers)
        holder.append(imported)
        return imported

    async def _event_server(self, iface: Interface) -> EventServer:
        async with self._lock:
            server = self._events.get(iface.address)
            if server is None:
                server = EventServer(_AnyHost(), iface.address)
                await server.async_start_server()
                self._events[iface.address] = server
            return server

    async def _drop(self, udn: str) -> None:
        imported = self.imported.pop(udn, None)
        if imported is None:
            return
        log.info("DLNA %s %r gone", imported.kind, imported.upnp.friendly_name)
        await imported.aclose()
        if self.on_device is not None:
            self.on_device("gone", imported)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for udn in list(self.imported):
            await self._drop(udn)
        for server in self._events.values():
            with contextlib.suppress(Exception):
                await server.async_stop_server()
        self._events.clear()


class _AnyHost(UpnpRequester):
    """The requester of the event servers' own SUBSCRIBE/UNSUBSCRIBE calls: to the renderers
    the bridge imported (their hosts were checked at import), bounded like BoundedRequester."""

    async def async_http_request(self, http_request: HttpRequest) -> HttpResponse:
        host = urlsplit(http_request.url).hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise UpnpCommunicationError(f"{host}: not an address") from None
        requester = BoundedRequester(host)
        try:
            return await requester.async_http_request(http_request)
        finally:
            await requester.aclose()
