"""Capabilities of the File profile: what a ``/files/`` URL lets its holder do, and for whom
(specs/file-profile.md). Shared by the server's actions and its HTTP side."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from igrs.profiles.file.transfer import Upload


@dataclass
class Grant:
    kind: str  # "get" | "put"
    share: str
    rel: tuple[str, ...]
    peer: str
    address: str
    expires: float
    upload: Upload | None = None
    overwrite: bool = False
    tls: bool = False  # to be used over TLS, by the client certified by ``peer``'s identity key


def same_host(a: str, b: str) -> bool:
    try:
        x, y = ipaddress.ip_address(a.partition("%")[0]), ipaddress.ip_address(b.partition("%")[0])
    except ValueError:
        return a == b
    x = x.ipv4_mapped or x if isinstance(x, ipaddress.IPv6Address) else x
    y = y.ipv4_mapped or y if isinstance(y, ipaddress.IPv6Address) else y
    return x == y
