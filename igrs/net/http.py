"""The ``M-POST /IGRS`` endpoint and client, on the own HTTP/1.1 server and client
(igrs/net/httpserver.py, igrs/net/httpclient.py).

The server answers ``/IGRS`` and ``/IGRS/description.xml`` itself; a request under a mounted
prefix (the profiles' plain HTTP handlers, written for aiohttp) hands its connection to
aiohttp (igrs/net/aiohttp_bridge.py), which is imported on the first hand-off only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from igrs.constants import DESCRIPTION_PATH, IGRS_PATH, MAX_HTTP_BODY, ReturnCode
from igrs.errors import IGRSError, LimitExceeded, NotImplementedMessage, ProtocolError, RemoteError
from igrs.net.httpclient import HttpClientPool
from igrs.net.httpserver import TEXT, HandedOff, HttpAnswer, HttpLimits, HttpRequest, HttpServer
from igrs.wire import messages
from igrs.wire.answers import return_code
from igrs.wire.http11 import BadResponse, request_bytes
from igrs.wire.httpu import Headers
from igrs.wire.ids import DeviceId
from igrs.wire.memo import Memo
from igrs.wire.messages import ErrorResponse, Frame, SoapMessage, Status

if TYPE_CHECKING:
    import ssl

    from aiohttp import web

    RawHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)

Sealer = Callable[[SoapMessage, int], SoapMessage]


# Not frozen, for speed: made for every message (issue 15); never mutated, hashed as before.
@dataclass(slots=True, unsafe_hash=True)
class SealLater:
    """A reply to seal for a secure pipe once its SequenceId is chosen."""

    inner: SoapMessage
    seal: Sealer


NOTIFY_ACCEPTED = (("Ext", ""), ("Cache-Control", 'no-cache="Ext"'))
Reply = SoapMessage | SealLater | None  # None: a notify, answered 200 with no body
RequestHandler = Callable[[Frame, str], Awaitable[Reply]]
DEFAULT_REQUEST_TIMEOUT = 5.0
PER_HOST_REQUESTS = 16  # requests in flight to one host; more wait their turn, in order (specs/transport.md)
MAX_CLIENT_CONNECTIONS = 64  # requests (so connections) in flight to all hosts together
CLIENT_IDLE_TIMEOUT = 15.0  # s an unused kept-alive client connection stays open (< HTTP_IDLE_TIMEOUT)
_DESCRIPTION_HEADERS = [("Content-Type", "text/xml; charset=utf-8")]


def _http_status(code: int) -> int:
    """The HTTP status of an ErrorResponse equals its ReturnCode (specs/return-codes.md)."""
    return code if 400 <= code <= 599 else 500


def _request_sequence(headers: Headers) -> int:
    """The request's SequenceId if its header can be read (for an ErrorResponse's ack), else 0."""
    try:
        text = headers.optional_one(f"{headers.igrs_prefix()}-SequenceId") or ""
        return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else 0
    except ProtocolError:
        return 0


class IgrsHttpServer:
    """Serves ``M-POST /IGRS`` (and POST) plus ``GET /IGRS/description.xml``; mounted
    prefixes go to their plain HTTP handlers (through aiohttp)."""

    def __init__(self, device_id: DeviceId, handler: RequestHandler,
                 description: Callable[[], bytes], *, limits: HttpLimits | None = None) -> None:
        self.device_id = device_id
        self.handler = handler
        self.description = description
        self.errors: Counter[int] = Counter()
        self.port: int = 0
        self.mounts: dict[str, RawHandler] = {}  # path prefix -> plain HTTP handler (profiles)
        self.server = HttpServer(self, limits)
        self._web: Any = None  # the aiohttp server of handed-over connections, once needed
        self._seq = itertools.count(1)
        self._addresses: list[str] = []
        self.tls_port = 0  # the TLS port, once listening (listen_tls)

    async def start(self, addresses: list[str], port: int | None) -> int:
        """Listen on ``addresses``; ``port`` None tries 3880 then an ephemeral port."""
        candidates = [port] if port is not None else [3880, 0]
        last_error: OSError | None = None
        for candidate in candidates:
            try:
                self.port = await self._bind_all(addresses, candidate)
                return self.port
            except OSError as exc:
                await self.server.unlisten()
                if exc.errno != errno.EADDRINUSE:
                    raise
                last_error = exc
        assert last_error is not None
        raise last_error

    async def _bind_all(self, addresses: list[str], port: int, tls: ssl.SSLContext | None = None) -> int:
        self._addresses = addresses
        for address in addresses:
            bound = await self.server.listen(address, port, tls)
            if port == 0:  # every interface on the same port as the first
                port = bound
        return port

    async def listen_tls(self, context: ssl.SSLContext) -> int:
        """Also serve TLS (``context``, server side) on an ephemeral port of the same addresses,
        with the same caps and timers: once, until ``close``. Returns the port."""
        if not self.tls_port:
            self.tls_port = await self._bind_all(self._addresses, 0, context)
            log.info("TLS port %d", self.tls_port)
        return self.tls_port

    async def close(self) -> None:
        self.tls_port = 0
        await self.server.close()
        if self._web is not None:
            self._web.pre_shutdown()  # no new request on the handed-over connections ...
            await self._web.shutdown(1.0)  # ... and up to 1 s for those in progress
            self._web = None
        self.server.abort()  # what is left (a peer that does not read its answer)

    def mount(self, prefix: str, handler: RawHandler) -> None:
        """Serve plain HTTP under ``prefix`` (e.g. ``/av/``, ``/files/``) on the same port:
        application profiles stream media and files there, beside ``/IGRS``."""
        if not prefix.startswith("/") or not prefix.endswith("/") or prefix.startswith(IGRS_PATH + "/"):
            raise ValueError(f"bad mount prefix {prefix!r}")
        self.mounts[prefix] = handler

    # --- the own server's application (igrs.net.httpserver.HttpApp) --------------------------
    def mounted(self, path: str) -> bool:
        return bool(self.mounts) and any(path.startswith(prefix) for prefix in self.mounts)

    def takeover(self, observer: HandedOff) -> asyncio.Protocol:
        from igrs.net.aiohttp_bridge import make_server

        if self._web is None:
            self._web = make_server(self._dispatch, self.server.limits)
        return self._web.handler_for(observer)

    def handed_off(self) -> int:
        return self.server.handed_off()

    def refuse_body(self, request: HttpRequest) -> HttpAnswer:
        if request.path == IGRS_PATH and request.method in ("M-POST", "POST"):
            return self._error(_request_sequence(request.headers), ReturnCode.PAYLOAD_TOO_LARGE,
                               "body too large", None)
        return HttpAnswer(413, TEXT, b"request body too large\n")

    async def answer(self, request: HttpRequest) -> HttpAnswer:
        """The answer to a request outside the mounted prefixes (the seam the deliberately
        broken devices of broken_core wrap)."""
        path, method = request.path, request.method
        if path == DESCRIPTION_PATH and method in ("GET", "HEAD"):
            return HttpAnswer(200, _DESCRIPTION_HEADERS, self.description())
        if path != IGRS_PATH:
            return HttpAnswer(404, TEXT, b"not an IGRS endpoint\n")
        if method not in ("M-POST", "POST"):
            return HttpAnswer(405, [("Allow", "M-POST, POST")])
        try:
            frame = messages.decode(request.headers, request.body)
        except ProtocolError as exc:
            return self._error(_request_sequence(request.headers), exc.return_code, exc.reason, None)
        routing = frame.routing
        if routing.target is not None and routing.target != self.device_id:
            return self._error(routing.sequence_id, ReturnCode.NOT_FOUND,
                               "TargetDeviceId is not this device", routing.source)
        try:
            reply = await self.handler(frame, request.peer)
        except NotImplementedMessage as exc:
            return self._error(routing.sequence_id, exc.return_code, exc.reason, routing.source)
        except IGRSError as exc:
            return self._error(routing.sequence_id, exc.return_code, exc.reason, routing.source)
        except Exception:
            log.exception("handler failed for %s", routing.message_type)
            return self._error(routing.sequence_id, ReturnCode.INTERNAL_ERROR, "internal error",
                               routing.source)
        if reply is None:  # an accepted notify: 200, Ext, no body (messages.md §3)
            return HttpAnswer(200, list(NOTIFY_ACCEPTED))
        return self._respond(reply, routing.source, 200)

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        """The handler of the connections handed to aiohttp."""
        for prefix, raw in self.mounts.items():
            if request.path.startswith(prefix):
                return await raw(request)
        from igrs.net.aiohttp_bridge import serve

        return await serve(self, request)

    def _error(self, ack: int, code: int, reason: str, target: DeviceId | None) -> HttpAnswer:
        self.errors[code] += 1
        reply = ErrorResponse(Status(ack & 0xFFFFFFFF, code, reason))
        return self._respond(reply, target, _http_status(code))

    def _respond(self, reply: SoapMessage | SealLater, target: DeviceId | None,
                 status: int) -> HttpAnswer:
        seq = next(self._seq) & 0xFFFFFFFF or 1
        if isinstance(reply, SealLater):
            reply = reply.seal(reply.inner, seq)
        headers, body = messages.encode(reply, source=self.device_id, target=target, sequence_id=seq)
        return HttpAnswer(status, headers, body)


class IgrsHttpClient:
    """Sends unicast IGRS messages and decodes the answer (the own HTTP client: kept-alive
    connections per host, igrs/net/httpclient.py)."""

    def __init__(self, source: DeviceId, *, timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self.source = source
        self.timeout = timeout
        self._pool = HttpClientPool(max_body=MAX_HTTP_BODY, idle_timeout=CLIENT_IDLE_TIMEOUT)
        self._connections = asyncio.Semaphore(MAX_CLIENT_CONNECTIONS)
        self._endpoints: Memo[str, _Endpoint] = Memo(256)  # URL -> where to send (a few peers' URLs)
        self._seq = itertools.count(1)
        # (host, port) -> (FIFO slots, users). Requests queue here, *before* they are sealed:
        # a pool whose queue let new requests overtake waiting ones would leave a sealed
        # record waiting behind hundreds of younger ones, out of the peer's replay window
        # (specs/security.md), or timed out.
        self._slots: dict[tuple[str, int], _Slot] = {}

    @contextlib.asynccontextmanager
    async def _turn(self, key: tuple[str, int]) -> AsyncIterator[None]:
        """A place among the requests in flight to ``key`` and to all hosts (FIFO, PER_HOST_REQUESTS
        and MAX_CLIENT_CONNECTIONS) while the block runs (GET; send takes it inline)."""
        slot = self._slot(key)
        try:
            async with slot.turns, self._connections:
                yield
        finally:
            self._leave(key, slot)

    def _slot(self, key: tuple[str, int]) -> _Slot:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(asyncio.Semaphore(PER_HOST_REQUESTS))
        slot.users += 1
        return slot

    def _leave(self, key: tuple[str, int], slot: _Slot) -> None:
        slot.users -= 1
        if not slot.users:
            self._slots.pop(key, None)

    def next_sequence(self) -> int:
        return next(self._seq) & 0xFFFFFFFF or 1

    async def send(self, url: str, message: SoapMessage, target: DeviceId | None,
                   seal: Sealer | None = None) -> tuple[int, Frame | None]:
        """POST ``message`` (sealed by ``seal`` once its SequenceId is known); return the
        sequence id used and the decoded answer (None: a bare 200, the answer to a notify)."""
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            try:
                endpoint = _endpoint(url)
            except ValueError as exc:
                raise IGRSError(f"{url}: {exc}", return_code=ReturnCode.BUSY) from exc
            self._endpoints.remember(url, endpoint)
        # As asyncio.timeout(self.timeout) around _turn and the exchange, with one timer
        # handle and no context managers: this runs for every message (issue 15).
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        expired: list[bool] = []
        timer = asyncio.get_running_loop().call_later(self.timeout, _expire, task, expired)
        key = (endpoint.host, endpoint.port)
        slot = self._slot(key)
        try:
            # As ``async with slot.turns, self._connections``, without its four coroutines.
            await slot.turns.acquire()
            try:
                await self._connections.acquire()
                try:
                    seq = self.next_sequence()
                    wire_message = seal(message, seq) if seal is not None else message
                    headers, body = messages.encode(wire_message, source=self.source, target=target,
                                                    sequence_id=seq)
                    data = request_bytes("M-POST", endpoint.target, endpoint.host_header, headers, body)
                    try:
                        resp = await self._pool.request(endpoint.host, endpoint.port, data)
                    except LimitExceeded:
                        raise ProtocolError("answer too large") from None
                finally:
                    self._connections.release()
            finally:
                slot.turns.release()
            if resp.status == 200 and not resp.body:
                return seq, None
            if resp.status == 200:  # an answer naming no device comes from the one asked (messages.md §3)
                return seq, messages.decode(resp.headers, resp.body, answering=target)
            return seq, _error_answer(resp.status, resp.headers, resp.body, target)
        except BaseException as exc:
            # the timer's cancellation (not the caller's) is a timeout, as asyncio.timeout says
            if expired and task.uncancel() <= cancelling and isinstance(exc, asyncio.CancelledError):
                raise IGRSError(f"{url}: TimeoutError", return_code=ReturnCode.BUSY) from None
            if isinstance(exc, OSError | BadResponse):
                raise IGRSError(f"{url}: {str(exc) or type(exc).__name__}",
                                return_code=ReturnCode.BUSY) from exc
            raise
        finally:
            timer.cancel()
            self._leave(key, slot)

    async def get(self, url: str) -> bytes:
        """``GET url`` (the plain description, DESCRIPTION_PATH) on the same connections,
        limits and timeout as the messages; IGRSError unless it answers 200."""
        try:
            endpoint = _endpoint(url)
        except ValueError as exc:
            raise IGRSError(f"{url}: {exc}", return_code=ReturnCode.BAD_MESSAGE) from exc
        try:
            async with asyncio.timeout(self.timeout), self._turn((endpoint.host, endpoint.port)):
                data = request_bytes("GET", endpoint.target, endpoint.host_header, [], b"")
                resp = await self._pool.request(endpoint.host, endpoint.port, data)
        except LimitExceeded:
            raise ProtocolError(f"{url}: answer too large") from None
        except (TimeoutError, OSError, BadResponse) as exc:
            raise IGRSError(f"{url}: {str(exc) or type(exc).__name__}",
                            return_code=ReturnCode.BUSY) from exc
        if resp.status != 200:
            raise IGRSError(f"GET {url} answered HTTP {resp.status}", return_code=ReturnCode.NOT_FOUND)
        return resp.body

    async def close(self) -> None:
        self._pool.close()


@dataclass(slots=True)
class _Slot:
    """The requests to one host: FIFO turns (PER_HOST_REQUESTS at a time) and how many wait or run."""

    turns: asyncio.Semaphore
    users: int = 0


def _expire(task: asyncio.Task[object], expired: list[bool]) -> None:
    expired.append(True)
    task.cancel()


@dataclass(frozen=True, slots=True)
class _Endpoint:
    host: str  # to connect to (an IPv6 literal may carry its zone)
    port: int
    host_header: str
    target: str


def _endpoint(url: str) -> _Endpoint:
    """Where to send a request for ``url`` (http only); ValueError if it cannot be used."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http URL: {url[:80]!r}")
    host = parts.hostname
    plain = host.partition("%")[0]
    port = parts.port or 80
    host_header = f"[{plain}]:{port}" if ":" in plain else f"{plain}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Endpoint(host, port, host_header, target)


def _error_answer(status: int, headers: Headers, body: bytes, target: DeviceId | None) -> Frame:
    """A non-200 answer: its ErrorResponse when it carries a readable one, else a RemoteError
    with the HTTP status as the return code (messages.md §6) -- a peer such as ezbox answers
    every error with a bare status line (ezbox-dialect.md)."""
    try:
        frame = messages.decode(headers, body, answering=target)
    except ProtocolError:
        frame = None
    if frame is not None and isinstance(frame.message, ErrorResponse):
        return frame
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    raise RemoteError(f"HTTP {status} {phrase} (no IGRS ErrorResponse)", return_code=return_code(status))


def error_from(frame: Frame) -> Any:
    """The Status of an ErrorResponse frame, else None."""
    return frame.message.status if isinstance(frame.message, ErrorResponse) else None
