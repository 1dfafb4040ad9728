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
