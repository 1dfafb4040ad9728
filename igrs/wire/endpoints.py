"""A device named by where it answers: ``host:port`` of its /IGRS endpoint, or its LOCATION URL.

The one reading of such a target, for every tool that accepts one (``igrs describe|call|
watch|file|pair``, ``igrs conformance run``): ``parse_endpoint(text)`` is ``None`` for
anything else (a device id, a UUID prefix, a name), so callers fall back to a search. The
device id behind an endpoint comes from its description, ``GET DESCRIPTION_PATH`` there
(specs/description.md, "A device given by its endpoint").
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from igrs.constants import DESCRIPTION_PATH, IGRS_PATH, MAX_URL_LENGTH

# host:port -- an IPv4 address or a DNS name, or a bracketed IPv6 address (zone allowed).
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?\]|[A-Za-z0-9.-]+):(\d{1,5})\Z")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a device answers: ``host`` (an IPv6 literal without brackets, zone kept),
    ``port``, and ``location``, the URL its messages go to."""

    host: str
    port: int
    location: str

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def description_url(self) -> str:
        return f"http://{self.netloc}{DESCRIPTION_PATH}"

    def at_path(self, path: str) -> Endpoint:
        return Endpoint(self.host, self.port, f"http://{self.netloc}{path}")

    def at(self, address: str) -> Endpoint:
        """The same endpoint at ``address`` (its host name resolved), the same path."""
        return Endpoint(address, self.port, "").at_path(urlsplit(self.location).path or IGRS_PATH)

    @property
    def is_literal(self) -> bool:
        """The host is an IP address (no name to resolve)."""
        try:
            ipaddress.ip_address(self.host.partition("%")[0])
        except ValueError:
            return False
        return True


def parse_endpoint(text: str) -> Endpoint | None:
    """``host:port`` or ``http://host[:port][/path]`` as an Endpoint; None for any other
    text. A URL without a path means the /IGRS endpoint; ``http`` only (IGRS has no TLS)."""
    text = text.strip()
    if not text or len(text) > MAX_URL_LENGTH or text.lower().startswith("urn:"):
        return None
    if "://" in text:
        try:
            parts = urlsplit(text)
            port = parts.port or 80
        except ValueError:
            return None
        if parts.scheme.lower() != "http" or not parts.hostname or not 0 < port < 65536:
            return None
        host = parts.hostname
        if "[" in parts.netloc:  # urlsplit lowers the zone of an IPv6 literal: keep it as typed
            host = parts.netloc.rpartition("[")[2].partition("]")[0]
        path = parts.path if parts.path not in ("", "/") else IGRS_PATH
        return Endpoint(host, port, "").at_path(path)
    m = _HOST_PORT.match(text)
    if m is None:
        return None
    port = int(m.group(2))
    if not 0 < port < 65536:
        return None
    return Endpoint(m.group(1).strip("[]"), port, "").at_path(IGRS_PATH)


__all__ = ["Endpoint", "parse_endpoint"]
