"""The cluster backbone: several relay nodes sharing state through NATS with JetStream.

Optional (``pip install igrs[cluster]``; imported only when used). Layout, all names under a
configurable prefix (default ``igrs``):

* KV bucket ``<p>_directory`` - accounts, relationships, online-storage items (the same keys
  as the embedded SQLite table, see igrs.relay.directory).
* KV bucket ``<p>_presence`` - key = principal hex, value = {"node": id}; every node watches it
  and keeps a local map principal -> node (used for routing and presence queries).
* KV bucket ``<p>_nodes`` - node heartbeats (``heartbeat`` s); a node whose heartbeat key has
  expired is dead: the survivors delete its presence entries (compare-and-delete on the
  revision, so a principal that has already reconnected elsewhere is left alone).
* Stream ``<P>_MAIL`` on subjects ``<p>.mail.<hex>`` - offline storage. The message id is the
  stream sequence; ACK deletes it. ``max_msgs_per_subject`` with ``discard_new_per_subject``
  enforces the per-party cap in the server.
* Core subject ``<p>.node.<node id>`` - frames for principals connected to that node
  (header ``t`` = target hex, ``k`` = "frame" or "mail").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import uuid
from typing import Any

import nats
from nats.js import api
from nats.js.errors import (
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from igrs.relay.backbone.base import Backbone, NodeHooks, StoredMessage
from igrs.relay.errors import RelayCode, RelayError
from igrs.relay.ids import Kind, Principal
from igrs.relay.limits import Limits

log = logging.getLogger(__name__)


class NatsKV:
    """igrs.relay.backbone.KeyValue over a JetStream KV bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, key: str) -> bytes | None:
        try:
            e = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        return e.value

    async def put(self, key: str, value: bytes) -> None:
        await self.kv.put(key, value)

    async def create(self, key: str, value: bytes) -> bool:
        try:
            await self.kv.create(key, value)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def delete(self, key: str) -> None:
        await self.kv.purge(key)

    async def keys(self, prefix: str) -> list[str]:
        watcher = await self.kv.watch(f"{prefix}>", ignore_deletes=True, meta_only=True)
        out: list[str] = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                out.append(entry.key)
        finally:
            await watcher.stop()
        return out


class JetStreamMailbox:
    def __init__(self, js: Any, stream: str, subject_prefix: str) -> None:
        self.js = js
        self.stream = stream
        self.prefix = subject_prefix

    def _subject(self, p: Principal | uuid.UUID) -> str:
        return f"{self.prefix}.{p.hex if isinstance(p, uuid.UUID) else p.key}"

    async def put(self, recipient: Principal, source: Principal, namespace: str, body: bytes,
                  flags: int, *, cap: int, now: float) -> int:
        headers = {"s": source.key, "f": str(flags), "n": namespace, "c": repr(now)}
        try:
            ack = await self.js.publish(self._subject(recipient), body, stream=self.stream,
                                        headers=headers)
        except (BadRequestError, nats.js.errors.APIError) as e:
            if "maximum bytes" in str(e).lower():  # the stream's max_bytes: whole relay
                raise RelayError(RelayCode.NODE_STORAGE_FULL,
                                 "the relay's storage for stored messages is full") from None
            if "maximum messages per subject" in str(e).lower() or getattr(
                e, "err_code", 0) in (10077, 10168):
                raise RelayError(RelayCode.STORAGE_FULL,
                                 f"{recipient} has reached the stored-message cap") from None
            raise
        return int(ack.seq)

    async def pending(self, recipient: Principal, limit: int) -> list[StoredMessage]:
        out: list[StoredMessage] = []
        seq = 1
        subject = self._subject(recipient)
        while len(out) < limit:
            try:
                m = await self.js.get_msg(self.stream, seq=seq, subject=subject, next=True)
            except NotFoundError:
                break
            h = m.headers or {}
            out.append(StoredMessage(
                int(m.seq), recipient.uuid, uuid.UUID(hex=h["s"]), int(h["f"]), h["n"],
                m.data or b"", float(h["c"]),
            ))
            seq = int(m.seq) + 1
        return out

    async def ack(self, recipient: Principal, msg_id: int) -> bool:
        try:
            m = await self.js.get_msg(self.stream, seq=msg_id)
        except NotFoundError:
            return False
        if m.subject != self._subject(recipient):
            return False  # not this party's message: ignore
        with contextlib.suppress(NotFoundError):
            return bool(await self.js.delete_msg(self.stream, msg_id))
        return False

    async def purge(self, recipient: Principal) -> None:
        await self.js.purge_stream(self.stream, subject=self._subject(recipient))


class NatsBackbone(Backbone):
    def __init__(
        self,
        servers: list[str] | str,
        *,
        node_id: str | None = None,
        limits: Limits | None = None,
        prefix: str = "igrs",
        heartbeat: float = 2.0,
        replicas: int = 1,
    ) -> None:
        self.servers = [servers] if isinstance(servers, str) else servers
        self.node_id = node_id or secrets.token_hex(4)
        self.limits = limits or Limits()
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.replicas = replicas
        self._hooks: NodeHooks | None = None
        self._where: dict[uuid.UUID, tuple[str, int]] = {}  # principal -> (node, revision)
        self._mine: set[uuid.UUID] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self.nc: Any = None

    async def start(self, hooks: NodeHooks) -> None:
        self._hooks = hooks
        self.nc = await nats.connect(self.servers, name=f"igrs-relay-{self.node_id}",
                                     max_reconnect_attempts=-1)
        js = self.js = self.nc.jetstream()
        p = self.prefix
        self._dir = await js.create_key_value(
            api.KeyValueConfig(bucket=f"{p}_directory", history=1, replicas=self.replicas,
                               storage=api.StorageType.FILE))
        self._presence = await js.create_key_value(
            api.KeyValueConfig(bucket=f"{p}_presence", history=1, replicas=self.replicas,
                               storage=api.StorageType.FILE))
        self._nodes = await js.create_key_value(
            api.KeyValueConfig(bucket=f"{p}_nodes", history=1, ttl=self.heartbeat * 3,
                               replicas=self.replicas, storage=api.StorageType.MEMORY))
        stream = f"{p.upper()}_MAIL"
        cfg = api.StreamConfig(
            name=stream, subjects=[f"{p}.mail.>"], storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS, discard=api.DiscardPolicy.NEW,
            max_msgs_per_subject=self.limits.max_stored_per_party,
            max_bytes=self.limits.max_stored_bytes,
            discard_new_per_subject=True, num_replicas=self.replicas, allow_direct=True,
        )
        try:
            await js.add_stream(cfg)
        except BadRequestError:
            await js.update_stream(cfg)
        self.kv = NatsKV(self._dir)
        self.mailbox = JetStreamMailbox(js, stream, f"{p}.mail")
        await self._nodes.put(self.node_id, b"alive")
        self._sub = await self.nc.subscribe(f"{p}.node.{self.node_id}", cb=self._on_node_msg)
        self._watcher = await self._presence.watchall()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.create_task(self._watch_presence(ready)),
            asyncio.create_task(self._heartbeat()),
        ]
        await ready

    async def _stop_tasks(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            # nats-py's KeyWatcher iterator can swallow a cancellation: do not wait forever
            await asyncio.wait(self._tasks, timeout=1)

    async def close(self) -> None:
        await self._stop_tasks()
        if self.nc is not None and self.nc.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._leave(), 3)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 3)

    async def _leave(self) -> None:
        """Clean exit: our principals go offline now, not after the heartbeat expires."""
        for u in list(self._mine):
            await self._presence.purge(u.hex)
        await self._nodes.purge(self.node_id)
        await self.nc.flush(1)

    async def abort(self) -> None:
        """Simulate a crash: drop the NATS connection without cleaning anything up."""
        await self._stop_tasks()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 3)

    # ---- presence ----
    async def _watch_presence(self, ready: asyncio.Future[None]) -> None:
        async for entry in self._watcher:
            if entry is None:
                if not ready.done():
                    ready.set_result(None)
                continue
            try:
                u = uuid.UUID(hex=entry.key)
            except ValueError:
                continue
            was = u in self._where
            if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                self._where.pop(u, None)
                online = False
            else:
                self._where[u] = (json.loads(entry.value)["node"], entry.revision)
                online = True
            if ready.done() and was != online and self._hooks is not None:
                p = await self._principal(u)
                if p is not None:
                    self._hooks.presence_changed(p, online)

    async def _principal(self, u: uuid.UUID) -> Principal | None:
        raw = await self.kv.get(f"acct.{u.hex}")
        return None if raw is None else Principal(Kind(json.loads(raw)["kind"]), u)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self._nodes.put(self.node_id, b"alive")
                await self._sweep_dead_nodes()
            except Exception as e:  # keep beating through NATS hiccups
                log.warning("heartbeat: %s", e)

    async def _sweep_dead_nodes(self) -> None:
        nodes = {node for node, _ in self._where.values()}
        for node in nodes - {self.node_id}:
            try:
                await self._nodes.get(node)
                continue
            except KeyNotFoundError:
                pass
            for u, (n, rev) in list(self._where.items()):
                if n == node:
                    with contextlib.suppress(KeyWrongLastSequenceError, BadRequestError):
                        await self._presence.delete(u.hex, last=rev)

    async def set_presence(self, principal: Principal, online: bool) -> None:
        if online:
            self._mine.add(principal.uuid)
            await self._presence.put(principal.key, json.dumps(
                {"node": self.node_id, "kind": principal.kind.value, "t": time.time()}).encode())
        else:
            self._mine.discard(principal.uuid)
            where = self._where.get(principal.uuid)
            if where is not None and where[0] == self.node_id:
                with contextlib.suppress(KeyWrongLastSequenceError, BadRequestError):
                    await self._presence.delete(principal.key, last=where[1])

    async def is_online(self, principal: Principal) -> bool:
        return principal.uuid in self._where

    # ---- routing ----
    async def deliver_remote(self, target: Principal, frame: bytes) -> bool:
        where = self._where.get(target.uuid)
        if where is None or where[0] == self.node_id:
            return False
        await self.nc.publish(f"{self.prefix}.node.{where[0]}", frame,
                              headers={"t": target.key, "k": "frame"})
        return True

    async def mail_hint(self, target: Principal) -> None:
        where = self._where.get(target.uuid)
        if where is not None and where[0] != self.node_id:
            await self.nc.publish(f"{self.prefix}.node.{where[0]}", b"",
                                  headers={"t": target.key, "k": "mail"})

    async def _on_node_msg(self, msg: Any) -> None:
        if self._hooks is None or not msg.headers:
            return
        target = uuid.UUID(hex=msg.headers["t"])
        if msg.headers.get("k") == "mail":
            self._hooks.mail_waiting(target)
        else:
            self._hooks.deliver_local(target, msg.data)
