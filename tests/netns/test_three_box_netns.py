"""The three-box model across three hosts: examples/tv.py, examples/pc.py and
examples/phone.py, each a process in its own network namespace on one home LAN. The phone
pairs with both (PINs read from the JSON lines the others print), makes the TV play a photo
and a video from the PC, has the PC record the TV's programme and copies a file to the PC.
A watcher on the phone's host follows the TV through its screen state JSON."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from igrs.apps.sample_media import sample_media

pytestmark = [pytest.mark.netns, pytest.mark.timeout(150)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PORT = "3880"

# Polls the TV's screen state every 0.2 s; prints each new (state, title, uri) as a JSON line;
# ends at the final state (the clip stopped) or after 90 s.
WATCHER = """
import json, sys, time, urllib.request
url, seen, end = sys.argv[1], None, time.monotonic() + 90
while time.monotonic() < end:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            s = json.load(r)
    except OSError:
        time.sleep(0.2)
        continue
    key = (s["state"], s["title"], s["uri"])
    if key != seen:
        seen = key
        print(json.dumps(s), flush=True)
    if s["state"] == "STOPPED" and s["title"] == "clip":
        break
    time.sleep(0.2)
"""


def env() -> dict[str, str]:
    e = {**os.environ, "PYTHONUNBUFFERED": "1"}
    e.pop("IGRS_INTERFACES", None)
    return e


def json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def wait_ready(path: Path, proc: subprocess.Popen[Any], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = [o for o in json_lines(path) if o.get("event") == "ready"]
        if ready:
            return ready[0]
        assert proc.poll() is None, f"{path.name}: exited {proc.returncode}"
        time.sleep(0.1)
    raise AssertionError(f"{path.name}: not ready within {timeout} s")


def test_phone_makes_the_tv_play_from_the_pc_across_three_hosts(netbed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lan = netbed.lan("home")
    tv, pc, phone = (netbed.host(n, lan) for n in ("tv", "pc", "phone"))
    media, inbox = tmp_path / "media", tmp_path / "inbox"
    sample_media(media)
    logs = {n: (tmp_path / f"{n}.jsonl", tmp_path / f"{n}.err") for n in ("tv", "pc")}
    procs = {}
    for name, host, extra in (("tv", tv, []), ("pc", pc, ["--media", str(media), "--inbox", str(inbox)])):
        out, err = logs[name]
        with out.open("w") as fo, err.open("w") as fe:
            procs[name] = host.popen(
                [
                    sys.executable,
                    str(EXAMPLES / f"{name}.py"),
                    "--interface",
                    host.addr,
                    "--port",
                    PORT,
                    "--state-dir",
                    str(tmp_path / f"{name}-state"),
                    *extra,
                ],
                stdout=fo,
                stderr=fe,
                env=env(),
            )
    try:
        tv_ready = wait_ready(logs["tv"][0], procs["tv"])
        pc_ready = wait_ready(logs["pc"][0], procs["pc"])
        assert tv_ready["screen"] == f"{tv_ready['location'].rsplit('/', 1)[0]}/screen/"
        assert tv_ready["location"].startswith(f"http://{tv.addr}:")
        watcher = phone.popen(
            [sys.executable, "-c", WATCHER, tv_ready["screen"] + "state"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        done = phone.run(
            [
                sys.executable,
                str(EXAMPLES / "phone.py"),
                "--interface",
                phone.addr,
                "--port",
                PORT,
                "--state-dir",
                str(tmp_path / "phone-state"),
                "--pins-from",
                str(logs["tv"][0]),
                "--pins-from",
                str(logs["pc"][0]),
                "--record-seconds",
                "2",
                "--photo-seconds",
                "1.5",
            ],
            timeout=100,
            env=env(),
        )
        diag = (
            f"phone:\n{done.stdout}\n{done.stderr}\n"
            f"tv: {logs['tv'][1].read_text()}\npc: {logs['pc'][1].read_text()}"
        )
        assert done.returncode == 0, diag
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["event"] == "done", diag
        assert result["tv"] == tv_ready["id"] and result["pc"] == pc_ready["id"]
        pc_base = f"http://{pc.addr}:"
        assert result["photo"]["state"] == "PLAYING" and result["photo"]["uri"].startswith(pc_base)
        assert result["video"]["uri"].startswith(pc_base) and result["video"]["final_state"] == "STOPPED"
        assert result["recording"]["size"] > 10_000, result
        recording = media / "Recordings" / result["recording"]["name"]
        assert recording.stat().st_size == result["recording"]["size"]
        assert (inbox / "IMG_0001.png").stat().st_size == result["copy"]["size"] > 0
        # the PINs came from the devices' own JSON lines
        for name in ("tv", "pc"):
            assert any(o.get("event") == "pin" for o in json_lines(logs[name][0])), name
        assert done.stdout.count("shows PIN") == 2, done.stdout

        # what the TV's screen showed, seen from the phone's host
        wout, werr = watcher.communicate(timeout=30)
        states = [json.loads(line) for line in wout.splitlines() if line.strip()]
        assert watcher.returncode == 0, werr
        seen = [(s["state"], s["title"], s["kind"]) for s in states]
        assert ("PLAYING", "photo", "image") in seen, seen
        assert ("PLAYING", "clip", "video") in seen, seen
        assert seen[-1] == ("STOPPED", "clip", "video"), seen
        assert seen.index(("PLAYING", "photo", "image")) < seen.index(("PLAYING", "clip", "video"))
        photo = next(s for s in states if s["title"] == "photo")
        assert photo["uri"] == result["photo"]["uri"] and photo["mime"] == "image/png"
        assert states[-1]["uri"] == result["video"]["uri"]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}: {logs[name][1].read_text()}"
        assert json_lines(logs[name][0])[-1] == {"event": "stopped", "role": name}
