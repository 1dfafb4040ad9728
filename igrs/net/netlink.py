"""The local IP addresses on Linux, read from rtnetlink with the socket module alone.

``ifaddr`` (getifaddrs through ctypes) costs an idle device 1.4 MB of RSS: ctypes, and
``ctypes.util``'s ``shutil`` with its bz2 and lzma (issue 15, benchmarks/README.md
"Footprint"). This asks the kernel what glibc's getifaddrs asks it: one ``RTM_GETADDR`` dump of
every family, and keeps what getifaddrs keeps, in the same order: an IPv4 address is
``IFA_LOCAL`` (``IFA_ADDRESS`` is the peer on a point-to-point link), named by its
``IFA_LABEL`` (``eth0:1``), else by its link; IPv6 addresses carry their link's index.
tests/netns/test_interface_listing_netns.py checks it against ifaddr (secondary addresses,
labels, IPv6, links down). Elsewhere, or if netlink is refused, igrs.net.interfaces uses ifaddr.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

# linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h
NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL = 1, 2, 3

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")  # len, type


@dataclass(frozen=True, slots=True)
class Address:
    """One address as getifaddrs reports it: ``name`` is the label or the link's name."""

    name: str
    family: int  # socket.AF_INET or socket.AF_INET6
    address: str
    prefixlen: int
    index: int  # the link's index


def _align(n: int) -> int:
    return (n + 3) & ~3


def request(seq: int = 1) -> bytes:
    """An ``RTM_GETADDR`` dump request for every family."""
    body = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def parse(data: bytes, names: dict[int, str]) -> tuple[list[Address], bool]:
    """The addresses in one read of the dump, and whether it was the last (``NLMSG_DONE``).

    ``names`` maps a link index to its name (socket.if_nameindex). Raises OSError on an
    ``NLMSG_ERROR`` and ValueError on a truncated message.
    """
    out: list[Address] = []
    pos = 0
    while pos + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, pos)
        if length < _NLMSGHDR.size or pos + length > len(data):
            raise ValueError("truncated netlink message")
        if kind == NLMSG_DONE:
            return out, True
        if kind == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", data, pos + _NLMSGHDR.size)
            if err:  # 0 is an acknowledgement
                raise OSError(-err, os.strerror(-err))
        if kind == RTM_NEWADDR:
            address = _address(data[pos + _NLMSGHDR.size:pos + length], names)
            if address is not None:
                out.append(address)
        pos += _align(length)
    return out, False


def _address(msg: bytes, names: dict[int, str]) -> Address | None:
    family, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(msg)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs: dict[int, bytes] = {}
    pos = _IFADDRMSG.size
    while pos + _RTATTR.size <= len(msg):
        length, kind = _RTATTR.unpack_from(msg, pos)
        if length < _RTATTR.size:
            break
        attrs.setdefault(kind, msg[pos + _RTATTR.size:pos + length])
        pos += _align(length)
    raw = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
    if raw is None:
        return None
    label = attrs.get(IFA_LABEL)
    name = label.split(b"\0", 1)[0].decode() if label else names.get(index, str(index))
    return Address(name, family, str(ipaddress.ip_address(raw)), prefixlen, index)  # ifaddr's text


def addresses() -> list[Address]:
    """Every IPv4 and IPv6 address of this host, in getifaddrs's order (ifaddr then groups them
    by name). OSError if the kernel refuses (no netlink: not Linux, or a sandbox), ValueError
    if its answer does not parse."""
    names = dict(socket.if_nameindex())
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE) as s:
        s.bind((0, 0))
        s.sendall(request())
        out: list[Address] = []
        done = False
        while not done:
            found, done = parse(s.recv(65536), names)
            out += found
    return out
