"""A relay node: the asyncio shell around the sans-IO session and the backbone.

Every connection is TLS over TCP, opened by the client (so devices behind NAT need no
inbound port). One task per connection reads, screens frames through
:class:`~igrs.relay.session.ServerSession` and dispatches them; a housekeeping task closes
connections that time out. Routing: local connections first, then the backbone.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import secrets
import ssl
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

from igrs.errors import ProtocolError
from igrs.relay import payloads
from igrs.relay.backbone.base import Backbone
from igrs.relay.backbone.embedded import EmbeddedBackbone
from igrs.relay.codes import KDF_THREADS
from igrs.relay.config import RelayConfig
from igrs.relay.connection import Connection
from igrs.relay.directory import Directory
from igrs.relay.errors import RelayCode, RelayError
from igrs.relay.frames import (
    ACK_REQUESTED,
    DURABLE,
    SOURCE_USER,
    STORED,
    TARGET_USER,
    VERSION,
    Frame,
    FrameError,
    FrameType,
    encode,
    from_template,
    pack_header,
    template,
)
from igrs.relay.guard import AddressBuckets, AddressSlots, BindAttempt, BindGuard, address_key
from igrs.relay.ids import Kind, Principal
from igrs.relay.limits import TokenBucket
from igrs.relay.session import PRE_AUTH_OPS, State
from igrs.relay.statedir import secure_state_dir
from igrs.relay.tlsutil import fingerprint_pem, make_self_signed, server_context
from igrs.wire.memo import Memo

log = logging.getLogger(__name__)

NOTIFY_NS = "urn:IGRS:relay:notify"
MAIL_BATCH = 256


def _kind_flag(p: Principal, bit: int) -> int:
    return bit if p.kind is Kind.USER else 0


_MESSAGE, _DELIVER, _RECEIPT, _PING, _PONG = (
    FrameType.MESSAGE, FrameType.DELIVER, FrameType.RECEIPT, FrameType.PING, FrameType.PONG)
_DELIVERED = payloads.encode_json({"status": "delivered"})
_NIL16 = bytes(16)


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the soft limit.

    Every client connection is a file descriptor: a node with the usual soft limit (1,024)
    would refuse clients long before its memory is used. Raising the hard limit needs
    privileges a node should not have; ``igrs relay serve`` calls this at start-up.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class RelayNode:
    """``async with RelayNode(RelayConfig(...)) as node:`` runs one relay node."""

    loop: asyncio.AbstractEventLoop  # the loop it runs on (set by start)

    def __init__(self, config: RelayConfig | None = None, backbone: Backbone | None = None) -> None:
        self.config = config or RelayConfig()
        self.limits = self.config.limits
        self.node_id = self.config.node_id or secrets.token_hex(4)
        self._backbone = backbone
        self.directory: Directory | None = None
        self._server: asyncio.Server | None = None
        self._tls: ssl.SSLContext | None = None
        self._conns: set[Connection] = set()
        self._local: dict[uuid.UUID, set[Connection]] = {}
        self._buckets: dict[uuid.UUID, TokenBucket] = {}
        # the message path's routes: (sender, target) UUID ints -> (valid until, directory
        # generation, DELIVER header template); see handle_now
        self._routes: Memo[tuple[int, int], tuple[float, int, bytes]] = Memo(100_000)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._housekeeper: asyncio.Task[None] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.cert_file: Path | None = None
        self.fingerprint = ""
        self.stats: collections.Counter[str] = collections.Counter()
        self._closing = False
        lim = self.limits
        self.bind_guard = BindGuard(lim.bind_max_failures, lim.bind_lockout, lim.bind_max_lockout)
        self._registrations = AddressBuckets(lim.registration_rate, lim.registration_burst)
        self._preauth = AddressSlots(lim.max_preauth_per_address)
        self._kdf = ThreadPoolExecutor(KDF_THREADS, thread_name_prefix="igrs-relay-kdf")
        self._ops: dict[str, Callable[[Connection, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "register_user": self._op_register_user,
            "register_device": self._op_register_device,
            "whoami": self._op_whoami,
            "bind": self._op_bind,
            "unbind": self._op_unbind,
            "link": self._op_link,
            "unlink": self._op_unlink,
            "friend_request": self._op_friend_request,
            "friend_respond": self._op_friend_respond,
            "unfriend": self._op_unfriend,
            "relations": self._op_relations,
            "presence": self._op_presence,
            "subscribe_presence": self._op_subscribe,
            "unsubscribe_presence": self._op_unsubscribe,
            "item_put": self._op_item_put,
            "item_get": self._op_item_get,
            "item_list": self._op_item_list,
            "item_delete": self._op_item_delete,
            "delete_account": self._op_delete_account,
            "modify_account": self._op_modify_account,
            "reset_verify_code": self._op_reset_verify_code,
            "rotate_token": self._op_rotate_token,
        }

    # ------------------------------------------------------------------ lifecycle
    @property
    def backbone(self) -> Backbone:
        assert self._backbone is not None, "node not started"
        return self._backbone

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    def _ensure_tls(self) -> ssl.SSLContext:
        cfg = self.config
        if cfg.cert_file is not None and cfg.key_file is not None:
            cert, key = Path(cfg.cert_file), Path(cfg.key_file)
        else:
            if cfg.state_dir is not None:
                base = Path(cfg.state_dir)
            else:
                self._tmp = tempfile.TemporaryDirectory(prefix="igrs-relay-")
                base = Path(self._tmp.name)
            base.mkdir(parents=True, exist_ok=True)
            cert, key = base / "relay-cert.pem", base / "relay-key.pem"
            if not (cert.exists() and key.exists()):
                make_self_signed(cert, key, cfg.cert_hosts)
        self.cert_file = cert
        self.fingerprint = fingerprint_pem(cert)
        return server_context(cert, key)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.config.state_dir is not None:
            for note in secure_state_dir(Path(self.config.state_dir),
                                         database=self._backbone is None):
                log.warning("%s", note)
        ctx = self._ensure_tls()
        if self._backbone is None:
            db: str | Path = ":memory:"
            if self.config.state_dir is not None:
                db = Path(self.config.state_dir) / "relay.sqlite3"
            self._backbone = EmbeddedBackbone(db, node_id=self.node_id,
                                              max_bytes=self.limits.max_stored_bytes)
        await self._backbone.start(self)
        self.directory = Directory(self._backbone.kv, self.limits, executor=self._kdf)
        self._tls = ctx
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Connection(self), self.config.host, self.config.port, backlog=1024,
        )
        self._housekeeper = asyncio.create_task(self._housekeeping())
        log.info("relay node %s on port %d, fingerprint %s", self.node_id, self.port,
                 self.fingerprint)

    async def close(self, *, abort: bool = False) -> None:
        """Stop. ``abort=True`` drops connections without GOAWAY (simulates a crash)."""
        if self._housekeeper is not None:
            self._housekeeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            if abort:
                conn.closing = True
                conn.abort()
            else:
                conn.goaway(RelayCode.GOING_AWAY, "relay node shutting down")
        self._closing = True
        self._kdf.shutdown(wait=False, cancel_futures=True)  # queued stretching is dropped
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        if self._backbone is not None:
            await (self._backbone.abort() if abort else self._backbone.close())
        if self._tmp is not None:
            self._tmp.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.spawn(coro)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task failed: %r", task.exception())

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.config.housekeeping_interval)
            now = time.monotonic()
            for conn in list(self._conns):
                err = conn.session.timeout(now, self.limits)
                if err is not None:
                    conn.goaway(err.code, err.reason, self.stats)
            for key, bucket in list(self._buckets.items()):
                if key not in self._local and bucket.take(now, 0) and bucket.tokens >= bucket.burst:
                    del self._buckets[key]

    # ------------------------------------------------------------------ connections
    def tls_server_context(self) -> ssl.SSLContext:
        assert self._tls is not None, "node not started"
        return self._tls

    def accepted(self, conn: Connection) -> None:
        """The TLS handshake of ``conn`` is done."""
        if len(self._conns) >= self.limits.max_connections:
            conn.goaway(RelayCode.SERVER_FULL, "relay full: max connections reached", self.stats)
            return
        if not self._preauth.acquire(conn, address_key(conn.peer)):
            conn.goaway(RelayCode.SERVER_FULL, "too many unauthenticated connections from "
                                               "this address", self.stats)
            return
        self._conns.add(conn)

    def dispatch(self, conn: Connection, frame: Frame) -> Coroutine[Any, Any, None]:
        return self._dispatch(conn, frame)

    def handle_now(self, conn: Connection, frame: Frame, now: float) -> bool:
        """Handle ``frame`` here and now if nothing has to be waited for, else return False
        (it is then :meth:`dispatch`-ed). The common case of a relay, a message to a party
        connected to this node whose relation is cached, costs no coroutine, no await and no
        directory call: the route (relation and account checked, the DELIVER header built)
        is cached per sender and target for as long as the directory's answers are."""
        t = frame.type
        if t is _MESSAGE:
            flags = frame.flags
            sender = conn.session.principal
            if flags & DURABLE or sender is None:
                return False
            target = frame.target
            route = self._routes.get((sender.uuid.int, target.int))
            directory = self.directory
            if (route is None or now >= route[0] or directory is None
                    or route[1] != directory.generation):
                return False
            conns = self._local.get(target)
            if not conns:
                return False  # on another node, or offline: the backbone decides
            if not self._rate_ok(conn, now):
                self._error(conn, frame.id, RelayError(RelayCode.RATE_LIMITED,
                                                       "message rate limit exceeded"))
                return True
            payload = frame.payload
            payloads.message_namespace(payload)  # checked (memoised); FrameError closes
            if not self._send_local(conns, from_template(route[2], payload)):
                self._error(conn, frame.id, RelayError(RelayCode.TARGET_BUSY,
                                                       "target's send buffer is full"))
            elif flags & ACK_REQUESTED:
                conn.send(pack_header(VERSION, _RECEIPT, 0, frame.id, _NIL16, _NIL16,
                                      len(_DELIVERED)) + _DELIVERED)
            return True
        if t is _PING:
            conn.send(pack_header(VERSION, _PONG, 0, frame.id, _NIL16, _NIL16, 0))
            return True
        return False

    def _remember_route(self, sender: Principal, target: Principal) -> bytes:
        """The DELIVER header template from ``sender`` to ``target`` (cached with the route
        while the directory's answers that allowed it are fresh)."""
        key = (sender.uuid.int, target.uuid.int)
        head = template(_DELIVER, _kind_flag(sender, SOURCE_USER), sender.uuid, target.uuid)
        directory = self.directory
        if directory is not None:
            until = directory.fresh_until(sender.uuid, target.uuid)
            if until > time.monotonic():
                self._routes.remember(key, (until, directory.generation, head))
        return head

    def dropped(self, conn: Connection) -> None:
        if conn in self._conns:
            self.spawn(self._drop(conn))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def _drop(self, conn: Connection) -> None:
        conn.session.close()
        self._preauth.release(conn)
        self._conns.discard(conn)
        if not conn.link_closing():
            conn.close()
        p = conn.principal
        if p is None:
            return
        conns = self._local.get(p.uuid)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._local[p.uuid]
                if not self._closing:  # on shutdown the backbone clears presence itself
                    with contextlib.suppress(Exception):
                        await self.backbone.set_presence(p, False)

    # ------------------------------------------------------------------ dispatch
    async def _dispatch(self, conn: Connection, frame: Frame) -> None:
        t = frame.type
        if t is FrameType.MESSAGE:
            await self._on_message(conn, frame)
        elif t is FrameType.ACK:
            if conn.inflight is not None:
                conn.inflight.discard(frame.id)
            assert conn.principal is not None
            await self.backbone.mailbox.ack(conn.principal, frame.id)
            if conn.more_mail and not conn.inflight:
                await self._flush_mail(conn.principal)
        elif t is FrameType.PING:
            conn.send(encode(Frame(FrameType.PONG, id=frame.id)))
        elif t is FrameType.PONG:
            pass
        elif t is FrameType.REQUEST:
            await self._on_request(conn, frame)
        elif t is FrameType.MULTICAST:
            await self._on_multicast(conn, frame)
        elif t is FrameType.AUTH:
            await self._on_auth(conn, frame)
        elif t is FrameType.BYE:
            conn.clean = True
            conn.closing = True

    def _error(self, conn: Connection, ref: int, err: RelayError) -> None:
        self.stats[f"error.{int(err.code)}"] += 1
        conn.send(encode(Frame(FrameType.ERROR, id=ref,
                               payload=payloads.encode_error(int(err.code), err.reason))))

    def _rate_ok(self, conn: Connection, now: float) -> bool:
        bucket = conn.bucket
        if bucket is None:
            p = conn.principal
            if p is None:
                return True  # pre-auth: only the flood limit applies
            bucket = self._buckets.get(p.uuid)
            if bucket is None:
                bucket = self._buckets[p.uuid] = TokenBucket(
                    self.limits.message_rate, self.limits.message_burst, now
                )
            conn.bucket = bucket  # shared by the principal's connections on this node
        return bucket.take(now)

    async def _on_auth(self, conn: Connection, frame: Frame) -> None:
        assert self.directory is not None
        try:
            body = payloads.decode_json(frame.payload)
            p = Principal.parse(str(body.get("id", "")))
            acct = await self.directory.authenticate(p, str(body.get("token", "")))
        except ProtocolError as e:
            raise FrameError(RelayCode.NOT_AUTHENTICATED, e.reason) from None
        except RelayError as e:
            raise FrameError(e.code, e.reason) from None
        conns = self._local.setdefault(p.uuid, set())
        if len(conns) >= self.limits.max_connections_per_principal:
            if not conns:
                del self._local[p.uuid]
            raise FrameError(RelayCode.SERVER_FULL, "too many connections for this principal")
        conn.session.authenticated(acct.principal)
        self._preauth.release(conn)
        first = not conns
        conns.add(conn)
        info = {
            "id": str(p),
            "name": acct.name,
            "node": self.node_id,
            "limits": self.limits.advertised(),
        }
        conn.send(encode(Frame(FrameType.AUTH_OK, id=frame.id, payload=payloads.encode_json(info))))
        if first:
            await self.backbone.set_presence(p, True)
        await self._flush_mail(p)

    async def _on_request(self, conn: Connection, frame: Frame) -> None:
        try:
            body = payloads.decode_json(frame.payload)
            op = str(body.get("op", ""))
            handler = self._ops.get(op)
            if handler is None:
                raise RelayError(RelayCode.BAD_FRAME, f"unknown op {op!r}")
            if conn.session.state is State.AWAIT_AUTH and op not in PRE_AUTH_OPS:
                raise RelayError(RelayCode.NOT_AUTHENTICATED, f"op {op!r} needs AUTH first")
            if not self._rate_ok(conn, time.monotonic()):
                raise RelayError(RelayCode.RATE_LIMITED, "request rate limit exceeded")
            result = await handler(conn, body)
        except FrameError:
            raise
        except ProtocolError as e:
            self._error(conn, frame.id, RelayError(RelayCode.BAD_FRAME, e.reason))
            return
        except RelayError as e:
            self._error(conn, frame.id, e)
            return
        except (KeyError, TypeError, ValueError) as e:
            self._error(conn, frame.id, RelayError(RelayCode.BAD_FRAME, f"bad request: {e}"))
            return
        conn.send(encode(Frame(FrameType.RESPONSE, id=frame.id,
                               payload=payloads.encode_json(result))))

    # ------------------------------------------------------------------ messages
    async def _target(self, sender: Principal, target_uuid: uuid.UUID) -> Principal:
        assert self.directory is not None
        if not await self.directory.related(sender.uuid, target_uuid):
            raise RelayError(RelayCode.FORBIDDEN, f"not related to {target_uuid}")
        acct = await self.directory.account(target_uuid)
        if acct is None:
            raise RelayError(RelayCode.NOT_FOUND, f"no such party {target_uuid}")
        return acct.principal

    async def _on_message(self, conn: Connection, frame: Frame) -> None:
        sender = conn.principal
        assert sender is not None
        try:
            if not self._rate_ok(conn, time.monotonic()):
                raise RelayError(RelayCode.RATE_LIMITED, "message rate limit exceeded")
            msg = payloads.decode_message(frame.payload)
            target = await self._target(sender, frame.target)
            status = await self._route(sender, target, msg, frame.flags, frame.payload)
        except FrameError:
            raise
        except RelayError as e:
            self._error(conn, frame.id, e)
            return
        if frame.flags & ACK_REQUESTED:
            conn.send(encode(Frame(FrameType.RECEIPT, id=frame.id,
                                   payload=payloads.encode_json(status))))

    async def _route(
        self,
        sender: Principal,
        target: Principal,
        msg: payloads.MessageBody,
        flags: int,
        raw_payload: bytes,
    ) -> dict[str, Any]:
        """Deliver one message; returns the receipt body or raises RelayError."""
        src_flag = _kind_flag(sender, SOURCE_USER)
        if flags & DURABLE:
            msg_id = await self.backbone.mailbox.put(
                target, sender, msg.namespace, msg.body, int(src_flag),
                cap=self.limits.max_stored_per_party, now=time.time(),
            )
            if target.uuid in self._local:
                await self._flush_mail(target)
                return {"status": "delivered", "id": msg_id}
            if await self.backbone.is_online(target):
                await self.backbone.mail_hint(target)
                return {"status": "delivered", "id": msg_id}
            return {"status": "stored", "id": msg_id}
        data = from_template(self._remember_route(sender, target), raw_payload)
        conns = self._local.get(target.uuid)
        if conns:
            if not self._send_local(conns, data):
                raise RelayError(RelayCode.TARGET_BUSY, "target's send buffer is full")
            return {"status": "delivered"}
        if await self.backbone.deliver_remote(target, data):
            return {"status": "delivered"}
        raise RelayError(RelayCode.TARGET_OFFLINE, f"{target} is offline (send durable to store)")

    def _send_local(self, conns: set[Connection], data: bytes) -> bool:
        sent = False
        for c in conns:
            sent = c.send(data, self.limits.max_send_buffer) or sent
        return sent

    async def _on_multicast(self, conn: Connection, frame: Frame) -> None:
        sender = conn.principal
        assert sender is not None and self.directory is not None
        result: dict[str, list[str]] = {"delivered": [], "stored": [], "offline": [],
                                        "refused": []}
        try:
            if not self._rate_ok(conn, time.monotonic()):
                raise RelayError(RelayCode.RATE_LIMITED, "message rate limit exceeded")
            targets, msg = payloads.decode_multicast(frame.payload)
            if not targets:
                if not frame.flags & TARGET_USER:
                    raise RelayError(RelayCode.BAD_FRAME, "multicast without targets")
                user = Principal(Kind.USER, frame.target)
                if user != sender and not await self.directory.related(sender.uuid, user.uuid):
                    raise RelayError(RelayCode.FORBIDDEN, "not related to that user")
                recipients = [d.uuid for d in await self.directory.devices_of(user)]
                if sender.uuid in recipients:
                    recipients.remove(sender.uuid)
            else:
                recipients = list(dict.fromkeys(targets))
            if len(recipients) > self.limits.max_multicast_targets:
                raise RelayError(RelayCode.BAD_FRAME,
                                 f"more than {self.limits.max_multicast_targets} targets")
            raw = payloads.encode_message(msg.namespace, msg.body)
            for u in recipients:
                label = str(u)
                try:
                    target = await self._target(sender, u)
                    label = str(target)
                    status = await self._route(sender, target, msg, frame.flags, raw)
                    result[status["status"]].append(label)
                except RelayError as e:
                    key = "offline" if e.code == RelayCode.TARGET_OFFLINE else "refused"
                    result[key].append(label)
        except FrameError:
            raise
        except RelayError as e:
            self._error(conn, frame.id, e)
            return
        conn.send(encode(Frame(FrameType.RESPONSE, id=frame.id,
                               payload=payloads.encode_json(result))))

    async def _flush_mail(self, target: Principal) -> None:
        """Push stored messages to every local connection of ``target`` (not yet sent there)."""
        conns = self._local.get(target.uuid)
        if not conns:
            return
        pending = await self.backbone.mailbox.pending(target, MAIL_BATCH)
        for c in conns:
            c.more_mail = len(pending) >= MAIL_BATCH
        for m in pending:
            data = encode(Frame(
                FrameType.DELIVER, id=m.id, flags=m.flags | STORED,
                source=m.source, target=target.uuid,
                payload=payloads.encode_message(m.namespace, m.body),
            ))
            for c in conns:
                if c.inflight is None:
                    c.inflight = set()
                if m.id not in c.inflight and c.send(data, self.limits.max_send_buffer):
                    c.inflight.add(m.id)

    # ------------------------------------------------------------------ backbone hooks
    def deliver_local(self, target: uuid.UUID, frame: bytes) -> bool:
        conns = self._local.get(target)
        return bool(conns) and self._send_local(conns, frame)  # type: ignore[arg-type]

    def mail_waiting(self, target: uuid.UUID) -> None:
        conns = self._local.get(target)
        if conns:
            p = next(iter(conns)).principal
            if p is not None:
                self._spawn(self._flush_mail(p))

    def presence_changed(self, principal: Principal, online: bool) -> None:
        self._spawn(self._notify_presence(principal, online))

    async def _notify_presence(self, principal: Principal, online: bool) -> None:
        assert self.directory is not None
        data = encode(Frame(FrameType.PRESENCE, source=principal.uuid,
                            flags=_kind_flag(principal, SOURCE_USER),
                            payload=payloads.encode_json({"id": str(principal),
                                                          "online": online})))
        for other in await self.directory.relations(principal):
            for c in self._local.get(other.uuid, ()):
                if c.subscribed:
                    c.send(data)

    async def _notify(self, target: Principal, event: dict[str, Any]) -> None:
        data = encode(Frame(FrameType.NOTIFY, target=target.uuid,
                            payload=payloads.encode_json(event)))
        if not self.deliver_local(target.uuid, data):
            await self.backbone.deliver_remote(target, data)

    # ------------------------------------------------------------------ ops
    def _me(self, conn: Connection) -> Principal:
        assert conn.principal is not None
        return conn.principal

    async def _principal(self, text: Any) -> Principal:
        assert self.directory is not None
        p = Principal.parse(str(text))
        acct = await self.directory.account(p.uuid)
        if acct is None or acct.principal.kind is not p.kind:
            raise RelayError(RelayCode.NOT_FOUND, f"no such user or device {p}")
        return p

    def _may_register(self, conn: Connection) -> None:
        if not self.config.open_registration:
            raise RelayError(RelayCode.FORBIDDEN, "registration is closed on this relay")
        if not self._registrations.take(address_key(conn.peer), time.monotonic()):
            raise RelayError(RelayCode.RATE_LIMITED,
                             "registration rate limit for this address exceeded")

    async def _op_register_user(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        self._may_register(conn)
        p, token = await self.directory.register_user(str(body.get("name", "")))
        return {"id": str(p), "token": token}

    async def _op_register_device(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        self._may_register(conn)
        p = Principal.parse(body["id"]) if body.get("id") else Principal.device()
        token = await self.directory.register_device(
            p, str(body.get("name", "")), str(body.get("device_type", "Unknown")),
            str(body.get("verify_code", "")),
        )
        return {"id": str(p), "token": token}

    async def _op_whoami(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        acct = await self.directory.require(self._me(conn).uuid)
        return {"id": str(acct.principal), "name": acct.name, "kind": acct.principal.kind.value,
                "device_type": acct.device_type, "node": self.node_id}

    async def _op_bind(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        """Bind with the bind guard around the code check (specs/relay.md, "Binding")."""
        assert self.directory is not None
        me, dev = self._me(conn), Principal.parse(body["device"])
        if me.kind is not Kind.USER:
            raise RelayError(RelayCode.FORBIDDEN, "bind is for users")
        attempt = BindAttempt(dev.uuid, me.uuid, address_key(conn.peer))
        directory = self.directory
        await self.bind_guard.check(
            attempt, lambda: directory.verify(dev, str(body.get("verify_code", ""))))
        await self.directory.add_owner(me, dev)
        await self._notify(dev, {"event": "bound", "user": str(me)})
        return {"bound": str(dev)}

    async def _op_unbind(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        me, dev = self._me(conn), Principal.parse(body["device"])
        await self.directory.unbind(me, dev)
        await self._notify(dev, {"event": "unbound", "user": str(me)})
        return {"unbound": str(dev)}

    async def _op_link(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        a, b = Principal.parse(body["a"]), Principal.parse(body["b"])
        await self.directory.link(self._me(conn), a, b)
        return {"linked": [str(a), str(b)]}

    async def _op_unlink(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        a, b = Principal.parse(body["a"]), Principal.parse(body["b"])
        await self.directory.unlink(self._me(conn), a, b)
        return {"unlinked": [str(a), str(b)]}

    async def _op_friend_request(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        me, other = self._me(conn), await self._principal(body["user"])
        state = await self.directory.friend_request(me, other)
        event = "friend_request" if state == "friend_out" else "friend_accepted"
        await self._notify(other, {"event": event, "from": str(me)})
        return {"state": state}

    async def _op_friend_respond(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        me, other = self._me(conn), await self._principal(body["user"])
        accept = bool(body.get("accept"))
        await self.directory.friend_respond(me, other, accept)
        event = "friend_accepted" if accept else "friend_denied"
        await self._notify(other, {"event": event, "from": str(me)})
        return {"state": "friend" if accept else "none"}

    async def _op_unfriend(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        me, other = self._me(conn), Principal.parse(body["user"])
        await self.directory.unfriend(me, other)
        return {"state": "none"}

    async def _op_relations(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        table, names = await self.directory.relation_table(self._me(conn))
        return {"relations": table, "names": names}

    async def _op_presence(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        me = self._me(conn)
        online: dict[str, bool] = {}
        refused: list[str] = []
        ids = body.get("ids")
        wanted = ([Principal.parse(i) for i in ids] if ids is not None
                  else await self.directory.relations(me))
        for p in wanted[:1000]:
            if await self.directory.related(me.uuid, p.uuid):
                online[str(p)] = await self.backbone.is_online(p)
            else:
                refused.append(str(p))
        return {"online": online, "refused": refused}

    async def _op_subscribe(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        conn.subscribed = True
        return await self._op_presence(conn, {})

    async def _op_unsubscribe(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        conn.subscribed = False
        return {}

    async def _op_item_put(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        value = base64.b64decode(str(body.get("value", "")), validate=True)
        readers = [Principal.parse(r) for r in body.get("readers", [])]
        await self.directory.item_put(self._me(conn), str(body["key"]), value, readers,
                                      time.time())
        return {"key": body["key"]}

    async def _op_item_get(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        me = self._me(conn)
        owner = Principal.parse(body["owner"]) if body.get("owner") else me
        value = await self.directory.item_get(me, owner, str(body["key"]))
        return {"key": body["key"], "owner": str(owner),
                "value": base64.b64encode(value).decode()}

    async def _op_item_list(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        return {"keys": await self.directory.item_list(self._me(conn))}

    async def _op_item_delete(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        await self.directory.item_delete(self._me(conn), str(body["key"]))
        return {"deleted": body["key"]}

    # ---- account maintenance (5-9 §2.5) ----
    async def _subject(self, conn: Connection, body: dict[str, Any]) -> Principal:
        """The account an op applies to: the caller's, or with ``device`` a device it owns."""
        assert self.directory is not None
        me = self._me(conn)
        if not body.get("device"):
            return me
        dev = Principal.parse(str(body["device"]))
        if dev != me and await self.directory.relation(me.uuid, dev.uuid) != "owns":
            raise RelayError(RelayCode.FORBIDDEN, f"{dev} is not bound to you")
        return dev

    def _revoke(self, p: Principal, keep: Connection | None, reason: str) -> int:
        """Close ``p``'s connections on this node (but ``keep``) with GOAWAY 401."""
        closed = 0
        for c in list(self._local.get(p.uuid, ())):
            if c is not keep:
                c.goaway(RelayCode.NOT_AUTHENTICATED, reason, self.stats)
                closed += 1
        return closed

    async def _op_delete_account(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        p = await self._subject(conn, body)
        await self.directory.delete_account(p)
        await self.backbone.mailbox.purge(p)
        self._revoke(p, conn, "account deleted")
        return {"deleted": str(p)}

    async def _op_modify_account(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        p = await self._subject(conn, body)
        name, dtype = body.get("name"), body.get("device_type")
        if name is None and dtype is None:
            raise RelayError(RelayCode.BAD_FRAME, "give name and/or device_type")
        acct = await self.directory.modify(p, None if name is None else str(name),
                                           None if dtype is None else str(dtype))
        return {"id": str(p), "name": acct.name, "device_type": acct.device_type}

    async def _op_reset_verify_code(self, conn: Connection,
                                    body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        p = await self._subject(conn, body)
        await self.directory.reset_code(p, str(body.get("verify_code", "")))
        return {"reset": str(p)}

    async def _op_rotate_token(self, conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
        assert self.directory is not None
        p = await self._subject(conn, body)
        token = await self.directory.rotate_token(p)
        closed = self._revoke(p, conn, "token revoked")
        return {"id": str(p), "token": token, "closed": closed}
