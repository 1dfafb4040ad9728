"""The fetch proxy: every HTTP fetch this device makes for a peer (ffmpeg and ffprobe of the
renderer, the recorder's download) goes through a forward proxy on 127.0.0.1 that applies the
fetch policy to each connection (specs/av-profile.md §12).

ffmpeg would otherwise follow a redirect, a playlist entry or a DNS answer anywhere. Through
the proxy, every request it makes — the first, each redirect, each nested URL of an HLS
playlist — is checked against the policy for the peer the fetch is for, the host name is
resolved here and the connection goes to the address that was checked. Only GET and HEAD are
forwarded; https goes through CONNECT, checked the same way.

    proxy = FetchProxy(policy)
    route = await proxy.route(origin="10.0.0.12")      # one per requesting peer
    subprocess env: route.env (http_proxy=...), ffmpeg input args: route.input_args(uri)
    aiohttp: session.get(uri, proxy=route.url, proxy_headers=route.headers)
    await proxy.aclose()

A request without the route's token (Proxy-Authorization: Basic) gets 407 (ffmpeg then sends
it); so the proxy serves only the fetches the device itself started.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from igrs.profiles.av.fetch_policy import FetchPolicy, FetchRefused, Target
from igrs.wire.http11 import HttpError, find_head_end, parse_request_head, response_bytes

log = logging.getLogger(__name__)

PROXY_HOST = "127.0.0.1"
PROXY_USER = "igrs"
MAX_PROXY_CONNECTIONS = 32  # project choice: connections through one device's proxy at once
MAX_PROXY_ROUTES = 64  # project choice: requesting peers remembered (least recently used dropped)
PROXY_HEAD_TIMEOUT = 10.0  # s, project choice: to receive a request head
PROXY_CONNECT_TIMEOUT = 10.0  # s, project choice: to connect to the checked address
PROXY_IDLE_TIMEOUT = 30.0  # s, project choice: no byte either way (or a peer not reading) ends it
CHUNK = 64 * 1024
# Connection-level fields not forwarded (RFC 9110 §7.6.1) plus the proxy's own credentials.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authorization", "proxy-connection",
                         "proxy-authenticate", "te", "trailer", "upgrade"})
# project choice: what ffmpeg may open for an http(s) input (no file:, data:, pipe:, udp: ...)
FFMPEG_HTTP_PROTOCOLS = "http,https,tls,tcp,httpproxy"
FFMPEG_RECEIVE_PROTOCOLS = "udp,rtp"


@dataclass(frozen=True, slots=True)
class FetchRoute:
    """How a fetch for one requesting peer reaches the proxy."""

    url: str  # http://127.0.0.1:<port>
    token: str

    @property
    def env(self) -> dict[str, str]:
        """Environment for ffmpeg/ffprobe: every http(s) connection through the proxy."""
        proxy = self.url.replace("://", f"://{PROXY_USER}:{self.token}@", 1)
        return {"http_proxy": proxy, "https_proxy": proxy, "no_proxy": "", "NO_PROXY": ""}

    @property
    def headers(self) -> dict[str, str]:
        """The proxy credentials for an HTTP client (aiohttp's ``proxy_headers``)."""
        basic = base64.b64encode(f"{PROXY_USER}:{self.token}".encode()).decode()
        return {"Proxy-Authorization": f"Basic {basic}"}


def input_args(uri: str) -> list[str]:
    """ffmpeg/ffprobe options before ``-i uri``: the protocols that input may open."""
    receive = uri.partition(":")[0].lower() in ("udp", "rtp")
    return ["-protocol_whitelist", FFMPEG_RECEIVE_PROTOCOLS if receive else FFMPEG_HTTP_PROTOCOLS]


class FetchProxy:
    """A forward proxy on 127.0.0.1 (started on first use) enforcing ``policy``."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.refused = 0  # connections refused by the policy (for tests and logs)
        self._server: asyncio.Server | None = None
        self._routes: OrderedDict[str, str] = OrderedDict()  # token -> origin
        self._by_origin: dict[str, str] = {}
        self._slots = asyncio.Semaphore(MAX_PROXY_CONNECTIONS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    async def route(self, origin: str) -> FetchRoute:
        """The route for fetches on behalf of a peer at ``origin``."""
        async with self._lock:
            if self._server is None:
                self._server = await asyncio.start_server(self._accept, PROXY_HOST, 0)
        token = self._by_origin.get(origin)
        if token is None:
            token = secrets.token_urlsafe(18)
            self._by_origin[origin] = token
            self._routes[token] = origin
            while len(self._routes) > MAX_PROXY_ROUTES:
                _, old = self._routes.popitem(last=False)
                self._by_origin.pop(old, None)
        self._routes.move_to_end(token)
        port = self._server.sockets[0].getsockname()[1]
        return FetchRoute(f"http://{PROXY_HOST}:{port}", token)

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if server is not None:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    # --- one connection -----------------------------------------------------------------------
    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._slots.locked():
            await _answer(writer, 503, "the fetch proxy is busy")
            return
        async with self._slots:
            upstream: asyncio.StreamWriter | None = None
            answered = False  # once bytes went back, a failure can only close the connection
            try:
                raw = await asyncio.wait_for(_read_head(reader), PROXY_HEAD_TIMEOUT)
                head = parse_request_head(raw)
                origin = self._origin(head.headers.get("Proxy-Authorization"))
                if origin is None:
                    await _answer(writer, 407, "proxy credentials needed",
                                  [("Proxy-Authenticate", 'Basic realm="igrs fetch"')])
                elif head.method == "CONNECT":
                    up_reader, upstream = await self._open(f"https://{head.target}/", origin)
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    answered = True
                    await _pump_both(reader, writer, up_reader, upstream)
                elif head.method not in ("GET", "HEAD") or head.content_length or head.transfer_encoding:
                    await _answer(writer, 405, "only GET and HEAD are fetched", [("Allow", "GET, HEAD")])
                elif not head.target.lower().startswith("http://"):
                    await _answer(writer, 400, "absolute http:// URL expected")
                else:
                    up_reader, upstream = await self._open(head.target, origin)
                    upstream.write(_forwarded_head(head.method, head.target, list(head.headers)))
                    answered = True
                    await _pump(up_reader, writer)
            except FetchRefused as exc:
                self.refused += 1
                log.warning("fetch refused: %s", exc.reason)
                await _answer(writer, 403, exc.reason)
            except HttpError as exc:
                await _answer(writer, exc.status, exc.reason)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                log.debug("fetch proxy connection ended: %r", exc)
                if not answered:
                    await _answer(writer, 502, "upstream unreachable")
            finally:
                for w in (upstream, writer):
                    if w is not None:
                        w.close()

    def _origin(self, auth: str | None) -> str | None:
        if not auth or not auth.lower().startswith("basic "):
            return None
        try:
            user, _, token = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return self._routes.get(token) if user == PROXY_USER else None

    async def _open(self, url: str, origin: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        target, addresses = await self.policy.allowed_addresses(url, origin)
        last: Exception | None = None
        for addr in addresses:
            try:
                async with asyncio.timeout(PROXY_CONNECT_TIMEOUT):
                    return await asyncio.open_connection(str(addr), target.port)
            except (OSError, TimeoutError) as exc:
                last = exc
        raise OSError(f"{Target.of(url).host}: {last}")


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """The request head (find_head_end caps its size: HttpError 400 beyond)."""
    buf = bytearray()
    while True:
        end = find_head_end(buf)
        if end >= 0:
            return bytes(buf[:end])
        data = await reader.read(4096)
        if not data:
            raise asyncio.IncompleteReadError(bytes(buf), None)
        buf += data


def _forwarded_head(method: str, url: str, headers: list[tuple[str, str]]) -> bytes:
    parts = url.split("/", 3)
    path = "/" + (parts[3] if len(parts) > 3 else "")
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _HOP_BY_HOP]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _answer(writer: asyncio.StreamWriter, status: int, text: str,
                  headers: list[tuple[str, str]] | None = None) -> None:
    with contextlib.suppress(Exception):
        writer.write(response_bytes(status, [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])],
                                    (text + "\n").encode(), extra="Connection: close\r\n"))
        await asyncio.wait_for(writer.drain(), PROXY_IDLE_TIMEOUT)


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until EOF; a side silent (or not reading) for PROXY_IDLE_TIMEOUT ends it."""
    while True:
        data = await asyncio.wait_for(src.read(CHUNK), PROXY_IDLE_TIMEOUT)
        if not data:
            return
        dst.write(data)
        await asyncio.wait_for(dst.drain(), PROXY_IDLE_TIMEOUT)


async def _pump_both(a_reader: asyncio.StreamReader, a_writer: asyncio.StreamWriter,
                     b_reader: asyncio.StreamReader, b_writer: asyncio.StreamWriter) -> None:
    tasks = [asyncio.ensure_future(_pump(a_reader, b_writer)), asyncio.ensure_future(_pump(b_reader, a_writer))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


__all__ = ["FetchProxy", "FetchRoute", "input_args"]
