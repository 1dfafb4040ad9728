"""aiohttp's side of the device's HTTP server: the connections handed over to serve a mounted
prefix (the profiles' plain HTTP handlers), which then also answer ``/IGRS`` requests.

aiohttp's C HTTP parser (llhttp) knows a fixed set of methods and refuses ``M-POST``
(RFC 2774), so these connections use aiohttp's own pure-Python request parser, which accepts
any method token. Imported on the first mount or hand-off only: an idle device without
profiles never imports aiohttp.web.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_parser import HttpRequestParserPy
from aiohttp.web_protocol import MAX_MSG_QUEUE_SIZE
from multidict import CIMultiDict

from igrs.constants import HTTP_MAX_HEADER_FIELDS, HTTP_MAX_LINE, MAX_HTTP_BODY
from igrs.net.httpserver import HttpAnswer, HttpApp, HttpRequest
from igrs.wire.httpu import Headers

Dispatch = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class AnyMethodServer(web.Server):
    """A low-level aiohttp server whose connections accept any method token (M-POST)."""

    def __call__(self) -> web.RequestHandler:
        handler = super().__call__()
        handler._parser = HttpRequestParserPy(
            handler, self._loop, 2**16, max_line_size=HTTP_MAX_LINE, max_field_size=HTTP_MAX_LINE,
            max_headers=HTTP_MAX_HEADER_FIELDS, payload_exception=web.HTTPBadRequest,
            max_msg_queue_size=MAX_MSG_QUEUE_SIZE,
        )
        return handler


def make_server(dispatch: Dispatch, idle_timeout: float) -> AnyMethodServer:
    return AnyMethodServer(dispatch, handler_cancellation=True, access_log=None,
                           keepalive_timeout=idle_timeout)


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
