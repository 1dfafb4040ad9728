"""aiohttp's side of the device's HTTP server: the connections handed over to serve a mounted
prefix (the profiles' plain HTTP handlers), which then also answer ``/IGRS`` requests.

aiohttp's C HTTP parser (llhttp) knows a fixed set of methods and refuses ``M-POST``
(RFC 2774), so these connections use aiohttp's own pure-Python request parser, which accepts
any method token. Each handler reports its requests to the own server's connection that
relays its socket (igrs.net.httpserver.HandedOff), which keeps timing it; a malformed request
is logged once per peer per interval, not one traceback each. Imported on the first
hand-off only: an idle device, profiles mounted or not, never imports aiohttp.web.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import HttpRequestParserPy, RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import MAX_MSG_QUEUE_SIZE, RequestHandler
from multidict import CIMultiDict

from igrs.constants import (
    HTTP_HANDOFF_BUFFER,
    HTTP_MALFORMED_LOG_INTERVAL,
    HTTP_MAX_HEADER_FIELDS,
    HTTP_MAX_LINE,
    MAX_HTTP_BODY,
    MAX_TRACKED_SOURCES,
)
from igrs.core.ratelimit import KeyedRateLimiter
from igrs.net.httpserver import HandedOff, HttpAnswer, HttpApp, HttpLimits, HttpRequest
from igrs.wire.httpu import Headers

log = logging.getLogger(__name__)

Dispatch = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class _Handler(RequestHandler):
    """aiohttp's connection protocol, reporting to the own server's relaying connection."""

    __slots__ = ("note_malformed", "observer")

    observer: HandedOff | None
    note_malformed: Callable[[str, str], None]

    async def finish_response(self, request: web.BaseRequest, resp: web.StreamResponse,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        except OSError as exc:  # the kernel dropped a peer that stopped reading (send timeout)
            log.debug("answer to %s not delivered: %s", request.remote, exc)
            return resp, True  # as aiohttp treats a reset: the connection is closed quietly
        finally:
            if self.observer is not None:
                self.observer.request_finished()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """A malformed request (4xx: the peer's fault) is answered without a traceback and
        logged once per peer per interval; handler failures (5xx) keep aiohttp's log."""
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        self.note_malformed(request.remote or "?", message or str(exc or status))
        if request.writer.output_size > 0:
            raise ConnectionError("an answer is already being sent")
        resp = web.Response(status=status, text=f"{status} {message or 'bad request'}\n")
        resp.force_close()
        return resp


class AnyMethodServer(web.Server):
    """A low-level aiohttp server whose connections accept any method token (M-POST) and
    report their requests to an observer (igrs.net.httpserver.HandedOff)."""

    def __init__(self, dispatch: Dispatch, limits: HttpLimits) -> None:
        self._handler_args: dict[str, Any] = {"keepalive_timeout": limits.idle_timeout, "access_log": None,
                                              "lingering_time": limits.linger_time}
        super().__init__(dispatch, request_factory=self._request, handler_cancellation=True)
        self._malformed = KeyedRateLimiter(1 / HTTP_MALFORMED_LOG_INTERVAL, 1.0, MAX_TRACKED_SOURCES)

    def __call__(self) -> RequestHandler:
        return self.handler_for(None)

    def handler_for(self, observer: HandedOff | None) -> RequestHandler:
        handler = _Handler(self, loop=self._loop, **self._handler_args)
        handler.observer = observer
        handler.note_malformed = self.note_malformed
        handler._parser = HttpRequestParserPy(
            handler, self._loop, HTTP_HANDOFF_BUFFER, max_line_size=HTTP_MAX_LINE, max_field_size=HTTP_MAX_LINE,
            max_headers=HTTP_MAX_HEADER_FIELDS, payload_exception=web.HTTPBadRequest,
            max_msg_queue_size=MAX_MSG_QUEUE_SIZE,
        )
        return handler

    def _request(self, message: RawRequestMessage, payload: StreamReader, protocol: RequestHandler,
                 writer: AbstractStreamWriter, task: asyncio.Task[None]) -> web.BaseRequest:
        request = web.BaseRequest(message, payload, protocol, writer, task, self._loop)
        observer = protocol.observer if isinstance(protocol, _Handler) else None
        if observer is not None:
            pending = not payload.is_eof()
            observer.request_started(pending)
            if pending:
                payload.on_eof(observer.body_done)
        return request

    def note_malformed(self, peer: str, reason: str) -> None:
        if self._malformed.allow(peer, self._loop.time()):
            log.warning("malformed HTTP request from %s: %s (more from this address are not logged "
                        "for %.0f s)", peer, reason[:200], HTTP_MALFORMED_LOG_INTERVAL)


def make_server(dispatch: Dispatch, limits: HttpLimits) -> AnyMethodServer:
    return AnyMethodServer(dispatch, limits)


async def serve(app: HttpApp, request: web.BaseRequest) -> web.StreamResponse:
    """Answer a request outside the mounted prefixes as the own server does."""
    req = HttpRequest(request.method, request.path, Headers(request.headers.items()), b"", request.remote or "")
    length = request.content_length
    if length is not None and length > MAX_HTTP_BODY:
        return response(app.refuse_body(req))
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_HTTP_BODY:
        chunk = await request.content.read(MAX_HTTP_BODY + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > MAX_HTTP_BODY:
        return response(app.refuse_body(req))
    req.body = b"".join(chunks)
    return response(await app.answer(req))


def response(answer: HttpAnswer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, headers=CIMultiDict(answer.headers))
