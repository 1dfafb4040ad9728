"""The device-group cases (GRP-*, specs/conformance/cases-groups.toml): the project's device
mastering a centralised group passes every mandatory one; a device with no group skips the
cases that need one (the run is then INCOMPLETE); each broken group device fails its named case, with evidence.
Loopback only (interfaces=["lo"]), a free ISDP port per test."""

from __future__ import annotations

import contextlib

import pytest
from broken_groups import GROUP_BROKEN_DEVICES, BrokenGroupDevice, GroupHostDevice
from conformance_harness import PinShown  # type: ignore[import-not-found]

from igrs import Device
from igrs.conformance import Lifecycle, load_cases, run_suite
from igrs.conformance.runner import FAIL, INCOMPLETE, PASS, SKIP, Report, load_checks

LO = ["lo"]
GRP = [c.id for c in load_cases() if c.id.startswith("GRP-")]
NEEDS_A_GROUP = ("GRP-001", "GRP-002", "GRP-003", "GRP-005", "GRP-006", "GRP-008", "GRP-009", "GRP-010",
                 "GRP-011")




async def run_groups(device: Device, shown: PinShown, port: int, only: list[str] | None = None) -> Report:
    """Run the GRP cases against ``device``, started by the suite (its advertisements are heard)."""
    try:
        return await run_suite(device.name, "core", interfaces=LO, port=port, pin=shown.read,
                               lifecycle=Lifecycle(device.start, device.stop), only=only or GRP)
    finally:
        with contextlib.suppress(Exception):
            await device.stop()


def verdicts(report: Report) -> dict[str, str]:
    return {r.case.id: r.verdict for r in report.results}


def test_group_catalogue() -> None:
    checks = load_checks()
    assert len(GRP) >= 10 and set(GRP) <= set(checks)
    for case in load_cases():
        if case.id.startswith("GRP-"):
            assert case.clause in ("14543-5-1 9.5", "14543-5-1 9.8") and "groups.md" in case.spec
    for broken in GROUP_BROKEN_DEVICES:
        assert broken.CAUGHT_BY and set(broken.CAUGHT_BY) <= set(GRP), broken


async def test_own_group_master_passes(free_udp_port: int) -> None:
    shown = PinShown()
    dev = GroupHostDevice(name="Group TV", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0,
                          on_pin=shown)
    report = await run_groups(dev, shown, free_udp_port)
    assert not report.error, report.error
    assert report.passed, {r.case.id: r.reason for r in report.mandatory_failures}
    assert verdicts(report) == dict.fromkeys(GRP, PASS), {r.case.id: r.reason for r in report.results}
    # the pipe cases recorded their sealed messages, the quit case its witness
    evidence = " ".join(e.note for e in report.result("GRP-006").evidence)
    assert "witness" in evidence and "empty 200" in evidence


async def test_device_without_groups_skips(free_udp_port: int) -> None:
    shown = PinShown()
    dev = GroupHostDevice(name="No group", interfaces=LO, port=free_udp_port, http_port=0, on_pin=shown,
                          group_name=None)
    report = await run_groups(dev, shown, free_udp_port)
    got = verdicts(report)
    assert not report.mandatory_failures, {r.case.id: r.reason for r in report.results}
    assert {cid: got[cid] for cid in NEEDS_A_GROUP} == dict.fromkeys(NEEDS_A_GROUP, SKIP)
    # mandatory cases not checked withhold the verdict: INCOMPLETE, naming them (not PASSED)
    assert report.verdict == INCOMPLETE and not report.passed
    assert {r.case.id for r in report.unchecked} == {c for c in NEEDS_A_GROUP if c != "GRP-011"}
    assert got["GRP-004"] == PASS and got["GRP-007"] == PASS  # groups served: 404 and 400 still checked


async def test_device_not_serving_groups_skips(free_udp_port: int) -> None:
    shown = PinShown()
    dev = Device(name="Plain", interfaces=LO, port=free_udp_port, http_port=0, on_pin=shown)
    report = await run_groups(dev, shown, free_udp_port, only=["GRP-001", "GRP-004", "GRP-005", "GRP-007"])
    got = verdicts(report)
    assert [got["GRP-001"], got["GRP-004"], got["GRP-005"]] == [SKIP, SKIP, SKIP]
    assert "501" in report.result("GRP-004").reason
    assert got["GRP-007"] == PASS  # the body is decoded (and refused, 400) before the handler is looked up


@pytest.mark.parametrize("broken", GROUP_BROKEN_DEVICES, ids=lambda b: b.__name__)
async def test_broken_group_device_is_caught(broken: type[BrokenGroupDevice], free_udp_port: int) -> None:
    shown = PinShown()
    dev = broken(name="Broken group", device_type="TV", interfaces=LO, port=free_udp_port, http_port=0,
                 on_pin=shown)
    report = await run_groups(dev, shown, free_udp_port, only=list(broken.CAUGHT_BY))
    assert not report.error, report.error
    for cid in broken.CAUGHT_BY:
        result = report.result(cid)
        assert result.verdict == FAIL, (cid, result.verdict, result.reason)
        assert result.case.mandatory and result.evidence, "a failure carries its evidence"
    assert not report.passed
