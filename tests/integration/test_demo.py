"""``igrs demo`` end to end, as a user runs it: a subprocess on loopback that completes the
whole scenario (pairing, photo and video on the TV, recording, file copy) and exits 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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


@dataclass
class DemoRun:
    returncode: int
    stdout: str
    stderr: str
    took: float  # s, from the start of the three to this one's exit


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DemoRun]:
    """Three ``igrs demo`` runs at once, as three users would start them on one machine: two
    plain ones ("a", "b") and one without ffmpeg on PATH ("no-ffmpeg"). Each test below reads
    the runs it is about; at once, because the demos wait on their own timers more than they
    compute, and because two (three) at once must not meet (random ISDP ports)."""
    argv = [sys.executable, "-m", "igrs", "demo", "--duration", "0", "--interface", "lo"]
    no_path = tmp_path_factory.mktemp("no-ffmpeg")
    envs = {"a": {}, "b": {}, "no-ffmpeg": {"PATH": str(no_path)}}
    started = time.monotonic()
    procs = {name: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    stdin=subprocess.DEVNULL,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1", **extra})
             for name, extra in envs.items()}

    def finish(proc: subprocess.Popen[str]) -> DemoRun:
        try:
            out, err = proc.communicate(timeout=100)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return DemoRun(proc.returncode, out, err, time.monotonic() - started)

    with ThreadPoolExecutor(len(procs)) as pool:
        runs = dict(zip(procs, pool.map(finish, procs.values()), strict=True))
    return runs


@pytest.mark.parametrize("name", ["a", "b"])
def test_igrs_demo_runs_the_whole_scenario(demos: dict[str, DemoRun], name: str) -> None:
    run = demos[name]
    out = run.stdout
    assert run.returncode == 0, f"exit {run.returncode}\n{out}\n{run.stderr}"
    assert "DEMO FAILED" not in out and "Traceback" not in run.stderr, out + run.stderr
    for pattern in STEPS:
        assert re.search(pattern, out), f"missing {pattern!r} in the narration:\n{out}"
    numbered = [int(m) for m in re.findall(r"^(\d+)\. ", out, re.M)]
    assert numbered == list(range(1, len(numbered) + 1)) and len(numbered) >= 9, numbered
    assert run.took < 60, f"the demo took {run.took:.1f} s"


def test_igrs_demo_without_ffmpeg(demos: dict[str, DemoRun]) -> None:
    """No ffmpeg on PATH: the bundled clip, the synthetic live stream, still the whole scenario."""
    run = demos["no-ffmpeg"]
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    for pattern in (
        r"clip\.mp4 .*bundled sample",
        r"live programme \(synthetic MPEG-TS\)",
        r"the TV is PLAYING: clip",
        r"recorded [1-9]\d* bytes",
        r"\(identical\)",
        r"SCENARIO COMPLETE",
    ):
        assert re.search(pattern, out), f"missing {pattern!r}:\n{out}"


def test_demos_at_once_do_not_meet(demos: dict[str, DemoRun]) -> None:
    """Random ISDP ports: demos on one machine each pair with their own TV and PC."""
    ports = set()
    for run in demos.values():
        assert run.returncode == 0, run.stdout + run.stderr
        assert "SCENARIO COMPLETE" in run.stdout
        assert len(re.findall(r"found Living room TV", run.stdout)) == 1, run.stdout  # its own TV only
        ports.add(re.search(r"UDP port (\d+)", run.stdout).group(1))  # type: ignore[union-attr]
    assert len(ports) == len(demos)
