"""The ``M-POST /IGRS`` endpoint and client on aiohttp.

aiohttp's C HTTP parser (llhttp) knows a fixed set of methods and refuses ``M-POST``
(RFC 2774), so the server's connections use aiohttp's own pure-Python request parser,
which accepts any method token. Everything else is stock aiohttp.
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
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.http_parser import HttpRequestParserPy
from aiohttp.web_exceptions import HTTPRequestEntityTooLarge
from multidict import CIMultiDict

from igrs.constants import DESCRIPTION_PATH, IGRS_PATH, MAX_HTTP_BODY, ReturnCode
from igrs.errors import IGRSError, NotImplementedMessage, ProtocolError
from igrs.wire import messages
from igrs.wire.httpu import Headers
from igrs.wire.ids import DeviceId
from igrs.wire.messages import ErrorResponse, Frame, SoapMessage, Status

log = logging.getLogger(__name__)

Sealer = Callable[[SoapMessage, int], SoapMessage]


@dataclass(frozen=True, slots=True)
class SealLater:
    """A reply to seal for a secure pipe once its SequenceId is chosen."""

    inner: SoapMessage
    seal: Sealer


Reply = SoapMessage | SealLater | None  # None: a notify, answered 200 with no body
RequestHandler = Callable[[Frame, str], Awaitable[Reply]]
RawHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
DEFAULT_REQUEST_TIMEOUT = 5.0
PER_HOST_REQUESTS = 8  # requests in flight to one host; more wait their turn, in order
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


class _AnyMethodServer(web.Server):
    """A low-level aiohttp server whose connections accept any method token (M-POST)."""

    def __call__(self) -> web.RequestHandler:  # type: ignore[override]
        handler = super().__call__()
        handler._parser = HttpRequestParserPy(  # type: ignore[attr-defined]
            handler, self._loop, 2**16, max_line_size=8190, max_field_size=8190,
            max_headers=64, payload_exception=aiohttp.web_exceptions.HTTPBadRequest,
        )
        return handler


class IgrsHttpServer:
    """Serves ``M-POST /IGRS`` (and POST) plus ``GET /IGRS/description.xml``."""

    def __init__(self, device_id: DeviceId, handler: RequestHandler,
                 description: Callable[[], bytes]) -> None:
        self.device_id = device_id
        self.handler = handler
        self.description = description
        self.errors: Counter[int] = Counter()
        self.port: int = 0
        self.mounts: dict[str, RawHandler] = {}  # path prefix -> plain HTTP handler (profiles)
        self._runner: web.ServerRunner | None = None
        self._seq = itertools.count(1)

    async def start(self, addresses: list[str], port: int | None) -> int:
        """Listen on ``addresses``; ``port`` None tries 3880 then an ephemeral port."""
        server = _AnyMethodServer(self._dispatch, handler_cancellation=True)
        self._runner = web.ServerRunner(server, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        candidates = [port] if port is not None else [3880, 0]
        last_error: OSError | None = None
        for candidate in candidates:
            try:
                self.port = await self._bind_all(addresses, candidate)
                return self.port
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                last_error = exc
                await self._runner.cleanup()
                self._runner = web.ServerRunner(server, shutdown_timeout=1.0, access_log=None)
                await self._runner.setup()
        assert last_error is not None
        raise last_error

    async def _bind_all(self, addresses: list[str], port: int) -> int:
        assert self._runner is not None
        for address in addresses:
            site = web.TCPSite(self._runner, address, port, reuse_address=True)
            await site.start()
            if port == 0:  # every interface on the same port as the first
                port = self._runner.addresses[-1][1]
        return port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def mount(self, prefix: str, handler: RawHandler) -> None:
        """Serve plain HTTP under ``prefix`` (e.g. ``/av/``, ``/files/``) on the same port:
        application profiles stream media and files there, beside ``/IGRS``."""
        if not prefix.startswith("/") or not prefix.endswith("/") or prefix.startswith(IGRS_PATH + "/"):
            raise ValueError(f"bad mount prefix {prefix!r}")
        self.mounts[prefix] = handler

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        for prefix, raw in self.mounts.items():
            if request.path.startswith(prefix):
                return await raw(request)
        if request.path == DESCRIPTION_PATH and request.method in ("GET", "HEAD"):
            return web.Response(body=self.description(), content_type="text/xml", charset="utf-8")
        if request.path != IGRS_PATH:
            return web.Response(status=404, text="not an IGRS endpoint\n")
        if request.method not in ("M-POST", "POST"):
            return web.Response(status=405, headers={"Allow": "M-POST, POST"})
        peer = request.remote or ""
        headers = Headers(request.headers.items())
        try:
            body = await _read_capped(request)
            frame = messages.decode(headers, body)
        except HTTPRequestEntityTooLarge:
            return self._error(_request_sequence(headers), ReturnCode.PAYLOAD_TOO_LARGE, "body too large", None)
        except ProtocolError as exc:
            return self._error(_request_sequence(headers), exc.return_code, exc.reason, None)
        routing = frame.routing
        if routing.target is not None and routing.target != self.device_id:
            return self._error(routing.sequence_id, ReturnCode.NOT_FOUND,
                               "TargetDeviceId is not this device", routing.source)
        try:
            reply = await self.handler(frame, peer)
        except NotImplementedMessage as exc:
            return self._error(routing.sequence_id, exc.return_code, exc.reason, routing.source)
        except IGRSError as exc:
            return self._error(routing.sequence_id, exc.return_code, exc.reason, routing.source)
        except Exception:
            log.exception("handler failed for %s", routing.message_type)
            return self._error(routing.sequence_id, ReturnCode.INTERNAL_ERROR, "internal error",
                               routing.source)
        if reply is None:
            return web.Response(status=200)
        return self._respond(reply, routing.source, 200)

    def _error(self, ack: int, code: int, reason: str, target: DeviceId | None) -> web.Response:
        self.errors[code] += 1
        reply = ErrorResponse(Status(ack & 0xFFFFFFFF, code, reason))
        return self._respond(reply, target, _http_status(code))

    def _respond(self, reply: SoapMessage | SealLater, target: DeviceId | None,
                 status: int) -> web.Response:
        seq = next(self._seq) & 0xFFFFFFFF or 1
        if isinstance(reply, SealLater):
            reply = reply.seal(reply.inner, seq)
        headers, body = messages.encode(reply, source=self.device_id, target=target, sequence_id=seq)
        return web.Response(status=status, body=body, headers=CIMultiDict(headers))


async def _read_capped(request: web.BaseRequest) -> bytes:
    length = request.content_length
    if length is not None and length > MAX_HTTP_BODY:
        raise HTTPRequestEntityTooLarge(max_size=MAX_HTTP_BODY, actual_size=length)
    body = await request.content.read(MAX_HTTP_BODY + 1)
    if len(body) > MAX_HTTP_BODY:
        raise HTTPRequestEntityTooLarge(max_size=MAX_HTTP_BODY, actual_size=len(body))
    return body


class IgrsHttpClient:
    """Sends unicast IGRS messages and decodes the answer (one pooled aiohttp session)."""

    def __init__(self, source: DeviceId, *, timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self.source = source
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._seq = itertools.count(1)
        # host:port -> (FIFO slots, users). Requests queue here, *before* they are sealed,
        # not in aiohttp's pool: its queue lets new requests overtake waiting ones, and a
        # sealed record that waits behind hundreds of younger ones falls out of the peer's
        # replay window (specs/security.md) or times out.
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=64, limit_per_host=PER_HOST_REQUESTS),
            )
        return self._session

    @contextlib.asynccontextmanager
    async def _turn(self, url: str) -> AsyncIterator[None]:
        key = urlsplit(url).netloc
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = (asyncio.Semaphore(PER_HOST_REQUESTS), [0])
        slot[1][0] += 1
        try:
            async with slot[0]:
                yield
        finally:
            slot[1][0] -= 1
            if not slot[1][0]:
                self._slots.pop(key, None)

    def next_sequence(self) -> int:
        return next(self._seq) & 0xFFFFFFFF or 1

    async def send(self, url: str, message: SoapMessage, target: DeviceId | None,
                   seal: Sealer | None = None) -> tuple[int, Frame | None]:
        """POST ``message`` (sealed by ``seal`` once its SequenceId is known); return the
        sequence id used and the decoded answer (None: a bare 200, the answer to a notify)."""
        try:
            async with asyncio.timeout(self.timeout), self._turn(url):
                seq = self.next_sequence()
                wire_message = seal(message, seq) if seal is not None else message
                headers, body = messages.encode(wire_message, source=self.source, target=target,
                                                sequence_id=seq)
                return await self._post(url, headers, body, seq)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise IGRSError(f"{url}: {exc or type(exc).__name__}",
                            return_code=ReturnCode.BUSY) from exc

    async def _post(self, url: str, headers: Any, body: bytes, seq: int) -> tuple[int, Frame | None]:
        async with self._client().request("M-POST", url, data=body, headers=CIMultiDict(headers)) as resp:
            data = await resp.content.read(MAX_HTTP_BODY + 1)
            if len(data) > MAX_HTTP_BODY:
                raise ProtocolError("answer too large")
            if resp.status == 200 and not data:
                return seq, None
            return seq, messages.decode(Headers(resp.headers.items()), data)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def error_from(frame: Frame) -> Any:
    """The Status of an ErrorResponse frame, else None."""
    return frame.message.status if isinstance(frame.message, ErrorResponse) else None
