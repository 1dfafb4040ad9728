"""ISDP UDP endpoints on asyncio-dgram: one socket set per chosen interface.

Per interface: one receive socket per multicast group, bound to the group address and
joined on that interface only (``IP_MULTICAST_ALL`` off, so it hears that interface and
nothing else), and one unicast socket bound to the interface address that sends
(multicast with ``IP_MULTICAST_IF`` set explicitly — never the default multicast route)
and receives unicast replies. Receive queues are bounded; excess datagrams are dropped
and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from asyncio_dgram.aio import DatagramServer, Protocol

from igrs.constants import (
    IPV4_GROUP,
    IPV4_GROUP_ALT,
    IPV6_GROUP,
    ISDP_RECV_BUFFER,
    MAX_DATAGRAM,
    MULTICAST_TTL,
)
from igrs.core.discovery import Action, Interface, SendMulticast

if TYPE_CHECKING:
    from socket import _Address

log = logging.getLogger(__name__)

IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
IPV6_MULTICAST_ALL = getattr(socket, "IPV6_MULTICAST_ALL", 29)
DatagramHandler = Callable[[bytes, tuple[str, int], str], None]
_Deliver = Callable[[bytes, "_Address"], None]
_RecvQueue = asyncio.Queue[tuple[bytes | None, "_Address | None"]]


# Datagrams read from the socket in one read callback, the transport's own included: a burst
# (2,000 answers to one search) then costs one event-loop iteration per batch instead of one
# per datagram (asyncio's datagram transport reads one per readiness event), and each read
# allocates MAX_DATAGRAM + 1 bytes instead of the transport's 256 KiB. Bounded, so that the
# other sockets and tasks of the loop still take turns. (The transport's own read is set to
# MAX_DATAGRAM + 1 bytes as well where it has that setting, see connection_made.)
_READ_BATCH = 64


class _DirectProtocol(Protocol):
    """asyncio-dgram's protocol with its receive queue bypassed: each datagram goes straight
    to ``deliver`` from the transport's read callback, and that callback goes on reading the
    socket until it is empty (at most _READ_BATCH datagrams). Queueing each for a reader task
    cost a task switch and a loop iteration per datagram, and a control point answered by
    2,000 devices within MX fell behind (benchmarks/bench_lan.py). The kernel's buffer
    (ISDP_RECV_BUFFER) absorbs bursts; the handlers are synchronous and short."""

    def __init__(self, recvq: _RecvQueue, excq: asyncio.Queue[Exception], drained: asyncio.Event,
                 drops: Counter[str], deliver: _Deliver, sock: socket.socket) -> None:
        super().__init__(recvq, excq, drained)
        self._drops = drops
        self._deliver = deliver
        self._recvfrom = sock.recvfrom
        self._reading: asyncio.BaseTransport | None = None
        # False after a callback whose socket held nothing more: the next one reads only its
        # own datagram. A socket that gets one datagram at a time (each device's group socket
        # hearing a search) then pays the empty read (a syscall and an exception) every other
        # time, not every time; one that gets a burst stays batching.
        self._batching = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._reading = transport
        if hasattr(transport, "max_size"):  # asyncio's selector transport (not uvloop's)
            # its own read (the first of a batch) allocated 256 KiB per datagram, too
            transport.max_size = MAX_DATAGRAM + 1

    def datagram_received(self, data: bytes, addr: _Address) -> None:
        recvfrom, deliver, transport = self._recvfrom, self._deliver, self._reading
        left = _READ_BATCH
        while True:
            if len(data) > MAX_DATAGRAM:  # a larger one arrives cut to MAX_DATAGRAM + 1 bytes
                self._drops["oversized"] += 1
            else:
                deliver(data, addr)
            left -= 1
            if not left or transport is None or transport.is_closing():  # batch done, or closed by a handler
                return
            if not self._batching:
                self._batching = True
                return
            try:
                data, addr = recvfrom(MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                self._batching = left < _READ_BATCH - 1  # something more was read
                return
            except OSError as exc:
                self.error_received(exc)
                return

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (e.g. port unreachable after a reply) are not worth a log line.
        log.debug("datagram error: %s", exc)


async def _stream(sock: socket.socket, drops: Counter[str], deliver: _Deliver) -> DatagramServer:
    loop = asyncio.get_running_loop()
    recvq: _RecvQueue = asyncio.Queue()
    excq: asyncio.Queue[Exception] = asyncio.Queue()
    drained = asyncio.Event()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _DirectProtocol(recvq, excq, drained, drops, deliver, sock), sock=sock)
    # asyncio-dgram's stub types this first argument as a protocol; it is the transport.
    return DatagramServer(transport, recvq, excq, drained)  # type: ignore[arg-type]


def _recv_buffer(sock: socket.socket) -> None:
    """Ask for ISDP_RECV_BUFFER of receive buffer (the kernel caps it at net.core.rmem_max):
    the answers of a LAN's devices to one search arrive within MX, in bursts."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, ISDP_RECV_BUFFER)


def _reuse(sock: socket.socket, iface: Interface) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if hasattr(socket, "SO_BINDTODEVICE"):
        # Sockets of one process bound to the same group and port on several interfaces
        # otherwise share its datagrams arbitrarily: tie each to its own interface.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.os_name.encode())


def _v4_group_socket(group: str, port: int, iface: Interface) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        _recv_buffer(sock)
        _reuse(sock, iface)
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        sock.bind((group, port))
        mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(iface.address))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _v4_unicast_socket(iface: Interface) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        _recv_buffer(sock)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface.address))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, MULTICAST_TTL)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.bind((iface.address, 0))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _v6_group_socket(port: int, iface: Interface) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        _recv_buffer(sock)
        _reuse(sock, iface)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        with contextlib.suppress(OSError):  # Linux >= 4.20
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)
        sock.bind((IPV6_GROUP, port, 0, iface.scope_id))
        mreq = socket.inet_pton(socket.AF_INET6, IPV6_GROUP) + struct.pack("@I", iface.scope_id)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _v6_unicast_socket(iface: Interface) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        _recv_buffer(sock)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, iface.scope_id)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, MULTICAST_TTL)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
        sock.bind((iface.address, 0, 0, iface.scope_id))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class IsdpEndpoints:
    """The sockets of all chosen interfaces, feeding one datagram handler."""

    def __init__(self, interfaces: list[Interface], port: int, handler: DatagramHandler,
                 *, listen_groups: bool = True) -> None:
        self.interfaces = {i.name: i for i in interfaces}
        self.port = port
        self.handler = handler
        self.listen_groups = listen_groups
        self.drops: Counter[str] = Counter()
        self._unicast: dict[str, DatagramServer] = {}
        self._streams: list[DatagramServer] = []

    async def start(self) -> None:
        try:
            for iface in self.interfaces.values():
                await self._open(iface)
        except BaseException:
            await self.close()
            raise

    async def _open(self, iface: Interface) -> None:
        if iface.family == 4:
            groups = [IPV4_GROUP, IPV4_GROUP_ALT] if self.listen_groups else []
            group_socks = [_v4_group_socket(g, self.port, iface) for g in groups]
            unicast = _v4_unicast_socket(iface)
        else:
            group_socks = [_v6_group_socket(self.port, iface)] if self.listen_groups else []
            unicast = _v6_unicast_socket(iface)
        for sock in [*group_socks, unicast]:
            stream = await _stream(sock, self.drops, functools.partial(self._deliver, iface.name))
            self._streams.append(stream)
            if sock is unicast:
                self._unicast[iface.name] = stream

    def _deliver(self, iface_name: str, data: bytes, addr: _Address) -> None:
        # AF_INET gives (host, port), AF_INET6 (host, port, flowinfo, scope_id).
        peer = cast("tuple[Any, ...]", addr)
        host: str = peer[0]
        if len(peer) == 4 and peer[3] and "%" not in host:
            host = f"{host}%{peer[3]}"  # keep the zone of link-local IPv6 senders
        try:
            self.handler(data, (host, peer[1]), iface_name)
        except Exception:  # a handler bug must not break the transport
            log.exception("ISDP handler failed on a datagram from %s", addr)

    def local_address(self, iface_name: str) -> tuple[str, int]:
        sockname = self._unicast[iface_name].sockname
        return sockname[0], sockname[1]

    async def send_multicast(self, iface_name: str, payload: bytes, group: str = "") -> None:
        """To the interface's group (``group`` "") or to another IPv4 group (IPV4_GROUP_ALT),
        always out of that interface (IP_MULTICAST_IF of its unicast socket)."""
        iface = self.interfaces[iface_name]
        stream = self._unicast.get(iface_name)
        if stream is None:
            return
        if group and (iface.family != 4 or group not in (IPV4_GROUP, IPV4_GROUP_ALT)):
            raise ValueError(f"not a group this stack sends to: {group!r}")
        dest: tuple = (group or IPV4_GROUP, self.port) if iface.family == 4 else (
            IPV6_GROUP, self.port, 0, iface.scope_id)
        await self._send(stream, payload, dest)

    async def send_unicast(self, iface_name: str, address: tuple[str, int], payload: bytes) -> None:
        iface = self.interfaces[iface_name]
        stream = self._unicast.get(iface_name)
        if stream is None:
            return
        dest: tuple = address if iface.family == 4 else (
            address[0].partition("%")[0], address[1], 0, iface.scope_id)
        await self._send(stream, payload, dest)

    async def execute(self, actions: Sequence[Action]) -> None:
        """Send what a discovery state machine asked for (unknown interfaces skipped)."""
        for action in actions:
            if action.interface not in self.interfaces:
                continue
            if isinstance(action, SendMulticast):
                await self.send_multicast(action.interface, action.payload, action.group)
            else:
                await self.send_unicast(action.interface, action.address, action.payload)

    async def _send(self, stream: DatagramServer, payload: bytes, dest: tuple) -> None:
        try:
            await stream.send(payload, dest)
        except OSError as exc:  # e.g. interface went down: log, keep running
            self.drops["send_error"] += 1
            log.warning("ISDP send to %s failed: %s", dest[0], exc)

    async def close(self) -> None:
        for stream in self._streams:
            stream.close()
        self._streams.clear()
        self._unicast.clear()
