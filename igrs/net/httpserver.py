"""The device's HTTP/1.1 server: an asyncio Protocol around the sans-IO igrs.wire.http11.

It serves what the IGRS endpoint needs: Content-Length bodies, keep-alive, pipelining
(answers in request order), with every buffer bounded and every wait timed
(specs/transport.md, "HTTP server"). A request under a mounted prefix hands its connection
over to another protocol for good (aiohttp's, for the profiles' plain HTTP handlers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from igrs.constants import (
    HTTP_BODY_TIMEOUT,
    HTTP_HEADER_TIMEOUT,
    HTTP_IDLE_TIMEOUT,
    HTTP_LINGER_TIME,
    HTTP_MAX_CONNECTIONS,
    HTTP_MAX_PIPELINE,
    MAX_HTTP_BODY,
)
from igrs.wire.http11 import (
    CONTINUE,
    HttpError,
    RequestHead,
    find_head_end,
    parse_request_head,
    response_bytes,
)
from igrs.wire.httpu import Headers
from igrs.wire.isdp import SERVER

log = logging.getLogger(__name__)

TEXT = [("Content-Type", "text/plain; charset=utf-8")]
_BUSY = response_bytes(503, [*TEXT, ("Retry-After", "1")], b"too many connections\n",
                       extra="Connection: close\r\n")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str  # decoded, without the query
    headers: Headers
    body: bytes
    peer: str  # the client's address


@dataclass(slots=True)
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


class HttpApp(Protocol):
    """What the server asks of the application it serves."""

    def mounted(self, path: str) -> bool:
        """Whether requests for ``path`` go to the protocol of ``takeover``."""

    def takeover(self) -> asyncio.Protocol:
        """A fresh protocol to hand a connection to (connection_made is called on it)."""

    def answer(self, request: HttpRequest) -> Awaitable[HttpAnswer]: ...

    def refuse_body(self, request: HttpRequest) -> HttpAnswer:
        """The answer to a request whose Content-Length is over the cap (body unread)."""

    def handed_off(self) -> int:
        """Connections now served by takeover protocols (they count towards the cap)."""


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_body: int = MAX_HTTP_BODY
    max_connections: int = HTTP_MAX_CONNECTIONS
    max_pipeline: int = HTTP_MAX_PIPELINE
    header_timeout: float = HTTP_HEADER_TIMEOUT
    body_timeout: float = HTTP_BODY_TIMEOUT
    idle_timeout: float = HTTP_IDLE_TIMEOUT
    linger_time: float = HTTP_LINGER_TIME


class _Clock:
    """The Date and Server header lines, formatted once per second."""

    second = -1
    lines = ""


def _date_line() -> str:
    now = int(time.time())
    if _Clock.second != now:
        t = time.gmtime(now)
        _Clock.second = now
        _Clock.lines = (f"Date: {_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
                        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT\r\nServer: {SERVER}\r\n")
    return _Clock.lines


def serialize(answer: HttpAnswer, head: RequestHead, keep_alive: bool) -> bytes:
    if not keep_alive:
        connection = "Connection: close\r\n"
    elif head.minor == 0:
        connection = "Connection: keep-alive\r\n"
    else:
        connection = ""
    return response_bytes(answer.status, answer.headers, answer.body, head_only=head.method == "HEAD",
                          extra=_date_line() + connection)


class HttpServer:
    """The listening sockets and open connections of one HTTP server for ``app``."""

    def __init__(self, app: HttpApp, limits: HttpLimits | None = None) -> None:
        self.app = app
        self.limits = limits or HttpLimits()
        self.connections: set[_Connection] = set()
        self.refused = 0  # connections answered 503 (over the cap)
        self.closing = False
        self._listeners: list[asyncio.Server] = []

    async def listen(self, host: str, port: int) -> int:
        """Listen on ``host``:``port`` (0: an ephemeral port); return the port."""
        loop = asyncio.get_running_loop()
        self.closing = False
        listener = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True)
        self._listeners.append(listener)
        return int(listener.sockets[0].getsockname()[1])

    def open_connections(self) -> int:
        return len(self.connections) + self.app.handed_off()

    async def unlisten(self) -> None:
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close()
        for listener in listeners:
            await listener.wait_closed()

    async def close(self, grace: float = 1.0) -> None:
        """Stop listening; answer what is in progress (for up to ``grace`` seconds), then close."""
        self.closing = True
        await self.unlisten()
        connections = list(self.connections)
        for conn in connections:
            conn.shutdown()
        pending = [task for conn in connections for task in conn.tasks()]
        if pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await asyncio.wait(pending)
        for conn in connections:
            conn.abort()
        await asyncio.sleep(0)  # let the transports report connection_lost


_IDLE, _HEAD, _BODY, _BUSY_STATE, _LINGER = range(5)


class _Connection(asyncio.Protocol):
    """One client connection: parse, run handlers as tasks, write answers in order."""

    __slots__ = ("_body_start", "_buf", "_close_after", "_eof", "_handoff", "_head", "_linger", "_path",
                 "_paused", "_peer", "_queue", "_scanned", "_server", "_state", "_stopped", "_timer",
                 "_transport", "_write_paused")

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._scanned = 0  # bytes of an incomplete head already searched for its end
        self._head: RequestHead | None = None  # head read, body awaited
        self._body_start = 0
        self._path = ""
        self._queue: deque[asyncio.Task[bytes] | bytes] = deque()  # answers, in request order
        self._peer = ""
        self._state = -1
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False  # no further request is read
        self._close_after = False  # close once the queued answers are written
        self._linger = False  # ... after reading and dropping input for a while
        self._handoff = False  # hand over once the queued answers are written
        self._paused = False  # reading paused
        self._write_paused = False
        self._eof = False

    # --- asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        server = self._server
        if server.closing or server.open_connections() >= server.limits.max_connections:
            server.refused += 1
            transport.write(_BUSY)
            transport.close()
            return
        self._transport = transport
        server.connections.add(self)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self._set_state(_IDLE)

    def data_received(self, data: bytes) -> None:
        if self._handoff:  # reading is paused: at most one more chunk, kept for the new protocol
            self._buf += data
            return
        if self._stopped or self._transport is None:
            return  # after an error, Connection: close, or at the cap: input is dropped
        self._buf += data
        self._parse()

    def eof_received(self) -> bool:
        self._eof = True
        if self._state == _LINGER or self._transport is None:
            return False
        if self._handoff:
            return True  # the new protocol answers, then closes
        self._stop(close_after=True)
        self._flush()
        return True  # answer what was asked before the peer's half-close

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._cancel_timer()
        for item in self._queue:
            if not isinstance(item, bytes):
                item.cancel()
        self._queue.clear()
        self._buf.clear()
        self._transport = None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._flush()

    # --- reading -----------------------------------------------------------------------------
    def _parse(self) -> None:
        try:
            self._parse_requests()
        except HttpError as exc:
            self._fail(exc.status, exc.reason)

    def _parse_requests(self) -> None:
        buf, limits = self._buf, self._server.limits
        while not self._stopped:
            if len(self._queue) >= limits.max_pipeline or self._write_paused:
                self._pause()
                return
            head = self._head
            if head is None:
                if not buf:
                    break
                if buf[0] in b"\r\n":  # empty lines before a request line are ignored
                    del buf[: len(buf) - len(buf.lstrip(b"\r\n"))]
                    continue
                end = find_head_end(buf, self._scanned)
                if end < 0:
                    self._scanned = len(buf)
                    self._set_state(_HEAD)
                    break
                self._scanned = 0
                head = parse_request_head(bytes(buf[:end]))
                if not self._accept(head, end):
                    return
            end = self._body_start + head.content_length
            if len(buf) < end:
                self._set_state(_BODY)
                break
            body = bytes(buf[self._body_start:end])
            del buf[:end]
            self._head = None
            self._start(head, self._path, body)
        self._resume()
        if self._head is None and not buf:
            self._set_state(_BUSY_STATE if self._queue else _IDLE)

    def _accept(self, head: RequestHead, end: int) -> bool:
        """Route a parsed head: False if no body is to be read for it here."""
        path = head.path
        server = self._server
        if server.app.mounted(path):
            self._stop(handoff=True)
            self._pause()
            self._flush()
            return False
        if head.transfer_encoding is not None:
            raise HttpError(411, "a request body needs a Content-Length here")
        if head.content_length > server.limits.max_body:
            self._buf.clear()
            request = HttpRequest(head.method, path, head.headers, b"", self._peer)
            self._queue.append(serialize(server.app.refuse_body(request), head, False))
            self._stop(close_after=True, linger=True)
            self._flush()
            return False
        self._head, self._body_start, self._path = head, end, path
        if head.expect_continue and head.content_length and len(self._buf) < end + head.content_length \
                and not self._queue and self._transport is not None:
            self._transport.write(CONTINUE)
        return True

    def _start(self, head: RequestHead, path: str, body: bytes) -> None:
        request = HttpRequest(head.method, path, head.headers, body, self._peer)
        keep_alive = head.keep_alive and not self._eof
        task = asyncio.get_running_loop().create_task(self._run(request, head, keep_alive))
        task.add_done_callback(self._flush)
        self._queue.append(task)
        if not keep_alive:
            self._stop(close_after=True)

    async def _run(self, request: HttpRequest, head: RequestHead, keep_alive: bool) -> bytes:
        try:
            answer = await self._server.app.answer(request)
            return serialize(answer, head, keep_alive)
        except Exception:
            log.exception("HTTP handler failed for %s %s", request.method, request.path[:80])
            return serialize(HttpAnswer(500, TEXT, b"internal error\n"), head, keep_alive)

    def _pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._set_state(_BUSY_STATE)

    def _resume(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    # --- writing -----------------------------------------------------------------------------
    def _flush(self, _task: object = None) -> None:
        transport, queue = self._transport, self._queue
        if transport is None:
            return
        while queue:
            item = queue[0]
            if not isinstance(item, bytes):
                if not item.done():
                    return
                if item.cancelled():
                    transport.abort()
                    return
                item = item.result()
            queue.popleft()
            transport.write(item)
        if self._handoff:
            if not self._write_paused:
                self._hand_off()
        elif self._close_after:
            self._finish()
        elif self._stopped:
            pass
        elif self._paused or self._buf:
            self._parse()
        else:
            self._set_state(_IDLE)

    def _stop(self, *, close_after: bool = False, linger: bool = False, handoff: bool = False) -> None:
        self._stopped = True
        self._close_after = self._close_after or close_after
        self._linger = self._linger or linger
        self._handoff = self._handoff or handoff
        self._set_state(_BUSY_STATE)

    def _fail(self, status: int, reason: str) -> None:
        """Answer a request that cannot be framed or served, then close (after lingering)."""
        self._buf.clear()
        self._head = None
        self._queue.append(response_bytes(status, TEXT, (reason + "\n").encode("utf-8", "replace"),
                                          extra=_date_line() + "Connection: close\r\n"))
        self._stop(close_after=True, linger=True)
        self._flush()

    def _finish(self) -> None:
        transport = self._transport
        assert transport is not None
        if not self._linger or self._eof or not transport.can_write_eof():
            transport.close()
            return
        # Half-close and drop what the peer still sends, so the answer is not lost to a reset
        # caused by unread input (RFC 9112 §9.6).
        transport.write_eof()
        self._buf.clear()
        self._resume()
        self._set_state(_LINGER)

    def _hand_off(self) -> None:
        """Give the connection, and the bytes from the start of this request, to the takeover protocol."""
        transport = self._transport
        assert transport is not None
        server = self._server
        if server.closing:
            transport.close()
            return
        protocol = server.app.takeover()
        data = bytes(self._buf)
        self._buf.clear()
        self._cancel_timer()
        server.connections.discard(self)
        self._transport = None
        protocol.connection_made(transport)
        transport.set_protocol(protocol)
        if self._paused:
            transport.resume_reading()
        if data:
            protocol.data_received(data)

    # --- shutdown ----------------------------------------------------------------------------
    def tasks(self) -> list[asyncio.Task[bytes]]:
        return [item for item in self._queue if not isinstance(item, bytes)]

    def shutdown(self) -> None:
        """No further request; close once the answers in progress are written."""
        if self._transport is None:
            return
        self._stop(close_after=True)
        self._buf.clear()
        self._head = None
        self._flush()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # --- timers ------------------------------------------------------------------------------
    def _set_state(self, state: int) -> None:
        """Arm the timer of ``state`` unless already in it: idle, header, body or linger."""
        if state == self._state:
            return
        self._state = state
        self._cancel_timer()
        lim = self._server.limits
        delay = (lim.idle_timeout, lim.header_timeout, lim.body_timeout, 0.0, lim.linger_time)[state]
        if delay > 0 and self._transport is not None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        if self._state in (_HEAD, _BODY):
            log.debug("HTTP client %s too slow (state %d): closed", self._peer, self._state)
        self._transport.close()
