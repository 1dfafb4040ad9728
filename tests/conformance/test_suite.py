"""The conformance suite passes on igrs.Device and fails each deliberately broken device
on the named case; its reports are well-formed. Loopback only (interfaces=["lo"])."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from broken_core import BROKEN_DEVICES, NAMESPACE_ONLY, BrokenDevice
from conformance_harness import PinShown  # type: ignore[import-not-found]
from lxml import etree

from igrs import Device
from igrs.apps.sample_service import Volume
from igrs.conformance import Lifecycle, load_cases, run_suite
from igrs.conformance.report import to_html, to_junit
from igrs.conformance.runner import FAIL, INCOMPLETE, NA, PASS, SKIP

LO = ["lo"]


def managed(device: Device) -> Lifecycle:
    return Lifecycle(device.start, device.stop)


async def stop_quietly(device: Device) -> None:
    with contextlib.suppress(Exception):  # stopped already by DISC-006
        await device.stop()




def test_catalogue_is_complete_data() -> None:
    from igrs.conformance.runner import load_checks

    CHECKS = load_checks()

    specs = load_cases()
    ids = [c.id for c in specs]
    assert len(ids) == len(set(ids)) >= 20
    for c in specs:
        assert c.clause.startswith("14543-5") and c.steps and c.expected and c.title
    # every case has a check (DISC-008 and SEC-003 need a namespace bed or --pin to run)
    assert {c.id for c in specs} - set(CHECKS) == set()
    for b in (*BROKEN_DEVICES, *NAMESPACE_ONLY):
        assert set(b.CAUGHT_BY) <= set(ids), b


@pytest.fixture(scope="module")
def good_report(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from conformance_harness import free_udp  # type: ignore[import-not-found]

    port = free_udp()

    async def go():  # type: ignore[no-untyped-def]
        dev = Device(name="Conformance TV", device_type="TV", interfaces=LO, port=port, http_port=0, max_age=6)
        try:
            return await run_suite("Conformance TV", "core", interfaces=LO, port=port, lifecycle=managed(dev))
        finally:
            await stop_quietly(dev)

    return asyncio.run(go())


def test_own_device_passes_every_mandatory_case(good_report) -> None:  # type: ignore[no-untyped-def]
    r = good_report
    assert not r.error, r.error
    bad = {x.case.id: x.reason for x in r.mandatory_failures}
    assert not bad, bad
    # without --pin the cases inside the secure pipe are not checked, nor the group cases on a
    # device that masters no group: no PASSED for what was not checked
    assert r.verdict == INCOMPLETE and not r.passed
    for x in r.unchecked:
        assert ("pin" in x.case.requires and "needs --pin" in x.reason) or x.case.id.startswith("GRP-"), x
    assert "give --pin" in r.explanation()
    verdicts = {x.case.id: x.verdict for x in r.results}
    # the lifecycle cases ran (the harness starts and stops the device)
    assert verdicts["DISC-001"] == PASS and verdicts["DISC-006"] == PASS
    assert verdicts["DISC-007"] == PASS  # max-age 6 s: the re-announcement is watched
    assert verdicts["DISC-008"] == SKIP and verdicts["SEC-003"] == SKIP
    for cid in ("DISC-002", "DISC-005", "DESC-001", "FRM-001", "FRM-004", "SEC-001", "SEC-002", "SEC-006"):
        assert verdicts[cid] == PASS, cid


async def test_own_device_passes_the_paired_cases(free_udp_port: int) -> None:
    """Every case that needs the PIN (pipes, services, sessions, events) passes on igrs.Device
    with a service; the pairing is made once and reused."""
    shown = PinShown()
    dev = Device(name="Paired TV", interfaces=LO, port=free_udp_port, http_port=0, on_pin=shown)
    dev.add_service(Volume())
    paired_cases = [c.id for c in load_cases()
                    if "pin" in c.requires and c.id.split("-")[0] in ("SEC", "SVC", "SES", "EVT")]
    assert len(paired_cases) >= 16
    async with dev:
        report = await run_suite("Paired TV", "core", interfaces=LO, port=free_udp_port, pin=shown.read,
                                 only=["SEC-002", *paired_cases, "SEC-006"])
    verdicts = {r.case.id: (r.verdict, r.reason) for r in report.results}
    assert all(v == PASS for v, _ in verdicts.values()), verdicts
    # one pairing for the whole run; SEC-006's guesses (run last) asked for a PIN but did not pair
    assert len(dev.keystore.peers()) == 1
    assert "000000" in " ".join(e.note for e in report.result("SEC-006").evidence)
    assert any("replay" in e.note for e in report.result("SEC-003").evidence)
    # sealed exchanges are shown as plaintext evidence
    assert any(b"CreateSessionRequest" in e.data for e in report.result("SES-002").evidence)
    assert any(b"InvokeServiceRequest" in e.data and "sealed" in e.note
               for e in report.result("SES-004").evidence)


def test_junit_report(good_report) -> None:  # type: ignore[no-untyped-def]
    root = ET.fromstring(to_junit(good_report))
    counts = good_report.counts()
    assert root.tag == "testsuite"
    cases = root.findall("testcase")
    assert int(root.get("tests")) == len(cases) == len(good_report.results)
    assert int(root.get("failures")) == counts[FAIL] == len(root.findall("testcase/failure"))
    assert int(root.get("skipped")) == counts[SKIP] + counts[NA] == len(root.findall("testcase/skipped"))
    assert int(root.get("errors")) == len(root.findall("testcase/error")) == 0
    first = cases[0]
    assert "[14543-5-1" in first.get("name")
    assert first.find("properties/property[@name='clause']") is not None
    for failure in root.findall("testcase/failure"):  # optional failures carry their evidence
        assert failure.get("type") == "optional" and "Evidence:" in (failure.text or "")


def test_html_report_is_well_formed(good_report) -> None:  # type: ignore[no-untyped-def]
    page = to_html(good_report)
    doc = etree.fromstring(page.split(b"\n", 1)[1], etree.XMLParser())  # XHTML-clean markup
    assert doc.tag == "html"
    rows = doc.findall(".//tbody/tr")
    assert len(rows) == len(good_report.results)
    assert b"INCOMPLETE" in page and b"DISC-002" in page and b"14543-5-1 9.6" in page
    assert doc.find(".//p[@class='verdict verdict-incomplete']") is not None  # its own banner


@pytest.mark.parametrize("broken", BROKEN_DEVICES, ids=lambda b: b.__name__)
async def test_broken_device_is_caught(broken: type[BrokenDevice], free_udp_port: int) -> None:
    shown = PinShown()
    dev = broken(name="Broken", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0,
                 on_pin=shown)
    dev.add_service(Volume())  # the session and invocation cases need a service
    try:
        report = await run_suite("Broken", "core", interfaces=LO, port=free_udp_port, pin=shown.read,
                                 lifecycle=managed(dev), only=list(broken.CAUGHT_BY))
    finally:
        await stop_quietly(dev)
    assert not report.error, report.error
    for cid in broken.CAUGHT_BY:
        result = report.result(cid)
        assert result.verdict == FAIL, (cid, result.verdict, result.reason)
        assert result.case.mandatory == (cid not in ("DISC-006", "SEC-003")), cid
        assert result.evidence or cid == "DISC-006", "a failure carries its evidence"
    assert not report.passed or broken.CAUGHT_BY in (("DISC-006",), ("SEC-003",))


async def test_address_target_and_unknown_target(free_udp_port: int) -> None:
    async with Device(name="Addr", interfaces=LO, port=free_udp_port, http_port=0) as dev:
        host_port = dev.location.split("//", 1)[1].split("/", 1)[0]
        report = await run_suite(host_port, "core", interfaces=LO, port=free_udp_port,
                                 only=["DESC-001", "DESC-003", "FRM-005"])
        assert report.device_id == str(dev.device_id)
        assert [r.verdict for r in report.results] == [PASS, SKIP, PASS]  # DESC-003 needs a search answer
        by_url = await run_suite(dev.location, "core", interfaces=LO, port=free_udp_port, only=["DESC-001"])
        assert by_url.device_id == str(dev.device_id) and by_url.location == dev.location  # igrs.wire.endpoints
        missing = await run_suite("no-such-device-name", "core", interfaces=LO, port=free_udp_port,
                                  only=["FRM-001"])
        assert missing.error and not missing.passed


def test_cli_exit_status_and_reports(tmp_path, free_udp_port: int) -> None:  # type: ignore[no-untyped-def]
    script = (
        "import asyncio, sys\n"
        "from broken_core import VersionAs400Device\n"
        "async def serve():\n"
        f"    d = VersionAs400Device(name='CLI', interfaces=['lo'], port={free_udp_port}, http_port=0)\n"
        "    await d.start(); print(d.location.split('//')[1].split('/')[0], flush=True)\n"
        "    await asyncio.sleep(30)\n"
        "asyncio.run(serve())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}  # broken_core lives beside this test
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        address = proc.stdout.readline().strip()  # type: ignore[union-attr]
        junit, page = tmp_path / "r.xml", tmp_path / "r.html"
        cp = subprocess.run([sys.executable, "-m", "igrs", "conformance", "run", address, "--interface", "lo",
                             "--port", str(free_udp_port), "--case", "FRM-004", "--case", "FRM-005",
                             "--junit", str(junit), "--html", str(page)],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 1, cp.stdout + cp.stderr
        assert "FAIL  M FRM-004" in cp.stdout
        root = ET.parse(junit).getroot()
        assert root.get("tests") == "2" and root.get("failures") == "1"
        assert b"FRM-004" in page.read_bytes()
    finally:
        proc.kill()
        proc.wait(timeout=5)


def test_packaged_catalogue_matches_specs() -> None:
    """igrs/conformance/cases*.toml (shipped in the wheel) are copies of specs/conformance/cases*.toml."""
    root = Path(__file__).resolve().parents[2]
    specs = {p.name: p.read_bytes() for p in (root / "specs" / "conformance").glob("cases*.toml")}
    packaged = {p.name: p.read_bytes() for p in (root / "igrs" / "conformance").glob("cases*.toml")}
    assert packaged == specs, "copy specs/conformance/cases*.toml to igrs/conformance/"


def test_readme_counts_match_the_catalogue() -> None:
    """specs/conformance/README.md states how many cases each area has: keep it true."""
    import re
    from collections import Counter

    text = (Path(__file__).resolve().parents[2] / "specs" / "conformance" / "README.md").read_text()
    cases = load_cases()
    areas = Counter(c.id.split("-")[0] for c in cases)
    assert f"the catalogue: {len(cases)} cases" in text
    summary = text.split("the catalogue:")[1][:200]
    stated = {a: int(n) for a, n in re.findall(r"\b([A-Z]{2,4}) (\d+)\b", summary)}
    assert stated == {a: n for a, n in areas.items() if a not in ("AV", "FILE")}
    for profile in ("core", "av", "file"):
        assert f"{profile} {sum(1 for c in cases if profile in c.profiles)}" in text.replace("\n", " ")
