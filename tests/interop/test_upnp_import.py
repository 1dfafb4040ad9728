"""UPnP -> IGRS with real DLNA peers (issue 14; specs/upnp-bridge.md §6; acceptance tests
UPNP-I1..I4 of the dlna-peers reference §4). One bed LAN; hosts: ``a`` an igrs device (TV or
PC), ``b`` the DLNA peer (minidlna or gmediarender), ``c`` the igrs phone (the ``igrs`` CLI and
upnp_phone.py: the public API), ``d`` the bridge (``igrs bridge upnp``)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from netbed import NetBed
from upnp_peers import (
    IGRS,
    _env,
    make_media,
    need,
    on_lan,
    pair,
    phone_steps,
    start_gmediarender,
    start_igrs,
    start_minidlna,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns, pytest.mark.timeout(150)]

MINIDLNA, GMR = "dlna minidlna", "dlna gmediarender"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("ffmpeg")
    folder = tmp_path_factory.mktemp("upnp-import-media")
    make_media(folder, 3)
    return folder


def home(netbed: NetBed) -> tuple[Any, ...]:
    lan = netbed.lan("home")
    return (lan, *(on_lan(netbed.host(n, lan), lan) for n in ("a", "b", "c", "d")))


def start_bridge(d: Any, tmp: Path, *extra: str) -> Any:
    return start_igrs(d, ["bridge", "upnp", "--interface", d.addr, "--json", "--state-dir", str(tmp / "bridge"),
                          "--search-interval", "3", *extra])


def appeared(bridge: Any, name: str, timeout: float = 15) -> dict[str, Any]:
    return bridge.wait(lambda o: o.get("event") == "appeared" and o.get("name") == name, timeout)


def test_i1_i2_igrs_phone_browses_minidlna_and_plays_it_on_an_igrs_tv(
    netbed: NetBed, tmp_path: Path, media: Path
) -> None:
    need("minidlnad")
    lan, a, b, c, d = home(netbed)
    dms = start_minidlna(b, lan, media, tmp_path / "minidlna", name=MINIDLNA)
    bridge = start_bridge(d, tmp_path)
    proxy = appeared(bridge, MINIDLNA)
    assert proxy["kind"] == "MediaServer" and proxy["upnp"] == dms.url
    listed = c.run([*IGRS, "discover", "--interface", c.addr, "--json", "--timeout", "2"], env=_env(),
                   timeout=20)
    found = json.loads(listed.stdout)
    assert any(r["name"] == MINIDLNA and r["id"] == proxy["id"] for r in found), listed.stdout
    tv = start_igrs(a, ["device", "run", "--name", "igrs TV", "--type", "TV", "--interface", a.addr, "--json",
                        "--state-dir", str(tmp_path / "tv"), "--renderer", "ffmpeg"])
    phone = tmp_path / "phone"
    pair(c, MINIDLNA, phone, bridge)
    pair(c, "igrs TV", phone, tv)
    items, state, *_ = phone_steps(c, phone, [["browse", MINIDLNA], ["play", MINIDLNA, "clip", "igrs TV"],
                                              ["watch", "igrs TV"], ["until", "TransportState", "PLAYING", 3]])
    clip = next(i for i in items if i["title"] == "clip")
    assert clip["url"].startswith(f"http://{b.addr}:8200/MediaItems/")
    assert "DLNA.ORG_PN=AVC_MP4_" in clip["protocol"], clip  # kept through the bridge
    assert {i["title"] for i in items} >= {"clip", "tone"}
    assert state == "PLAYING"
    time.sleep(1.0)
    assert f"{a.addr}" in dms.log.read_text()  # the TV's ffmpeg fetched the clip from minidlna
    for proc in (tv, bridge):
        assert proc.stop() == 0


def test_i3_igrs_phone_drives_gmediarender(netbed: NetBed, tmp_path: Path, media: Path) -> None:
    need("gmediarender")
    lan, a, b, c, d = home(netbed)
    pc = start_igrs(a, ["device", "run", "--name", "igrs PC", "--interface", a.addr, "--json",
                        "--state-dir", str(tmp_path / "pc"), "--media-folder", f"Media={media}"])
    start_gmediarender(b, lan, tmp_path / "gmr", name=GMR)
    bridge = start_bridge(d, tmp_path)
    assert appeared(bridge, GMR)["kind"] == "MediaRenderer"
    phone = tmp_path / "phone"
    pair(c, "igrs PC", phone, pc)
    pair(c, GMR, phone, bridge)
    items = phone_steps(c, phone, [["browse", "igrs PC"]])[0]
    tone = next(i["url"] for i in items if i["title"] == "tone")
    r = phone_steps(c, phone, [
        ["watch", GMR], ["play", "igrs PC", "clip", GMR], ["until", "TransportState", "PLAYING", 2],
        ["until_gt", "Position", 0.5, 3],
        ["call", GMR, "Pause", {}], ["call", GMR, "Seek", {"Position": 2.0}], ["call", GMR, "GetPosition", {}],
        ["call", GMR, "Play", {}], ["until", "TransportState", "STOPPED", 6],  # the 3 s clip ends
        # again after the end (gmediarender cleared its URI)
        ["call", GMR, "PlayTo", {"URI": tone}], ["until", "TransportState", "PLAYING", 2],
        ["call", GMR, "Stop", {}],
        ["call", GMR, "PlayTo", {"URI": tone}], ["call", GMR, "Enqueue", {"URI": tone.replace("tone", "tone")}],
        ["until", "QueueIndex", 1, 8], ["until", "TransportState", "STOPPED", 6],
    ], timeout=120)
    assert r[1] == "PLAYING" and r[2] is not None and r[3] is not None, r
    assert r[4] == "PAUSED_PLAYBACK" and r[5] == 2.0 and r[6]["Position"] >= 2.0, r
    assert r[7] == "PLAYING" and r[8] is not None, r  # end of stream seen
    assert r[9] == "PLAYING" and r[10] is not None and r[11] == "STOPPED", r  # replay after the end
    assert r[13] == 2 and r[14] is not None and r[15] is not None, r  # the second track played too
    for proc in (pc, bridge):
        assert proc.stop() == 0


def test_i4_renderer_without_events_is_polled(netbed: NetBed, tmp_path: Path, media: Path) -> None:
    need("gmediarender", "nft")
    lan, a, b, c, d = home(netbed)
    # gmediarender cannot open a connection to the bridge: its NOTIFYs never arrive
    b.sh("nft add table inet noevents && "
         "nft 'add chain inet noevents out { type filter hook output priority 0; }' && "
         f"nft add rule inet noevents out ip daddr {d.addr} 'tcp flags & (syn | ack) == syn' drop")
    pc = start_igrs(a, ["device", "run", "--name", "igrs PC", "--interface", a.addr, "--json",
                        "--state-dir", str(tmp_path / "pc"), "--media-folder", f"Media={media}"])
    start_gmediarender(b, lan, tmp_path / "gmr", name=GMR)
    bridge = start_bridge(d, tmp_path)
    appeared(bridge, GMR)
    phone = tmp_path / "phone"
    pair(c, "igrs PC", phone, pc)
    pair(c, GMR, phone, bridge)
    r = phone_steps(c, phone, [["watch", GMR], ["play", "igrs PC", "clip", GMR],
                               ["until", "TransportState", "PLAYING", 3],
                               ["until", "TransportState", "STOPPED", 8],
                               ["call", GMR, "Play", {}], ["until", "TransportState", "PLAYING", 3]])
    assert r[1] == "PLAYING" and r[2] is not None, r
    assert r[3] is not None, r  # the end of the clip, found by polling
    assert r[4] == "PLAYING" and r[5] is not None, r  # Play after the end: the URI set again
    for proc in (pc, bridge):
        assert proc.stop() == 0


def test_bridge_without_the_extra_or_peers_says_so(tmp_path: Path) -> None:
    """``igrs bridge upnp --help`` is there without the extra being loaded."""
    out = subprocess.run([*IGRS, "bridge", "upnp", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "DLNA" in out.stdout
