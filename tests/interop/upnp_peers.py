"""Real UPnP/DLNA peers for the bridge tests, each inside a namespace host of a netbed
(dlna-peers reference §1; specs/upnp-bridge.md): minidlna, gmediarender, rygel, the igrs
command line, and ``upnp_cp.py`` (async-upnp-client as the control point).

Every daemon is started with ``host.popen`` (its own process group, killed by the bed's
close()); each namespace host gets the multicast route SSDP needs (a bed host has no default
route: without it sendto() to 239.255.255.250 fails — reference §1.2).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from netbed import Host, Lan, LineReader

IGRS = [sys.executable, "-m", "igrs"]
CP = [sys.executable, str(Path(__file__).with_name("upnp_cp.py"))]
FF = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
GST_SINKS = ["--gstout-audiopipe=fakesink sync=true", "--gstout-videopipe=fakesink sync=true"]


def tool(cmd: str) -> str:
    """A program's path: PATH, or beside this Python (pip's upnp-client in a venv)."""
    return shutil.which(cmd) or shutil.which(cmd, path=str(Path(sys.executable).parent)) or cmd


def need(*commands: str) -> None:
    """Skip when a peer is not installed; under CI (which installs them) fail instead."""
    for cmd in commands:
        if shutil.which(tool(cmd)) is None:
            reason = f"{cmd} not installed (see .ci/run's apt line)"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"CI must have this: {reason}", pytrace=False)
            pytest.skip(reason)


def on_lan(host: Host, lan: Lan) -> Host:
    """The route SSDP's multicast needs in a bed host (reference §1.2)."""
    host.run(["ip", "route", "replace", "224.0.0.0/4", "dev", host.iface_on(lan).name], check=True)
    return host


def make_media(folder: Path, seconds: int = 3) -> dict[str, Path]:
    """clip.mp4 (H.264 High + AAC: minidlna names it AVC_MP4_HP_HD_AAC), tone.mp3 — ``seconds`` long."""
    folder.mkdir(parents=True, exist_ok=True)
    clip, tone = folder / "clip.mp4", folder / "tone.mp3"
    src = ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=320x240:rate=25",
           "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    subprocess.run([*FF, *src, "-c:v", "libx264", "-profile:v", "high", "-preset", "veryfast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(clip)], check=True, timeout=60)
    subprocess.run([*FF, "-f", "lavfi", "-i", f"sine=frequency=660:duration={seconds}", "-c:a", "libmp3lame",
                    "-b:a", "128k", str(tone)], check=True, timeout=60)
    return {"clip": clip, "tone": tone}


def wait_http(host: Host, url: str, timeout: float = 15.0) -> None:
    """Until ``url`` answers 200 from inside ``host``'s namespace."""
    probe = ("import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1).read()")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.run([sys.executable, "-c", probe, url], timeout=5).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@dataclass
class Daemon:
    proc: subprocess.Popen[Any]
    url: str  # its description URL (LOCATION)
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_minidlna(host: Host, lan: Lan, media: Path, work: Path, name: str = "dlna minidlna") -> Daemon:
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "minidlna.conf"
    conf.write_text(f"media_dir={media}\ndb_dir={work}/db\nlog_dir={work}\n"
                    f"network_interface={host.iface_on(lan).name}\nport=8200\nfriendly_name={name}\n"
                    "inotify=no\nnotify_interval=10\n")
    log = work / "minidlna.log"
    with log.open("w") as out:
        proc = host.popen(["minidlnad", "-d", "-f", str(conf), "-P", str(work / "minidlna.pid")],
                          stdout=out, stderr=subprocess.STDOUT)
    daemon = Daemon(proc, f"http://{host.addr_on(lan)}:8200/rootDesc.xml", log)
    wait_http(host, daemon.url)
    deadline = time.monotonic() + 15
    while "Initial file scan completed" not in log.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
        time.sleep(0.1)
    return daemon


def start_gmediarender(host: Host, lan: Lan, work: Path, name: str = "dlna gmediarender",
                       uuid: str = "5f3b6a2e-1d2c-4c55-9a11-0000000000a1") -> Daemon:
    work.mkdir(parents=True, exist_ok=True)
    log = work / "gmr.log"
    with (work / "gmr.out").open("w") as out:
        proc = host.popen(["gmediarender", "-I", host.iface_on(lan).name, "-p", "49494", "-u", uuid, "-f", name,
                           *GST_SINKS, f"--logfile={log}"], stdout=out, stderr=subprocess.STDOUT)
    daemon = Daemon(proc, f"http://{host.addr_on(lan)}:49494/description.xml", log)
    wait_http(host, daemon.url)
    return daemon


def start_rygel(host: Host, lan: Lan, work: Path) -> Daemon:
    """rygel's renderer (Playbin; -n/-p are the only settings it honours, reference §1.6)."""
    home = work / "home"
    (home / ".config").mkdir(parents=True, exist_ok=True)
    conf = work / "rygel.conf"
    off = ["Tracker", "Tracker3", "LMS", "GstLaunch", "MPRIS", "External", "Ruih", "MediaExport"]
    conf.write_text("[general]\nipv6=false\nupnp-enabled=true\nlog-level=*:3\n"
                    + "".join(f"[{p}]\nenabled=false\n" for p in off) + "[Playbin]\nenabled=true\n")
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_RUNTIME_DIR": str(home), "PATH": "/usr/bin:/bin"}
    log = work / "rygel.log"
    with log.open("w") as out:
        proc = host.popen(["rygel", "-c", str(conf), "-n", host.iface_on(lan).name, "-p", "8201"],
                          stdout=out, stderr=subprocess.STDOUT, env=env)
    return Daemon(proc, "", log)


@dataclass
class IgrsProcess:
    """``igrs device run`` / ``igrs bridge upnp`` with --json: its lines as they come."""

    proc: subprocess.Popen[Any]
    lines: LineReader
    ready: dict[str, Any] = field(default_factory=dict)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.lines.json_objects() if isinstance(o, dict) and o.get("event") == kind]

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first line so far, else the next one, that is a JSON object matching ``pred``."""
        for text in list(self.lines.lines):
            if _matches(text, pred):
                return json.loads(text)  # type: ignore[no-any-return]
        line = self.lines.wait_for(lambda text: _matches(text, pred), timeout)
        if line is None:
            raise AssertionError(f"not seen within {timeout} s; output:\n{self.lines.text()[-3000:]}")
        return json.loads(line)  # type: ignore[no-any-return]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)
        return self.proc.returncode if self.proc.returncode is not None else -9


def _matches(text: str, pred: Callable[[dict[str, Any]], bool]) -> bool:
    try:
        obj = json.loads(text)
    except ValueError:
        return False
    return isinstance(obj, dict) and pred(obj)


def start_igrs(host: Host, argv: list[str], timeout: float = 30.0) -> IgrsProcess:
    proc = host.popen([*IGRS, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                      env={**_env(), "PYTHONUNBUFFERED": "1"})
    p = IgrsProcess(proc, LineReader(proc.stdout))
    p.ready = p.wait(lambda o: o.get("event") == "ready", timeout)
    return p


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("IGRS_INTERFACES", None)
    return env


def cp(host: Host, *args: str, timeout: float = 60.0) -> dict[str, Any]:
    """Run upnp_cp.py (async-upnp-client control point) in ``host``; its JSON result."""
    done = host.run([*CP, *args], timeout=timeout, env=_env())
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, \
        f"upnp_cp {args[:2]} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A GET from the root namespace (only for addresses reachable from it: loopback)."""
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, dict(r.headers), r.read()


PHONE = [sys.executable, str(Path(__file__).with_name("upnp_phone.py"))]


def pair(phone: Host, name: str, state_dir: Path, shows_pin: IgrsProcess) -> None:
    """``igrs pair NAME`` in ``phone``, typing the PIN ``shows_pin`` prints (its JSON line)."""
    before = len(shows_pin.events("pin"))
    proc = phone.popen([*IGRS, "pair", name, "--interface", phone.addr, "--state-dir", str(state_dir),
                        "--timeout", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, env=_env())
    deadline = time.monotonic() + 20
    while len(shows_pin.events("pin")) <= before:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate(timeout=5)[0]
        time.sleep(0.05)
    pin = shows_pin.events("pin")[-1]["pin"]
    out, _ = proc.communicate(f"{pin}\n", timeout=20)
    assert proc.returncode == 0 and "paired with" in out, out


def phone_steps(phone: Host, state_dir: Path, steps: list[list[Any]], timeout: float = 90) -> list[Any]:
    """upnp_phone.py's results for ``steps`` (the public igrs API, pairings in ``state_dir``)."""
    done = phone.run([*PHONE, json.dumps(steps), "--interface", phone.addr, "--state-dir", str(state_dir)],
                     timeout=timeout, env=_env())
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, f"phone failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return json.loads(lines[-1])["results"]  # type: ignore[no-any-return]
