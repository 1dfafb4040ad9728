"""Relay client: one outbound TLS connection, kept alive, re-established with backoff.

``async with RelayClient("relay.example:5001", principal=..., token=..., fingerprint=...)``
authenticates, then offers requests (accounts, relationships, presence, online storage),
point-to-point and point-to-multipoint messages, and the inbound streams ``receive()``,
``presence`` and ``notifications``. After a lost connection it reconnects (the next address
in the list, exponential backoff with jitter), re-authenticates and re-subscribes; stored
(durable) messages not yet acknowledged are redelivered by the relay and de-duplicated here.

The connection is an asyncio Protocol doing TLS itself (igrs.relay.clientlink, the node's
link): received frames are handled in the read callback, frames written in one loop turn
(messages, ACKs) leave as one TLS write.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import random
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from igrs.relay import payloads
from igrs.relay.clientlink import ClientLink
from igrs.relay.config import DEFAULT_RELAY_PORT
from igrs.relay.errors import ConnectionClosed, RelayCode, RelayError
from igrs.relay.frames import (
    ACK_REQUESTED,
    DURABLE,
    NIL,
    SOURCE_USER,
    STORED,
    TARGET_USER,
    VERSION,
    Frame,
    FrameType,
    encode,
    pack_header,
)
from igrs.relay.ids import Kind, Principal
from igrs.relay.tlsutil import client_context, fingerprint_matches
from igrs.wire.memo import Memo

log = logging.getLogger(__name__)

FATAL_CODES = {RelayCode.NOT_AUTHENTICATED, RelayCode.VERSION, RelayCode.BAD_FRAME}
CLIENT_MAX_PAYLOAD = 16 * 1024 * 1024  # what the client accepts from a relay


@dataclass(slots=True, frozen=True)
class Message:
    source: Principal
    namespace: str
    body: bytes
    id: int = 0  # stored-message id (durable), 0 otherwise
    stored: bool = False

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(slots=True, frozen=True)
class PresenceEvent:
    principal: Principal
    online: bool


def parse_address(addr: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(addr, tuple):
        return addr
    host, sep, port = addr.rpartition(":")
    if not sep:
        return addr, DEFAULT_RELAY_PORT
    return host.strip("[]"), int(port)


_SOURCES: Memo[int, Principal] = Memo(4096)  # uuid int << 1 | is user -> Principal
_source_get = _SOURCES.get
_TARGETS: Memo[str, Principal] = Memo(4096)  # ids given as text to send()
_target_get = _TARGETS.get
_NIL_BYTES = NIL.bytes
_MESSAGE = FrameType.MESSAGE


def _source(frame: Frame) -> Principal:
    user = frame.flags & SOURCE_USER
    key = frame.source.int << 1 | (1 if user else 0)
    return _source_get(key) or _SOURCES.remember(
        key, Principal(Kind.USER if user else Kind.DEVICE, frame.source))


def route_queue(routes: dict[str, asyncio.Queue[Message]], inbox: asyncio.Queue[Message],
                namespace: str) -> asyncio.Queue[Message]:
    """The queue of ``namespace``'s messages (made at the first call); messages of it already
    waiting in ``inbox`` move there, in order, the others stay. Shared by both transports."""
    q = routes.get(namespace)
    if q is None:
        q = routes[namespace] = asyncio.Queue()
        keep: list[Message] = []
        while not inbox.empty():
            m = inbox.get_nowait()
            if m.namespace == namespace:
                q.put_nowait(m)
            else:
                keep.append(m)
        for m in keep:
            inbox.put_nowait(m)
    return q


class RelayClient:
    def __init__(
        self,
        addresses: str | tuple[str, int] | Sequence[str | tuple[str, int]],
        *,
        principal: Principal | str | None = None,
        token: str | None = None,
        cafile: str | Path | None = None,
        fingerprint: str | None = None,
        server_hostname: str | None = None,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.05, 5.0),
        auto_ack: bool = True,
        connect_timeout: float = 10.0,
        request_timeout: float = 30.0,
    ) -> None:
        if isinstance(addresses, str | tuple):
            addresses = [addresses]
        self.addresses = [parse_address(a) for a in addresses]
        self.principal = Principal.parse(principal) if isinstance(principal, str) else principal
        self.token = token
        self.fingerprint = fingerprint
        self.server_hostname = server_hostname
        self._ssl = client_context(cafile, fingerprint)
        self.reconnect = reconnect
        self.backoff = backoff
        self.auto_ack = auto_ack
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.node: str | None = None
        self.server_limits: dict[str, Any] = {}
        self.max_payload = 64 * 1024
        self.presence: asyncio.Queue[PresenceEvent] = asyncio.Queue()
        self.notifications: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.errors: asyncio.Queue[RelayError] = asyncio.Queue()
        self.connections = 0  # successful (re)connections so far
        self.closed_reason: RelayError | None = None
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self._routes: dict[str, asyncio.Queue[Message]] = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._link: ClientLink | None = None
        self._connected = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._subscribed = False
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._closing = False
        self._addr_index = 0
        self._fast_retry = False

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect (and authenticate); returns once the first session is open."""
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run(first))
        try:
            await first
        except BaseException:
            self._runner.cancel()
            with contextlib.suppress(BaseException):
                await self._runner
            raise

    async def close(self, *, bye: bool = True) -> None:
        self._closing = True
        link = self._link
        if link is not None and bye and link.usable:
            link.write(encode(Frame(FrameType.BYE)))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(link.drain(), 1)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(BaseException):
                await self._runner
        if link is not None:
            if bye:
                link.close()
            else:
                link.abort()

    def abort(self) -> None:
        """Drop the connection without a goodbye (tests: an unclean disconnect)."""
        self._closing = True
        if self._link is not None:
            self._link.abort()
        if self._runner is not None:
            self._runner.cancel()

    @property
    def connected(self) -> bool:
        """Whether the connection is up and authenticated now (it reconnects by itself)."""
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    # ------------------------------------------------------------------ connection loop
    async def _open(self) -> ClientLink:
        host, port = self.addresses[self._addr_index % len(self.addresses)]
        hostname = self.server_hostname or (None if self.fingerprint else host)
        link = ClientLink((self._ssl, hostname, self.connect_timeout), self._on_frame,
                          CLIENT_MAX_PAYLOAD)
        loop = asyncio.get_running_loop()

        async def opened() -> None:
            await loop.create_connection(lambda: link, host, port)
            await link.ready

        try:
            await asyncio.wait_for(opened(), self.connect_timeout)
        except BaseException:
            link.abort()
            raise
        if self.fingerprint is not None:
            der = link.peer_certificate()
            if der is None or not fingerprint_matches(der, self.fingerprint):
                link.abort()
                raise ssl.SSLError(f"relay certificate of {host}:{port} does not match the pin")
        return link

    async def _run(self, first: asyncio.Future[None]) -> None:
        delay = self.backoff[0]
        attempts = 0
        while True:
            attempts += 1
            link: ClientLink | None = None
            try:
                link = self._link = await self._open()
                link.lost.add_done_callback(self._lost)
                if self.principal is not None and self.token is not None:
                    await self._authenticate()
                if self._subscribed:
                    await self._request({"op": "subscribe_presence"})
                self.connections += 1
                self._connected.set()
                delay = self.backoff[0]
                if not first.done():
                    first.set_result(None)
                ping = asyncio.create_task(self._pinger(link))
                try:
                    await asyncio.shield(link.lost)
                finally:
                    ping.cancel()
            except asyncio.CancelledError:
                self._fail_pending(ConnectionClosed(RelayCode.GOING_AWAY, "client closed"))
                raise
            except (OSError, ssl.SSLError, TimeoutError, RelayError) as e:
                err = e if isinstance(e, RelayError) else ConnectionClosed(
                    RelayCode.GOING_AWAY, f"connection failed: {e}")
                if not first.done() and (
                    not self.reconnect
                    or isinstance(e, RelayError | ssl.SSLError)
                    or attempts >= len(self.addresses)
                ):
                    first.set_exception(err)
                    return
                log.debug("relay connection error: %s", err)
            finally:
                self._connected.clear()
                if link is not None and not self._closing:
                    link.abort()
            reason = self.closed_reason or ConnectionClosed(RelayCode.GOING_AWAY, "lost")
            self._fail_pending(reason)
            if self._closing or not self.reconnect or (
                isinstance(reason.code, RelayCode) and reason.code in FATAL_CODES
            ):
                if not first.done():
                    first.set_exception(reason)
                return
            self.closed_reason = None
            self._addr_index += 1  # try the next relay address (cluster failover)
            if self._fast_retry:
                self._fast_retry = False  # the node said it is leaving: retry at once
                continue
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.backoff[1])

    def _lost(self, lost: asyncio.Future[Exception | None]) -> None:
        """The link is gone: what waits for an answer fails now (not at its timeout)."""
        if self.closed_reason is None:
            self.closed_reason = ConnectionClosed(RelayCode.GOING_AWAY, "relay closed")
        self._fail_pending(self.closed_reason)

    def _fail_pending(self, err: RelayError) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()

    async def _authenticate(self) -> None:
        assert self.principal is not None and self.token is not None
        frame = await self._call(
            Frame(FrameType.AUTH,
                  payload=payloads.encode_json({"id": str(self.principal), "token": self.token}))
        )
        info = payloads.decode_json(frame.payload)
        self.node = info.get("node")
        self.server_limits = info.get("limits", {})
        self.max_payload = int(self.server_limits.get("max_frame_payload", self.max_payload))

    async def _pinger(self, link: ClientLink) -> None:
        interval = float(self.server_limits.get("ping_interval", 30.0))
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.wait_for(self._call(Frame(FrameType.PING)), interval)
            except (TimeoutError, RelayError):
                link.abort()  # dead relay: reconnect
                return

    def _on_frame(self, frame: Frame) -> None:
        """One received frame, in the link's read callback: nothing here may wait."""
        t = frame.type
        if t is FrameType.DELIVER:
            payload = frame.payload
            ns = payloads.message_namespace(payload)
            stored = frame.flags & STORED != 0
            if stored and frame.id in self._seen:
                self._send_ack(frame.id)  # redelivery of one already handed over
                return
            self._routes.get(ns, self._messages).put_nowait(
                Message(_source(frame), ns, payload[1 + payload[0] :], frame.id, stored)
            )
        elif t in (FrameType.RESPONSE, FrameType.RECEIPT, FrameType.AUTH_OK, FrameType.PONG):
            fut = self._pending.pop(frame.id, None)
            if fut is not None and not fut.done():
                fut.set_result(frame)
        elif t is FrameType.ERROR:
            code, reason = payloads.decode_error(frame.payload)
            err = RelayError(code, reason)
            fut = self._pending.pop(frame.id, None)
            if fut is not None and not fut.done():
                fut.set_exception(err)
            else:
                self.errors.put_nowait(err)
        elif t is FrameType.PRESENCE:
            body = payloads.decode_json(frame.payload)
            self.presence.put_nowait(
                PresenceEvent(Principal.parse(body["id"]), bool(body["online"]))
            )
        elif t is FrameType.NOTIFY:
            self.notifications.put_nowait(payloads.decode_json(frame.payload))
        elif t is FrameType.PING:
            with contextlib.suppress(RelayError):
                self._write(Frame(FrameType.PONG, id=frame.id))
        elif t is FrameType.GOAWAY:
            code, reason = payloads.decode_error(frame.payload)
            self.closed_reason = ConnectionClosed(code, reason)
            self._fast_retry = code == RelayCode.GOING_AWAY
            log.info("relay says goodbye: %s", self.closed_reason)

    # ------------------------------------------------------------------ primitives
    def _write(self, frame: Frame) -> None:
        self._write_bytes(encode(frame))

    def _write_bytes(self, data: bytes) -> None:
        """Queue an encoded frame; frames queued in one loop turn leave as one TLS write."""
        link = self._link
        if link is None or not link.usable:
            raise ConnectionClosed(RelayCode.GOING_AWAY, "not connected")
        link.write(data)

    async def _call(self, frame: Frame) -> Frame:
        fid = frame.id or next(self._ids)
        frame = Frame(frame.type, fid, frame.flags, frame.source, frame.target, frame.payload)
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[fid] = fut
        try:
            self._write(frame)
            return await asyncio.wait_for(fut, self.request_timeout)
        finally:
            self._pending.pop(fid, None)

    async def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        frame = await self._call(Frame(FrameType.REQUEST, payload=payloads.encode_json(body)))
        return payloads.decode_json(frame.payload)

    async def request(self, op: str, **args: Any) -> dict[str, Any]:
        """Any relay op (specs/relay.md "Requests"); raises RelayError on an ERROR answer."""
        await self._connected.wait()
        return await self._request({"op": op, **args})

    async def drain(self) -> None:
        if self._link is not None:
            await self._link.drain()

    def _check_size(self, payload: bytes) -> None:
        if len(payload) > self.max_payload:
            raise RelayError(RelayCode.TOO_LARGE,
                             f"payload {len(payload)} bytes over the relay's {self.max_payload}")

    async def send(
        self,
        target: Principal | str,
        body: bytes | str,
        *,
        namespace: str = payloads.DEFAULT_NAMESPACE,
        durable: bool = False,
        wait: bool = True,
    ) -> dict[str, Any] | None:
        """Point-to-point. ``durable``: stored until the target acknowledges (offline
        storage). ``wait``: ask for a receipt and return it ({"status": ...})."""
        if isinstance(target, str):
            target = _target_get(target) or _TARGETS.remember(target, Principal.parse(target))
        data = body.encode() if isinstance(body, str) else body
        payload = payloads.encode_message(namespace, data)
        if len(payload) > self.max_payload:
            self._check_size(payload)
        flags = (DURABLE if durable else 0) | (TARGET_USER if target.kind is Kind.USER else 0)
        if not wait:
            if not self._connected.is_set():
                await self._connected.wait()
            self._write_bytes(pack_header(VERSION, _MESSAGE, flags, next(self._ids), _NIL_BYTES,
                                          target.uuid.bytes, len(payload)) + payload)
            return None
        await self._connected.wait()
        frame = await self._call(Frame(FrameType.MESSAGE, flags=flags | ACK_REQUESTED,
                                       target=target.uuid, payload=payload))
        return payloads.decode_json(frame.payload)

    async def multicast(
        self,
        body: bytes | str,
        *,
        targets: Iterable[Principal | str] = (),
        user: Principal | str | None = None,
        namespace: str = payloads.DEFAULT_NAMESPACE,
        durable: bool = False,
    ) -> dict[str, list[str]]:
        """Point-to-multipoint: to ``targets``, or to every device bound to ``user``."""
        ts = [Principal.parse(t) if isinstance(t, str) else t for t in targets]
        data = body.encode() if isinstance(body, str) else body
        payload = payloads.encode_multicast([t.uuid for t in ts], namespace, data)
        self._check_size(payload)
        flags = DURABLE if durable else 0
        dest = NIL
        if user is not None:
            u = Principal.parse(user) if isinstance(user, str) else user
            dest, flags = u.uuid, flags | TARGET_USER
        await self._connected.wait()
        frame = await self._call(Frame(FrameType.MULTICAST, flags=flags, target=dest,
                                       payload=payload))
        return payloads.decode_json(frame.payload)

    async def receive(self, timeout: float | None = None) -> Message:
        msg = await asyncio.wait_for(self._messages.get(), timeout)
        if msg.stored and self.auto_ack:
            self.ack(msg)
        return msg

    async def receive_many(self, limit: int = 1024, timeout: float | None = None
                           ) -> list[Message]:
        """Wait for a message, then take every one already waiting too (at most ``limit``):
        one wake-up for a whole received chunk. Stored ones are acknowledged as by
        :meth:`receive` (their ACKs leave together)."""
        first = await self.receive(timeout)
        out = [first]
        q = self._messages
        while len(out) < limit and not q.empty():
            msg = q.get_nowait()
            if msg.stored and self.auto_ack:
                self.ack(msg)
            out.append(msg)
        return out

    async def messages(self) -> AsyncIterator[Message]:
        while True:
            yield await self.receive()

    def route(self, namespace: str) -> asyncio.Queue[Message]:
        """From now on, messages in ``namespace`` go to a queue of their own (returned; the
        same one on every call) instead of :meth:`receive`. Messages of that namespace already
        waiting move there. Its reader acknowledges stored messages with :meth:`ack`."""
        return route_queue(self._routes, self._messages, namespace)

    def ack(self, msg: Message) -> None:
        """Acknowledge a stored message: the relay deletes it (at-least-once delivery)."""
        if msg.stored:
            self._seen[msg.id] = None
            while len(self._seen) > 4096:
                self._seen.popitem(last=False)
            self._send_ack(msg.id)

    def _send_ack(self, msg_id: int) -> None:
        with contextlib.suppress(RelayError):
            self._write(Frame(FrameType.ACK, id=msg_id))

    # ------------------------------------------------------------------ conveniences
    async def subscribe_presence(self) -> dict[str, bool]:
        self._subscribed = True
        return dict((await self.request("subscribe_presence"))["online"])

    async def query_presence(self, ids: Iterable[Principal | str] | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if ids is not None:
            args["ids"] = [str(i) for i in ids]
        return await self.request("presence", **args)

    async def bind(self, device: Principal | str, verify_code: str) -> dict[str, Any]:
        return await self.request("bind", device=str(device), verify_code=verify_code)

    async def item_put(self, key: str, value: bytes,
                       readers: Iterable[Principal | str] = ()) -> dict[str, Any]:
        return await self.request("item_put", key=key, value=base64.b64encode(value).decode(),
                                  readers=[str(r) for r in readers])

    async def item_get(self, key: str, owner: Principal | str | None = None) -> bytes:
        args: dict[str, Any] = {"key": key}
        if owner is not None:
            args["owner"] = str(owner)
        return base64.b64decode((await self.request("item_get", **args))["value"])


async def register_user(address: str | tuple[str, int], name: str, **tls: Any
                        ) -> tuple[Principal, str]:
    """Create an RA user on the relay; returns (user id, token)."""
    async with RelayClient(address, reconnect=False, **tls) as c:
        r = await c.request("register_user", name=name)
    return Principal.parse(r["id"]), str(r["token"])


async def register_device(
    address: str | tuple[str, int],
    name: str,
    verify_code: str,
    *,
    device: Principal | str | None = None,
    device_type: str = "Unknown",
    **tls: Any,
) -> tuple[Principal, str]:
    """Create an RA device (with its verification code); returns (device id, token)."""
    async with RelayClient(address, reconnect=False, **tls) as c:
        args: dict[str, Any] = {"name": name, "verify_code": verify_code,
                                "device_type": device_type}
        if device is not None:
            args["id"] = str(device)
        r = await c.request("register_device", **args)
    return Principal.parse(r["id"]), str(r["token"])
