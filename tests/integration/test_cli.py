"""The ``igrs`` command as a shell user runs it: separate processes on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

IGRS = [sys.executable, "-m", "igrs"]


def run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IGRS, *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def device(free_udp_port: int, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    proc = subprocess.Popen(
        [
            *IGRS,
            "device",
            "run",
            "--name",
            "Kitchen TV",
            "--type",
            "TV",
            "--interface",
            "lo",
            "--port",
            str(free_udp_port),
            "--http-port",
            "0",
            "--json",
            "--state-dir",
            str(tmp_path / "tv"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready"
        yield proc, ready
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_discover_lists_a_running_device_within_two_seconds(device, free_udp_port: int) -> None:  # type: ignore[no-untyped-def]
    _, ready = device
    started = time.monotonic()
    out = run("discover", "--interface", "lo", "--port", str(free_udp_port), "--json", "--timeout", "1.5")
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert [d["id"] for d in found] == [ready["id"]]
    assert found[0]["name"] == "Kitchen TV"
    assert found[0]["type"] == "urn:IGRS:DeviceType:TV:1"
    assert found[0]["address"] == "127.0.0.1" and found[0]["interfaces"] == ["lo"]
    assert elapsed < 5  # process start-up + the 1.5 s search; the search itself is bounded by MX
    table = run("discover", "--interface", "lo", "--port", str(free_udp_port))
    assert "Kitchen TV" in table.stdout and table.stdout.startswith("ID")


def test_describe_by_uuid_prefix_and_as_xml(device, free_udp_port: int) -> None:  # type: ignore[no-untyped-def]
    _, ready = device
    prefix = ready["id"].rsplit(":", 1)[1][:8]
    out = run("describe", prefix, "--interface", "lo", "--port", str(free_udp_port))
    assert out.returncode == 0, out.stderr
    assert "Kitchen TV" in out.stdout and "urn:IGRS:DeviceType:TV:1" in out.stdout
    xml = run("describe", "Kitchen TV", "--xml", "--interface", "lo", "--port", str(free_udp_port))
    assert xml.returncode == 0
    assert 'xmlns="http://www.igrs.org/igrs/DeviceTemplate"' in xml.stdout
    assert ready["id"] in xml.stdout


def test_sigint_sends_byebye_seen_by_a_watcher(free_udp_port: int) -> None:
    watcher = subprocess.Popen(
        [*IGRS, "discover", "--watch", "--json", "--interface", "lo", "--port", str(free_udp_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    dev = subprocess.Popen(
        [
            *IGRS,
            "device",
            "run",
            "--name",
            "PC",
            "--interface",
            "lo",
            "--port",
            str(free_udp_port),
            "--http-port",
            "0",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None and dev.stdout is not None
        ready = json.loads(dev.stdout.readline())
        appeared = json.loads(watcher.stdout.readline())
        assert appeared["event"] == "appeared" and appeared["id"] == ready["id"]
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=10) == 130  # Ctrl-C: 130 everywhere, after the byebye
        assert dev.stderr is not None and dev.stderr.read().rstrip().endswith("igrs: interrupted")
        gone = json.loads(watcher.stdout.readline())
        assert gone == {**gone, "event": "gone", "id": ready["id"], "reason": "byebye"}
    finally:
        for proc in (dev, watcher):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def test_exit_codes(free_udp_port: int) -> None:
    missing = run(
        "describe", "nothing-here", "--interface", "lo", "--port", str(free_udp_port), "--timeout", "0.3"
    )
    assert missing.returncode == 1 and "no device matches" in missing.stderr
    assert run("discover", "--interface", "no-such-if0").returncode == 2  # a usage error
    assert run("discover", "--timeout", "not-a-number").returncode == 2
    assert run().returncode == 2


def test_pair_unpair_and_list_with_the_pin_typed_at_the_prompt(device, free_udp_port: int, tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc, ready = device
    state = ["--state-dir", str(tmp_path / "controller")]
    pair = subprocess.Popen(
        [*IGRS, "pair", ready["id"], "--interface", "lo", "--port", str(free_udp_port), *state],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None and pair.stdin is not None
        shown = json.loads(proc.stdout.readline())  # the device "shows" the PIN
        assert shown["event"] == "pin" and len(shown["pin"]) == 6
        out, err = pair.communicate(shown["pin"] + "\n", timeout=20)
        assert pair.returncode == 0, err
        assert "paired with Kitchen TV" in out and "fingerprint" in out
    finally:
        if pair.poll() is None:
            pair.kill()
    listed = run("paired", "--json", *state)
    assert [p["id"] for p in json.loads(listed.stdout)] == [ready["id"]]
    assert run("unpair", "Kitchen TV", *state).returncode == 0
    assert json.loads(run("paired", "--json", *state).stdout) == []
    assert run("unpair", "Kitchen TV", *state).returncode == 1


def test_services_call_and_watch_a_sample_service(free_udp_port: int, tmp_path: Path) -> None:
    common = ["--interface", "lo", "--port", str(free_udp_port)]
    state = ["--state-dir", str(tmp_path / "controller")]
    dev = subprocess.Popen(
        [*IGRS, "device", "run", "--name", "Den TV", "--type", "TV", *common, "--http-port", "0",
         "--json", "--sample-service", "--state-dir", str(tmp_path / "tv")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    watcher = None
    try:
        assert dev.stdout is not None
        ready = json.loads(dev.stdout.readline())
        listed = json.loads(run("services", "Den TV", *common, *state, "--json").stdout)
        assert [(s["name"], s["type"]) for s in listed] == [("Volume", "urn:IGRS:ServiceType:Volume:1")]
        # Without a pairing, calling is refused...
        refused = run("call", "Den TV", "Volume", "SetLevel", "level=33", *common, *state)
        assert refused.returncode == 1 and "not paired" in refused.stderr
        pair = subprocess.Popen([*IGRS, "pair", ready["id"], *common, *state], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pin = json.loads(dev.stdout.readline())["pin"]
        assert pair.communicate(pin + "\n", timeout=20)[0].startswith("paired with Den TV")
        # ... and after it, works; a watcher sees the change.
        watcher = subprocess.Popen([*IGRS, "watch", "Den TV", "Volume", "level", *common, *state, "--json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert watcher.stdout is not None
        assert json.loads(watcher.stdout.readline())["value"] == 20  # the initial value
        called = run("call", "Den TV", "Volume", "SetLevel", "level=33", *common, *state)
        assert called.returncode == 0, called.stderr
        assert called.stdout.strip() == "33"
        assert json.loads(watcher.stdout.readline()) == {"attribute": "level", "value": 33, "sequence": 1}
    finally:
        for proc in (watcher, dev):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.mark.parametrize("death", ["byebye", "kill"])
def test_watch_reports_the_device_gone_and_exits_non_zero(death: str, free_udp_port: int,
                                                          tmp_path: Path) -> None:
    """A clean stop (SIGTERM: byebye) ends ``igrs watch`` at once, with the default 15 s
    keep-alive; a ``kill -9`` within KEEPALIVE_MISSES (3) x --keepalive. Non-zero, with the reason."""
    common = ["--interface", "lo", "--port", str(free_udp_port)]
    state = ["--state-dir", str(tmp_path / "controller")]
    dev = subprocess.Popen(
        [*IGRS, "device", "run", "--name", "Attic TV", "--type", "TV", *common, "--http-port", "0",
         "--json", "--sample-service", "--state-dir", str(tmp_path / "tv")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    watcher = None
    try:
        assert dev.stdout is not None
        ready = json.loads(dev.stdout.readline())
        pair = subprocess.Popen([*IGRS, "pair", ready["id"], *common, *state], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pin = json.loads(dev.stdout.readline())["pin"]
        assert pair.communicate(pin + "\n", timeout=20)[0].startswith("paired with Attic TV")
        keepalive = ["--keepalive", "0.5"] if death == "kill" else []  # byebye: the default 15 s
        watcher = subprocess.Popen([*IGRS, "watch", "Attic TV", "Volume", "level", *common, *state, "--json",
                                    *keepalive], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert watcher.stdout is not None
        assert json.loads(watcher.stdout.readline())["value"] == 20  # watching
        if death == "byebye":
            dev.send_signal(signal.SIGTERM)
            assert dev.wait(timeout=10) == 0
        else:
            dev.kill()
            dev.wait(timeout=10)
        # byebye: at once (the keep-alive alone would take 45 s); kill: 3 x 0.5 s, plus start-up slack
        _, err = watcher.communicate(timeout=10 if death == "byebye" else 3 * 0.5 + 8)
        assert watcher.returncode == 1, err
        assert "device 'Attic TV' is gone" in err
        assert ("said goodbye" if death == "byebye" else "stopped answering") in err, err
    finally:
        for proc in (watcher, dev):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


FLEET = r"""
import asyncio, json, sys
from igrs.apps.sample_service import Volume
from igrs.net.httpserver import HttpAnswer
from igrs.node.device import Device

async def garbage(request):
    return HttpAnswer(200, [("Content-Type", "text/xml")], b"<not-igrs>\x00")

async def silent(frame, ctx):
    await asyncio.sleep(3600)

async def main():
    port = int(sys.argv[1])
    honest = Device("Honest TV", "TV", interfaces=["lo"], port=port, http_port=0, watch_interfaces=False)
    honest.add_service(Volume())
    broken = Device("Garbage box", "STB", interfaces=["lo"], port=port, http_port=0, watch_interfaces=False)
    broken.http.answer = garbage
    slow = [Device(f"Slow {i}", "PC", interfaces=["lo"], port=port, http_port=0, watch_interfaces=False)
            for i in range(20)]
    for device in slow:
        device.handlers["GetDeviceDescriptionRequest"] = silent
    for device in [honest, broken, *slow]:
        await device.start()
    print(json.dumps({"event": "ready", "honest": str(honest.device_id)}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_a_listing_survives_a_garbage_device_and_twenty_silent_ones(free_udp_port: int, tmp_path: Path) -> None:
    """issue 12 item 9: descriptions are fetched at once, each within DESCRIBE_DEADLINE (5 s):
    one garbage answer fails only its device, twenty silent devices cost one deadline."""
    common = ["--interface", "lo", "--port", str(free_udp_port)]
    fleet = subprocess.Popen([sys.executable, "-c", FLEET, str(free_udp_port)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    listings: list[subprocess.Popen[str]] = []
    try:
        assert fleet.stdout is not None
        honest = json.loads(fleet.stdout.readline())["honest"]
        started = time.monotonic()
        commands = (["services", "--state-dir", str(tmp_path / "cp")], ["discover", "--describe"])
        listings = [subprocess.Popen([*IGRS, *args, *common, "--json", "--timeout", "1.5"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for args in commands]
        (services, s_err), (devices, d_err) = (p.communicate(timeout=60) for p in listings)
        elapsed = time.monotonic() - started
    finally:
        for proc in [fleet, *listings]:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
    assert listings[0].returncode == 0, s_err
    assert [(s["device"], s["name"]) for s in json.loads(services)] == [(honest, "Volume")]
    assert s_err.count("igrs: Slow ") == 20 and "igrs: Garbage box" in s_err, s_err
    assert listings[1].returncode == 0, d_err
    found = {d["name"]: d for d in json.loads(devices)}
    assert len(found) == 22 and [s["name"] for s in found["Honest TV"]["services"]] == ["Volume"]
    assert found["Garbage box"]["error"] and "within 5 s" in found["Slow 3"]["error"]
    assert elapsed < 25, elapsed  # one deadline, not twenty in a row (100 s)
