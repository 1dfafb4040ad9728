"""Conformance that says what it rests on (issue 11 item 6): every case has a basis and a
citation; ``--basis public`` fails a device only on public-basis rules; a device without pipes
gets "not applicable" on the sealed cases; the legacy reference peer (tests/interop/ezbox_peer.py,
ezbox's bytes) passes what it implements and the report explains every other verdict."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from interop.ezbox_peer import EzboxPeer  # tests/ is on sys.path (tests/conftest.py)

from igrs import Device
from igrs.apps.sample_service import Volume
from igrs.conformance import load_cases, run_suite
from igrs.conformance.report import to_html, to_text
from igrs.conformance.runner import FAIL, NA, PASS, SKIP

LO = ["lo"]
PUBLIC_SOURCES = ("EZ-", "ezbox-dialect.md", "RFC ", "IANA", "facts ")


def test_every_case_has_a_basis_with_a_citation(tmp_path: Path) -> None:
    cases = load_cases()
    assert {c.basis for c in cases} == {"public", "project"}
    for c in cases:
        assert c.citation.strip(), c.id
        if c.basis == "public":  # a public rule names its public source
            assert any(key in c.citation for key in PUBLIC_SOURCES), (c.id, c.citation)
        else:
            assert c.citation.startswith("project choice"), (c.id, c.citation)
    assert {c.id for c in cases if c.basis == "public"} == {
        "DESC-002", "FRM-001", "FRM-002", "FRM-003", "FRM-004", "FRM-009", "SES-007", "SES-008"}
    assert all(c.sealed for c in cases if "pin" in c.requires)
    # a case without a basis is refused when the catalogue is read
    (tmp_path / "cases.toml").write_text('[[case]]\nid = "X-001"\ntitle = "t"\nclause = "c"\nspec = "s"\n'
                                         'profiles = ["core"]\nmandatory = true\npreconditions = "p"\n'
                                         'steps = ["s"]\nexpected = "e"\n')
    with pytest.raises(ValueError, match="basis"):
        load_cases(tmp_path)


async def test_the_legacy_peer_passes_what_it_implements_under_basis_public(free_udp_port: int) -> None:
    async with EzboxPeer() as peer:
        public = await run_suite(peer.address, "core", interfaces=LO, port=free_udp_port, basis="public",
                                 case_timeout=10)
        every = await run_suite(peer.address, "core", interfaces=LO, port=free_udp_port, case_timeout=10)
    assert not public.error, public.error
    text = to_text(public)
    assert public.passed and public.verdict == "PASSED", text
    assert not every.passed and every.verdict == "FAILED"  # the same device, every rule counted
    verdicts = {r.case.id: r for r in public.results}
    for cid in ("DESC-002", "FRM-001", "SES-007", "SES-008"):  # what it implements
        assert verdicts[cid].verdict == PASS, (cid, verdicts[cid].reason)
    for cid in ("FRM-002", "FRM-003", "FRM-004"):  # the public status holds; the body is ours
        r = verdicts[cid]
        assert r.verdict == FAIL and r.failed_basis == "project" and public.advisory(r), (cid, r.reason)
    assert verdicts["FRM-009"].verdict == FAIL and not verdicts["FRM-009"].case.mandatory  # 400, not 405
    assert public.secure_pipe.startswith("not offered") and public.open_services == ["Echo #1"]
    for r in public.results:
        if r.case.sealed:
            assert r.verdict == NA and "no secure pipe offered" in r.reason, r.case.id
        if r.verdict != PASS:  # the report explains every remaining verdict
            assert r.reason, r.case.id
        if r.case.basis == "project" and r.verdict in (FAIL, SKIP):
            assert public.advisory(r)
    assert not public.mandatory_failures and every.mandatory_failures
    assert "(advisory)" in text and "[public]" in text and "services shared openly: Echo #1" in text


async def test_own_device_shares_openly_only_what_it_was_told_to(free_udp_port: int) -> None:
    async with Device(name="Open TV", interfaces=LO, port=free_udp_port, http_port=0) as dev:
        sealed = dev.add_service(Volume())
        shared = dev.add_service(Volume(), access="open")
        report = await run_suite("Open TV", "core", interfaces=LO, port=free_udp_port,
                                 only=["SES-007", "SES-008", "SEC-001"])
        assert dev.services.sessions.__len__() == 0  # the run ended the sessions it opened
    verdicts = {r.case.id: (r.verdict, r.reason) for r in report.results}
    assert verdicts["SES-007"][0] == PASS and verdicts["SES-008"][0] == PASS, verdicts
    assert verdicts["SEC-001"][0] == PASS  # sealed services still refuse the unsealed (401)
    assert report.secure_pipe == "offered" and report.open_services == [f"Volume #{shared}"]
    assert f"#{sealed}" not in " ".join(report.open_services)
    page = to_html(report).decode()
    assert "<th>Basis</th>" in page and f"Volume #{shared}" in page


async def test_a_device_sharing_nothing_openly(free_udp_port: int) -> None:
    async with Device(name="Closed TV", interfaces=LO, port=free_udp_port, http_port=0) as dev:
        dev.add_service(Volume())
        report = await run_suite("Closed TV", "core", interfaces=LO, port=free_udp_port,
                                 only=["SES-007", "SES-008"], basis="public")
    assert [r.verdict for r in report.results] == [PASS, NA]  # understood (401), nothing to invoke
    assert "no service is shared openly" in report.results[1].reason
    assert report.open_services == [] and report.passed


def test_cli_basis_public_and_its_reports(tmp_path: Path, free_udp_port: int) -> None:
    async def go() -> tuple[int, str]:
        async with EzboxPeer() as peer:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "igrs", "conformance", "run", peer.address, "--interface", "lo",
                "--port", str(free_udp_port), "--basis", "public", "--case", "DESC-002", "--case", "FRM-004",
                "--case", "DESC-001", "--case", "SES-001", "--junit", str(tmp_path / "r.xml"),
                "--html", str(tmp_path / "r.html"), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode is not None
            return proc.returncode, out.decode()

    rc, out = asyncio.run(go())
    assert rc == 0, out
    assert "PASSED" in out and "(public basis; 2 fail/error advisory)" in out
    root = ET.parse(tmp_path / "r.xml").getroot()
    assert root.get("failures") == "0" and root.get("errors") == "0"
    props = {p.get("name"): p.get("value") for p in root.findall("properties/property")}
    assert props["basis"] == "public" and props["secure_pipe"].startswith("not offered")
    by_id = {tc.find("properties/property[@name='id']").get("value"): tc  # type: ignore[union-attr]
             for tc in root.findall("testcase")}
    assert by_id["FRM-004"].find("skipped").get("type") == "advisory"  # type: ignore[union-attr]
    assert by_id["DESC-001"].find("skipped").get("type") == "advisory"  # type: ignore[union-attr]
    assert by_id["SES-001"].find("skipped").get("type") == "not applicable"  # type: ignore[union-attr]
    assert by_id["DESC-002"].find("skipped") is None and by_id["DESC-002"].find("failure") is None
    basis = {tc.find("properties/property[@name='id']").get("value"):  # type: ignore[union-attr]
             tc.find("properties/property[@name='basis']").get("value") for tc in root.findall("testcase")}  # type: ignore[union-attr]
    assert basis == {"DESC-001": "project", "DESC-002": "public", "FRM-004": "public", "SES-001": "project"}
    page = (tmp_path / "r.html").read_text()
    assert "<th>Basis</th>" in page and "not applicable" in page and "advisory" in page
