"""AV multicast device group across namespace hosts: a PC streams the test signal to
239.255.77.1 on the home LAN; two TVs joined to the group both receive it (ffprobe on each)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from av_helpers import ffprobe, video_frames

pytestmark = [pytest.mark.netns, pytest.mark.timeout(90)]

AV = [sys.executable, "-m", "igrs.profiles.av"]


def test_two_tvs_in_one_multicast_group(netbed, tmp_path: Path, need_ffmpeg: None) -> None:  # type: ignore[no-untyped-def]
    lan = netbed.lan("home")
    pc = netbed.host("pc", lan)
    tvs = [netbed.host(f"tv{i}", lan) for i in (1, 2)]
    outs = [tmp_path / f"tv{i}.ts" for i in (1, 2)]
    receivers = [
        tv.popen(
            [
                *AV,
                "recv",
                "--interface",
                tv.addr,
                "--group",
                "239.255.77.1",
                "--port",
                "5004",
                "--seconds",
                "4",
                "--out",
                str(out),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for tv, out in zip(tvs, outs, strict=True)
    ]
    for rx in receivers:  # joined before the sender starts
        assert rx.stdout is not None and "joined" in rx.stdout.readline()
    sender = pc.run(
        [*AV, "send", "--interface", pc.addr, "--group", "239.255.77.1", "--port", "5004", "--seconds", "5"],
        timeout=30,
    )
    assert sender.returncode == 0, sender.stderr
    for rx in receivers:
        assert rx.wait(timeout=30) == 0
    for out in outs:
        info = ffprobe(str(out), "format=format_name,duration", "stream=codec_type")
        assert info["format_name"] == "mpegts" and info.get("has_video") and info.get("has_audio"), info
        assert video_frames(str(out)) >= 50, out  # >= 2 s of the 25 fps signal on each TV
    sizes = [o.stat().st_size for o in outs]
    assert min(sizes) > 0.8 * max(sizes)  # both members got (about) the same stream
