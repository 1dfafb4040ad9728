"""Relay node configuration (plain dataclass, documented defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from igrs.relay.limits import Limits

DEFAULT_RELAY_PORT = 5001  # project choice, after the IGRSLab vendor SDK's server port


@dataclass(slots=True)
class RelayConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_RELAY_PORT  # 0: pick a free port
    state_dir: Path | None = None  # None: in-memory SQLite and a temporary certificate
    cert_file: Path | None = None  # default: <state_dir>/relay-cert.pem (created)
    key_file: Path | None = None
    cert_hosts: list[str] = field(default_factory=lambda: ["localhost", "127.0.0.1"])
    limits: Limits = field(default_factory=Limits)
    open_registration: bool = True  # allow register_user/register_device before AUTH
    node_id: str | None = None  # default: random
    housekeeping_interval: float = 1.0  # s between timeout sweeps
