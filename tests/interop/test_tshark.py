"""Wireshark's dissectors read our wire format: ISDP as SSDP (HTTPU), description as HTTP+XML.

Everything runs in the root namespace on ``lo`` only (``--interface lo``), on this test's own
UDP port, so the capture holds nothing but our traffic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from netbed import LineReader

pytestmark = pytest.mark.interop

IGRS = [sys.executable, "-m", "igrs"]


def igrs_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("IGRS_INTERFACES", None)
    return env


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path, monkeypatch):
    """Device identities go to this test's tmp dir, not ~/.local/state/igrs."""
    monkeypatch.setenv("IGRS_STATE_DIR", str(tmp_path / "igrs-state"))


LO = ["--interface", "lo"]  # never the default (every non-loopback interface) in the root ns


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 5) -> int | None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def _fields(pcap: Path, decode_as: list[str], display: str, fields: list[str]) -> list[list[str]]:
    argv = ["tshark", "-r", str(pcap)]
    for d in decode_as:
        argv += ["-d", d]
    argv += ["-Y", display, "-T", "fields", "-E", "separator=|"]
    for f in fields:
        argv += ["-e", f]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert cp.returncode == 0, f"{argv}: {cp.stderr}"
    return [line.split("|") for line in cp.stdout.splitlines() if line.strip()]


def test_tshark_dissects_isdp_and_description(tmp_path, free_udp_port, free_tcp_port, require_cmd):
    require_cmd("tshark")
    port, http_port = free_udp_port, free_tcp_port
    pcap = tmp_path / "isdp.pcapng"
    procs: list[subprocess.Popen] = []
    try:
        # Search responses go unicast between ephemeral ports: capture all UDP on lo, then
        # decode as SSDP our port and the ports our M-SEARCHes came from.
        capture_filter = f"udp or tcp port {http_port}"
        tshark = subprocess.Popen(
            ["tshark", "-i", "lo", "-f", capture_filter, "-w", str(pcap), "-a", "duration:40"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        procs.append(tshark)
        ts_err = LineReader(tshark.stderr)
        assert ts_err.wait_for(lambda ln: "Capturing on" in ln, 20), ts_err.text()

        dev_argv = ["device", "run", "--name", "Wire TV", "--type", "TV", "--json"]
        dev = subprocess.Popen(
            [*IGRS, *dev_argv, *LO, "--port", str(port), "--http-port", str(http_port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=igrs_env(),
            stdin=subprocess.DEVNULL,
        )
        procs.append(dev)
        dev_out, dev_err = LineReader(dev.stdout), LineReader(dev.stderr)
        ready = dev_out.wait_for(lambda ln: '"ready"' in ln, 20)
        assert ready, f"device not ready: {dev_out.text()} {dev_err.text()}"
        info = json.loads(ready)
        assert urlsplit(info["location"]).port == http_port, info

        found = subprocess.run(
            [*IGRS, "discover", *LO, "--port", str(port), "--timeout", "1.5", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            env=igrs_env(),
            stdin=subprocess.DEVNULL,
        )
        assert found.returncode == 0, found.stderr
        assert info["id"] in [d["id"] for d in json.loads(found.stdout)], found.stdout
        desc = subprocess.run(
            [*IGRS, "describe", info["id"], *LO, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            env=igrs_env(),
            stdin=subprocess.DEVNULL,
        )
        assert desc.returncode == 0, f"describe failed: {desc.stdout}\n{desc.stderr}"
        assert "Wire TV" in desc.stdout, desc.stdout
        assert _stop(dev) == 0, dev_err.text()  # byebye NOTIFY
        time.sleep(0.5)
        _stop(tshark, signal.SIGINT)
        assert pcap.exists() and pcap.stat().st_size > 0, ts_err.text()
    finally:
        for p in procs:
            _stop(p, signal.SIGKILL, 5)

    udp = [f"udp.port=={port},ssdp"]
    searches = _fields(pcap, udp, 'ssdp and http.request.method == "M-SEARCH"', ["udp.srcport"])
    udp += sorted({f"udp.port=={row[0]},ssdp" for row in searches if row and row[0]})
    ssdp = _fields(pcap, udp, "ssdp", ["http.request.method", "http.response.code", "http.request.uri"])
    methods = {row[0] for row in ssdp if row[0]}
    codes = {row[1] for row in ssdp if row[1]}
    assert {"NOTIFY", "M-SEARCH"} <= methods, ssdp
    assert "200" in codes, ssdp
    assert all(row[2] == "*" for row in ssdp if row[0]), ssdp  # NOTIFY * / M-SEARCH *
    nts = _fields(pcap, udp, 'ssdp and http.request.method == "NOTIFY"', ["frame.number"])
    assert nts, "no NOTIFY dissected"
    raw = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", udp[0], "-Y", "ssdp", "-V"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    assert "isdp:alive" in raw and "isdp:byebye" in raw, raw[-3000:]
    assert "Malformed" not in raw, raw[-3000:]

    tcp = [f"tcp.port=={http_port},http"]
    http = _fields(
        pcap,
        tcp,
        "http",
        ["http.request.method", "http.request.uri", "http.response.code", "http.content_type"],
    )
    assert ["M-POST", "/IGRS"] in [row[:2] for row in http], http
    responses = [row for row in http if row[2]]
    assert any(r[2] == "200" and "xml" in r[3] for r in responses), http
    xml = _fields(pcap, tcp, "xml", ["frame.number"])
    assert len(xml) >= 2, "request and response bodies should dissect as XML"
