"""A verdict a lab can trust (issue 13, item 1), through ``igrs conformance run`` against an
``igrs device run`` process on loopback: a mandatory case that was not checked withholds
PASSED (INCOMPLETE, exit 3, skipped with a reason in JUnit, its own HTML banner); a failed
pairing is said at once and aborts the cases that need the pipe; each verdict is printed as
its case finishes; Ctrl-C writes the partial report (exit 130); a missing device is one
error, not one per case."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from netbed import LineReader
from support import stop

IGRS = [sys.executable, "-m", "igrs"]
NAME = "Verdict TV"


def env(tmp: Path, role: str) -> dict[str, str]:
    out = {**os.environ, "PYTHONUNBUFFERED": "1", "IGRS_STATE_DIR": str(tmp / role)}
    out.pop("IGRS_INTERFACES", None)
    return out


@pytest.fixture
def device(tmp_path: Path, free_udp_port: int) -> Iterator[tuple[LineReader, int]]:
    """``igrs device run --sample-service`` on lo; its JSON lines (the PIN it shows among them)."""
    proc = subprocess.Popen([*IGRS, "device", "run", "--name", NAME, "--json", "--sample-service",
                             "--interface", "lo", "--port", str(free_udp_port), "--http-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(tmp_path, "dut"))
    out, err = LineReader(proc.stdout), LineReader(proc.stderr)
    try:
        assert out.wait_for(lambda s: '"event": "ready"' in s, 20), out.lines + err.lines
        yield out, free_udp_port
    finally:
        stop(proc)


def suite(tmp: Path, port: int, *args: str) -> subprocess.Popen[str]:
    argv = [*IGRS, "conformance", "run", NAME, "--interface", "lo", "--port", str(port), *args]
    pipe = subprocess.PIPE
    return subprocess.Popen(argv, stdin=pipe, stdout=pipe, stderr=pipe, text=True, env=env(tmp, "tester"))


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return proc.returncode, out, err


def junit_cases(path: Path) -> tuple[ET.Element, dict[str, ET.Element]]:
    root = ET.parse(path).getroot()
    return root, {tc.get("name", "").split()[0]: tc for tc in root.findall("testcase")}


def run_property(root: ET.Element, name: str) -> list[str]:
    return [p.get("value", "") for p in root.findall(f"properties/property[@name='{name}']")]


def test_a_mandatory_case_not_checked_is_incomplete(device: tuple[LineReader, int], tmp_path: Path) -> None:
    """No --pin: SES-001 (mandatory, inside the secure pipe) is not checked, so no PASSED."""
    _, port = device
    junit, page = tmp_path / "r.xml", tmp_path / "r.html"
    rc, out, err = finish(suite(tmp_path, port, "--case", "DISC-002", "--case", "SES-001",
                                "--junit", str(junit), "--html", str(page)))
    assert rc == 3, out + err
    assert "PASS  M DISC-002" in out and "SKIP  M SES-001" in out, out
    assert re.search(r"^INCOMPLETE: 1 pass, .*1 skip.*1 mandatory not checked$", out, re.M), out
    assert "1 mandatory case(s) not checked: SES-001; to check more, give --pin" in out
    root, cases = junit_cases(junit)
    assert run_property(root, "verdict") == ["INCOMPLETE"]
    skipped = cases["SES-001"].find("skipped")
    assert skipped is not None
    assert skipped.get("message", "").startswith("mandatory case not checked: needs --pin")
    html = page.read_text()
    assert 'class="verdict verdict-incomplete"><b>INCOMPLETE</b>' in html  # its own banner, not the green one
    assert 'class="verdict verdict-passed"' not in html


def test_a_failed_pairing_aborts_the_paired_cases_and_says_so(device: tuple[LineReader, int],
                                                             tmp_path: Path) -> None:
    dut, port = device
    junit = tmp_path / "r.xml"
    proc = suite(tmp_path, port, "--pin", "-", "--case", "DISC-002", "--case", "SEC-004", "--case", "SES",
                 "--junit", str(junit))
    shown = dut.wait_for(lambda s: '"event": "pin"' in s, 30)
    assert shown, dut.lines
    pin = json.loads(shown)["pin"]
    wrong = pin[:-1] + str((int(pin[-1]) + 1) % 10)
    assert proc.stdin is not None
    proc.stdin.write(wrong + "\n")
    proc.stdin.flush()
    rc, out, err = finish(proc)
    assert rc == 3, out + err
    lines = out.splitlines()
    problem = next(i for i, line in enumerate(lines) if line.startswith("!! pairing with the device failed"))
    # said once the pairing failed (after SEC-004, the first paired case), before the cases it aborts
    assert problem < next(i for i, line in enumerate(lines) if "SES-001" in line), out
    assert "wrong PIN" in lines[problem] and "remaining case(s) that need the secure pipe are not run" in out
    assert out.count("-> not run: pairing failed") == 6, out  # SES-001..006: not tried one by one
    assert lines[-3].startswith("!! pairing with the device failed"), out  # and again above the verdict
    root, cases = junit_cases(junit)
    assert run_property(root, "verdict") == ["INCOMPLETE"]
    assert any("pairing with the device failed" in p for p in run_property(root, "problem"))
    assert "not run: pairing failed" in cases["SES-003"].find("skipped").get("message", "")  # type: ignore[union-attr]


def test_verdicts_stream_and_ctrl_c_writes_the_partial_report(device: tuple[LineReader, int],
                                                               tmp_path: Path) -> None:
    """Each verdict is printed as its case finishes; Ctrl-C while the suite waits for the PIN
    (stdin) ends the run at once: partial reports written, exit 130."""
    dut, port = device
    junit, page = tmp_path / "r.xml", tmp_path / "r.html"
    proc = suite(tmp_path, port, "--pin", "-", "--case", "DISC-002", "--case", "SES-001", "--case", "SES-002",
                 "--junit", str(junit), "--html", str(page))
    out = LineReader(proc.stdout)
    try:
        first = out.wait_for(lambda s: "DISC-002" in s and "narrowed" not in s, 30)
        assert first and first.startswith("  PASS  M DISC-002") and proc.poll() is None, out.lines
        assert dut.wait_for(lambda s: '"event": "pin"' in s, 30), dut.lines  # the suite now waits on stdin
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    out.join()
    err = proc.stderr.read() if proc.stderr else ""  # type: ignore[union-attr]
    text = "\n".join(out.lines)
    assert rc == 130, text + err
    assert "partial report written to" in err and err.rstrip().endswith("igrs: interrupted"), err
    assert "!! interrupted at case 2 of 3: the report is partial" in text, text
    root, cases = junit_cases(junit)
    assert run_property(root, "verdict") == ["INCOMPLETE"]
    assert [p for p in run_property(root, "problem") if p.startswith("interrupted")]
    assert cases["DISC-002"].find("skipped") is None
    assert "interrupted" in cases["SES-001"].find("skipped").get("message", "")  # type: ignore[union-attr]
    assert "not run: the run was interrupted" in cases["SES-002"].find("skipped").get("message", "")  # type: ignore[union-attr]
    assert "the report is partial" in page.read_text()


def test_a_missing_device_is_one_error(tmp_path: Path, free_udp_port: int) -> None:
    junit = tmp_path / "r.xml"
    rc, out, err = finish(suite(tmp_path, free_udp_port, "--profile", "all", "--junit", str(junit)))
    assert rc == 1, out + err
    assert out.strip().splitlines() == [f"FAILED: target not found: no device matching {NAME!r} answered a "
                                        "search on lo"], out
    root, cases = junit_cases(junit)
    assert (root.get("tests"), root.get("errors")) == ("1", "1") and list(cases) == ["target"]


def test_an_unknown_case_is_a_usage_error(tmp_path: Path, free_udp_port: int) -> None:
    rc, out, err = finish(suite(tmp_path, free_udp_port, "--case", "DISC-999"), timeout=30)
    assert rc == 2 and "no case 'DISC-999'" in err, out + err
