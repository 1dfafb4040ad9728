"""One client connection on a relay node: TLS (igrs.relay.tlslink), frames, ordered dispatch.

A received chunk is decoded and screened by the sans-IO :class:`ServerSession`; each frame's
handler is stepped inline (igrs.relay.eager). When one suspends, the frames after it wait in
order in a backlog worked off by one task, and reading pauses until it is empty. Frames
queued for sending in one event-loop turn leave as one TLS write. Per-connection state is
kept small (slots; the backlog and the in-flight set exist only while used): a relay node
holds tens of thousands of these.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from igrs.relay import payloads
from igrs.relay.eager import Continue, step
from igrs.relay.errors import RelayCode
from igrs.relay.frames import Frame, FrameError, FrameType, encode
from igrs.relay.ids import Principal
from igrs.relay.limits import Limits, TokenBucket
from igrs.relay.session import ServerSession
from igrs.relay.tlslink import TlsLink

log = logging.getLogger(__name__)

_PAUSE_BACKLOG = 1  # a handler is suspended: later frames wait
_PAUSE_WRITING = 2  # this client does not read what it is sent: it gets no more reads


class ConnectionOwner(Protocol):
    """What a connection needs of its relay node."""

    limits: Limits
    stats: collections.Counter[str]
    loop: asyncio.AbstractEventLoop  # its running loop (asyncio.get_running_loop() costs a getpid)

    def tls_server_context(self) -> ssl.SSLContext: ...

    def accepted(self, conn: Connection) -> None: ...

    def dispatch(self, conn: Connection, frame: Frame) -> Coroutine[Any, Any, None]: ...

    def handle_now(self, conn: Connection, frame: Frame, now: float) -> bool: ...

    def dropped(self, conn: Connection) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]: ...


class Connection(TlsLink):
    """One client connection (shell side)."""

    __slots__ = (
        "_backlog",
        "_flush_pending",
        "_node",
        "_out",
        "_out_bytes",
        "_paused",
        "bucket",
        "clean",
        "closing",
        "inflight",
        "more_mail",
        "peer",
        "session",
        "subscribed",
    )

    def __init__(self, node: ConnectionOwner) -> None:
        super().__init__()
        self._node = node
        self.session = ServerSession(node.limits, time.monotonic())
        self.subscribed = False
        self.closing = False
        self.clean = False
        self.inflight: set[int] | None = None  # stored ids sent, not yet acknowledged
        self.more_mail = False  # the last mail push was a full batch: refill after ACKs
        self.peer: Any = None
        self.bucket: TokenBucket | None = None  # the principal's message rate (after AUTH)
        self._out: list[bytes] | None = None
        self._out_bytes = 0
        self._flush_pending = False
        self._backlog: collections.deque[Frame] | None = None
        self._paused = 0

    @property
    def principal(self) -> Principal | None:
        return self.session.principal

    # ---- TlsLink
    def tls_context(self) -> tuple[ssl.SSLContext, bool, str | None, float]:
        return self._node.tls_server_context(), True, None, self._node.limits.tls_handshake_timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.peer = self.transport.get_extra_info("peername")
        limit = self._node.limits.max_send_buffer
        self.transport.set_write_buffer_limits(high=limit, low=limit // 2)

    def tls_ready(self) -> None:
        self._node.accepted(self)

    def plain_received(self, data: bytes) -> None:
        if self.closing:
            return
        now = time.monotonic()
        try:
            frames = self.session.receive(data, now)
        except FrameError as e:
            log.info("closing %s: %s", self.peer, e)
            self.goaway(e.code, e.reason, self._node.stats)
            return
        if self._backlog is not None:
            self._backlog.extend(frames)
            return
        node = self._node
        handle_now, dispatch = node.handle_now, node.dispatch
        for i, frame in enumerate(frames):
            try:
                if handle_now(self, frame, now):
                    continue
                coro = dispatch(self, frame)
                done, yielded = step(coro)
            except Exception as e:
                self._failed(e)
                return
            if not done:  # the rest waits, in order, for this one
                self._backlog = collections.deque(frames[i + 1 :])
                self._pause(_PAUSE_BACKLOG)
                self._node.spawn(self._work_off(coro, yielded))
                return
            if self.closing:
                self._closed_by_frame()
                return

    def plain_eof(self) -> None:
        try:
            self.session.eof()
        except FrameError as e:
            log.info("closing %s: %s", self.peer, e)
            self.goaway(e.code, e.reason, self._node.stats)

    def link_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.session.close()
        self._node.dropped(self)

    def pause_writing(self) -> None:
        self._pause(_PAUSE_WRITING)

    def resume_writing(self) -> None:
        self._resume(_PAUSE_WRITING)

    # ---- ordered dispatch
    async def _work_off(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        try:
            await Continue(coro, yielded)
            backlog = self._backlog
            dispatch = self._node.dispatch
            while backlog and not self.closing:
                await dispatch(self, backlog.popleft())
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._failed(e)
        finally:
            self._backlog = None
            if self.closing:
                self._closed_by_frame()
            else:
                self._resume(_PAUSE_BACKLOG)

    def _failed(self, e: Exception) -> None:
        if isinstance(e, FrameError):
            log.info("closing %s: %s", self.peer, e)
            self.goaway(e.code, e.reason, self._node.stats)
        elif isinstance(e, ConnectionError | ssl.SSLError | OSError):
            self.closing = True
            self.abort()
        else:  # a bug must not kill the node
            log.error("internal error on %s", self.peer, exc_info=e)
            self.goaway(RelayCode.INTERNAL, f"internal error: {type(e).__name__}", self._node.stats)

    def _closed_by_frame(self) -> None:
        """A handler set ``closing`` (BYE, GOAWAY): what is queued leaves, then the link closes."""
        self.flush()
        self.session.close()
        self.close()

    def _pause(self, reason: int) -> None:
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        was = self._paused
        self._paused &= ~reason
        if was and not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # ---- sending
    def buffered(self) -> int:
        return self._out_bytes if self._out is not None else self.write_buffer_size()

    def send(self, data: bytes, limit: int | None = None) -> bool:
        """Queue bytes; with ``limit``, refuse (False) when the send buffer is over it.

        Frames queued in one event-loop turn leave as one TLS write (fewer records and
        system calls under load, no added delay when idle). The transport is asked about
        its state at the first frame of a turn only: until the flush nothing is written to
        it, so ``_out_bytes`` (its buffer then, plus what is queued) stays exact."""
        out = self._out
        if out is None:
            if self.closing or self.link_closing():
                return False
            size = self.write_buffer_size()
            if limit is not None and size > limit:
                return False
            self._out = [data]
            self._out_bytes = size + len(data)
            if not self._flush_pending:
                self._flush_pending = True
                self._node.loop.call_soon(self.flush)
            return True
        if self.closing or (limit is not None and self._out_bytes > limit):
            return False
        out.append(data)
        self._out_bytes += len(data)
        return True

    def flush(self) -> None:
        self._flush_pending = False
        out = self._out
        if out:
            self._out = None
            self._out_bytes = 0
            self.send_plain(out[0] if len(out) == 1 else b"".join(out))

    def goaway(self, code: int, reason: str, stats: collections.Counter[str] | None = None) -> None:
        if stats is not None:
            stats[f"goaway.{int(code)}"] += 1
        self.flush()
        if not self.closing:
            frame = Frame(FrameType.GOAWAY, payload=payloads.encode_error(code, reason))
            with contextlib.suppress(Exception):
                self.send_plain(encode(frame))
            self.closing = True
        self.session.close()
        self.close()
