"""AV multicast device group (5-21): one media server streams MPEG-TS over UDP multicast to a
group of media clients; every member receives the same datagrams. specs/av-profile.md §9.

Every sending socket sets ``IP_MULTICAST_IF`` to the chosen interface address and every
receiving socket joins with ``imr_interface`` = that address (TESTBED.md rule 1): in the root
namespace that address is 127.0.0.1.

    sender = MulticastSender(source, "239.255.77.1", 5004, interface="127.0.0.1")
    await sender.start()
    async with MulticastReceiver("239.255.77.1", 5004, "127.0.0.1") as rx:
        data = await rx.recv(timeout=2)

The ``AVMulticastGroup`` service lets a controller start and stop group streams on a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import socket
import struct
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

from igrs.constants import ReturnCode
from igrs.errors import IGRSError
from igrs.node.service import Service, action, attribute
from igrs.profiles.av.live import TS_PACKET, LiveSource

if TYPE_CHECKING:
    from igrs.node.device import Device
    from igrs.profiles.av.server import MediaServer

AV_MULTICAST_GROUP = "urn:IGRS:ServiceType:AVMulticastGroup:1"
PACKETS_PER_DATAGRAM = 7  # 1316 bytes: the usual MPEG-TS over UDP payload
GROUP_RANGE = ipaddress.ip_network("239.255.0.0/16")  # project choice: organisation-local scope
DEFAULT_PORT = 5004
DEFAULT_TTL = 1
MAX_GROUP_STREAMS = 8
RECV_BUFFER = 4 << 20


def check_group(group: str) -> str:
    try:
        addr = ipaddress.ip_address(group)
    except ValueError:
        raise IGRSError(f"bad group address {group[:40]!r}", return_code=ReturnCode.BAD_MESSAGE) from None
    if addr not in GROUP_RANGE:
        raise IGRSError(f"group address must be in {GROUP_RANGE}", return_code=ReturnCode.BAD_MESSAGE)
    return str(addr)


def parse_udp_uri(uri: str) -> tuple[str, int]:
    parts = urlsplit(uri)
    if parts.scheme.lower() != "udp" or parts.hostname is None:
        raise IGRSError("not a udp://group:port URI", return_code=ReturnCode.BAD_MESSAGE)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise IGRSError("bad port in URI", return_code=ReturnCode.BAD_MESSAGE) from None
    return check_group(parts.hostname), port


def sender_socket(interface: str, ttl: int = DEFAULT_TTL) -> socket.socket:
    """A UDP socket whose multicast leaves by ``interface`` (an IPv4 address) only."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.bind((interface, 0))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def receiver_socket(group: str, port: int, interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        sock.bind((group, port))  # only this group's datagrams
        mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class MulticastSender:
    """Sends every chunk of ``source`` to ``group:port`` as 7-packet datagrams."""

    def __init__(
        self,
        source: LiveSource,
        group: str,
        port: int = DEFAULT_PORT,
        *,
        interface: str = "127.0.0.1",
        ttl: int = DEFAULT_TTL,
    ) -> None:
        self.source = source
        self.group = check_group(group)
        self.port = port
        self.interface = interface
        self.ttl = ttl
        self.datagrams = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def uri(self) -> str:
        return f"udp://{self.group}:{self.port}"

    async def start(self) -> None:
        sock = sender_socket(self.interface, self.ttl)
        self._task = asyncio.create_task(self._run(sock))

    async def _run(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        size = TS_PACKET * PACKETS_PER_DATAGRAM
        try:
            async with self.source.subscribe() as chunks:
                async for chunk in chunks:
                    for off in range(0, len(chunk), size):
                        await loop.sock_sendto(sock, chunk[off : off + size], (self.group, self.port))
                        self.datagrams += 1
        finally:
            sock.close()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class MulticastReceiver:
    """Joins ``group`` on ``interface`` (an IPv4 address) and receives its datagrams."""

    def __init__(self, group: str, port: int = DEFAULT_PORT, interface: str = "127.0.0.1") -> None:
        self.group = check_group(group)
        self.port = port
        self.interface = interface
        self.sock: socket.socket | None = None

    async def __aenter__(self) -> Self:
        self.sock = receiver_socket(self.group, self.port, self.interface)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def recv(self, timeout: float | None = None) -> bytes:
        """One datagram, or b"" after ``timeout`` seconds."""
        assert self.sock is not None, "use 'async with'"
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.sock_recv(self.sock, 65536), timeout)
        except TimeoutError:
            return b""


class AVMulticastGroup(Service):
    """Starts and stops multicast group streams of a media server's items or live streams."""

    service_type = AV_MULTICAST_GROUP
    name = "AV multicast group"
    Streams: attribute[list[str]] = attribute(list[str], [], notifiable=True)  # udp:// URIs being sent

    def __init__(self, server: MediaServer, interface: str) -> None:
        self.server = server
        self.interface = interface
        self.senders: dict[str, tuple[MulticastSender, LiveSource | None]] = {}
        self._next = itertools.count(1)

    @action
    async def StartGroupStream(self, Source: str, Group: str = "", Port: int = DEFAULT_PORT) -> str:
        """Send ``Source`` (an item id of the server, or ``live-<name>``) to the group address
        (default: the next 239.255.77.x) and port; returns the ``udp://group:port`` URI members play."""
        if not 1024 <= Port <= 65535:
            raise IGRSError("Port must be 1024..65535", return_code=ReturnCode.BAD_MESSAGE)
        group = check_group(Group) if Group else f"239.255.77.{next(self._next) % 254 + 1}"
        uri = f"udp://{group}:{Port}"
        if uri in self.senders:
            raise IGRSError(f"{uri} is already in use", return_code=ReturnCode.CONFLICT)
        if len(self.senders) >= MAX_GROUP_STREAMS:
            raise IGRSError("too many group streams", return_code=ReturnCode.BUSY)
        obj = self.server.directory.get(Source)  # 404 if unknown
        owned: LiveSource | None = None
        if obj.live and obj.live in self.server.live:
            source = self.server.live[obj.live]
        elif obj.path is not None and obj.info is not None and obj.info.mime.startswith(("video/", "audio/")):
            source = owned = LiveSource.from_file(obj.path, loop=True)
        else:
            raise IGRSError("Source is not a playable item", return_code=ReturnCode.BAD_MESSAGE)
        sender = MulticastSender(source, group, Port, interface=self.interface)
        await sender.start()
        self.senders[uri] = (sender, owned)
        self.Streams = sorted(self.senders)
        return uri

    @action
    async def StopGroupStream(self, URI: str) -> bool:
        entry = self.senders.pop(URI, None)
        if entry is None:
            raise IGRSError("no such group stream", return_code=ReturnCode.NOT_FOUND)
        sender, owned = entry
        await sender.aclose()
        if owned is not None:
            await owned.aclose()
        self.Streams = sorted(self.senders)
        return True

    async def aclose(self) -> None:
        for uri in list(self.senders):
            await self.StopGroupStream(uri)


def attach_multicast_group(
    device: Device, server: MediaServer, *, interface: str | None = None, service_id: int | None = None
) -> AVMulticastGroup:
    """Let ``device`` (hosting ``server``) stream to AV multicast groups on ``interface``
    (default: the device's first IPv4 interface address)."""
    addr = interface or next((i.address for i in device.interfaces if i.family == 4), None)
    if addr is None:
        raise ValueError("no IPv4 interface to send multicast on (start the device first)")
    group = AVMulticastGroup(server, addr)
    device.add_service(group, service_id)
    return group
