"""SSDP for the bridge, on async-upnp-client's responder, announcer and search listener, with
the sockets confined to the configured interface (specs/upnp-bridge.md §2; TESTBED.md rule 1).

async-upnp-client sets ``IP_MULTICAST_IF`` and joins the group on the source address it is
given, but its search responder binds ``*:1900``: on Linux such a socket receives the group's
datagrams from every interface any process joined it on, and would answer them. Here the
listening socket binds ``239.255.255.250:1900`` with ``IP_MULTICAST_ALL`` off (only groups
joined on this socket's own interface are delivered), M-SEARCHes from outside the interface's
network are ignored, and each source address is rate limited.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from itertools import cycle
from typing import Any

from async_upnp_client.search import SsdpSearchListener
from async_upnp_client.server import (
    SsdpAdvertisementAnnouncer,
    SsdpSearchResponder,
    UpnpServerDevice,
    _build_advertisements,
)
from async_upnp_client.ssdp import SsdpProtocol, build_ssdp_packet, get_ssdp_socket
from async_upnp_client.utils import CaseInsensitiveDict

from igrs.bridges.upnp.constants import (
    SSDP_GROUP,
    SSDP_MAX_AGE,
    SSDP_MAX_SOURCES,
    SSDP_PORT,
    SSDP_SEARCH_BURST,
    SSDP_SEARCH_RATE,
    SSDP_SERVER,
    SSDP_TTL,
)
from igrs.core.discovery import Interface
from igrs.core.ratelimit import KeyedRateLimiter

log = logging.getLogger(__name__)

IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)  # Linux <linux/in.h>
_SERVER_LINE = re.compile(rb"(?im)^SERVER:[^\r\n]*")


def _our_headers(headers: CaseInsensitiveDict) -> CaseInsensitiveDict:
    headers["SERVER"] = SSDP_SERVER
    headers["CACHE-CONTROL"] = f"max-age={SSDP_MAX_AGE}"
    return headers


def group_socket(iface: Interface) -> socket.socket:
    """A socket receiving SSDP multicast on ``iface`` only (never bound to ``*:1900``)."""
    source, target = (iface.address, 0), (SSDP_GROUP, SSDP_PORT)
    sock, _, _ = get_ssdp_socket(source, target)
    sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, SSDP_TTL)
    sock.bind((SSDP_GROUP, SSDP_PORT))
    return sock


def sending_socket(iface: Interface) -> socket.socket:
    """A socket sending from ``iface`` (``IP_MULTICAST_IF`` set, bound to its address)."""
    sock, _, _ = get_ssdp_socket((iface.address, 0), (SSDP_GROUP, SSDP_PORT))
    sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, SSDP_TTL)
    sock.bind((iface.address, 0))
    return sock


class Responder(SsdpSearchResponder):
    """Answers M-SEARCHes heard on one interface, from that interface's network only."""

    def __init__(self, device: UpnpServerDevice, iface: Interface) -> None:
        super().__init__(device, source=(iface.address, 0), target=(SSDP_GROUP, SSDP_PORT))
        self.iface = iface
        self.limiter = KeyedRateLimiter(SSDP_SEARCH_RATE, SSDP_SEARCH_BURST, SSDP_MAX_SOURCES)
        self.ignored = 0

    async def async_start(self) -> None:
        loop = self._loop
        await loop.create_datagram_endpoint(
            lambda: SsdpProtocol(loop, on_connect=self._on_connect_response), sock=sending_socket(self.iface))
        await loop.create_datagram_endpoint(
            lambda: SsdpProtocol(loop, on_connect=self._on_connect, on_data=self._on_data),
            sock=group_socket(self.iface))

    async def async_stop(self) -> None:
        for transport in (self._transport, self._response_transport):
            if transport is not None:
                transport.close()

    def _on_data(self, request_line: str, headers: CaseInsensitiveDict) -> None:
        remote: Any = headers.get_lower("_remote_addr")
        if not _remote_in(headers, self.iface) or not self.limiter.allow(remote[0], self._loop.time()):
            self.ignored += 1
            return
        super()._on_data(request_line, headers)

    def _build_response(self, service_type: str, unique_service_name: str) -> bytes:
        data = super()._build_response(service_type, unique_service_name)
        return _SERVER_LINE.sub(b"SERVER:" + SSDP_SERVER.encode(), data, count=1)


class Announcer(SsdpAdvertisementAnnouncer):
    """NOTIFY alive/byebye on one interface; the whole set at start-up, then the library's
    rotation (one every 30 s: each is repeated well within max-age/2)."""

    def __init__(self, device: UpnpServerDevice, iface: Interface) -> None:
        super().__init__(device, source=(iface.address, 0), target=(SSDP_GROUP, SSDP_PORT))
        self.iface = iface
        self._all = [_our_headers(h) for h in _build_advertisements(self.target, device)]
        self._advertisements = cycle(self._all)

    async def async_start(self) -> None:
        loop = self._loop
        await loop.create_datagram_endpoint(
            lambda: SsdpProtocol(loop, on_connect=self._on_connect), sock=sending_socket(self.iface))
        await self.async_wait_for_transport_protocol()
        self._announce_next()
        protocol = self._transport.get_protocol() if self._transport is not None else None
        assert isinstance(protocol, SsdpProtocol)
        for headers in self._all[1:]:
            protocol.send_ssdp_packet(build_ssdp_packet("NOTIFY * HTTP/1.1", headers), self.target)


def located(device: UpnpServerDevice, base_uri: str) -> UpnpServerDevice:
    """A view of ``device`` whose LOCATION is on ``base_uri`` (state and services shared)."""
    view = copy.copy(device)
    view.base_uri = base_uri
    return view


class SsdpEndpoints:
    """Responders and announcers of UPnP root devices on the given interfaces."""

    def __init__(self) -> None:
        self._parts: list[Responder | Announcer] = []

    async def add(self, device: UpnpServerDevice, iface: Interface, base_uri: str) -> None:
        view = located(device, base_uri)
        for part in (Responder(view, iface), Announcer(view, iface)):
            await part.async_start()
            self._parts.append(part)

    async def aclose(self) -> None:
        parts, self._parts = self._parts, []
        for part in parts:
            try:
                await part.async_stop()
            except Exception:
                log.debug("SSDP stop failed", exc_info=True)


class Searcher(SsdpSearchListener):
    """M-SEARCH from one interface (async-upnp-client's listener on an interface-bound
    socket); responses from outside the interface's network are dropped."""

    def __init__(self, iface: Interface, search_target: str, mx: int,
                 on_response: Callable[[CaseInsensitiveDict], Awaitable[None]]) -> None:
        async def accept(headers: CaseInsensitiveDict) -> None:
            if _remote_in(headers, iface):
                await on_response(headers)

        super().__init__(async_callback=accept, source=(iface.address, 0), target=(SSDP_GROUP, SSDP_PORT),
                         timeout=mx, search_target=search_target)
        self.iface = iface

    async def async_start(self) -> None:
        self._target_host = ""  # multicast: responses from any host (of the network)
        loop = self.loop
        await loop.create_datagram_endpoint(
            lambda: SsdpProtocol(loop, on_connect=self._on_connect, on_data=self._on_data),
            sock=sending_socket(self.iface))


def _remote_in(headers: CaseInsensitiveDict, iface: Interface) -> bool:
    remote: Any = headers.get_lower("_remote_addr")
    try:
        return ipaddress.ip_address(str(remote[0])) in iface.network
    except (TypeError, ValueError, IndexError):
        return False


async def search(iface: Interface, search_target: str, mx: int,
                 on_response: Callable[[CaseInsensitiveDict], Awaitable[None]]) -> None:
    """One M-SEARCH from ``iface``; responses for ``mx`` s go to ``on_response``."""
    searcher = Searcher(iface, search_target, mx, on_response)
    await searcher.async_start()
    try:
        searcher.async_search()
        await asyncio.sleep(mx)
    finally:
        searcher.async_stop()
