"""What a relay node needs from the world around it: the backbone abstraction.

* :class:`KeyValue` - accounts, relationships and online-storage items (the directory).
* :class:`Mailbox` - offline storage: durable messages until acknowledged.
* presence and cross-node routing - :class:`Backbone` methods.

Two implementations: ``embedded`` (one node, SQLite, the default) and ``nats``
(several nodes on NATS JetStream). The node calls these; backbones call back up only through
:class:`NodeHooks` (events, not requests).
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

from igrs.relay.ids import Principal


class KeyValue(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def put(self, key: str, value: bytes) -> None: ...
    async def create(self, key: str, value: bytes) -> bool: ...  # False if it exists
    async def delete(self, key: str) -> None: ...
    async def keys(self, prefix: str) -> list[str]: ...


@dataclass(slots=True, frozen=True)
class StoredMessage:
    id: int
    recipient: uuid.UUID
    source: uuid.UUID
    flags: int  # frame flags of the original (source kind bits)
    namespace: str
    body: bytes
    created: float


class Mailbox(Protocol):
    async def put(
        self,
        recipient: Principal,
        source: Principal,
        namespace: str,
        body: bytes,
        flags: int,
        *,
        cap: int,
        now: float,
    ) -> int:
        """Store; return the message id. Raise RelayError(STORAGE_FULL) past ``cap``."""
        ...

    async def pending(self, recipient: Principal, limit: int) -> list[StoredMessage]: ...
    async def ack(self, recipient: Principal, msg_id: int) -> bool: ...
    async def purge(self, recipient: Principal) -> None: ...


class NodeHooks(Protocol):
    """Events a backbone reports to the node that owns client connections."""

    def presence_changed(self, principal: Principal, online: bool) -> None: ...
    def deliver_local(self, target: uuid.UUID, frame: bytes) -> bool: ...
    def mail_waiting(self, target: uuid.UUID) -> None: ...


class Backbone(ABC):
    kv: KeyValue
    mailbox: Mailbox
    node_id: str

    @abstractmethod
    async def start(self, hooks: NodeHooks) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def abort(self) -> None:
        """Stop as if the process crashed (no clean-up); default: close."""
        await self.close()

    @abstractmethod
    async def set_presence(self, principal: Principal, online: bool) -> None:
        """This node's first connection of ``principal`` opened (True) / last closed."""

    @abstractmethod
    async def is_online(self, principal: Principal) -> bool: ...

    @abstractmethod
    async def deliver_remote(self, target: Principal, frame: bytes) -> bool:
        """Hand a frame to the node holding ``target``; False if no node holds it."""

    @abstractmethod
    async def mail_hint(self, target: Principal) -> None:
        """Tell the node holding ``target`` that stored mail is waiting."""
