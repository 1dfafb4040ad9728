"""One-shot commands (issue 13 items 6 and 7), as a shell user runs them: separate processes
on loopback. A command about one device ends its search at the device's first answer, names
a device by host:port or LOCATION URL without searching, confirms a remembered location
before trusting it; ``igrs services DEVICE SERVICE`` shows actions with their argument types,
``igrs call`` reads arguments by those types, and ``--renderer`` serves the screen page and
tells what plays."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netbed import free_port

from igrs import ControlPoint, Device
from igrs.apps.sample_service import Volume
from igrs.errors import DeviceNotFound, RemoteError
from igrs.node.keystore import LOCATIONS_FILE
from igrs.node.pin_text import pin_shown
from igrs.wire.ids import DeviceId

IGRS = [sys.executable, "-m", "igrs"]
LO = ["lo"]
NAME = "Den TV"


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IGRS, *args], capture_output=True, text=True, timeout=timeout, check=False)


def start_device(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*IGRS, "device", "run", "--name", NAME, "--type", "TV", "--http-port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(*procs: subprocess.Popen[str] | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait(timeout=10)


def pair(device: subprocess.Popen[str], target: str, *args: str, as_json: bool = True) -> str:
    """``igrs pair TARGET``, typing the PIN the device prints; returns the device's PIN line."""
    assert device.stdout is not None
    proc = subprocess.Popen([*IGRS, "pair", target, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = device.stdout.readline()
        pin = json.loads(line)["pin"] if as_json else line.split("PIN ", 1)[1].split(":", 1)[0]
        out, err = proc.communicate(pin + "\n", timeout=30)
        assert proc.returncode == 0, err
        assert out.startswith(f"paired with {NAME}") and f"Type the 6-digit PIN {NAME} shows: " in err
        return line.rstrip("\n")
    finally:
        stop(proc)


@pytest.fixture
def tv(free_udp_port: int, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any], list[str]]]:
    """A TV sharing the sample Volume service, media, a folder and a screen, paired with the
    controller state ``tmp_path/cp``; yields (process, its ready line, the common options)."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "note.txt").write_text("hello")
    common = ["--interface", "lo", "--port", str(free_udp_port), "--state-dir", str(tmp_path / "cp")]
    dev = start_device("--interface", "lo", "--port", str(free_udp_port), "--json", "--sample-service",
                       "--renderer", "--media-folder", str(media), "--share-folder", str(media),
                       "--state-dir", str(tmp_path / "tv"))
    try:
        assert dev.stdout is not None
        ready = json.loads(dev.stdout.readline())
        assert ready["event"] == "ready"
        pair(dev, ready["id"], *common)
        yield dev, ready, common
    finally:
        stop(dev)


async def test_locate_ends_at_the_first_answer_and_reads_an_endpoint(free_udp_port: int) -> None:
    """The API under the CLI: ControlPoint.locate returns when the device answers, long before
    its (here 600 s) timeout; an endpoint needs no search, not even on another ISDP port."""
    pins: list[str] = []
    async with Device(name=NAME, device_type="TV", interfaces=LO, port=free_udp_port, http_port=0,
                      watch_interfaces=False, on_pin=pins.append) as dev:
        dev.add_service(Volume())
        async with ControlPoint(interfaces=LO, port=free_udp_port) as cp:
            found = await asyncio.wait_for(cp.locate(NAME, timeout=600), 30)  # a full search: 600 s
            assert found.device_id == dev.device_id
            by_id = await asyncio.wait_for(cp.locate(str(dev.device_id), timeout=600), 30)
            assert by_id.device_id == dev.device_id
        async with ControlPoint(interfaces=LO, port=free_port("udp")) as elsewhere:
            with pytest.raises(DeviceNotFound, match="no device matches"):
                await elsewhere.locate(NAME, timeout=0.3)
            for target in (f"127.0.0.1:{dev.http.port}", dev.location, f"http://127.0.0.1:{dev.http.port}",
                           f"localhost:{dev.http.port}"):  # a name: resolved first
                record = await elsewhere.locate(target)
                assert (record.device_id, record.name, record.device_type.name) == (dev.device_id, NAME, "TV")
                assert record.location == dev.location

            async def shown(_digits: int) -> str:
                return pins[-1]

            await elsewhere.pair(record, shown)
            async with elsewhere.session(record, "urn:IGRS:ServiceType:Volume:1") as svc:
                assert await svc.SetLevel(level=12) == 12
                # the device itself names the actions it has (for every client, not only the CLI)
                with pytest.raises(RemoteError, match=r"no action 'Nope'; its actions: SetLevel, Mute"):
                    await svc.call("Nope")


def test_one_shot_commands_end_at_the_first_answer_and_remember_it(tv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, ready, common = tv
    cache = tmp_path / "cp" / LOCATIONS_FILE
    cache.unlink()
    # a search bounded by 600 s ends when the device answers (it used to wait the full timeout)
    called = run("call", NAME, "Volume", "SetLevel", "level=33", *common, "--timeout", "600", timeout=60)
    assert called.returncode == 0 and called.stdout.strip() == "33", called.stderr
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert [e["location"] for e in json.loads(cache.read_text())["locations"]] == [ready["location"]]
    # remembered: no search at all (--timeout 0), the device only confirms it is itself
    called = run("call", NAME, "Volume", "SetLevel", "level=34", *common, "--timeout", "0")
    assert called.returncode == 0 and called.stdout.strip() == "34", called.stderr
    # an entry the device at that location does not confirm is not trusted, and forgotten
    doc = json.loads(cache.read_text())
    doc["locations"][0]["id"] = str(DeviceId.new())
    cache.write_text(json.dumps(doc))
    refused = run("call", NAME, "Volume", "SetLevel", "level=35", *common, "--timeout", "0")
    assert refused.returncode == 1 and "no device matches 'Den TV'" in refused.stderr
    assert json.loads(cache.read_text())["locations"] == []
    called = run("call", NAME, "Volume", "SetLevel", "level=35", *common)  # a search finds it again
    assert called.returncode == 0 and called.stdout.strip() == "35", called.stderr
    assert json.loads(cache.read_text())["locations"][0]["id"] == ready["id"]


def test_an_endpoint_names_the_device_without_a_search(free_udp_port: int, tmp_path: Path) -> None:
    """host:port and the LOCATION URL work for pair, describe, call, watch and file, here on
    another ISDP port than the device's (so no search could find it); the PIN lines are the
    one wording (igrs.node.pin_text)."""
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "a.txt").write_text("a")
    dev = start_device("--interface", "lo", "--port", str(free_udp_port), "--sample-service",
                       "--share-folder", f"box={tmp_path / 'share'}", "--state-dir", str(tmp_path / "tv"))
    watcher = None
    try:
        assert dev.stdout is not None
        lines = [dev.stdout.readline() for _ in range(3)]  # up as ..., lo: <location>, Ctrl-C to stop ...
        location = re.search(r"lo: (http://127\.0\.0\.1:(\d+)/IGRS)", "".join(lines))
        assert location is not None, lines
        url, endpoint = location.group(1), f"127.0.0.1:{location.group(2)}"
        elsewhere = ["--interface", "lo", "--port", str(free_port("udp")), "--state-dir", str(tmp_path / "cp")]
        pin_line = pair(dev, endpoint, *elsewhere, as_json=False)
        assert re.fullmatch(re.escape(pin_shown(NAME, "PIN")).replace("PIN:", r"\d{6}:"), pin_line), pin_line
        described = run("describe", url, *elsewhere)
        assert described.returncode == 0 and NAME in described.stdout and url in described.stdout
        called = run("call", endpoint, "Volume", "SetLevel", "level=41", *elsewhere)
        assert called.returncode == 0 and called.stdout.strip() == "41", called.stderr
        listed = run("file", "ls", url, "/box", *elsewhere, "--json")
        assert listed.returncode == 0, listed.stderr
        assert [e["name"] for e in json.loads(listed.stdout)] == ["a.txt"]
        watcher = subprocess.Popen([*IGRS, "watch", endpoint, "Volume", "level", *elsewhere, "--json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert watcher.stdout is not None
        assert json.loads(watcher.stdout.readline())["value"] == 41
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=10) in (0, 130)
    finally:
        stop(watcher, dev)


def test_services_lists_action_types_and_call_reads_arguments_by_them(tv) -> None:  # type: ignore[no-untyped-def]
    dev, ready, common = tv
    shown = run("services", NAME, "Volume", *common)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"SetLevel +level: int +int", shown.stdout) and re.search(r"Mute +muted: bool +bool",
                                                                              shown.stdout)
    assert re.search(r"level +int +dynamic, evented", shown.stdout), shown.stdout
    described = json.loads(run("services", NAME, "MediaServer", *common, "--json").stdout)
    browse = next(a for a in described["actions"] if a["name"] == "Browse")
    assert browse["params"][0] == {"name": "ObjectID", "type": "string", "required": True}
    # ObjectID=0 is the string "0" (the declared type), not the int JSON would make of it
    browsed = run("call", NAME, "MediaServer", "Browse", "ObjectID=0", "RequestedCount=5", *common)
    assert browsed.returncode == 0 and "note" not in browsed.stderr, browsed.stderr
    assert json.loads(browsed.stdout)["NumberReturned"] == "1"
    muted = run("call", NAME, "Volume", "Mute", "muted=true", *common)
    assert muted.returncode == 0 and muted.stdout.strip() == "true", muted.stderr
    wrong = run("call", NAME, "Volume", "SetVolume", "level=3", *common)
    assert wrong.returncode == 1
    assert "Volume has no action 'SetVolume'; its actions: SetLevel, Mute" in wrong.stderr
    wrong = run("call", NAME, "Volume", "SetLevel", "level=loud", *common)
    assert wrong.returncode == 1 and "SetLevel.level: expected int, got 'loud'" in wrong.stderr
    wrong = run("call", NAME, "Volume", "SetLevel", "volume=3", *common)
    assert wrong.returncode == 1 and "has no argument 'volume'; SetLevel(level: int) -> int" in wrong.stderr
    # --renderer: the screen page, and a line for what plays
    assert ready["screen"].endswith("/screen/")
    with urllib.request.urlopen(ready["screen"], timeout=10) as page:
        assert page.status == 200 and "<html" in page.read().decode().lower()
    played = run("call", NAME, "MediaRenderer", "PlayTo", "URI=http://127.0.0.1:9/photo.png", "Title=0",
                 *common)
    assert played.returncode == 0 and played.stdout.strip() == "PLAYING", played.stderr
    line = json.loads(dev.stdout.readline())
    assert line == {"event": "playing", "uri": "http://127.0.0.1:9/photo.png", "title": "0",
                    "mime": "image/png"}


def test_a_stale_remembered_location_falls_back_to_a_search(free_udp_port: int, tmp_path: Path) -> None:
    """The device restarts on another HTTP port: the remembered location does not answer, the
    search finds it, and the new location is remembered."""
    common = ["--interface", "lo", "--port", str(free_udp_port), "--state-dir", str(tmp_path / "cp")]
    options = ("--interface", "lo", "--port", str(free_udp_port), "--json", "--sample-service",
               "--state-dir", str(tmp_path / "tv"))
    dev = start_device(*options)
    try:
        assert dev.stdout is not None
        first = json.loads(dev.stdout.readline())
        pair(dev, NAME, *common)
        dev.send_signal(signal.SIGINT)
        dev.wait(timeout=10)
        dev = start_device(*options)  # the same identity (state folder), a new port
        again = json.loads(dev.stdout.readline())
        assert again["id"] == first["id"] and again["location"] != first["location"]
        called = run("call", NAME, "Volume", "SetLevel", "level=7", *common)
        assert called.returncode == 0 and called.stdout.strip() == "7", called.stderr
        cached = json.loads((tmp_path / "cp" / LOCATIONS_FILE).read_text())["locations"]
        assert [e["location"] for e in cached] == [again["location"]]
    finally:
        stop(dev)
