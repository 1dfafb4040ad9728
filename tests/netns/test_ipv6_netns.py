"""IPv6 (ff02::c, link-local addresses with zones) between two namespace hosts."""

from __future__ import annotations

import json
import sys

import pytest
from netbed import NetBed, link_local

pytestmark = pytest.mark.netns
IGRS = [sys.executable, "-m", "igrs"]




def test_discover_and_describe_over_ipv6_only(netbed: NetBed, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lan = netbed.lan("lan")
    tv, cp = netbed.host("tv", lan), netbed.host("cp", lan)
    tv_v6, cp_v6 = link_local(tv, lan), link_local(cp, lan)
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
