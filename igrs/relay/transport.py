"""The transport seam: what the gateway, RemoteHome, the relay CLI and the 2.0 client API need.

Two implementations: :class:`igrs.relay.client.RelayClient` (the embedded relay, specs/relay.md)
and :class:`igrs.xmpp.client.XmppClient` (a standard XMPP server, specs/relay-xmpp.md). Parties
are :class:`Principal` on both; messages arrive as :class:`Message` on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol, Self, runtime_checkable

from igrs.relay.client import Message, PresenceEvent, RelayClient
from igrs.relay.ids import Principal

__all__ = ["Message", "PresenceEvent", "Transport"]


@runtime_checkable
class Transport(Protocol):
    """Point-to-point and multipoint messages, namespace routing, presence, binding, items."""

    max_payload: int
    presence: asyncio.Queue[PresenceEvent]
    notifications: asyncio.Queue[dict[str, Any]]

    @property
    def principal(self) -> Principal | None: ...

    @property
    def connected(self) -> bool: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def connect(self) -> None: ...

    async def close(self, *, bye: bool = True) -> None: ...

    async def send(self, target: Principal | str, body: bytes | str, *, namespace: str = ...,
                   durable: bool = False, wait: bool = True) -> dict[str, Any] | None:
        """REALTIME (``durable=False``: not stored) or NORMAL (stored until delivered)."""

    async def multicast(self, body: bytes | str, *, targets: Iterable[Principal | str] = (),
                        user: Principal | str | None = None, namespace: str = ...,
                        durable: bool = False) -> dict[str, list[str]]: ...

    async def receive(self, timeout: float | None = None) -> Message: ...

    def messages(self) -> AsyncIterator[Message]: ...

    def route(self, namespace: str) -> asyncio.Queue[Message]: ...

    def ack(self, msg: Message) -> None: ...

    async def subscribe_presence(self) -> dict[str, bool]: ...

    async def query_presence(self, ids: Iterable[Principal | str] | None = None) -> dict[str, Any]: ...

    async def request(self, op: str, **args: Any) -> dict[str, Any]:
        """Operations such as ``relations`` (the gateway's authorisation table)."""

    async def bind(self, device: Principal | str, verify_code: str) -> dict[str, Any]: ...

    async def item_put(self, key: str, value: bytes,
                       readers: Iterable[Principal | str] = ()) -> dict[str, Any]: ...

    async def item_get(self, key: str, owner: Principal | str | None = None) -> bytes: ...


def _relay_client_is_a_transport(c: RelayClient) -> Transport:  # checked by mypy
    return c

