"""The AV and File profile cases (specs/conformance/cases-av.toml, cases-file.toml) pass on the
project's own device and fail each deliberately broken profile device on the case it names;
the traversal devices are shown to really leak a secret planted beside their share. Loopback
only (interfaces=["lo"])."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import aiohttp
import pytest
from broken_profiles import (
    PROFILE_BROKEN_DEVICES,
    PathTraversalAVDevice,
    PathTraversalFileDevice,
    ProfileDevice,
)
from conformance_harness import SECRET, Home, PinShown, make_home  # type: ignore[import-not-found]
from netbed import LineReader
from yarl import URL

from igrs import ControlPoint, Device
from igrs.conformance import load_cases, run_suite
from igrs.conformance.report import to_text
from igrs.conformance.runner import FAIL, INCOMPLETE, NA, PASS, SKIP, Report
from igrs.constants import FILE_PATH_REFUSED
from igrs.errors import IGRSError
from igrs.profiles.av import MediaServer, attach_media_server, attach_renderer
from igrs.profiles.file import attach_file_server
from igrs.profiles.file.client import FileClient, error_code

LO = ["lo"]
pytestmark = pytest.mark.timeout(120)


@dataclass
class Dut:
    device: Device
    shown: PinShown
    media_server: MediaServer | None


@contextlib.asynccontextmanager
async def own_device(home: Home, port: int, name: str, *, media: bool = True,
                     files: bool = True) -> AsyncIterator[Dut]:
    """The project's own device: MediaServer + MediaRenderer + FileServer (real code)."""
    shown = PinShown()
    dev = Device(name=name, device_type="PC", interfaces=LO, port=port, http_port=0, on_pin=shown,
                 watch_interfaces=False)
    await dev.start()
    ms = tv = None
    try:
        if media:
            ms = await attach_media_server(dev, {"Media": home.media}, use_ffprobe=False, watch_interval=None)
            tv = await attach_renderer(dev, probe=False)
        if files:
            attach_file_server(dev, home.shares())
        yield Dut(dev, shown, ms)
    finally:
        for service in (ms, tv):
            if service is not None:
                await service.aclose()
        await dev.stop()


@contextlib.asynccontextmanager
async def broken_device(cls: type[ProfileDevice], home: Home, port: int) -> AsyncIterator[Dut]:
    shown = PinShown()
    dev = cls(name="Broken", device_type="PC", interfaces=LO, port=port, http_port=0, on_pin=shown,
              watch_interfaces=False)
    await dev.start()
    try:
        await dev.attach_profiles(media={"Media": home.media}, shares=home.shares(), renderer=True)
        yield Dut(dev, shown, dev.media_server)
    finally:
        await dev.stop()


def verdicts(report: Report, prefix: str = "") -> dict[str, str]:
    return {r.case.id: r.verdict for r in report.results if r.case.id.startswith(prefix)}


def profile_ids(prefix: str) -> set[str]:
    return {c.id for c in load_cases() if c.id.startswith(prefix)}


# --- the project's own device passes ------------------------------------------------------------------
@pytest.fixture(scope="module")
def own_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Report]:
    from conformance_harness import free_udp  # type: ignore[import-not-found]

    home = make_home(tmp_path_factory.mktemp("own"))
    port = free_udp()

    async def go() -> dict[str, Report]:
        async with own_device(home, port, "Home PC") as dut:
            out = {}
            for profile in ("av", "file"):
                out[profile] = await run_suite("Home PC", profile, pin=dut.shown.read, interfaces=LO, port=port)
            # "all" selects the profile cases beside the core ones (whose own tests are test_suite.py)
            out["all"] = await run_suite("Home PC", "all", pin=dut.shown.read, interfaces=LO, port=port,
                                         only=[*profile_ids("AV-"), *profile_ids("FILE-"), "DESC-001"])
            return out

    reports = asyncio.run(go())
    reports["_home"] = home  # type: ignore[assignment]
    return reports


@pytest.mark.parametrize("profile, prefix", [("av", "AV-"), ("file", "FILE-")])
def test_own_device_passes_the_profile(own_reports: dict[str, Report], profile: str, prefix: str) -> None:
    report = own_reports[profile]
    assert not report.error, report.error
    assert report.passed, {r.case.id: r.reason for r in report.mandatory_failures}
    assert set(verdicts(report)) == profile_ids(prefix)  # the profile selects its cases only
    failing = {r.case.id: (r.verdict, r.reason) for r in report.results if r.verdict != PASS}
    assert not failing, failing  # optional ones too: renderer, Search, oversize
    for r in report.results:
        assert r.evidence, f"{r.case.id} recorded no evidence"


def test_all_profile_runs_the_profile_cases_too(own_reports: dict[str, Report]) -> None:
    report = own_reports["all"]
    assert not report.error, report.error
    got = verdicts(report)
    for prefix in ("AV-", "FILE-"):
        assert {k: v for k, v in got.items() if k.startswith(prefix)} == {i: PASS for i in profile_ids(prefix)}
    assert got["DESC-001"] == PASS  # and the core cases


def test_evidence_shows_pipe_plaintext_and_raw_transfers(own_reports: dict[str, Report]) -> None:
    put = own_reports["file"].result("FILE-007").evidence
    assert any(b"<Action>BeginPut</Action>" in e.data or b"BeginPut" in e.data for e in put)
    assert any(e.data.startswith(b"PUT /files/") and "cut after" in e.note for e in put)
    assert any(e.data.startswith(b"HTTP/1.1 409") for e in put)  # the PUT at a wrong offset
    ranges = own_reports["av"].result("AV-004").evidence
    assert any(e.data.startswith(b"HTTP/1.1 206") and b"Content-Range: bytes " in e.data for e in ranges)


def test_suite_leaves_nothing_behind(own_reports: dict[str, Report]) -> None:
    home: Home = own_reports["_home"]  # type: ignore[assignment]
    assert [p.name for p in home.inbox.iterdir() if p.name != ".igrs-partial"] == []
    assert list((home.inbox / ".igrs-partial").glob("*")) == []  # every partial cancelled or completed
    assert home.outside() == set()


# --- each broken device is caught ---------------------------------------------------------------------
WHY = {  # what the failure must say: caught for its broken rule, not by accident
    "PathTraversalFileDevice": "../<share>: ",
    "UploadNotVerifiedDevice": "wrong SHA-256 was accepted",
    "PartialUploadVisibleDevice": "after the interrupted PUT: Stat",
    "UnboundCapabilityFileDevice": "GET from 127.0.0.77: HTTP 200",
    "BrowseOffsetIgnoredFileDevice": "no empty page",
    "StatAllocatedSizeFileDevice": "Browse said file of",
    "RangeIgnoredFileDevice": "HTTP 200 (the whole file), expected 206",
    "DeleteIgnoredFileDevice": "after Delete: Stat",
    "CleartextFileDevice": "the bytes would travel in clear",
    "UnpinnedTlsFileDevice": "a client with another key got HTTP 200",
    "RangeIgnoredAVDevice": "HTTP 200",
    "PathTraversalAVDevice": "served /etc/passwd",
    "PagingIgnoredAVDevice": "RequestedCount 1 returned",
    "UnknownObjectEmptyAVDevice": "was answered",
    "DidlWithoutClassAVDevice": "upnp:class",
    "HeadDiffersAVDevice": "Content-Type: GET",
    "AnyUriRendererDevice": "PlayTo(URI='file:///etc/passwd'",
    "QuietPauseRendererDevice": "after Pause: no TransportState=PAUSED_PLAYBACK notification",
}


@pytest.mark.parametrize("broken", PROFILE_BROKEN_DEVICES, ids=lambda b: b.__name__)
async def test_broken_profile_device_is_caught(broken: type[ProfileDevice], tmp_path: Path,
                                               free_udp_port: int) -> None:
    home = make_home(tmp_path)
    profile = "av" if broken.CAUGHT_BY[0].startswith("AV-") else "file"
    async with broken_device(broken, home, free_udp_port) as dut:
        report = await run_suite("Broken", profile, pin=dut.shown.read, interfaces=LO, port=free_udp_port,
                                 only=list(broken.CAUGHT_BY))
    assert not report.error, report.error
    for cid in broken.CAUGHT_BY:
        result = report.result(cid)
        assert result.verdict == FAIL, (cid, result.verdict, result.reason)
        assert WHY[broken.__name__] in result.reason, result.reason
        assert result.evidence, "a failure carries its evidence"
    mandatory = any(report.result(cid).case.mandatory for cid in broken.CAUGHT_BY)
    assert report.passed is not mandatory


def test_every_profile_case_can_fail() -> None:
    """Each mandatory AV/FILE case is named by a broken device or by the missing-service test."""
    assert set(WHY) == {b.__name__ for b in PROFILE_BROKEN_DEVICES}
    caught = {cid for b in PROFILE_BROKEN_DEVICES for cid in b.CAUGHT_BY} | {"AV-001", "FILE-001"}
    ids = {c.id: c for c in load_cases()}
    assert caught <= set(ids)
    unproven = {i for i in profile_ids("AV-") | profile_ids("FILE-") if ids[i].mandatory} - caught
    assert unproven == set(), unproven


# --- the traversal devices really leak; the project's own device does not ---------------------------
async def _paired(dev: Device, shown: PinShown, port: int) -> ControlPoint:
    cp = ControlPoint(interfaces=LO, port=port, keepalive_interval=0)
    await cp.start()
    await cp.locate(dev.device_id, mx=1)  # ends at its first answer (tests/pairing.py)
    await cp.pair(dev.device_id, shown.read)
    return cp


async def _leak_through_file_profile(dut: Dut, port: int) -> str | int:
    """The secret's bytes if a paired peer can read /pub/../secret.txt, else the refusal code."""
    cp = await _paired(dut.device, dut.shown, port)
    try:
        async with FileClient.connect(cp, dut.device.device_id) as files:
            try:
                info = await files.proxy.BeginGet(path="/pub/../secret.txt")
            except IGRSError as exc:
                return error_code(exc) or 0
            async with aiohttp.ClientSession() as http, http.get(files.base_url + info["url"]) as r:
                return await r.text()
    finally:
        await cp.stop()


async def test_path_traversal_file_device_really_leaks(tmp_path: Path, free_udp_port: int) -> None:
    home = make_home(tmp_path)
    async with broken_device(PathTraversalFileDevice, home, free_udp_port) as dut:
        assert await _leak_through_file_profile(dut, free_udp_port) == SECRET
        report = await run_suite("Broken", "file", pin=dut.shown.read, interfaces=LO, port=free_udp_port,
                                 only=["FILE-008"])
    assert report.result("FILE-008").verdict == FAIL
    assert "../" in report.result("FILE-008").reason
    assert any(name.startswith("conformance-") for name in home.outside())  # MakeDirectory escaped
    own_home = make_home(tmp_path / "own")
    async with own_device(own_home, free_udp_port, "Own PC", media=False) as dut:
        assert await _leak_through_file_profile(dut, free_udp_port) == FILE_PATH_REFUSED
    assert own_home.outside() == set()


async def _leak_through_stream_url(dut: Dut, home: Home) -> tuple[int, str]:
    """GET <an item's URL folder>/..%2fsecret.txt (plain HTTP, no pairing needed)."""
    ms = dut.media_server
    assert ms is not None
    item = next(o for o in ms.directory.objects.values() if o.path is not None and o.path.parent == home.media)
    url = ms.entry(item).url.rsplit("/", 1)[0] + "/..%2fsecret.txt"
    async with aiohttp.ClientSession() as http, http.get(URL(url, encoded=True)) as r:
        return r.status, await r.text()


async def test_path_traversal_av_device_really_leaks(tmp_path: Path, free_udp_port: int) -> None:
    home = make_home(tmp_path)
    async with broken_device(PathTraversalAVDevice, home, free_udp_port) as dut:
        assert await _leak_through_stream_url(dut, home) == (200, SECRET)
    async with own_device(home, free_udp_port, "Own PC", files=False) as dut:
        status, body = await _leak_through_stream_url(dut, home)
    assert status == 400 and SECRET not in body


# --- a device without the service: the profile's presence case fails, the others skip --------------
@pytest.mark.parametrize("profile, prefix, present", [("file", "FILE-", "FILE-001"), ("av", "AV-", "AV-001")])
async def test_missing_service_fails_the_profile(tmp_path: Path, free_udp_port: int, profile: str, prefix: str,
                                                 present: str) -> None:
    home = make_home(tmp_path)
    async with own_device(home, free_udp_port, "Half PC", media=profile == "file",
                          files=profile == "av") as dut:
        report = await run_suite("Half PC", profile, pin=dut.shown.read, interfaces=LO, port=free_udp_port)
    assert not report.passed
    assert [r.case.id for r in report.mandatory_failures] == [present]
    assert "has no" in report.result(present).reason
    for cid, verdict in verdicts(report, prefix).items():
        if cid != present:  # they do not apply to a device without the service
            assert verdict == NA and "the device has no" in report.result(cid).reason, cid


async def test_without_pin_the_profile_cases_are_skipped(tmp_path: Path, free_udp_port: int) -> None:
    home = make_home(tmp_path)
    async with own_device(home, free_udp_port, "No PIN PC"):
        report = await run_suite("No PIN PC", "file", interfaces=LO, port=free_udp_port)
    assert set(verdicts(report).values()) == {SKIP}
    # nothing was checked: no certification (exit status 3), and the report says why
    assert not report.passed and report.verdict == INCOMPLETE
    assert "nothing was checked" in to_text(report) and "give --pin" in to_text(report)


async def test_host_port_target_pairs(tmp_path: Path, free_udp_port: int) -> None:
    home = make_home(tmp_path)
    async with own_device(home, free_udp_port, "Addressed PC", media=False) as dut:
        address = dut.device.location.split("//", 1)[1].split("/", 1)[0]
        report = await run_suite(address, "file", pin=dut.shown.read, interfaces=LO, port=free_udp_port,
                                 only=["FILE-001"])
    assert report.result("FILE-001").verdict == PASS, report.result("FILE-001").reason


# --- the CLI against `igrs device run --share-folder` in another process ------------------------------
def test_cli_file_profile_against_a_device_process(tmp_path: Path, free_udp_port: int) -> None:
    """The lab's usual target: HOST:PORT of the device's endpoint (from its JSON ready line);
    the PIN typed on stdin from the device's JSON pin line."""
    home = make_home(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("IGRS_INTERFACES", None)
    device = subprocess.Popen(
        [sys.executable, "-m", "igrs", "device", "run", "--name", "CLI PC", "--json", "--interface", "lo",
         "--port", str(free_udp_port), "--http-port", "0", "--state-dir", str(tmp_path / "dut"),
         "--share-folder", f"pub={home.pub}", "--share-folder", f"inbox={home.inbox}:rw"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = LineReader(device.stdout), LineReader(device.stderr)
        ready = out.wait_for(lambda s: '"event": "ready"' in s, 20)
        assert ready, out.lines + err.lines
        address = json.loads(ready)["location"].split("//", 1)[1].split("/", 1)[0]
        junit = tmp_path / "file.xml"
        suite = subprocess.Popen(
            [sys.executable, "-m", "igrs", "conformance", "run", address, "--profile", "file", "--pin", "-",
             "--interface", "lo", "--port", str(free_udp_port), "--junit", str(junit)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**env, "IGRS_STATE_DIR": str(tmp_path / "tester")})
        pin = out.wait_for(lambda s: '"event": "pin"' in s, 30)
        assert pin, out.lines + err.lines
        stdout, stderr = suite.communicate(json.loads(pin)["pin"] + "\n", timeout=60)
    finally:
        device.terminate()
        device.wait(timeout=10)
    assert suite.returncode == 0, stdout + stderr
    assert "PASSED" in stdout and "FILE-008" in stdout, stdout
    assert "SKIP" not in stdout.split("FILE-001", 1)[1], stdout  # every FILE case ran
    root = ET.parse(junit).getroot()
    ids = {p.get("value") for p in root.iter("property") if p.get("name") == "id"}
    assert ids == profile_ids("FILE-")
    assert root.get("failures") == "0" and root.get("errors") == "0"
    assert [p.name for p in home.inbox.iterdir() if p.name != ".igrs-partial"] == []
