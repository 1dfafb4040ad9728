"""IGRS -> UPnP AV with real DLNA peers (issue 14; specs/upnp-bridge.md; acceptance tests
UPNP-X1..X4, R1, S1 of the dlna-peers reference §4). One bed LAN; hosts: ``a`` the igrs device
(``igrs device run --upnp``), ``b`` a DLNA peer (gmediarender, minidlna or rygel), ``c`` the
control point (async-upnp-client's ``upnp-client`` and ``upnp_cp.py``, gssdp-discover)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from netbed import LineReader, NetBed, namespaces_with_prefix
from upnp_peers import (
    IGRS,
    cp,
    make_media,
    need,
    on_lan,
    start_gmediarender,
    start_igrs,
    start_minidlna,
    start_rygel,
    tool,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns, pytest.mark.timeout(120)]

MS1 = "urn:schemas-upnp-org:device:MediaServer:1"
MR1 = "urn:schemas-upnp-org:device:MediaRenderer:1"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("ffmpeg")
    folder = tmp_path_factory.mktemp("upnp-media")
    make_media(folder / "Music", 6)
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


def first_event(events: list[dict[str, Any]], name: str, value: Any, after: float = 0.0) -> float | None:
    return next((e["t"] for e in events if e["name"] == name and e["value"] == value and e["t"] >= after), None)


def secs(hms: str) -> float:
    h, m, sec = (float(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + sec


def play_igrs_item_on(c: Any, renderer: str, item: dict[str, Any]) -> dict[str, Any]:
    """X3's control point steps: subscribe, SetAVTransportURI(igrs URL, igrs DIDL), Play, the
    position rising past 1 s, Seek 0:00:04 on the 6 s clip, the position there."""
    steps = [["subscribe"], ["set", item["url"], item["didl"]], ["play"], ["wait", "PLAYING", 3],
             ["reach", 1, 5], ["position"], ["seek", "0:00:04"], ["reach", 4, 2], ["position"], ["stop"]]
    return cp(c, "dmr", renderer, json.dumps(steps), "--callback", c.addr)


def check_played(run: dict[str, Any], item: dict[str, Any], within: float) -> None:
    results, events = run["results"], run["events"]
    assert results[0] == "subscribed", results
    played_at = results[2]
    playing = first_event(events, "TransportState", "PLAYING", played_at - 0.5)
    assert playing is not None and playing - played_at <= within, (played_at, events)
    assert results[3]["state"] == "PLAYING", results
    assert secs(results[4]["rel"]) >= 1 and results[5]["uri"] == item["url"], results
    assert secs(results[7]["rel"]) >= 4 and results[7]["after"] < 2, results


def test_x3_gmediarender_plays_and_seeks_an_igrs_item(netbed: NetBed, tmp_path: Path, media: Path) -> None:
    need("gmediarender")
    lan, a, b, c = bed_home(netbed, "a", "b", "c")
    dev = start_igrs(a, ["-vv", *device_args(tmp_path, a, "--media-folder", f"Media={media}")])
    gmr = start_gmediarender(b, lan, tmp_path / "gmr")
    tree = cp(c, "walk", next(u for u in dev.ready["upnp"] if "/server/" in u), "--count", "10")
    clip = next(i for i in tree["items"] if i["title"] == "clip")
    check_played(play_igrs_item_on(c, gmr.url, clip), clip, 2.0)
    # the bytes went straight from the igrs device to gmediarender; any request after its first
    # (GStreamer may download a small file whole and seek in it locally) asks for a byte range
    served = [line for line in dev.lines.lines if "/av/res/" in line and f"from {b.addr}" in line]
    assert served and all("bytes=" in line for line in served[1:]), dev.lines.text()[-2000:]
    assert gmr.alive()
    assert dev.stop() == 0


def test_x4_upnp_control_point_drives_an_igrs_tv_with_minidlna_content(
    netbed: NetBed, tmp_path: Path, media: Path
) -> None:
    need("minidlnad", "ffmpeg")
    lan, a, b, c = bed_home(netbed, "a", "b", "c")
    tv = start_igrs(a, device_args(tmp_path, a, "--renderer", "ffmpeg"))
    renderer = next(u for u in tv.ready["upnp"] if "/renderer/" in u)
    dms = start_minidlna(b, lan, media, tmp_path / "minidlna")
    tree = cp(c, "walk", dms.url, "--count", "50")
    clip = next(i for i in tree["items"] if i["title"] == "clip" and "video/mp4" in i["protocol"])
    assert "DLNA.ORG_PN=AVC_MP4_HP_HD_AAC" in clip["protocol"]
    bare = re.sub(r"</?DIDL-Lite[^>]*>", "", clip["didl"])  # a bare <item>, as some control points send
    steps = [["subscribe"], ["set", clip["url"], ""], ["set", clip["url"], bare], ["volume", 30],
             ["set", clip["url"], clip["didl"]], ["play"], ["wait", "PLAYING", 3], ["media"],
             ["error", "Seek", {"InstanceID": 0, "Unit": "REL_TIME", "Target": "nonsense"}],
             ["error", "Play", {"InstanceID": 1, "Speed": "1"}],
             ["error", "SetAVTransportURI", {"InstanceID": 0, "CurrentURI": "http://127.0.0.1:1/x.mp4",
                                             "CurrentURIMetaData": ""}],
             ["wait", "STOPPED", 10]]
    run = cp(c, "dmr", renderer, json.dumps(steps), "--callback", c.addr)
    results, events = run["results"], run["events"]
    assert results[:5] == ["subscribed", "ok", "ok", 30, "ok"], results
    assert results[6]["state"] == "PLAYING" and first_event(events, "TransportState", "PLAYING") is not None
    assert results[7]["CurrentURI"] == clip["url"] and "AVC_MP4_HP_HD_AAC" in results[7]["CurrentURIMetaData"]
    assert results[8:11] == [711, 718, 716], results  # illegal seek target, bad instance, refused URI
    assert first_event(events, "Volume", 30) is not None, events  # RenderingControl LastChange
    # the clip ended: ffmpeg decoded it to the end (FfmpegOutput reports the end only then)
    assert results[11]["state"] == "STOPPED", results
    assert first_event(events, "TransportState", "STOPPED", results[5]) is not None
    fetched = dms.log.read_text()
    assert f"{a.addr}" in fetched and "MediaItems" in fetched
    assert tv.stop() == 0


def test_r1_rygel_renderer_plays_an_igrs_item(netbed: NetBed, tmp_path: Path, media: Path) -> None:
    """Optional peer: skipped with rygel's exit code when it dies (reference §1.6)."""
    need("rygel", "upnp-client")
    lan, a, b, c = bed_home(netbed, "a", "b", "c")
    dev = start_igrs(a, device_args(tmp_path, a, "--media-folder", f"Media={media}"))
    rygel = start_rygel(b, lan, tmp_path / "rygel")
    location = None
    for _ in range(10):
        found = c.run([tool("upnp-client"), "--timeout", "2", "search", "--bind", c.addr,
                       "--search_target", MR1],
                      timeout=15).stdout
        location = next((json.loads(line)["location"] for line in found.splitlines()
                         if line.startswith("{") and f"//{b.addr}:" in line), None)
        if location or not rygel.alive():
            break
    if not rygel.alive() or location is None:
        skip_dead_rygel(rygel)
    tree = cp(c, "walk", next(u for u in dev.ready["upnp"] if "/server/" in u), "--count", "10")
    clip = next(i for i in tree["items"] if i["title"] == "tone")  # audio: no video sink to fail here
    try:
        run = play_igrs_item_on(c, location, clip)
    except AssertionError:
        if not rygel.alive():
            skip_dead_rygel(rygel)
        raise
    check_played(run, clip, 3.0)
    assert dev.stop() == 0


def skip_dead_rygel(rygel: Any) -> None:
    time.sleep(0.5)
    code = rygel.proc.poll()
    print(f"rygel exit code {code}; log:\n{rygel.log.read_text()[-2000:]}")
    pytest.skip(f"rygel died or did not come up here (exit code {code}; known to, dlna-peers §1.6)")


def test_s1_nothing_left_behind(tmp_path: Path, media: Path) -> None:
    """UPNP-S1: after a bed with an exposing device and a DLNA peer is closed, no bed namespace
    is left (and, checked after every test here, no *:1900 socket in the root namespace)."""
    need("gmediarender")
    with NetBed() as bed:
        lan = bed.lan("home")
        a, b = (on_lan(bed.host(n, lan), lan) for n in ("a", "b"))
        dev = start_igrs(a, device_args(tmp_path, a, "--media-folder", f"Media={media}", "--renderer"))
        start_gmediarender(b, lan, tmp_path / "gmr")
        assert dev.ready["upnp"]
        sockets = a.run(["ss", "-Hlun", "sport", "=", ":1900"]).stdout
        assert "239.255.255.250:1900" in sockets and "*:1900" not in sockets and "0.0.0.0:1900" not in sockets
        name = bed.name
    time.sleep(0.1)
    assert namespaces_with_prefix(name) == []


def test_demo_with_upnp(netbed: NetBed) -> None:
    """``igrs demo --upnp`` (on a namespace's loopback): the demo PC and TV are found by a UPnP
    control point's search, as the README tells."""
    need("upnp-client")
    host = netbed.host("demo")
    demo = host.popen([*IGRS, "demo", "--upnp", "--duration", "3", "--interface", "lo"],
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = LineReader(demo.stdout)
    assert lines.wait_for(lambda line: "SCENARIO COMPLETE" in line, 60), lines.text()[-3000:]
    shown = re.findall(r"UPnP (MediaServer|MediaRenderer)\s+(http://\S+)", lines.text())
    assert {kind for kind, _ in shown} == {"MediaServer", "MediaRenderer"}, lines.text()[-2000:]
    found = host.run([tool("upnp-client"), "--timeout", "2", "search", "--bind", "127.0.0.1"],
                     timeout=15).stdout
    locations = {json.loads(line).get("location") for line in found.splitlines() if line.startswith("{")}
    assert {url for _, url in shown} <= locations, (shown, locations)
    assert demo.wait(timeout=30) == 0, lines.text()[-2000:]
