"""The fetch policy: which URLs a peer may make this device fetch (PlayTo, Enqueue, Record, and
the UPnP bridge's SetAVTransportURI). specs/av-profile.md §12.

A URL a peer hands us is fetched only when it is http(s) to an address on the LAN the request
came from — never loopback (unless the device itself lives on loopback, a one-machine home),
link-local or cloud-metadata addresses, never the device itself unless the URL is one of its
own AV shares — or when the owner's allow-list names it. ``udp``/``rtp`` URIs are receptions,
not fetches: only organisation-local multicast groups (the AV multicast device group's range).

The check runs twice: when the URL is handed over (a clear 403 at once), and on every
connection the fetch makes (:mod:`igrs.profiles.av.fetch_proxy`), so that redirects and DNS
answers are checked again and the connection goes to the address that was checked.

    policy = FetchPolicy.for_device(device, allow=["192.168.5.0/24", "radio.example:8000"])
    await policy.check_url(uri, origin=peer_address)       # FetchRefused (403) if not allowed
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from igrs.constants import ReturnCode
from igrs.errors import IGRSError
from igrs.node.service_host import current_peer

if TYPE_CHECKING:
    from igrs.core.discovery import Interface
    from igrs.node.device import Device

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FETCH_SCHEMES = ("http", "https")  # project choice: what the device fetches for a peer
RECEIVE_SCHEMES = ("udp", "rtp")  # project choice: multicast receptions, not fetches
# project choice: the AV multicast device group's organisation-local scope (av-profile.md §9)
RECEIVE_GROUPS = ipaddress.ip_network("239.255.0.0/16")
# public source: RFC 3927 / RFC 4291 link-local ranges (169.254.169.254 is the AWS, GCP and
# Azure metadata service); 100.100.100.200 Alibaba Cloud's and fd00:ec2::254 AWS's IPv6
# metadata address (their public documentation).
FORBIDDEN_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128", "0.0.0.0/8",
              "255.255.255.255/32", "224.0.0.0/4", "ff00::/8", "::/128")
)
# project choice: the paths of a device's own AV shares (server.py AV_PREFIX + kind)
OWN_SHARE_PATHS = ("/av/res/", "/av/live/", "/av/thumb/")
MAX_ALLOW_ENTRIES = 64  # project choice: allow-list entries
RESOLVE_TIMEOUT = 5.0  # s, project choice: one DNS resolution of a URL's host


class FetchRefused(IGRSError):
    """A URL the fetch policy does not let this device fetch (ReturnCode 403)."""

    return_code = ReturnCode.FORBIDDEN


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One allow-list entry: a network (an address is a /32 or /128) or a host name, with an
    optional port (None: any)."""

    network: IPNetwork | None
    host: str
    port: int | None

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        """``192.168.5.0/24``, ``10.0.0.7``, ``[fd00::1]:8000``, ``radio.example``, ``nas:8200``."""
        spec = text.strip()
        port: int | None = None
        if spec.startswith("["):
            host, bracket, rest = spec[1:].partition("]")
            if not bracket:
                raise ValueError(f"fetch allow-list entry {text!r}: bad address")
            if rest.startswith(":"):
                port = _port(rest[1:], text)
            elif rest:
                raise ValueError(f"fetch allow-list entry {text!r}: bad address")
        elif spec.count(":") == 1:
            host, _, p = spec.partition(":")
            port = _port(p, text)
        else:
            host = spec
        if not host:
            raise ValueError(f"fetch allow-list entry {text!r} is empty")
        try:
            return cls(ipaddress.ip_network(host, strict=False), "", port)
        except ValueError:
            pass
        name = host.lower().rstrip(".")
        if not all(part and len(part) <= 63 and part.replace("-", "").isalnum() for part in name.split(".")):
            raise ValueError(f"fetch allow-list entry {text!r}: not a network, an address or a host name")
        return cls(None, name, port)

    def admits(self, host: str, address: IPAddress, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address.version == self.network.version and address in self.network
        return host.lower().rstrip(".") == self.host


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"fetch allow-list entry {entry!r}: bad port")
    return int(text)


def parse_allow_list(entries: Iterable[str | AllowEntry]) -> tuple[AllowEntry, ...]:
    parsed = tuple(e if isinstance(e, AllowEntry) else AllowEntry.parse(e) for e in entries)
    if len(parsed) > MAX_ALLOW_ENTRIES:
        raise ValueError(f"the fetch allow-list holds at most {MAX_ALLOW_ENTRIES} entries")
    return parsed


@dataclass(frozen=True, slots=True)
class Target:
    """A URL split for checking: scheme, host (as written), port, path."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def of(cls, url: str) -> Target:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise FetchRefused(f"not a valid URL: {url[:80]!r}") from None
        scheme = parts.scheme.lower()
        if not parts.hostname:
            raise FetchRefused(f"URL without a host: {url[:80]!r}")
        default = {"http": 80, "https": 443}.get(scheme, 0)
        return cls(scheme, parts.hostname, port or default, parts.path or "/")


def _address(text: str) -> IPAddress | None:
    try:
        addr = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass
class FetchPolicy:
    """What a device may fetch for a peer. ``interfaces`` and ``own_ports`` are read at each
    check (a device's addresses may change); ``allow`` is the owner's allow-list."""

    interfaces: Callable[[], Sequence[Interface]] = lambda: ()
    own_ports: Callable[[], Collection[int]] = lambda: ()
    allow: tuple[AllowEntry, ...] = field(default=())

    @classmethod
    def for_device(cls, device: Device, allow: Iterable[str | AllowEntry] = ()) -> FetchPolicy:
        def ports() -> set[int]:
            found = set()
            for url in device.locations.values():
                try:
                    port = urlsplit(url).port
                except ValueError:
                    continue
                if port:
                    found.add(port)
            return found

        return cls(lambda: device.interfaces, ports, parse_allow_list(allow))

    # --- the rule ---------------------------------------------------------------------------
    def origin_lan(self, origin: str) -> IPNetwork:
        """The network of the device's interface that ``origin`` (a peer's address) is on."""
        addr = _address(origin)
        if addr is not None:
            for iface in self.interfaces():
                if addr.version == iface.network.version and addr in iface.network:
                    return iface.network
        raise FetchRefused(f"the request came from {origin}, on none of this device's networks")

    def check_address(self, target: Target, address: IPAddress, origin: str | None) -> None:
        """FetchRefused unless ``address`` (one address ``target.host`` resolves to) may be
        fetched for a request from ``origin`` (None: the device's own program — anything
        but the forbidden ranges of a peer's rule is allowed)."""
        if any(e.admits(target.host, address, target.port) for e in self.allow):
            return
        if origin is None:
            return
        where = f"{target.host}:{target.port}"
        if target.scheme in RECEIVE_SCHEMES:
            if address.version == 4 and address in RECEIVE_GROUPS:
                return
            raise FetchRefused(f"{target.scheme}: only multicast groups in {RECEIVE_GROUPS}, not {where}")
        if target.scheme not in FETCH_SCHEMES:
            raise FetchRefused(f"scheme {target.scheme!r} is not fetched for a peer")
        lan = self.origin_lan(origin)
        if any(address.version == n.version and address in n for n in FORBIDDEN_NETWORKS):
            raise FetchRefused(f"{where}: link-local, metadata or non-unicast address")
        if address.is_loopback and not lan.is_loopback:
            raise FetchRefused(f"{where}: a loopback address")
        if address.version != lan.version or address not in lan:
            raise FetchRefused(f"{where}: not on the requester's network {lan}")
        if self._is_self(address, target, loopback=lan.is_loopback):
            raise FetchRefused(f"{where}{target.path[:40]}: this device itself (only its AV shares)")

    def _is_self(self, address: IPAddress, target: Target, *, loopback: bool) -> bool:
        own_port = target.port in self.own_ports()
        if own_port and target.scheme == "http" and target.path.startswith(OWN_SHARE_PATHS):
            return False  # one of its own shares (a MediaServer on the same device)
        if loopback:  # a one-machine home: other loopback ports are the other devices
            return own_port
        return any(_address(i.address) == address for i in self.interfaces())

    async def resolve(self, target: Target) -> list[IPAddress]:
        """The addresses ``target.host`` stands for (an address literal: itself)."""
        literal = _address(target.host)
        if literal is not None:
            return [literal]
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            raise FetchRefused(f"{target.host}: cannot be resolved ({exc})") from None
        found: list[IPAddress] = []
        for info in infos:
            addr = _address(str(info[4][0]))
            if addr is not None and addr not in found:
                found.append(addr)
        return found

    async def allowed_addresses(self, url: str, origin: str | None) -> tuple[Target, list[IPAddress]]:
        """The addresses of ``url``'s host this device may connect to (at least one, else
        FetchRefused with the reason for the first)."""
        target = Target.of(url)
        addresses = await self.resolve(target)
        allowed, first_error = [], None
        for addr in addresses:
            try:
                self.check_address(target, addr, origin)
            except FetchRefused as exc:
                first_error = first_error or exc
                continue
            allowed.append(addr)
        if not allowed:
            raise first_error or FetchRefused(f"{target.host}: no address")
        return target, allowed

    async def check_url(self, url: str, origin: str | None) -> None:
        """FetchRefused (403) unless ``url`` may be fetched for a request from ``origin``
        (None: the device's own program, whose URLs are not checked)."""
        if origin is not None:
            await self.allowed_addresses(url, origin)


def requester() -> str | None:
    """The address of the peer whose IGRS request is being served (None: a local call)."""
    peer = current_peer.get()
    return peer.address if peer is not None else None


__all__ = [
    "FORBIDDEN_NETWORKS",
    "AllowEntry",
    "FetchPolicy",
    "FetchRefused",
    "Target",
    "parse_allow_list",
    "requester",
]
