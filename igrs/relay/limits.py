"""Relay limits (specs/relay.md "Limits") and a sans-IO token bucket."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True, frozen=True)
class Limits:
    """Every cap the relay enforces, with its default. Each has an error code when hit."""

    max_connections: int = 10_000  # per node -> GOAWAY 503
    max_connections_per_principal: int = 8  # -> GOAWAY 503 (on AUTH)
    max_frame_payload: int = 64 * 1024  # bytes -> GOAWAY 413 (connection closed)
    read_buffer: int = 64 * 1024  # bytes read per socket read (inbound buffer bound)
    max_send_buffer: int = 256 * 1024  # bytes queued to one slow reader -> ERROR 504
    message_rate: float = 200.0  # MESSAGE/MULTICAST/REQUEST per s per principal -> ERROR 429
    message_burst: float = 400.0
    flood_rate: float = 2_000.0  # any frames per s per connection -> GOAWAY 430
    flood_burst: float = 4_000.0
    max_stored_per_party: int = 1_000  # stored (offline) messages per recipient -> ERROR 507
    max_items_per_owner: int = 100  # online-storage items -> ERROR 507
    max_item_size: int = 32 * 1024  # bytes of one online-storage value -> ERROR 413
    max_multicast_targets: int = 64  # -> ERROR 400
    max_relations: int = 1_000  # relationships per principal -> ERROR 507
    auth_timeout: float = 10.0  # s from TCP accept to AUTH -> GOAWAY 408
    tls_handshake_timeout: float = 10.0  # s
    idle_timeout: float = 90.0  # s without any frame -> GOAWAY 408 (half-open detection)
    ping_interval: float = 30.0  # s, advised to clients in AUTH_OK
    # account server (specs/relay.md "Limits"; project choices)
    bind_max_failures: int = 5  # wrong codes per device / account / address -> ERROR 429
    bind_lockout: float = 30.0  # s, first lock-out; doubles up to bind_max_lockout
    bind_max_lockout: float = 3600.0  # s
    registration_rate: float = 0.2  # registrations per s per source address -> ERROR 429
    registration_burst: float = 20.0
    max_accounts: int = 100_000  # users + devices on the relay -> ERROR 507
    max_preauth_per_address: int = 16  # connections not yet authenticated -> GOAWAY 503
    max_stored_bytes: int = 1 << 30  # stored-message bodies, whole node -> ERROR 509

    def advertised(self) -> dict[str, Any]:
        """The subset a client needs to know, sent in AUTH_OK."""
        d = asdict(self)
        keep = (
            "max_frame_payload",
            "message_rate",
            "message_burst",
            "max_stored_per_party",
            "max_multicast_targets",
            "idle_timeout",
            "ping_interval",
            "max_item_size",
        )
        return {k: d[k] for k in keep}


class TokenBucket:
    """Classic token bucket; time comes in as ``now`` (seconds, monotonic)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False
