"""The interface list read from netlink (igrs.net.netlink) is ifaddr's, on a host with many
kinds of address: two LANs, a secondary and a labelled IPv4 address, a point-to-point one,
global and link-local IPv6, an address on a link that is down, and an address added after a
second interface so that the kernel's order is not the links' order."""

from __future__ import annotations

import json
import sys

import pytest
from netbed import NetBed

pytestmark = pytest.mark.netns

_COMPARE = """
import json
from igrs.net import interfaces
print(json.dumps([[repr(x) for x in interfaces._all()], [repr(x) for x in interfaces._from_ifaddr()]]))
"""


def test_netlink_lists_what_ifaddr_lists(netbed: NetBed) -> None:
    a, b = netbed.lan("a"), netbed.lan("b")
    host = netbed.host("h", a)
    netbed.host("peer", b)
    iface_b = host.connect(b)
    iface_a = host.iface_on(a)
    for argv in (
        ["ip", "addr", "add", "10.99.0.7/16", "dev", iface_a.name],  # secondary address of another net
        ["ip", "addr", "add", "10.98.1.1/24", "dev", iface_a.name, "label", f"{iface_a.name}:1"],
        ["ip", "addr", "add", "10.97.0.1", "peer", "10.97.0.2/32", "dev", iface_b.name],
        ["ip", "-6", "addr", "add", "fd00:77::5/64", "dev", iface_b.name, "nodad"],
        ["ip", "-6", "addr", "add", "fd00:78::5/48", "dev", iface_a.name, "nodad"],
        ["ip", "link", "add", "down7", "type", "veth", "peer", "name", "down8"],  # down: still listed
        ["ip", "addr", "add", "192.168.77.1/24", "dev", "down7"],
        ["ip", "-6", "addr", "add", "fd00:79::1/64", "dev", "lo"],
        ["ip", "addr", "add", "10.99.0.8/16", "dev", iface_a.name],  # a second secondary
    ):
        done = host.run(argv)
        assert done.returncode == 0, f"{argv}: {done.stderr}"
    listed = host.run([sys.executable, "-c", _COMPARE], timeout=30)
    assert listed.returncode == 0, listed.stderr
    from_netlink, from_ifaddr = json.loads(listed.stdout)
    assert from_netlink == from_ifaddr
    text = "\n".join(from_netlink)
    for expected in ("10.99.0.8", f"'{iface_a.name}:1'", "10.97.0.1", "fd00:77::5", "192.168.77.1", "fe80::"):
        assert expected in text, f"{expected} missing from {text}"
