"""The fetch policy's rule (specs/av-profile.md §12) on addresses, without a network."""

from __future__ import annotations

import ipaddress

import pytest

from igrs.core.discovery import Interface
from igrs.profiles.av.fetch_policy import AllowEntry, FetchPolicy, FetchRefused, Target, parse_allow_list

LAN = [Interface.from_cidr("eth0", "192.168.1.20/24")]
LOOP = [Interface.from_cidr("lo", "127.0.0.1/8")]


def policy(ifaces: list[Interface], allow: tuple[str, ...] = (), port: int = 3880) -> FetchPolicy:
    return FetchPolicy(lambda: ifaces, lambda: {port}, parse_allow_list(allow))


def verdict(p: FetchPolicy, url: str, origin: str | None = "192.168.1.30") -> str:
    target = Target.of(url)
    try:
        p.check_address(target, ipaddress.ip_address(target.host), origin)
    except FetchRefused:
        return "refused"
    return "ok"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://192.168.1.40:8200/a.mp4", "ok"),
        ("https://192.168.1.40/a.mp4", "ok"),
        ("http://127.0.0.1:8080/admin", "refused"),
        ("http://[::ffff:127.0.0.1]:8080/admin", "refused"),
        ("http://169.254.169.254/latest/meta-data/", "refused"),
        ("http://100.100.100.200/", "refused"),
        ("http://10.0.0.5/a.mp4", "refused"),  # another network
        ("http://192.168.1.20:3880/IGRS", "refused"),  # the device itself
        ("http://192.168.1.20:22/", "refused"),
        ("http://192.168.1.20:3880/av/res/0123456789abcdef/a.mp4", "ok"),  # its own share
        ("ftp://192.168.1.40/a.mp4", "refused"),
        ("udp://239.255.77.1:5004", "ok"),
        ("udp://192.168.1.40:5004", "refused"),
        ("rtp://224.0.0.251:5004", "refused"),
    ],
)
def test_peer_on_the_lan(url: str, expected: str) -> None:
    assert verdict(policy(LAN), url) == expected


def test_peer_off_every_lan_is_refused_and_local_calls_are_not_checked() -> None:
    assert verdict(policy(LAN), "http://192.168.1.40/a.mp4", origin="10.9.9.9") == "refused"
    assert verdict(policy(LAN), "http://127.0.0.1:8080/admin", origin=None) == "ok"


def test_loopback_home_allows_other_local_ports_but_not_its_own() -> None:
    p = policy(LOOP, port=4000)
    assert verdict(p, "http://127.0.0.1:4001/av/res/x/a.mp4", origin="127.0.0.1") == "ok"
    assert verdict(p, "http://127.0.0.1:4000/screen/", origin="127.0.0.1") == "refused"
    assert verdict(p, "http://127.0.0.1:4000/av/res/x/a.mp4", origin="127.0.0.1") == "ok"
    assert verdict(p, "http://169.254.1.1/", origin="127.0.0.1") == "refused"


def test_allow_list_overrides_with_ports_and_names() -> None:
    p = policy(LAN, ("10.0.0.0/24", "nas.example:8200", "[fd00::7]:8000"))
    assert verdict(p, "http://10.0.0.5/a.mp4") == "ok"
    assert verdict(p, "http://10.0.1.5/a.mp4") == "refused"
    assert verdict(p, "http://[fd00::7]:8000/a") == "ok" and verdict(p, "http://[fd00::7]:8001/a") == "refused"
    entry = AllowEntry.parse("nas.example:8200")
    assert entry.admits("NAS.example", ipaddress.ip_address("10.9.9.9"), 8200)
    assert not entry.admits("nas.example", ipaddress.ip_address("10.9.9.9"), 80)
    for bad in ("", "nas:0", "nas:x", "a b", "[fd00::1"):
        with pytest.raises(ValueError):
            AllowEntry.parse(bad)
    with pytest.raises(ValueError):
        parse_allow_list(["10.0.0.1"] * 65)


async def test_names_are_resolved_and_checked() -> None:
    p = policy(LOOP)
    await p.check_url("http://localhost:4001/a.mp4", origin="127.0.0.1")
    with pytest.raises(FetchRefused):
        await p.check_url("http://does-not-exist.invalid/a.mp4", origin="127.0.0.1")
