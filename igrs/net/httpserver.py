"""The device's HTTP/1.1 server: an asyncio Protocol around the sans-IO igrs.wire.http11.

It serves what the IGRS endpoint needs: Content-Length bodies, keep-alive, pipelining
(answers in request order), with every buffer bounded, every wait timed and every source
address capped (specs/transport.md, "HTTP server"). A request under a mounted prefix hands
its connection over to another protocol for good (aiohttp's, for the profiles' plain HTTP
handlers); the connection stays counted and timed here, relaying the socket's events to it.
A TLS port accepts its connections itself (``_TlsListener``): the TLS layer reads their first
byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from igrs.constants import (
    HTTP_ACCEPT_RETRY_DELAY,
    HTTP_BODY_TIMEOUT,
    HTTP_HEADER_TIMEOUT,
    HTTP_IDLE_TIMEOUT,
    HTTP_LINGER_TIME,
    HTTP_MAX_CONNECTIONS,
    HTTP_MAX_CONNECTIONS_PER_ADDRESS,
    HTTP_MAX_PIPELINE,
    HTTP_MAX_REFUSING,
    HTTP_SEND_TIMEOUT,
    MAX_HTTP_BODY,
)
from igrs.net.aio import limit_read_size, start_eagerly
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

if TYPE_CHECKING:
    import ssl

log = logging.getLogger(__name__)

TEXT = [("Content-Type", "text/plain; charset=utf-8")]
_BUSY = response_bytes(503, [*TEXT, ("Retry-After", "1")], b"too many connections\n",
                       extra="Connection: close\r\n")
_BUSY_ADDRESS = response_bytes(503, [*TEXT, ("Retry-After", "1")], b"too many connections from your address\n",
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


class HandedOff(Protocol):
    """What a takeover protocol tells the server about the requests on a handed-off
    connection, so that the header, body and idle timers still apply there."""

    def request_started(self, body_pending: bool) -> None:
        """A request head was read; its body is still to come when ``body_pending``."""

    def body_done(self) -> None:
        """The body of the request in progress has been read."""

    def request_finished(self) -> None:
        """The answer to the request in progress has been written (or given up)."""


class HttpApp(Protocol):
    """What the server asks of the application it serves."""

    def mounted(self, path: str) -> bool:
        """Whether requests for ``path`` go to the protocol of ``takeover``."""

    def takeover(self, observer: HandedOff) -> asyncio.Protocol:
        """A fresh protocol to hand a connection to (connection_made is called on it); it
        reports its requests to ``observer``."""

    def answer(self, request: HttpRequest) -> Awaitable[HttpAnswer]: ...

    def refuse_body(self, request: HttpRequest) -> HttpAnswer:
        """The answer to a request whose Content-Length is over the cap (body unread)."""


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The server's caps and timers (specs/timers-and-limits.md, "HTTP server"); tests and
    small devices lower them."""

    max_body: int = MAX_HTTP_BODY
    max_connections: int = HTTP_MAX_CONNECTIONS
    max_connections_per_address: int = HTTP_MAX_CONNECTIONS_PER_ADDRESS
    max_refusing: int = HTTP_MAX_REFUSING
    max_pipeline: int = HTTP_MAX_PIPELINE
    header_timeout: float = HTTP_HEADER_TIMEOUT
    body_timeout: float = HTTP_BODY_TIMEOUT
    idle_timeout: float = HTTP_IDLE_TIMEOUT
    send_timeout: float = HTTP_SEND_TIMEOUT
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
        self.connections: set[_Connection] = set()  # open, handed-off ones included
        self.per_address: dict[str, int] = {}  # open connections by source address
        self.refusing: set[_Connection] = set()  # answered 503, lingering until the peer reads it
        self.refused = 0  # connections answered 503 (over a cap)
        self.closing = False
        self._listeners: list[asyncio.Server | _TlsListener] = []

    async def listen(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        """Listen on ``host``:``port`` (0: an ephemeral port); return the port. With ``tls``, a
        connection is counted and capped when accepted, then speaks TLS (server side) from its
        first byte: the handshake must end within the header timeout."""
        self.closing = False
        if tls is not None:
            tls_listener = await _TlsListener.open(self, host, port, tls)
            self._listeners.append(tls_listener)
            return tls_listener.port
        listener = await asyncio.get_running_loop().create_server(lambda: _Connection(self), host, port,
                                                                   reuse_address=True)
        self._listeners.append(listener)
        return int(listener.sockets[0].getsockname()[1])

    def admit(self, conn: _Connection, peer: str) -> bytes | None:
        """Count a new connection from ``peer``; over a cap (or closing), the 503 to answer
        instead, and it is not counted."""
        limits = self.limits
        if self.closing or len(self.connections) >= limits.max_connections:
            return _BUSY
        held = self.per_address.get(peer, 0)
        if held >= limits.max_connections_per_address:
            return _BUSY_ADDRESS
        self.connections.add(conn)
        self.per_address[peer] = held + 1
        return None

    def open_connections(self) -> int:
        return len(self.connections)

    def handed_off(self) -> int:
        """Open connections served by takeover protocols."""
        return sum(conn.relaying for conn in self.connections)

    async def unlisten(self) -> None:
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close()
        for listener in listeners:
            await listener.wait_closed()

    async def close(self, grace: float = 1.0) -> None:
        """Stop listening; answer what is in progress (for up to ``grace`` seconds), then close.
        Handed-off connections are left to their protocol's own shutdown, then ``abort``."""
        self.closing = True
        await self.unlisten()
        connections = [conn for conn in self.connections if not conn.relaying]
        for conn in connections:
            conn.shutdown()
        pending = [task for conn in connections for task in conn.tasks()]
        if pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await asyncio.wait(pending)
        for conn in [*connections, *self.refusing]:
            conn.abort()
        await asyncio.sleep(0)  # let the transports report connection_lost

    def abort(self) -> None:
        """Close every connection left at once (after close and the takeover's shutdown)."""
        for conn in [*self.connections, *self.refusing]:
            conn.abort()


_IDLE, _HEAD, _BODY, _BUSY_STATE, _LINGER = range(5)


def _address(peer: object) -> str:
    """The host of a peer address (``getpeername``, the ``peername`` of a transport)."""
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


def _limit_unacknowledged(sock: socket.socket | None, seconds: float) -> None:
    """TCP_USER_TIMEOUT (Linux): the kernel drops the connection when sent data stays
    unacknowledged, or the peer's window stays closed, for ``seconds`` -- the send deadline
    of bytes the server no longer sees (sendfile, the kernel's buffers)."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if sock is not None and option is not None and seconds > 0:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(seconds * 1000)))


class _Connection(asyncio.Protocol):
    """One client connection: parse, run handlers as tasks, write answers in order; after a
    hand-off, relay the socket's events to the takeover protocol and keep timing them."""

    __slots__ = (
        "_active",
        "_body_open",
        "_body_start",
        "_buf",
        "_close_after",
        "_due",
        "_early",
        "_eof",
        "_handoff",
        "_handshake",
        "_head",
        "_inner",
        "_linger",
        "_path",
        "_paused",
        "_peer",
        "_progress_at",
        "_queue",
        "_scanned",
        "_send_timer",
        "_server",
        "_state",
        "_stopped",
        "_timer",
        "_timer_at",
        "_tls",
        "_transport",
        "_write_paused",
    )

    def __init__(self, server: HttpServer, tls: bool = False) -> None:
        self._server = server
        self._tls = tls  # accepted and counted by a _TlsListener; connection_made ends its handshake
        self._handshake: asyncio.Task[None] | None = None  # that handshake, while it runs
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
        self._timer_at = 0.0  # when it fires
        self._due = 0.0  # the deadline of the state (0: none)
        self._stopped = False  # no further request is read
        self._close_after = False  # close once the queued answers are written
        self._linger = False  # ... after reading and dropping input for a while
        self._handoff = False  # hand over once the queued answers are written
        self._paused = False  # reading paused
        self._write_paused = False
        self._eof = False
        self._send_timer: asyncio.TimerHandle | None = None
        self._inner: asyncio.Protocol | None = None  # the takeover protocol, once handed off
        self._active = 0  # requests in progress on the takeover protocol
        self._body_open = False  # ... the body of which is still arriving
        self._early = False  # bytes of a later request arrived while one was in progress
        self._progress_at = 0.0  # when the last body bytes arrived (handed off)

    @property
    def relaying(self) -> bool:
        return self._inner is not None

    # --- asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's does not derive from asyncio.Transport: no isinstance)
        transport = cast(asyncio.Transport, base)
        if self._tls:  # counted since the accept (_TlsListener); the TLS handshake has just ended
            self._handshake = None
            if self not in self._server.connections:  # aborted meanwhile
                transport.abort()
                return
            self._transport = transport
            self._set_state(_IDLE)
            return
        self._peer = _address(transport.get_extra_info("peername"))
        refusal = self._server.admit(self, self._peer)
        if refusal is not None:
            self._refuse(transport, refusal)
            return
        self._transport = transport
        _limit_unacknowledged(transport.get_extra_info("socket"), self._server.limits.send_timeout)
        limit_read_size(transport)
        self._set_state(_IDLE)

    def start_tls(self, sock: socket.socket, peer: str, context: ssl.SSLContext) -> None:
        """Run the TLS handshake of ``sock``, accepted and counted by a _TlsListener, within the
        header timeout; the loop's TLS transport owns the socket from its first byte on and
        calls connection_made when the handshake ends."""
        self._peer = peer
        loop = asyncio.get_running_loop()
        handed = False

        async def handshake() -> None:
            nonlocal handed
            handed = True  # the transport closes the socket from here on, whatever happens
            try:
                await loop.connect_accepted_socket(lambda: self, sock, ssl=context,
                                                   ssl_handshake_timeout=self._server.limits.header_timeout)
            except (OSError, ValueError) as exc:  # ssl.SSLError, a reset, the handshake timeout
                log.debug("TLS handshake with %s failed: %s", peer, str(exc) or type(exc).__name__)

        def over(_task: object) -> None:
            self._handshake = None
            if not handed:  # cancelled before it began (abort)
                sock.close()
            if self._transport is None and self in self._server.connections:  # failed or aborted
                self.connection_lost(None)

        self._handshake = loop.create_task(handshake())
        self._handshake.add_done_callback(over)

    def _refuse(self, transport: asyncio.Transport, answer: bytes) -> None:
        """Answer 503 and close; half-close and read until the peer closes (or the linger
        time), so that the answer is not lost to a reset caused by the peer's unread request."""
        server = self._server
        server.refused += 1
        transport.write(answer)
        if len(server.refusing) >= server.limits.max_refusing or not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except OSError:  # the peer is gone already
            transport.abort()
            return
        self._transport = transport
        server.refusing.add(self)
        self._stopped = self._close_after = self._linger = True
        self._set_state(_LINGER)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._relay(data)
            return
        if self._handoff:  # reading is paused: at most one more chunk, kept for the new protocol
            self._buf += data
            return
        if self._stopped or self._transport is None:
            return  # after an error, Connection: close, or at the cap: input is dropped
        self._buf += data
        self._parse()

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._inner is not None:
            return self._inner.eof_received()
        half_close = not self._tls  # TLS has none: its layer closes after the peer's EOF
        if self._state == _LINGER or self._transport is None:
            return False
        if self._handoff:
            return half_close  # the new protocol answers, then closes
        self._stop(close_after=True)
        self._flush()
        return half_close  # answer what was asked before the peer's half-close

    def connection_lost(self, exc: Exception | None) -> None:
        server = self._server
        if self in server.connections:
            server.connections.discard(self)
            left = server.per_address.pop(self._peer, 1) - 1
            if left > 0:
                server.per_address[self._peer] = left
        server.refusing.discard(self)
        self._cancel_timer()
        self._cancel_send_timer()
        for item in self._queue:
            if not isinstance(item, bytes):
                item.cancel()
        self._queue.clear()
        self._buf.clear()
        self._transport = None
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        """The peer reads slower than answers come: it has ``send_timeout`` to catch up."""
        self._write_paused = True
        if self._send_timer is None and self._transport is not None:
            self._send_timer = asyncio.get_running_loop().call_later(
                self._server.limits.send_timeout, self._on_send_timeout)
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._cancel_send_timer()
        if self._inner is not None:
            self._inner.resume_writing()
            return
        self._flush()

    # --- reading -----------------------------------------------------------------------------
    def _parse(self) -> None:
        """Read the requests buffered; write the answers made meanwhile, then read on (a
        loop, not a recursion through _flush: a buffer may hold thousands of requests)."""
        while True:
            try:
                self._parse_requests()
            except HttpError as exc:
                self._fail(exc.status, exc.reason)
                return
            queue = self._queue
            if not queue or not isinstance(queue[0], bytes) or not self._write_ready():
                return
            if self._stopped or not (self._paused or self._buf):
                self._after_written()
                return

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
        """Run the handler now, until it answers or waits: a handler that answers at once
        (an invocation) is written on this turn of the loop; one that waits goes on as a task."""
        request = HttpRequest(head.method, path, head.headers, body, self._peer)
        keep_alive = head.keep_alive and not self._eof
        task = start_eagerly(asyncio.get_running_loop(), self._run(request, head, keep_alive))
        if task.done() and not task.cancelled():
            self._queue.append(task.result())
        else:
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
        if self._write_ready():
            self._after_written()

    def _write_ready(self) -> bool:
        """Write the answers ready at the head of the queue; True once it is empty."""
        transport, queue = self._transport, self._queue
        if transport is None:
            return False
        while queue:
            item = queue[0]
            if not isinstance(item, bytes):
                if not item.done():
                    return False
                if item.cancelled():
                    transport.abort()
                    return False
                item = item.result()
            queue.popleft()
            transport.write(item)
        return True

    def _after_written(self) -> None:
        """Every answer is written: hand over, close, read on or wait idle."""
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
        try:
            transport.write_eof()
        except OSError:  # the peer is gone already
            transport.abort()
            return
        self._buf.clear()
        self._resume()
        self._set_state(_LINGER)

    def _hand_off(self) -> None:
        """Give the connection, and the bytes from the start of this request, to the takeover
        protocol; from now on this object relays the socket's events to it."""
        transport = self._transport
        assert transport is not None
        server = self._server
        if server.closing:
            transport.close()
            return
        protocol = server.app.takeover(self)
        data = bytes(self._buf)
        self._buf.clear()
        self._inner = protocol
        self._state = -1
        self._set_state(_HEAD)  # the replayed head: the takeover reports it at once
        protocol.connection_made(transport)
        if self._paused:
            self._paused = False
            transport.resume_reading()
        if data:
            self._relay(data)

    # --- a handed-off connection -------------------------------------------------------------
    def _relay(self, data: bytes) -> None:
        """Pass input to the takeover protocol, timing it as the own server would: a head
        from its first byte, a body by its progress, nothing while a handler runs."""
        if self._active:
            if self._body_open:
                self._progress_at = asyncio.get_running_loop().time()
            else:
                self._early = True  # (part of) a later request, read once this one is answered
        elif self._state == _IDLE:
            self._set_state(_HEAD)
        assert self._inner is not None
        self._inner.data_received(data)

    def request_started(self, body_pending: bool) -> None:
        self._active += 1
        self._early = False
        self._body_open = body_pending
        self._progress_at = asyncio.get_running_loop().time()
        self._set_state(_BODY if body_pending else _BUSY_STATE)

    def body_done(self) -> None:
        if self._body_open:
            self._body_open = False
            if self._active:
                self._set_state(_BUSY_STATE)

    def request_finished(self) -> None:
        self._active = max(0, self._active - 1)
        if not self._active:
            self._body_open = False
            self._set_state(_HEAD if self._early else _IDLE)
            self._early = False

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
        elif self._handshake is not None:  # its end forgets the connection
            self._handshake.cancel()

    # --- timers ------------------------------------------------------------------------------
    def _set_state(self, state: int) -> None:
        """Set the deadline of ``state`` unless already in it: idle, header, body or linger
        (busy: none). The timer is not re-armed at every change (twice per request): one
        that fires after the deadline moved later waits for the rest; only an earlier
        deadline re-arms it."""
        if state == self._state:
            return
        self._state = state
        lim = self._server.limits
        delay = (lim.idle_timeout, lim.header_timeout, lim.body_timeout, 0.0, lim.linger_time)[state]
        if delay <= 0 or self._transport is None:
            self._due = 0.0
            return
        loop = asyncio.get_running_loop()
        self._due = due = loop.time() + delay
        if self._timer is not None:
            if self._timer_at <= due:
                return
            self._timer.cancel()
        self._arm(loop, due)

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        self._timer_at = at
        self._timer = loop.call_at(at, self._on_timeout)

    def _cancel_timer(self) -> None:
        self._due = 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _cancel_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        if self._transport is None or not self._due:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._due > now:  # the deadline moved since the timer was armed
            self._arm(loop, self._due)
            return
        if self._state == _BODY and self._inner is not None:  # handed off: a body must progress
            due = self._progress_at + self._server.limits.body_timeout
            if due > now:
                self._arm(loop, due)
                return
        if self._state in (_HEAD, _BODY):
            log.debug("HTTP client %s too slow (state %d): closed", self._peer, self._state)
        self._transport.close()

    def _on_send_timeout(self) -> None:
        self._send_timer = None
        if self._transport is not None:
            log.debug("HTTP client %s stopped reading its answers: cut", self._peer)
            self._transport.abort()


class _TlsListener:
    """A TLS port: its connections are accepted here, counted against the caps by source
    address at once (over a cap: closed), then given to the loop's TLS transport, which reads
    their first byte. Not ``create_server`` and then ``start_tls`` on the accepted transport:
    uvloop starts reading after ``connection_made`` even when the protocol paused reading there,
    so a ClientHello already waiting at the accept (a loaded machine) went to the HTTP parser and
    the handshake waited for it until its timeout; and bytes once read cannot be given to a TLS
    layer."""

    def __init__(self, server: HttpServer, sock: socket.socket, context: ssl.SSLContext) -> None:
        self._server, self._sock, self._context = server, sock, context
        self.port = int(sock.getsockname()[1])
        self._task = asyncio.get_running_loop().create_task(self._accept())

    @classmethod
    async def open(cls, server: HttpServer, host: str, port: int, context: ssl.SSLContext) -> _TlsListener:
        """Listen on ``host``:``port`` (0: an ephemeral port), as ``create_server`` binds."""
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen()
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return cls(server, sock, context)

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        server = self._server
        while True:
            try:
                sock, peername = await loop.sock_accept(self._sock)
            except ConnectionAbortedError:  # the peer gave up while in the backlog
                continue
            except OSError as exc:  # out of descriptors or memory: wait, as asyncio's own accept does
                log.warning("TLS port %d cannot accept: %s (again in %.0f s)", self.port, exc,
                            HTTP_ACCEPT_RETRY_DELAY)
                await asyncio.sleep(HTTP_ACCEPT_RETRY_DELAY)
                continue
            conn = _Connection(server, tls=True)
            peer = _address(peername)
            if server.admit(conn, peer) is not None:  # a 503 in clear would not reach a TLS client
                server.refused += 1
                sock.close()
                continue
            _limit_unacknowledged(sock, server.limits.send_timeout)
            conn.start_tls(sock, peer, self._context)

    def close(self) -> None:
        self._task.cancel()

    async def wait_closed(self) -> None:
        await asyncio.wait([self._task])  # cancelled by close: it no longer waits on the socket
        self._sock.close()
