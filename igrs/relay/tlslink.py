"""TLS done by the connection itself: an asyncio Protocol over plain TCP with an ``SSLObject``.

Why not ``loop.create_server(ssl=...)`` and streams: asyncio's TLS layer gives every
connection its own receive buffer (256 KiB by default in CPython 3.11-3.13, a fixed size
in uvloop) and puts two protocol layers and a stream between the socket and the frames.
Here the TLS records go through two ``MemoryBIO``s: the transport's shared receive buffer is
used, a connection at rest holds only OpenSSL's state (``SSL_MODE_RELEASE_BUFFERS``), and a
received chunk reaches the frame decoder in one call. The same code runs on asyncio's loop
and on uvloop (plain TCP transports on both). Used by the relay node and the relay client.

Subclasses implement :meth:`tls_ready`, :meth:`plain_received`, :meth:`plain_eof`,
:meth:`link_lost` and :meth:`tls_failed`; they write with :meth:`send_plain` and end with
:meth:`close` / :meth:`abort`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import cast

READ_SIZE = 64 * 1024  # plaintext bytes taken from OpenSSL per read call
LINGER = 5.0  # s a closed connection keeps reading (and dropping) the peer's input


class TlsLink(asyncio.Protocol):
    __slots__ = ("_bio_in", "_bio_out", "_draining", "_sslobj", "_timer", "_tls_open", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._sslobj: ssl.SSLObject | None = None
        self._bio_in: ssl.MemoryBIO | None = None
        self._bio_out: ssl.MemoryBIO | None = None
        self._tls_open = False
        self._draining = False  # closed by us: input is read and dropped until the peer closes
        self._timer: asyncio.TimerHandle | None = None  # handshake timeout, then linger

    # ---- to be provided by the subclass
    def tls_context(self) -> tuple[ssl.SSLContext, bool, str | None, float]:
        """(context, server_side, server_hostname, handshake timeout in s)."""
        raise NotImplementedError

    def tls_ready(self) -> None:
        """The handshake is done; :meth:`peer_certificate` is known."""

    def plain_received(self, data: bytes) -> None:
        raise NotImplementedError

    def plain_eof(self) -> None:
        """The peer closed (close_notify or TCP FIN)."""

    def link_lost(self, exc: Exception | None) -> None:
        """The TCP connection is gone (after the handshake or not)."""

    def tls_failed(self, exc: Exception) -> None:
        """The handshake failed (the link is aborted next)."""

    # ---- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport: a cast, not an isinstance
        self.transport = cast(asyncio.Transport, transport)
        ctx, server_side, hostname, timeout = self.tls_context()
        self._bio_in, self._bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._sslobj = ctx.wrap_bio(self._bio_in, self._bio_out, server_side=server_side,
                                    server_hostname=hostname)
        self._timer = asyncio.get_running_loop().call_later(timeout, self.abort)
        if not server_side:
            self._handshake()  # the ClientHello

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return
        assert self._bio_in is not None
        self._bio_in.write(data)
        if not self._tls_open:
            self._handshake()
            if not self._tls_open:
                return
        self._read_plain()

    def eof_received(self) -> bool:
        if self._tls_open:
            self.plain_eof()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._tls_open = False
        self.link_lost(exc)

    # ---- TLS
    def _handshake(self) -> None:
        assert self._sslobj is not None
        try:
            self._sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._send_records()
            return
        except (ssl.SSLError, OSError, ValueError) as e:
            self._send_records()  # the alert, if any
            self.tls_failed(e)
            self.abort()
            return
        self._tls_open = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._send_records()
        self.tls_ready()

    def _read_plain(self) -> None:
        sslobj, bio_in = self._sslobj, self._bio_in
        assert sslobj is not None and bio_in is not None
        while self._tls_open:
            try:
                chunk = sslobj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            except (ssl.SSLError, OSError):
                self.abort()
                return
            if not chunk:  # close_notify (CPython returns b"" for it)
                self._tls_open = False
                self.plain_eof()
                break
            self.plain_received(chunk)
            if not bio_in.pending and not sslobj.pending():
                break  # all read: no SSLWantReadError raised just to learn that
        if self._bio_out is not None and self._bio_out.pending:
            self._send_records()  # post-handshake messages (key update, alerts)

    def _send_records(self) -> None:
        out, transport = self._bio_out, self.transport
        if out is not None and out.pending and transport is not None and not transport.is_closing():
            transport.write(out.read())

    # ---- for the subclass
    @property
    def tls_open(self) -> bool:
        return self._tls_open

    def peer_certificate(self) -> bytes | None:
        """The peer's DER certificate (after the handshake)."""
        return None if self._sslobj is None else self._sslobj.getpeercert(binary_form=True)

    def send_plain(self, data: bytes) -> None:
        """Encrypt and send ``data`` (one call: records of up to 16 KiB, one transport write)."""
        if not self._tls_open or self.transport is None or self.transport.is_closing():
            return
        assert self._sslobj is not None
        self._sslobj.write(data)
        self._send_records()

    def write_buffer_size(self) -> int:
        t = self.transport
        return 0 if t is None else t.get_write_buffer_size()

    def link_closing(self) -> bool:
        t = self.transport
        return t is None or t.is_closing()

    def close(self) -> None:
        """Send close_notify, then end our side once what is queued has left; what the peer
        still sends is read and dropped until it closes (at most ``LINGER`` s): closing a
        socket with unread input would reset the connection and lose our last frames (a
        GOAWAY telling why)."""
        if self._tls_open and self._sslobj is not None:
            self._tls_open = False
            # WantRead: the peer's close_notify is not awaited
            with contextlib.suppress(ssl.SSLError, OSError, ValueError):
                self._sslobj.unwrap()
            self._send_records()
        t = self.transport
        if t is None or t.is_closing() or self._draining:
            return
        if not t.can_write_eof():
            t.close()
            return
        self._draining = True
        t.write_eof()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(LINGER, self.abort)

    def abort(self) -> None:
        self._tls_open = False
        if self.transport is not None:
            self.transport.abort()
