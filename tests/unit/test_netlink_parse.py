"""igrs.net.netlink's parser on hand-built rtnetlink dumps (the real kernel's answer is compared
with ifaddr's in tests/netns/test_interface_listing_netns.py)."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from igrs.net import interfaces, netlink


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _msg(kind: int, body: bytes) -> bytes:
    raw = struct.pack("=IHHII", 16 + len(body), kind, 2, 1, 0) + body
    return raw + b"\0" * (-len(raw) % 4)


def _addr(family: int, prefix: int, index: int, *attrs: bytes) -> bytes:
    return _msg(netlink.RTM_NEWADDR, struct.pack("=BBBBI", family, prefix, 0, 0, index) + b"".join(attrs))


NAMES = {1: "lo", 4: "eth0"}


def test_local_label_ipv6_and_done() -> None:
    dump = (
        _addr(socket.AF_INET, 32, 4, _attr(netlink.IFA_ADDRESS, bytes([10, 0, 0, 2])),
              _attr(netlink.IFA_LOCAL, bytes([10, 0, 0, 1])))
        + _addr(socket.AF_INET, 24, 4, _attr(netlink.IFA_ADDRESS, bytes([10, 1, 0, 1])),
                _attr(netlink.IFA_LABEL, b"eth0:1\0"))
        + _addr(socket.AF_INET6, 64, 4,
                _attr(netlink.IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, "fe80::1")))
        + _addr(socket.AF_PACKET, 0, 4)  # not an IP address: skipped
        + _msg(netlink.NLMSG_DONE, b"\0\0\0\0")
    )
    found, done = netlink.parse(dump, NAMES)
    assert done
    assert found == [
        netlink.Address("eth0", socket.AF_INET, "10.0.0.1", 32, 4),  # IFA_LOCAL, not the peer
        netlink.Address("eth0:1", socket.AF_INET, "10.1.0.1", 24, 4),
        netlink.Address("eth0", socket.AF_INET6, "fe80::1", 64, 4),
    ]


def test_more_to_come_error_and_truncation() -> None:
    one = _addr(socket.AF_INET, 8, 1, _attr(netlink.IFA_ADDRESS, bytes([127, 0, 0, 1])))
    assert netlink.parse(one, NAMES) == ([netlink.Address("lo", socket.AF_INET, "127.0.0.1", 8, 1)], False)
    with pytest.raises(OSError) as refused:
        netlink.parse(_msg(netlink.NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + b"\0" * 16), NAMES)
    assert refused.value.errno == errno.EPERM
    ack = _msg(netlink.NLMSG_ERROR, struct.pack("=i", 0) + b"\0" * 16)
    assert netlink.parse(ack + one, NAMES)[0] == netlink.parse(one, NAMES)[0]
    with pytest.raises(ValueError):
        netlink.parse(one[:-4], NAMES)


def test_request_asks_a_dump_of_every_family() -> None:
    length, kind, flags, _seq, _pid = struct.unpack_from("=IHHII", netlink.request())
    assert (length, kind, flags & netlink.NLM_F_DUMP) == (24, netlink.RTM_GETADDR, netlink.NLM_F_DUMP)
    assert netlink.request()[16] == socket.AF_UNSPEC


@pytest.mark.parametrize("failure", [PermissionError(errno.EPERM, "no netlink here"), ValueError("truncated")])
def test_ifaddr_is_the_fallback_when_netlink_fails(monkeypatch: pytest.MonkeyPatch, failure: Exception) -> None:
    def refused() -> list[netlink.Address]:
        raise failure

    monkeypatch.setattr(netlink, "addresses", refused)
    assert interfaces._all() == interfaces._from_ifaddr()
    assert any(i.address == "127.0.0.1" for _, i in interfaces._all())
