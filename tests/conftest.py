"""Shared fixtures: the root-namespace egress guard, the ``netbed`` bed, free ports.

``tests/`` is put on sys.path so that test modules can ``from netbed import ...`` and
``from support import skip_or_fail``. Under CI (``CI`` set to true), a missing capability
(root, ip netns, tshark) fails the test instead of skipping it: CI has them, so those tests
must run there. Helpers shared by test modules go in uniquely named modules (support.py,
netbed.py, ...), not here: see support.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

import netbed as _nb
from support import skip_or_fail

# --- egress guard (TESTBED.md hard rule 1; ecosystem-checks.md section 2.0) ---------------

GUARD_PREFIX = "igrs_test_guard_"


def _nft(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nft", *args], input=input, capture_output=True, text=True, timeout=15, check=False)


def _root_ns_links() -> tuple[list[str], list[str]]:
    """(non-lo interface names, their IPv4 addresses) in the root namespace."""
    cp = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=15, check=True)
    names, addrs = [], []
    for link in json.loads(cp.stdout):
        if link["ifname"] == "lo" or "LOOPBACK" in link.get("flags", ()):
            continue
        names.append(link["ifname"])
        addrs += [a["local"] for a in link.get("addr_info", ()) if a.get("family") == "inet"]
    return names, addrs


def _guard_ruleset(table: str, ifaces: list[str], addrs: list[str]) -> str:
    import ipaddress

    ifs = "{ " + ", ".join(f'"{n}"' for n in ifaces) + " }"
    # Never any rule on 10.0.0.0/8 *destinations* (the resolver lives there). The source
    # rule is limited to the test range, and left out if the machine itself lives in it.
    src_rule = (
        ""
        if any(ipaddress.ip_address(a) in _nb.TEST_RANGE for a in addrs)
        else f'    oifname {ifs} ip saddr {_nb.TEST_RANGE} counter drop comment "test-src"\n'
    )
    return (
        f"table inet {table} {{\n"
        "  chain out { type filter hook output priority -300; policy accept;\n"
        f'    oifname {ifs} ip daddr 224.0.0.0/4 counter drop comment "mcast4"\n'
        f'    oifname {ifs} ip6 daddr ff00::/8 meta l4proto udp counter drop comment "mcast6"\n'
        "  }\n"
        "  chain post { type filter hook postrouting priority 300; policy accept;\n"
        f'    oifname {ifs} ip daddr 224.0.0.0/4 counter drop comment "mcast4"\n'
        f'    oifname {ifs} ip6 daddr ff00::/8 meta l4proto udp counter drop comment "mcast6"\n'
        f"{src_rule}"
        "  }\n}\n"
    )


def _guard_counts(table: str) -> dict[str, int]:
    cp = _nft("-j", "list", "table", "inet", table)
    if cp.returncode != 0:
        raise RuntimeError(f"egress guard table vanished: {cp.stderr.strip()}")
    counts: dict[str, int] = {}
    for item in json.loads(cp.stdout)["nftables"]:
        rule = item.get("rule")
        if not rule:
            continue
        packets = sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
        key = f"{rule['chain']}/{rule.get('comment', rule['handle'])}"
        counts[key] = counts.get(key, 0) + packets
    return counts


def _delete_stale_guards() -> None:
    cp = _nft("list", "tables")
    for line in cp.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].startswith(GUARD_PREFIX):
            pid = parts[2][len(GUARD_PREFIX) :]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                _nft("delete", "table", parts[1], parts[2])


@pytest.fixture(scope="session", autouse=True)
def egress_guard() -> Iterator[str | None]:
    """Drop and count multicast leaving the root namespace by a real interface; fail if any."""
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        print("\n[egress guard] not loaded (needs root, nft and ip)", file=sys.stderr)
        yield None
        return
    _delete_stale_guards()
    ifaces, addrs = _root_ns_links()
    if not ifaces:
        yield None
        return
    table = f"{GUARD_PREFIX}{os.getpid()}"
    cp = _nft("-f", "-", input=_guard_ruleset(table, ifaces, addrs))
    if cp.returncode != 0:
        pytest.exit(f"could not load the egress guard: {cp.stderr.strip()}", returncode=3)
    try:
        yield table
        counts = _guard_counts(table)
        leaked = {k: v for k, v in counts.items() if v}
        assert not leaked, (
            f"EGRESS GUARD: packets tried to leave the root namespace through {ifaces}: "
            f"{leaked} (multicast must stay on lo or inside test namespaces)"
        )
    finally:
        _nft("delete", "table", "inet", table)


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
