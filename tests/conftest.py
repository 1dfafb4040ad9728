"""Shared fixtures: the root-namespace egress guard, the ``netbed`` bed, free ports.

``tests/`` is put on sys.path so that test modules can ``from netbed import ...`` and
``from support import skip_or_fail``. Under CI (``CI`` set to true), a missing capability
(root, ip netns, tshark) fails the test instead of skipping it: CI has them, so those tests
must run there. Helpers shared by test modules go in uniquely named modules (support.py,
netbed.py, ...), not here: see support.py.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

import egress_guard as _eg
import netbed as _nb
from support import skip_or_fail

# --- egress guard (TESTBED.md hard rule 1; ecosystem-checks.md section 2.0): tests/egress_guard.py ---


@pytest.fixture(scope="session", autouse=True)
def egress_guard(request: pytest.FixtureRequest) -> Iterator[_eg.Guard | None]:
    """Drop and count multicast that the suite's processes send out of the root namespace by
    a real interface; fail the test that sent it, and the session."""

    def say(note: str) -> None:  # past pytest's capture: a session fixture's output is otherwise hidden
        with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            print(f"\n[egress guard] {note}", file=sys.stderr)

    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        say("not loaded (needs root, nft and ip)")
        yield None
        return
    _eg.delete_stale_tables()
    ifaces, addrs = _eg.root_ns_links()
    if not ifaces:
        yield None
        return
    notes: list[str] = []
    try:
        guard = _eg.Guard.load(ifaces, addrs, notes)
    except RuntimeError as exc:
        pytest.exit(str(exc), returncode=3)
    for note in notes:
        say(note)
    try:
        yield guard
        guard.check("(after the last test)")
        assert not guard.leaks, guard.message(guard.leaks)
    finally:
        guard.unload()


@pytest.fixture(autouse=True)
def egress_check(request: pytest.FixtureRequest, egress_guard: _eg.Guard | None) -> Iterator[None]:
    """After each test (and its fixtures' clean-up): did it send anything out? (One nft call.)"""
    yield
    if egress_guard is not None and (new := egress_guard.check(request.node.nodeid)):
        pytest.fail(egress_guard.message({request.node.nodeid: new}), pytrace=False)


# --- test bed and ports ------------------------------------------------------------------


@pytest.fixture
def netbed() -> Iterator[_nb.NetBed]:
    """A fresh NetBed, closed (processes killed, namespaces deleted) after the test."""
    reason = _nb.netns_unavailable_reason()
    if reason:
        skip_or_fail(f"network namespaces unavailable: {reason}")
    bed = _nb.NetBed()
    try:
        yield bed
    finally:
        bed.close()


@pytest.fixture
def require_cmd():
    """``require_cmd("tshark")``: skip (fail under CI) when a program is not installed."""

    def check(cmd: str, package: str | None = None) -> str:
        path = shutil.which(cmd)
        if path is None:
            skip_or_fail(f"{cmd} not installed (apt-get install {package or cmd})")
        return path

    return check


@pytest.fixture
def free_udp_port() -> int:
    return _nb.free_port("udp")


@pytest.fixture
def free_tcp_port() -> int:
    return _nb.free_port("tcp")


@pytest.fixture(autouse=True)
def isolated_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Identity keys and pairings of every test (and its subprocesses) in a fresh folder,
    never in the user's ~/.local/state/igrs."""
    state = tmp_path_factory.mktemp("igrs-state")
    monkeypatch.setenv("IGRS_STATE_DIR", str(state))
    return state
