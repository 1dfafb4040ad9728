"""IGRS -> UPnP AV with real DLNA peers (issue 14; specs/upnp-bridge.md; acceptance tests
UPNP-X1..X4, R1, S1 of the dlna-peers reference §4). One bed LAN; hosts: ``a`` the igrs device
(``igrs device run --upnp``), ``b`` a DLNA peer (gmediarender, minidlna or rygel), ``c`` the
control point (async-upnp-client's ``upnp-client`` and ``upnp_cp.py``, gssdp-discover)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from netbed import NetBed
from upnp_peers import (
    cp,
    make_media,
    need,
    on_lan,
    start_igrs,
    tool,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns, pytest.mark.timeout(120)]

MS1 = "urn:schemas-upnp-org:device:MediaServer:1"
MR1 = "urn:schemas-upnp-org:device:MediaRenderer:1"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("ffmpeg")
    folder = tmp_path_factory.mktemp("upnp-media")
    make_media(folder / "Music", 3)
    make_media(folder / "Video", 6)
    (folder / "Music" / "clip.mp4").unlink()
    (folder / "Video" / "tone.mp3").unlink()
    return folder


@pytest.fixture(autouse=True)
def no_ssdp_port_in_the_root_namespace() -> Any:
    """UPNP-S1: no process of the test holds *:1900 in the root namespace (tests run SSDP
    only inside bed namespaces)."""
    yield
    lines = subprocess.run(["ss", "-Hlunp", "sport", "=", ":1900"], capture_output=True, text=True,
                           timeout=10).stdout.splitlines()
    mine = [line for line in lines if re.search(r"(\*|0\.0\.0\.0|\[::\]):1900", line) and "python" in line]
    assert not mine, mine


def bed_home(netbed: NetBed, *names: str) -> tuple[Any, ...]:
    lan = netbed.lan("home")
    return (lan, *(on_lan(netbed.host(n, lan), lan) for n in names))


def device_args(tmp: Path, host: Any, *extra: str) -> list[str]:
    return ["device", "run", "--name", "igrs PC", "--interface", host.addr, "--json", "--no-pairing",
            "--state-dir", str(tmp / "igrs-state"), "--upnp", *extra]


def test_x1_x2_server_found_walked_and_dlna_correct(netbed: NetBed, tmp_path: Path, media: Path) -> None:
    need("upnp-client", "gssdp-discover")
    lan, a, c = bed_home(netbed, "a", "c")
    dev = start_igrs(a, device_args(tmp_path, a, "--media-folder", f"Media={media}"))
    location = next(u for u in dev.ready["upnp"] if "/server/" in u)
    assert location.startswith(f"http://{a.addr}:")
    search = c.popen([tool("upnp-client"), "--timeout", "3", "search", "--bind", c.addr,
                      "--search_target", MS1],
                     stdout=subprocess.PIPE, text=True)
    gssdp = c.popen(["gssdp-discover", "-i", c.iface_on(lan).name, "--timeout=3", "-t", MS1],
                    stdout=subprocess.PIPE, text=True)
    found = [json.loads(line).get("location") for line in search.communicate(timeout=15)[0].splitlines()
             if line.startswith("{")]
    assert location in found, found
    assert f"Location: {location}" in gssdp.communicate(timeout=15)[0]

    tree = cp(c, "walk", location, "--count", "2", "--heads")
    assert not tree["problems"], tree["problems"]
    titles = sorted(i["title"] for i in tree["items"])
    assert titles == ["clip", "tone"], titles
    assert tree["root_parent"] == "-1" and tree["unknown"] == 701 and tree["bad_sort"] == 709
    assert tree["pages"] >= 4  # root, Media, Music, Video at 2 per page
    # UPNP-X2: DIDL's 4th protocolInfo field == contentFeatures.dlna.org; profiles; ranges
    for item in tree["items"]:
        status, features, mode = tree["heads"]["features"][item["url"]]
        assert status == 200 and features == item["protocol"].split(":", 3)[3] and mode == "Streaming", item
        assert item["url"].startswith(f"http://{a.addr}:")
    pn = {i["title"]: re.search(r"DLNA\.ORG_PN=([A-Z0-9_]+)", i["protocol"]).group(1) for i in tree["items"]}  # type: ignore[union-attr]
    assert pn["clip"].startswith("AVC_MP4_") and pn["tone"] == "MP3", pn
    checks = tree["heads"]["checks"]
    assert checks["range"][:2] == [206, 1024] and checks["range"][2].startswith("bytes 100-1123/")
    assert checks["timeseek"][0] == 406 and checks["interactive"][0] == 406
    assert dev.stop() == 0
