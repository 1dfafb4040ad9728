"""Small tests of the test bed itself (tests/netbed.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from netbed import NetBed, cleanup_stale, namespaces_with_prefix, netns_unavailable_reason

pytestmark = pytest.mark.netns

ECHO_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(b"echo " + data + b" from-seen " + peer[0].encode(), peer)
"""

UDP_PING = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[3]))
for _ in range(int(sys.argv[4]) if len(sys.argv) > 4 else 3):
    s.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(2048)[0].decode(), flush=True)
        sys.exit(0)
    except TimeoutError:
        pass
print("timeout", flush=True)
sys.exit(1)
"""


def _echo_server(host, port):
    proc = host.popen([sys.executable, "-c", ECHO_SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _ping(host, addr, port, timeout=0.5, tries=3):
    return host.run([sys.executable, "-c", UDP_PING, addr, str(port), str(timeout), str(tries)], timeout=10)


def test_two_hosts_udp(netbed):
    lan = netbed.lan("lan")
    a = netbed.host("a", lan)
    b = netbed.host("b", lan)
    assert a.addr == "10.77.1.10" and b.addr == "10.77.1.11"
    _echo_server(b, 7000)
    cp = _ping(a, b.addr, 7000)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.strip() == f"echo ping from-seen {a.addr}"


def test_nat_masquerades_and_drops_unsolicited(netbed):
    home, wan = netbed.lan("home"), netbed.lan("wan")
    rt = netbed.router("rt", inside=home, outside=wan)
    tv = netbed.host("tv", home, gateway=rt)
    relay = netbed.host("relay", wan)  # no route back to the home LAN
    _echo_server(relay, 7000)
    _echo_server(tv, 7001)

    cp = _ping(tv, relay.addr, 7000)  # outbound: allowed, source rewritten
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.strip() == f"echo ping from-seen {rt.addr_on(wan)}"

    assert rt.dropped_unsolicited() == 0
    relay.run(["ip", "route", "add", str(home.subnet), "via", rt.addr_on(wan)], check=True)
    cp = _ping(relay, tv.addr, 7001, timeout=0.3, tries=2)  # unsolicited inbound
    assert cp.returncode == 1 and "timeout" in cp.stdout
    assert rt.dropped_unsolicited() >= 2

    rt.forward_port("udp", 17001, tv.addr, 7001)  # a port mapping lets it in
    cp = _ping(relay, rt.addr_on(wan), 17001)
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_loss_then_no_loss(netbed):
    lan = netbed.lan("lan")
    a, b = netbed.host("a", lan), netbed.host("b", lan)
    _echo_server(b, 7000)
    method = netbed.set_loss(a, 100)
    assert method in ("netem", "nft")
    assert _ping(a, b.addr, 7000, timeout=0.2, tries=3).returncode == 1
    netbed.set_loss(a, 0)
    assert _ping(a, b.addr, 7000).returncode == 0


def test_two_homed_host_reaches_both_lans(netbed):
    lan1, lan2 = netbed.lan("lan1"), netbed.lan("lan2")
    cp_host = netbed.host("cp", lan1)
    cp_host.connect(lan2)
    d1, d2 = netbed.host("d1", lan1), netbed.host("d2", lan2)
    assert set(cp_host.ifaces) == {"lan1", "lan2"}
    assert cp_host.iface_on(lan2).name == "v-lan2"
    for d in (d1, d2):
        _echo_server(d, 7000)
        assert _ping(cp_host, d.addr, 7000).returncode == 0
    assert _ping(d1, d2.addr, 7000, timeout=0.2, tries=1).returncode != 0  # not routed


def test_close_kills_processes_and_deletes_namespaces():
    if netns_unavailable_reason():
        pytest.skip(netns_unavailable_reason())
    bed = NetBed()
    try:
        lan = bed.lan("lan")
        h = bed.host("h", lan)
        # a child that ignores SIGTERM, and a grandchild in the same process group
        proc = h.popen(["sh", "-c", "trap '' TERM; sleep 60 & sleep 60"])
        time.sleep(0.2)
        assert len(namespaces_with_prefix(bed.name + "-")) == 2
    finally:
        t0 = time.monotonic()
        bed.close(grace=0.3)
    assert time.monotonic() - t0 < 5
    assert proc.poll() is not None
    assert namespaces_with_prefix(bed.name + "-") == []


def test_stale_namespaces_are_removed():
    if netns_unavailable_reason():
        pytest.skip(netns_unavailable_reason())
    stale = "igrst-999999999-0-leftover"  # pid that cannot exist
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in cleanup_stale()
        assert namespaces_with_prefix(stale) == []
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, check=False)
