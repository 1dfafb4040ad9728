"""IGRS 2.0 remote access: a relay for devices behind NAT (specs/relay.md).

Users and devices open one outbound TLS connection to a relay node; the relay keeps
accounts and relationships, presence, and routes the four message modes (point-to-point,
point-to-multipoint, offline storage, online storage). Backbones: embedded (one node,
SQLite; the default) and NATS JetStream (a cluster; optional extra ``cluster``).
"""

from igrs.relay.client import Message, PresenceEvent, RelayClient, register_device, register_user
from igrs.relay.config import DEFAULT_RELAY_PORT, RelayConfig
from igrs.relay.errors import ConnectionClosed, RelayCode, RelayError
from igrs.relay.ids import Kind, Principal
from igrs.relay.limits import Limits
from igrs.relay.server import RelayNode

__all__ = [
    "DEFAULT_RELAY_PORT",
    "ConnectionClosed",
    "Kind",
    "Limits",
    "Message",
    "PresenceEvent",
    "Principal",
    "RelayClient",
    "RelayCode",
    "RelayConfig",
    "RelayError",
    "RelayNode",
    "register_device",
    "register_user",
]
