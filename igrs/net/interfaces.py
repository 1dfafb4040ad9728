"""Choosing local interfaces: by name or address, IPv4 by default, IPv6 when asked."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Sequence

from igrs.core.discovery import Interface
from igrs.errors import IGRSError
from igrs.net import netlink

ENV_INTERFACES = "IGRS_INTERFACES"


class InterfaceError(IGRSError):
    pass


def _all() -> list[tuple[str, Interface]]:
    """Every local address as (interface name, Interface), grouped by name in order of first
    appearance as ifaddr does: from netlink on Linux (no ctypes: igrs.net.netlink), else from
    ifaddr, imported only then."""
    if sys.platform.startswith("linux"):
        try:
            found = netlink.addresses()
        except (OSError, ValueError):  # refused, or an answer not understood: ask ifaddr
            pass
        else:
            by_name: dict[str, list[tuple[str, Interface]]] = {}
            for a in found:
                by_name.setdefault(a.name, []).append((a.name, _interface(a)))
            return [pair for group in by_name.values() for pair in group]
    return _from_ifaddr()


def _interface(a: netlink.Address) -> Interface:
    network = ipaddress.ip_interface(f"{a.address}/{a.prefixlen}").network
    if a.family == socket.AF_INET6:
        return Interface(a.name, a.address, network, a.index)
    return Interface(a.name, a.address, network)


def _from_ifaddr() -> list[tuple[str, Interface]]:
    import ifaddr

    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):
                addr, _flow, scope = ip.ip
                iface = ipaddress.ip_interface(f"{addr}/{ip.network_prefix}")
                out.append((adapter.nice_name, Interface(
                    adapter.nice_name, addr, iface.network, scope or adapter.index or 0)))
            else:
                iface = ipaddress.ip_interface(f"{ip.ip}/{ip.network_prefix}")
                out.append((adapter.nice_name, Interface(adapter.nice_name, ip.ip, iface.network)))
    return out


def _unique_names(found: list[Interface]) -> list[Interface]:
    """One core Interface per (name, family); a second address gets a suffixed name."""
    seen: dict[str, int] = {}
    out = []
    for iface in found:
        key = f"{iface.name}/{iface.family}"
        seen[key] = seen.get(key, 0) + 1
        name = iface.name if iface.family == 4 else f"{iface.name}%6"
        if seen[key] > 1:
            name = f"{name}#{seen[key]}"
        out.append(Interface(name, iface.address, iface.network, iface.scope_id, iface.name))
    return out


def resolve(specs: Sequence[str] | None = None, *, ipv4: bool = True, ipv6: bool = False) -> list[Interface]:
    """Resolve interface names or addresses to Interfaces.

    ``specs`` None means: ``$IGRS_INTERFACES`` (comma-separated) if set, else every
    non-loopback interface with an address of the wanted family (the LAN), else loopback.
    IPv6 uses link-local addresses (ff02::c is link-scoped).
    """
    if specs is None and os.environ.get(ENV_INTERFACES):
        specs = [s.strip() for s in os.environ[ENV_INTERFACES].split(",") if s.strip()]
    candidates = [
        iface for _, iface in _all()
        if (iface.family == 4 and ipv4) or (iface.family == 6 and ipv6 and _link_local(iface))
    ]
    if specs:
        chosen = []
        for spec in specs:
            match = [i for i in candidates if spec in (i.name, i.address)]
            if not match:
                known = sorted({i.name for _, i in _all()})
                raise InterfaceError(f"no usable interface {spec!r} (known: {', '.join(known)})")
            chosen += [i for i in match if i not in chosen]
    else:
        chosen = [i for i in candidates if not i.network.is_loopback]
        if not chosen:
            chosen = [i for i in candidates if i.network.is_loopback]
    if not chosen:
        raise InterfaceError("no usable interface")
    return _unique_names(chosen)


def _link_local(iface: Interface) -> bool:
    addr = ipaddress.ip_address(iface.address)
    return addr.is_link_local or addr.is_loopback
