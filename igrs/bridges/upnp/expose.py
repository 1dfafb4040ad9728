"""IGRS -> UPnP: ``attach_upnp(device)`` exposes the device's MediaServer as a UPnP
``MediaServer:1`` and its MediaRenderer as a ``MediaRenderer:1`` (specs/upnp-bridge.md §3),
served on the device's own HTTP port and announced by SSDP on its IPv4 interfaces only.

    server = await attach_media_server(device, {"Videos": "/srv/videos"})
    renderer = await attach_renderer(device)
    upnp = await attach_upnp(device)        # VLC, phones, TVs now see both
    ...
    await upnp.aclose()                     # byebye, unmounted
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from async_upnp_client.aiohttp import AiohttpRequester
from async_upnp_client.const import DeviceInfo
from async_upnp_client.server import UpnpServerDevice

from igrs import __version__
from igrs.bridges.upnp.connection_manager import CM_TYPE, ConnectionManager
from igrs.bridges.upnp.constants import (
    DMR_DLNADOC,
    DMS_DLNADOC,
    INTERFACE_CHECK,
    MANUFACTURER,
    MODEL_NAME,
    MODEL_URL,
    UDN_NAMESPACE,
    UPNP_PREFIX,
)
from igrs.bridges.upnp.expose_renderer import (
    AVTransport,
    RenderingControl,
    media_renderer_device,
    sink_protocols,
)
from igrs.bridges.upnp.expose_server import CDS_TYPE, ContentDirectory, media_server_device, source_protocols
from igrs.bridges.upnp.hosting import UpnpHost, icons
from igrs.bridges.upnp.ssdp import SsdpEndpoints
from igrs.errors import IGRSError
from igrs.profiles.av.fetch_policy import FetchPolicy
from igrs.profiles.av.renderer import MediaRenderer
from igrs.profiles.av.server import MediaServer

if TYPE_CHECKING:
    from igrs.core.discovery import Interface
    from igrs.node.device import Device

log = logging.getLogger(__name__)



def udn(device: Device, role: str) -> str:
    """A UDN stable for the device's identity (project choice: uuid5 of its id and role)."""
    return f"uuid:{uuid.uuid5(uuid.UUID(UDN_NAMESPACE), f'{device.device_id}#{role}')}"


def identity(device: Device, role: str) -> DeviceInfo:
    return DeviceInfo(
        device_type="", friendly_name=device.name, manufacturer=MANUFACTURER, manufacturer_url=MODEL_URL,
        model_description=f"IGRS {device.device_type.name} over UPnP AV", model_name=MODEL_NAME,
        model_number=__version__, model_url=MODEL_URL, serial_number=str(device.device_id),
        udn=udn(device, role), upc=None, presentation_url=None, url="", icons=icons(),
        xml=ET.Element("server_device"))


_S = TypeVar("_S")


def _services(device: Device, kind: type[_S]) -> list[_S]:
    found: list[_S] = []
    for info in device.services.services:
        service = device.services.service(info.service_id)
        if isinstance(service, kind):
            found.append(service)
    return found


class UpnpExposure:
    """The UPnP side of one igrs Device (``attach_upnp``): ``aclose()`` sends the byebyes and
    stops serving it."""

    def __init__(self, device: Device, host: UpnpHost, roots: list[UpnpServerDevice],
                 stops: list[Callable[[], None]]) -> None:
        self.device = device
        self.host = host
        self.roots = roots
        self._stops = stops
        self._ssdp = SsdpEndpoints()
        self._interfaces: list[Interface] = []
        self._watch: asyncio.Task[None] | None = None

    @property
    def locations(self) -> list[str]:
        """The description URLs, per root device and interface."""
        return [f"{base}{root.device_url}" for root in self.roots for base in self._bases().values()]

    def _bases(self) -> dict[str, str]:
        bases = {}
        for iface in self.device.interfaces:
            loc = self.device.locations.get(iface.name)
            if iface.family == 4 and loc:
                bases[iface.name] = f"http://{iface.address}:{urlsplit(loc).port}"
        return bases

    async def start(self) -> None:
        await self._announce()
        self._watch = asyncio.create_task(self._follow_interfaces())

    async def _announce(self) -> None:
        await self._ssdp.aclose()
        self._interfaces = self.device.interfaces
        bases = self._bases()
        for iface in self._interfaces:
            if iface.name in bases:
                for root in self.roots:
                    await self._ssdp.add(root, iface, bases[iface.name])

    async def _follow_interfaces(self) -> None:
        while True:
            await asyncio.sleep(INTERFACE_CHECK)
            if self.device.interfaces != self._interfaces:
                try:
                    await self._announce()
                except OSError as exc:
                    log.warning("SSDP on the new interfaces failed: %s", exc)

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        for stop in self._stops:
            stop()
        self._stops.clear()
        await self._ssdp.aclose()
        await self.host.aclose()  # answers 404 from now on, mounted or not
        mounts = getattr(self.device.http, "mounts", None)
        if isinstance(mounts, dict):
            mounts.pop(UPNP_PREFIX, None)
        for root in self.roots:
            for service in root.all_services:
                lastchange = getattr(service, "lastchange", None)
                if lastchange is not None:
                    lastchange.close()


async def attach_upnp(device: Device, *, fetch_allow: Iterable[str] = ()) -> UpnpExposure:
    """Expose the started ``device``'s MediaServer and MediaRenderer (attach them first) over
    UPnP AV / DLNA on its IPv4 interfaces. URIs that UPnP control points set on the renderer
    follow its fetch policy (``fetch_allow`` widens the policy of the UPnP requests' checks
    when the device has no renderer of its own)."""
    servers: list[MediaServer] = _services(device, MediaServer)
    renderers: list[MediaRenderer] = _services(device, MediaRenderer)
    if not servers and not renderers:
        raise IGRSError("nothing to expose over UPnP: attach a media server or a renderer first")
    policy = renderers[0].policy if renderers else FetchPolicy.for_device(device, fetch_allow)
    host = UpnpHost(policy)
    requester = AiohttpRequester()
    roots: list[UpnpServerDevice] = []
    stops: list[Callable[[], None]] = []
    base = next(iter(device.locations.values()), "")
    if servers:
        server = servers[0]
        root = media_server_device(identity(device, "MediaServer"))(requester, base)
        cds = root.services[CDS_TYPE]
        cm = root.services[CM_TYPE]
        assert isinstance(cds, ContentDirectory) and isinstance(cm, ConnectionManager)
        cds.bind(server)
        cm.set_protocols(source_protocols(server), [])

        def on_server(name: str, cds: ContentDirectory = cds, cm: ConnectionManager = cm,
                      server: MediaServer = server) -> None:
            if name == "SystemUpdateID":
                cds.update()
                cm.set_protocols(source_protocols(server), [])

        stops.append(server.watch(on_server))
        host.add(root, DMS_DLNADOC)
        roots.append(root)
    if renderers:
        renderer = renderers[0]
        root = media_renderer_device(identity(device, "MediaRenderer"))(requester, base)
        avt = root.services["urn:schemas-upnp-org:service:AVTransport:1"]
        rcs = root.services["urn:schemas-upnp-org:service:RenderingControl:1"]
        cm = root.services[CM_TYPE]
        assert isinstance(avt, AVTransport) and isinstance(rcs, RenderingControl)
        assert isinstance(cm, ConnectionManager)
        avt.bind(renderer)
        rcs.bind(renderer)
        cm.set_protocols([], sink_protocols())

        def on_renderer(_name: str, avt: AVTransport = avt, rcs: RenderingControl = rcs) -> None:
            avt.lastchange.changed()
            rcs.lastchange.changed()

        stops.append(renderer.watch(on_renderer))
        host.add(root, DMR_DLNADOC)
        roots.append(root)
    device.http.mount(UPNP_PREFIX, host.handle)
    exposure = UpnpExposure(device, host, roots, stops)
    try:
        await exposure.start()
    except BaseException:
        await exposure.aclose()
        raise
    log.info("UPnP: %s exposed at %s", device.name, ", ".join(exposure.locations))
    return exposure
