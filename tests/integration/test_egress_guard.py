"""The egress guard counts the suite's own packets only (issue 13, item 11): an inner pytest
session runs on a namespace host whose LAN interface plays the machine's real interface
(so the guard of tests/conftest.py loads there). Multicast that another program sends out of
that interface meanwhile fails nothing; multicast that a test of the session sends fails that
test, by name, and the session."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from netbed import NetBed

TESTS = Path(__file__).resolve().parents[1]
INNER = '''
import socket, time

def _send(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("{addr}"))
    for _ in range(count):
        try:
            s.sendto(b"leak", ("239.255.77.1", 9999))
        except OSError:  # the guard drops it: EPERM
            pass
    s.close()

def test_quiet():
    time.sleep(1.0)  # the outsider's multicast flows meanwhile

def test_that_leaks():
    _send(3)

def test_quiet_after():
    time.sleep(0.5)
'''
OUTSIDER = '''
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[1]))
print("sending", flush=True)
while True:
    s.sendto(b"another program's multicast", ("239.255.77.2", 9999))
    time.sleep(0.02)
'''


def inner_session(bed: NetBed, tmp_path: Path, *selection: str) -> tuple[Any, str]:
    lan = bed.lan("g")
    host = bed.host("h", lan)
    outsider = host.popen([sys.executable, "-c", OUTSIDER, host.addr], stdout=-1, text=True)
    assert outsider.stdout is not None and outsider.stdout.readline() == "sending\n"
    (tmp_path / "test_inner.py").write_text(INNER.format(addr=host.addr))
    env = {**os.environ, "PYTHONPATH": str(TESTS), "CI": ""}
    cp = host.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                   "--rootdir", str(tmp_path), *(f"test_inner.py::{t}" for t in selection)],
                  timeout=120, cwd=tmp_path, env=env)
    outsider.kill()
    return cp, cp.stdout + cp.stderr


@pytest.fixture
def bed(netbed: NetBed, require_cmd: Any) -> NetBed:
    require_cmd("nft", "nftables")
    return netbed


def test_only_the_suites_own_multicast_fails_and_by_name(bed: NetBed, tmp_path: Path) -> None:
    """Another program sends multicast out of the interface all along: the quiet tests pass;
    the leaking one fails at its teardown, named with its 3 datagrams, and so does the session."""
    cp, out = inner_session(bed, tmp_path, "test_quiet", "test_that_leaks", "test_quiet_after")
    assert "counting every process's packets" not in out, out  # the cgroup match works here
    assert cp.returncode == 1, out
    assert "3 passed, 2 errors" in out, out  # the leaking test's teardown, and the session's end
    assert "ERROR at teardown of test_that_leaks" in out, out
    assert "EGRESS GUARD: packets of this test session's processes (cgroup " in out, out
    assert "test_inner.py::test_that_leaks: {'out/mcast4': 3}" in out, out  # its 3 datagrams, named
    assert "test_quiet:" not in out and "test_quiet_after:" not in out, out  # the outsider's: not counted
