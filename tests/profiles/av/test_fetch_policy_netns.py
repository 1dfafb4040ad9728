"""The fetch policy over real sockets (issue 12 item 5; specs/av-profile.md §12): a paired phone
cannot make the TV fetch its own loopback, its own non-share URLs, link-local metadata or a
redirect to any of them — neither by PlayTo (ffprobe's duration probe) nor by Record — while
media on the LAN, the TV's own shares and the owner's allow-list entries still play.

home LAN: tv (renderer + recorder + media server; a canary web server on its 127.0.0.1),
phone, web (serves a clip; /redirect -> the TV's canary). wan LAN behind a NAT router: far
(two web servers; the TV's allow-list names far:8000 only)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

PEERS = [sys.executable, str(Path(__file__).with_name("fetch_peers.py"))]
CANARY = 8081


def lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def start(host: Any, args: list[str], log: Path) -> subprocess.Popen[Any]:
    with log.open("w") as f:
        proc = host.popen([*PEERS, *args], stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not any(o.get("event") == "ready" for o in lines(log)):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return proc


def test_peer_cannot_make_the_tv_fetch_what_the_policy_refuses(  # type: ignore[no-untyped-def]
    netbed, tmp_path: Path, media_dir: Path, need_ffmpeg: None
) -> None:
    home, wan = netbed.lan("home"), netbed.lan("wan")
    router = netbed.router("router", home, wan)
    tv, phone, web = (netbed.host(n, home, gateway=router) for n in ("tv", "phone", "web"))
    far = netbed.host("far", wan)
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(media_dir / "clip.mp4", media / "clip.mp4")
    clip = str(media / "clip.mp4")
    canary = tmp_path / "canary.log"
    start(tv, ["web", "--bind", "127.0.0.1", "--http-port", str(CANARY), "--file", clip], canary)
    admin = f"http://127.0.0.1:{CANARY}/admin"
    web_log = tmp_path / "web.log"
    start(web, ["web", "--file", clip, "--redirect", f"http://127.0.0.1:{CANARY}/via-redirect"], web_log)
    far_logs = [tmp_path / "far8000.log", tmp_path / "far8001.log"]
    for port, log in zip((8000, 8001), far_logs, strict=True):
        start(far, ["web", "--http-port", str(port), "--file", clip], log)
    (tmp_path / "recordings").mkdir()
    tv_log = tmp_path / "tv.log"
    start(tv, ["tv", "--interface", tv.addr, "--state-dir", str(tmp_path / "tv-state"),
               "--recordings", str(tmp_path / "recordings"), "--media", str(media),
               "--allow", f"{far.addr}:8000"], tv_log)
    ready = next(o for o in lines(tv_log) if o.get("event") == "ready")
    own_port = ready["location"].split(":")[2].split("/")[0]

    def play(name: str, uri: str) -> dict[str, Any]:
        return {"name": name, "service": "MediaRenderer", "action": "PlayTo", "args": {"URI": uri}}

    cases = [
        play("loopback", admin),
        play("metadata", "http://169.254.169.254/latest/meta-data/"),
        play("own endpoint", f"http://{tv.addr}:{own_port}/IGRS"),
        play("own share", ready["own"]),
        play("far not allowed", f"http://{far.addr}:8001/clip.mp4"),
        play("lan clip", f"http://{web.addr}:8000/clip.mp4"),
        play("lan redirect", f"http://{web.addr}:8000/redirect"),
        {"name": "record loopback", "service": "MediaRecorder", "action": "Record",
         "args": {"URI": admin, "Seconds": 1.0, "Wait": True}},
        {"name": "record redirect", "service": "MediaRecorder", "action": "Record",
         "args": {"URI": f"http://{web.addr}:8000/redirect", "Seconds": 1.0, "Wait": True}},
        {"name": "far allowed", "service": "MediaRecorder", "action": "Record",
         "args": {"URI": f"http://{far.addr}:8000/clip.mp4", "Seconds": 1.0, "Wait": True, "Name": "far.mp4"}},
        {"name": "record lan", "service": "MediaRecorder", "action": "Record",
         "args": {"URI": f"http://{web.addr}:8000/clip.mp4", "Seconds": 1.0, "Wait": True, "Name": "lan.mp4"}},
    ]
    done = phone.run([*PEERS, "phone", "--interface", phone.addr, "--state-dir", str(tmp_path / "phone"),
                      "--pins-from", str(tv_log), "--cases", json.dumps(cases)], timeout=60)
    assert done.returncode == 0, done.stderr
    got = {o["name"]: o for o in map(json.loads, done.stdout.splitlines())}
    time.sleep(2.0)  # the duration probes of accepted URIs (ffprobe, in the background)
    refused = ["loopback", "metadata", "own endpoint", "far not allowed", "record loopback"]
    assert {n: got[n]["code"] for n in refused} == dict.fromkeys(refused, 403), got
    accepted = ["own share", "far allowed", "lan clip", "lan redirect", "record lan"]
    assert {n: got[n]["code"] for n in accepted} == dict.fromkeys(accepted, 200), got
    assert got["record redirect"]["code"] != 200, got  # the redirect hop was refused
    # nothing ever reached the TV's loopback, directly or through a redirect
    assert [o for o in lines(canary) if "path" in o] == [], tv_log.read_text()
    web_paths = {(o["path"], o["client"]) for o in lines(web_log) if "path" in o}
    assert ("/clip.mp4", tv.addr) in web_paths and ("/redirect", tv.addr) in web_paths, web_paths
    assert any("path" in o for o in lines(far_logs[0]))  # allowed by the owner: fetched
    assert not any("path" in o for o in lines(far_logs[1]))
    assert (tmp_path / "recordings" / "lan.mp4").stat().st_size > 1000
