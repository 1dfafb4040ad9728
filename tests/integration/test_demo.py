"""``igrs demo`` end to end, as a user runs it: a subprocess on loopback that completes the
whole scenario (pairing, photo and video on the TV, recording, file copy) and exits 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.timeout(120)

STEPS = [
    r"Sample media for the PC",
    r"photo\.png .*\n.*tone\.wav .*\n.*clip\.mp4 .*(ffmpeg|bundled sample)",
    r"The PC, the TV and the phone switch on",
    r"the TV's screen: http://127\.0\.0\.1:\d+/screen/",
    r"found Study PC +\(PC\)",
    r"found Living room TV +\(TV\)",
    r"Study PC shows PIN \d{6}: the demo reads it off its display \(on_pin\) and types it into the phone",
    r"paired with Study PC",
    r"paired with Living room TV",
    r"The phone browses the PC's media",
    r"clip +video/mp4",
    r"photo +image/png",
    r"tone +audio/wav",
    r"The phone puts the photo \"photo\" on the TV",
    r"the TV is PLAYING: photo \(image/png\)",
    r"TV event: CurrentTitle = 'photo'",
    r"The phone plays the video \"clip\" on the TV",
    r"the TV is PLAYING: clip \(video/mp4",
    r"TV event: TransportState = 'STOPPED'",
    r"The PC records 3 s of the TV's live programme",
    r"recorded [1-9]\d* bytes .* to Recordings/programme-[\d-]+\.ts on the PC",
    r"The phone copies IMG_0001\.png to the PC's inbox",
    r"copied \d+ bytes to /inbox/IMG_0001\.png on the PC; SHA-256 [0-9a-f]{16}… verified",
    r"IMG_0001\.png \(identical\)",
    r"SCENARIO COMPLETE",
    r"The devices switch off",
    r"Demo finished\.",
]


def test_igrs_demo_runs_the_whole_scenario() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "igrs", "demo", "--duration", "0", "--interface", "lo"],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    took = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\n{out}\n{done.stderr}"
    assert "DEMO FAILED" not in out and "Traceback" not in done.stderr, out + done.stderr
    for pattern in STEPS:
        assert re.search(pattern, out), f"missing {pattern!r} in the narration:\n{out}"
    numbered = [int(m) for m in re.findall(r"^(\d+)\. ", out, re.M)]
    assert numbered == list(range(1, len(numbered) + 1)) and len(numbered) >= 9, numbered
    assert took < 60, f"the demo took {took:.1f} s"


def test_igrs_demo_without_ffmpeg(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No ffmpeg on PATH: the bundled clip, the synthetic live stream, still the whole scenario."""
    env = {**os.environ, "PATH": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "igrs", "demo", "--duration", "0", "--interface", "lo"],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for pattern in (
        r"clip\.mp4 .*bundled sample",
        r"live programme \(synthetic MPEG-TS\)",
        r"the TV is PLAYING: clip",
        r"recorded [1-9]\d* bytes",
        r"\(identical\)",
        r"SCENARIO COMPLETE",
    ):
        assert re.search(pattern, out), f"missing {pattern!r}:\n{out}"


def test_two_demos_at_once_do_not_meet() -> None:
    """Random ISDP ports: two demos on one machine each pair with their own TV and PC."""
    argv = [sys.executable, "-m", "igrs", "demo", "--duration", "0", "--interface", "lo"]
    procs = [
        subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
        )
        for _ in range(2)
    ]
    try:
        outs = [p.communicate(timeout=100) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    ports = set()
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + err
        assert "SCENARIO COMPLETE" in out
        assert len(re.findall(r"found Living room TV", out)) == 1, out  # its own TV only
        ports.add(re.search(r"UDP port (\d+)", out).group(1))  # type: ignore[union-attr]
    assert len(ports) == 2
