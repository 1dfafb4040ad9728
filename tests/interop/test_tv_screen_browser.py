"""The TV's screen page in a real browser: Debian's headless chromium driven by chromedriver
(the W3C WebDriver protocol, spoken with urllib — no Python browser package needed).

A PC and a TV run in-process on loopback (igrs.apps.demo roles); the page is loaded while the TV
shows nothing, then a control point makes the TV play the PC's photo: the page must follow by
itself (it polls /screen/state), show the title, the PLAYING state and the decoded image. A
screenshot is kept in artifacts/tv-screen.png and checked to show the photo.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pytest
from pairing import pair_with

from igrs import ControlPoint, Device
from igrs.apps.demo import setup_pc, setup_tv
from igrs.apps.sample_media import holiday_photo, sample_media
from igrs.profiles.av import AvController

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

LO = ["lo"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROME_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
    "--hide-scrollbars",
    "--autoplay-policy=no-user-gesture-required",
]


# --- a minimal WebDriver client ------------------------------------------------------------------
class WebDriver:
    def __init__(self, base: str) -> None:
        self.base = base
        self.session = ""

    def call(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"{}").get("value")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"WebDriver {method} {path}: {exc.code} {exc.read()[:500]!r}") from None

    def start(self, binary: str, user_data_dir: str) -> None:
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": binary,
                        "args": [*CHROME_ARGS, f"--user-data-dir={user_data_dir}"],
                    },
                }
            }
        }
        self.session = self.call("POST", "/session", caps, timeout=60)["sessionId"]

    def s(self, method: str, path: str, body: Any = None) -> Any:
        return self.call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        self.s("POST", "/url", {"url": url})

    def js(self, script: str) -> Any:
        return self.s("POST", "/execute/sync", {"script": script, "args": []})

    def screenshot(self) -> bytes:
        return base64.b64decode(self.s("GET", "/screenshot"))

    def quit(self) -> None:
        if self.session:
            with contextlib.suppress(Exception):
                self.call("DELETE", f"/session/{self.session}", timeout=15)
            self.session = ""


def wait_js(wd: WebDriver, script: str, timeout: float = 10.0) -> Any:
    """Poll ``script`` until it returns something truthy; the last value on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = wd.js(script)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


STATE_JS = """
const m = document.getElementById("media");
const s = {state: document.body.dataset.state, kind: document.body.dataset.kind,
        title: document.getElementById("title").textContent,
        badge: document.getElementById("state").textContent,
        tag: m ? m.tagName : "", src: m && m.src ? m.src : "",
        loaded: !!(m && m.tagName === "IMG" && m.complete && m.naturalWidth > 0),
        width: m && m.naturalWidth ? m.naturalWidth : 0, height: m && m.naturalHeight ? m.naturalHeight : 0,
        conn: document.getElementById("conn").textContent};
"""
PAGE_STATE = STATE_JS + "return s;"
PHOTO_SHOWN = STATE_JS + 'return s.loaded && s.state === "PLAYING" ? s : null;'


# --- PNG decoding, to look at the screenshot ------------------------------------------------------
def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, unfiltered pixel rows) of an 8-bit RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    height = bpp = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    out, prev = bytearray(), bytearray(stride)
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out += line
        prev = line
    return width, height, bpp, bytes(out)


def has_colour(pixels: bytes, bpp: int, rgb: tuple[int, int, int], tolerance: int = 16) -> int:
    """How many pixels are within ``tolerance`` of ``rgb`` (sampled every 4th pixel)."""
    n = 0
    for i in range(0, len(pixels) - bpp, bpp * 4):
        if all(abs(pixels[i + k] - rgb[k]) <= tolerance for k in range(3)):
            n += 1
    return n


# --- the test ------------------------------------------------------------------------------------
@contextlib.contextmanager
def chromedriver(exe: str, port: int):  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(
        [exe, f"--port={port}", "--allowed-ips=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(base + "/status", timeout=2) as resp:
                    if json.loads(resp.read())["value"].get("ready"):
                        break
            except (OSError, ValueError):
                pass
            assert time.monotonic() < deadline, "chromedriver did not come up"
            time.sleep(0.1)
        yield WebDriver(base)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


async def test_tv_screen_in_headless_chromium(
    require_cmd, free_udp_port: int, free_tcp_port: int, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    chromium = require_cmd("chromium")
    driver_exe = require_cmd("chromedriver", "chromium-driver")
    pins: dict[str, list[str]] = {"pc": [], "tv": []}
    pc = Device(
        name="Study PC",
        device_type="PC",
        interfaces=LO,
        port=free_udp_port,
        http_port=0,
        on_pin=pins["pc"].append,
        watch_interfaces=False,
    )
    tv = Device(
        name="Living room TV",
        device_type="TV",
        interfaces=LO,
        port=free_udp_port,
        http_port=0,
        on_pin=pins["tv"].append,
        watch_interfaces=False,
    )
    cp = ControlPoint(interfaces=LO, port=free_udp_port, keepalive_interval=0)
    made = sample_media(tmp_path / "media")
    roles: list[Any] = []
    await pc.start()
    await tv.start()
    await cp.start()
    try:
        roles.append(await setup_pc(pc, tmp_path / "media", tmp_path / "inbox", watch_interval=None))
        tv_role = await setup_tv(tv)
        roles.append(tv_role)
        url = tv_role.screen.url()
        for dev, key in ((pc, "pc"), (tv, "tv")):
            await pair_with(cp, dev, pins[key])
        with chromedriver(driver_exe, free_tcp_port) as wd, tempfile.TemporaryDirectory() as profile:
            await asyncio.to_thread(wd.start, chromium, profile)
            try:
                await asyncio.to_thread(wd.get, url)
                before = await asyncio.to_thread(wd.js, PAGE_STATE)
                assert before["state"] == "NO_MEDIA_PRESENT" and before["title"] == "(nothing playing)", before

                # the phone's three-box step: the page follows without being reloaded
                av = AvController(cp)
                items = await av.browse_all(pc.device_id, (await av.browse(pc.device_id)).entries[0].id)
                photo = next(e for e in items if e.title == "photo")
                assert await av.play(pc.device_id, tv.device_id, photo.id) == "PLAYING"
                now = await asyncio.to_thread(wait_js, wd, PHOTO_SHOWN, 15)
                assert now, await asyncio.to_thread(wd.js, PAGE_STATE)
                assert now["title"] == "photo" and now["badge"] == "PLAYING" and now["kind"] == "image"
                assert now["tag"] == "IMG" and now["src"] == photo.url
                assert (now["width"], now["height"]) == (480, 320)
                assert now["conn"] == "live"

                png = await asyncio.to_thread(wd.screenshot)
                ARTIFACTS.mkdir(exist_ok=True)
                (ARTIFACTS / "tv-screen.png").write_bytes(png)
                width, height, bpp, pixels = await asyncio.to_thread(decode_png, png)
                assert width >= 800 and height >= 500, (width, height)  # the viewport of a 1280x800 window
                assert len(set(pixels[i : i + 3] for i in range(0, len(pixels), bpp * 7))) > 50  # not blank
                sun = holiday_photo(int(480 * 0.72), int(320 * 0.28), 480, 320)
                assert await asyncio.to_thread(has_colour, pixels, bpp, sun) > 200, "the photo is not on screen"

                # then the video: the page swaps in a <video> element for the clip
                clip = next(e for e in items if e.title == "clip")
                await av.play(pc.device_id, tv.device_id, clip.id)
                vid = await asyncio.to_thread(
                    wait_js,
                    wd,
                    'const m = document.getElementById("media"); return m && m.tagName === '
                    '"VIDEO" ? {src: m.src, title: document.getElementById("title").textContent, '
                    'mp4: m.canPlayType("video/mp4; codecs=\\"avc1.42E01E\\"")} : null;',
                    15,
                )
                assert vid and vid["src"] == clip.url and vid["title"] == "clip", vid
                print(f"chromium canPlayType(H.264 MP4) = {vid['mp4']!r}; clip made by {made['clip_how']}")
            finally:
                await asyncio.to_thread(wd.quit)
    finally:
        await cp.stop()
        for role in reversed(roles):
            await role.aclose()
        await tv.stop()
        await pc.stop()
