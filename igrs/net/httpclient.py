"""A small HTTP/1.1 client for the IGRS messages: kept-alive connections per host, one request
at a time on each, on asyncio Protocol and the sans-IO igrs.wire.http11 (specs/transport.md,
"HTTP client"). Ordering and the per-host cap are the caller's (IgrsHttpClient._turn).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import cast

from igrs.net.aio import limit_read_size
from igrs.wire.http11 import BadResponse, Response, ResponseReader
from igrs.wire.memo import Memo

Key = tuple[str, int]
CLOSING_HOSTS = 256  # hosts remembered as closing every connection after one answer


class HttpClientPool:
    """Connections to any number of hosts; idle ones are reused (last parked, first taken)
    and closed after ``idle_timeout`` seconds."""

    def __init__(self, *, max_body: int, idle_timeout: float) -> None:
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self._idle: defaultdict[Key, list[_Connection]] = defaultdict(list)
        self._open: set[_Connection] = set()
        # Servers seen closing an idle kept-alive connection unannounced (ezbox closes after
        # every answer, without Connection: close): their connections are not kept.
        self._closing: Memo[Key, bool] = Memo(CLOSING_HOSTS)

    async def request(self, host: str, port: int, data: bytes) -> Response:
        """Send ``data`` (a whole request) and return the answer. OSError / BadResponse /
        LimitExceeded (a body over ``max_body``); the connection is closed after any of them."""
        key = (host, port)
        conn = self._take(key)
        if conn is not None:
            try:
                response = await conn.exchange(data, self.max_body)
            except (OSError, BadResponse):
                conn.abort()
                if conn.answered:
                    raise
                # The keep-alive race (RFC 9112 §9.3.1): the server closed the idle connection
                # as the request went out -- ezbox closes after every answer, unannounced. No
                # byte came back: sent once more, on a new connection (specs/transport.md).
                self.closed_while_idle(key)
                conn = None
            except BaseException:
                conn.abort()
                raise
        if conn is None:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(lambda: _Connection(self, key), host, port)
            try:
                response = await conn.exchange(data, self.max_body)
            except BaseException:
                conn.abort()
                raise
        if response.keep_alive and conn.usable() and self._closing.get(key) is None:
            self._park(conn)
        else:
            conn.close()
        return response

    def closed_while_idle(self, key: Key) -> None:
        self._closing.remember(key, True)

    def close(self) -> None:
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()

    def _take(self, key: Key) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable():
                conn.unpark()
                return conn
        return None

    def _park(self, conn: _Connection) -> None:
        self._idle[conn.key].append(conn)
        conn.park(self.idle_timeout)

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[conn.key]


class _Connection(asyncio.Protocol):
    __slots__ = ("_parked_at", "_reader", "_timer", "_transport", "_waiter", "answered", "key", "parked",
                 "pool")

    def __init__(self, pool: HttpClientPool, key: Key) -> None:
        self.pool = pool
        self.key = key
        self.answered = False  # a byte of an answer to the current request arrived
        self._transport: asyncio.Transport | None = None
        self._reader: ResponseReader | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._timer: asyncio.TimerHandle | None = None  # the idle check, armed once per idle time
        self.parked = False  # idle in the pool
        self._parked_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's does not derive from asyncio.Transport: no isinstance)
        self._transport = cast(asyncio.Transport, transport)
        limit_read_size(transport)
        self.pool._open.add(self)

    def usable(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def exchange(self, data: bytes, max_body: int) -> Response:
        assert self._transport is not None and self._waiter is None
        self._reader = ResponseReader(max_body)
        self.answered = False
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(data)
        try:
            return await self._waiter
        finally:
            self._waiter = self._reader = None

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is None:  # nothing asked: a confused peer
            self.abort()
            return
        self.answered = True
        try:
            response = reader.feed(data)
        except Exception as exc:  # BadResponse, LimitExceeded
            self._settle(exc)
            return
        if response is not None:
            self._settle(response)

    def eof_received(self) -> bool:
        if self._reader is not None:
            try:
                self._settle(self._reader.feed_eof())
            except BadResponse as exc:
                self._settle(exc)
        elif self.parked:  # the server closes its connections unannounced
            self.pool.closed_while_idle(self.key)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.unpark()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pool._forget(self)
        self._settle(ConnectionResetError(f"connection lost: {exc}" if exc else "server closed the connection"))

    def _settle(self, outcome: Response | Exception) -> None:
        waiter, self._reader = self._waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(outcome, Exception):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)

    def park(self, idle_timeout: float) -> None:
        """Idle from now; closed once idle for ``idle_timeout`` s. The timer is not re-armed
        for every request: when it fires early (the connection was used since), it waits
        for the rest of the idle time."""
        loop = asyncio.get_running_loop()
        self.parked = True
        self._parked_at = loop.time()
        if self._timer is None:
            self._timer = loop.call_later(idle_timeout, self._idle_check, idle_timeout)

    def unpark(self) -> None:
        self.parked = False

    def _idle_check(self, idle_timeout: float) -> None:
        self._timer = None
        if not self.parked or self._transport is None:
            return  # in use: armed again when parked
        left = self._parked_at + idle_timeout - asyncio.get_running_loop().time()
        if left > 0:
            self._timer = asyncio.get_running_loop().call_later(left, self._idle_check, idle_timeout)
        else:
            self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
