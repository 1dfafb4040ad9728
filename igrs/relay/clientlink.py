"""The relay client's connection: the node's TLS link (igrs.relay.tlslink) on the client side.

One asyncio Protocol per connection, TLS over two MemoryBIOs: a received chunk is decrypted
and cut into frames in the read callback, and each frame is handed to the client there (no
reader task, no stream, no per-frame task or wake-up). Frames written in one event-loop turn
(messages, ACKs, PONGs) leave as one TLS write. ``drain`` waits while the transport's send
buffer is over its high-water mark.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from igrs.relay.frames import Frame, FrameDecoder, FrameError
from igrs.relay.tlslink import TlsLink


class ClientLink(TlsLink):
    __slots__ = ("_decoder", "_drain", "_loop", "_on_frame", "_out", "_tls", "lost", "ready")

    def __init__(self, tls: tuple[ssl.SSLContext, str | None, float],
                 on_frame: Callable[[Frame], None], max_payload: int) -> None:
        super().__init__()
        self._tls = tls  # (context, server_hostname, handshake timeout)
        self._on_frame = on_frame
        self._decoder = FrameDecoder(max_payload=max_payload)
        self._out: list[bytes] | None = None
        self._drain: asyncio.Future[None] | None = None  # set while writing is paused
        loop = self._loop = asyncio.get_running_loop()  # kept: each call costs a getpid
        self.ready: asyncio.Future[None] = loop.create_future()  # the TLS handshake is done
        self.lost: asyncio.Future[Exception | None] = loop.create_future()  # the link is gone

    # ---- TlsLink
    def tls_context(self) -> tuple[ssl.SSLContext, bool, str | None, float]:
        ctx, hostname, timeout = self._tls
        return ctx, False, hostname, timeout

    def tls_ready(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def plain_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except FrameError as e:
            self._end(e)
            return
        on_frame = self._on_frame
        for frame in frames:
            on_frame(frame)

    def plain_eof(self) -> None:
        self.close()  # close_notify and FIN back; the client may reconnect at once
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake()

    def link_lost(self, exc: Exception | None) -> None:
        self._end(exc)

    def tls_failed(self, exc: Exception) -> None:
        self._end(exc)

    def _end(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionResetError("relay closed the connection"))
            self.ready.exception()  # retrieved: nobody may be waiting any more
        if not self.lost.done():
            self.lost.set_result(exc)
        self._wake()
        self.abort()

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        self._wake()

    def _wake(self) -> None:
        waiter, self._drain = self._drain, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---- for the client
    @property
    def usable(self) -> bool:
        return self.tls_open and not self.link_closing()

    def write(self, data: bytes) -> None:
        """Queue bytes; what is queued in one loop turn leaves as one TLS write."""
        if self._out is None:
            self._out = [data]
            self._loop.call_soon(self.flush)
        else:
            self._out.append(data)

    def flush(self) -> None:
        out, self._out = self._out, None
        if out:
            self.send_plain(out[0] if len(out) == 1 else b"".join(out))

    async def drain(self) -> None:
        """Flush, then wait until the send buffer is below its high-water mark."""
        self.flush()
        while self._drain is not None and not self.lost.done():
            await self._drain
