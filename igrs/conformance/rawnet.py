"""The test device's own wire access: raw ISDP datagrams and raw HTTP exchanges, every
byte recorded as evidence. Nothing here interprets a rule; the cases do (``cases.py``).

IPv4 only in this slice. Multicast leaves only through the chosen interface
(``IP_MULTICAST_IF`` set explicitly, via ``igrs.net.isdp``'s socket helpers).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from igrs.core.discovery import Interface
from igrs.net.isdp import _v4_group_socket, _v4_unicast_socket
from igrs.wire.httpu import HttpMessage, parse_head

MAX_EVIDENCE_BYTES = 4096  # per recorded message, in reports


@dataclass
class Exchange:
    """One recorded message: direction (``>`` sent, ``<`` received), peer, bytes, time."""

    direction: str
    peer: str
    data: bytes
    at: float = field(default_factory=time.monotonic)
    note: str = ""

    def text(self) -> str:
        data = self.data[:MAX_EVIDENCE_BYTES]
        extra = len(self.data) - MAX_EVIDENCE_BYTES
        more = f"\n[... {extra} more bytes]" if extra > 0 else ""
        head = f"{self.direction} {self.peer}" + (f"  ({self.note})" if self.note else "")
        return f"{head}\n{data.decode('utf-8', 'replace')}{more}"


class Recorder:
    """Collects the exchanges of the case being run."""

    def __init__(self) -> None:
        self.items: list[Exchange] = []

    def add(self, direction: str, peer: str, data: bytes, note: str = "") -> Exchange:
        ex = Exchange(direction, peer, data, note=note)
        self.items.append(ex)
        return ex

    def take(self) -> list[Exchange]:
        items, self.items = self.items, []
        return items


# --- HTTP ------------------------------------------------------------------------------------
@dataclass
class HttpResult:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes
    tls: str = ""  # over TLS: the protocol version and cipher negotiated ("TLSv1.3 TLS_AES_256_GCM_SHA384")

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


async def http_exchange(host: str, port: int, request: bytes, rec: Recorder, *,
                        timeout: float = 5.0, note: str = "", tls: ssl.SSLContext | None = None) -> HttpResult:
    """Send ``request`` as is on a fresh TCP connection (in TLS with the client context
    ``tls``: the plaintext is recorded); read the answer to EOF or to its Content-Length.
    Raises TimeoutError / ConnectionError / ValueError / OSError (ssl.SSLError)."""
    rec.add(">", f"{host}:{port}", request, note + (" (inside TLS)" if tls is not None else ""))
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=tls, server_hostname="" if tls is not None else None), timeout)
    negotiated = ""
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is not None:
        negotiated = f"{ssl_object.version()} {(ssl_object.cipher() or ('?',))[0]}"
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(_read_response(reader), timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    rec.add("<", f"{host}:{port}", raw, f"inside {negotiated}" if negotiated else "")
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head:
        raise ValueError("no HTTP answer")
    start, headers = parse_head(head)
    parts = start.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"malformed status line {start[:60]!r}")
    return HttpResult(int(parts[1]), list(headers), body, raw, negotiated)


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await reader.read(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    if length is None:
        with contextlib.suppress(Exception):
            body += await reader.read()
        return head + b"\r\n\r\n" + body
    while len(body) < length:
        chunk = await reader.read(length - len(body))
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


# --- ISDP ------------------------------------------------------------------------------------
@dataclass
class Datagram:
    data: bytes
    source: tuple[str, int]
    at: float


class UnicastSocket:
    """The searcher's socket: bound to the interface address on an ephemeral port, sends to
    the group through that interface only, receives the unicast answers."""

    def __init__(self, iface: Interface, rec: Recorder) -> None:
        self.iface = iface
        self.rec = rec
        self.sock = _v4_unicast_socket(iface)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]

    async def send(self, data: bytes, dest: tuple[str, int], note: str = "") -> float:
        self.rec.add(">", f"{dest[0]}:{dest[1]}", data, note)
        await asyncio.get_running_loop().sock_sendto(self.sock, data, dest)
        return time.monotonic()

    async def collect(self, duration: float, until: Callable[[bytes], bool] | None = None) -> list[Datagram]:
        """Every datagram received within ``duration`` seconds (or until one satisfies ``until``)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + duration
        out: list[Datagram] = []
        while (left := end - loop.time()) > 0:
            try:
                data, src = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65536), left)
            except TimeoutError:
                break
            out.append(Datagram(data, src[:2], time.monotonic()))
            self.rec.add("<", f"{src[0]}:{src[1]}", data)
            if until is not None and until(data):
                break
        return out

    def close(self) -> None:
        self.sock.close()


class GroupListener:
    """Hears the ISDP group on one interface in the background (announcements, byebyes)."""

    def __init__(self, iface: Interface, group: str, port: int) -> None:
        self.sock = _v4_group_socket(group, port, iface)
        self.heard: list[Datagram] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, src = await loop.sock_recvfrom(self.sock, 65536)
            except OSError:
                return
            self.heard.append(Datagram(data, src[:2], time.monotonic()))
            if len(self.heard) > 10000:
                del self.heard[:5000]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sock.close()


def http_message_of(result: HttpResult) -> HttpMessage:
    from igrs.wire.httpu import Headers

    return HttpMessage(None, None, result.status, "", Headers(result.headers), result.body)


def tcp_host_port(location: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(location)
    host = parts.hostname or ""
    return host, parts.port or 80


def raw_socket_family_ok() -> bool:
    return hasattr(socket, "IP_MULTICAST_IF")
