"""IPv6 (ff02::c, link-local addresses with zones) between two namespace hosts."""

from __future__ import annotations

import json
import re
import sys

import pytest
from netbed import Host, Lan, NetBed, wait_until

pytestmark = pytest.mark.netns
IGRS = [sys.executable, "-m", "igrs"]


def _link_local(host: Host, lan: Lan) -> str:
    """Bring the host's interface up without duplicate address detection; its fe80:: address."""
    ifname = host.iface_on(lan).name
    for key in ("all", "default", ifname):
        host.run(["sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0"])
    host.run(["ip", "link", "set", ifname, "down"])
    host.run(["ip", "link", "set", ifname, "up"])

    def address() -> str | None:
        m = re.search(r"inet6 (fe80::[0-9a-f:]+)/64 scope link\s*$",
                      host.run(["ip", "-6", "addr", "show", "dev", ifname]).stdout, re.M)
        return m.group(1) if m else None

    found = wait_until(address, timeout=5)
    assert found, f"no link-local address on {host.name}"
    return found


def test_discover_and_describe_over_ipv6_only(netbed: NetBed, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lan = netbed.lan("lan")
    tv, cp = netbed.host("tv", lan), netbed.host("cp", lan)
    tv_v6, cp_v6 = _link_local(tv, lan), _link_local(cp, lan)
    dev = tv.popen([*IGRS, "device", "run", "--name", "V6 TV", "--type", "TV", "--ipv6", "--interface",
                    tv_v6, "--http-port", "0", "--json", "--state-dir", str(tmp_path / "tv")],
                   stdout=-1, stderr=-1, text=True)
    assert dev.stdout is not None
    ready = json.loads(dev.stdout.readline())
    assert list(ready["locations"].values()) == [f"http://[{tv_v6}]:{ready['location'].rsplit(':', 1)[1]}"]
    found = cp.run([*IGRS, "discover", "--ipv6", "--interface", cp_v6, "--json"], timeout=30)
    assert found.returncode == 0, found.stderr
    [record] = json.loads(found.stdout)
    assert record["id"] == ready["id"]
    assert record["address"].startswith(tv_v6 + "%")  # the zone it was heard on
    described = cp.run([*IGRS, "describe", "V6 TV", "--ipv6", "--interface", cp_v6], timeout=30)
    assert described.returncode == 0, described.stderr
    assert "urn:IGRS:DeviceType:TV:1" in described.stdout
