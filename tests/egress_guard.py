"""The root-namespace egress guard (TESTBED.md hard rule 1; ecosystem-checks.md §2.0): an
nftables table that drops and counts multicast (and test-range sources) leaving the root
namespace through a real interface.

It counts only what the suite's own processes send. The test session moves itself into a
cgroup v2 of its own (``igrs-tests-<pid>``, under its current cgroup; every process it starts
inherits it) and the rules match ``socket cgroupv2 level L "<that cgroup>"``, so another
program's multicast on a shared machine neither fails the suite nor is touched by it. Which
level the kernel sees (cgroup namespaces hide the upper ones) is found by a probe datagram
sent to loopback. Where that does not work (no cgroup v2, no permission) the guard falls back
to counting every packet of the machine, and says so.

The counters are read after each test (one ``nft`` call, a few ms), so a leak fails the test
that caused it (or a process it left running) by name, and the session names them all.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from netbed import TEST_RANGE

GUARD_PREFIX = "igrs_test_guard_"
CGROUP_PREFIX = "igrs-tests-"
NFT_CGROUP_BASE = Path("/sys/fs/cgroup")  # nft resolves "socket cgroupv2" paths under this directory
MAX_LEVEL = 12  # cgroup depths the probe tries


def nft(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nft", *args], input=input, capture_output=True, text=True, timeout=15, check=False)


def root_ns_links() -> tuple[list[str], list[str]]:
    """(non-lo interface names, their IPv4 addresses) in this network namespace."""
    cp = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=15, check=True)
    names, addrs = [], []
    for link in json.loads(cp.stdout):
        if link["ifname"] == "lo" or "LOOPBACK" in link.get("flags", ()):
            continue
        names.append(link["ifname"])
        addrs += [a["local"] for a in link.get("addr_info", ()) if a.get("family") == "inet"]
    return names, addrs


# --- the session's own cgroup -----------------------------------------------------------------------
def cgroup2_mount() -> Path | None:
    """Where cgroup2 is mounted. In a mount namespace of its own without one (``ip netns exec``
    mounts a fresh /sys), the session mounts it there: the mount is seen by that namespace only."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            return Path(left.split()[4])
    if _own_mount_namespace():
        cp = subprocess.run(["mount", "-t", "cgroup2", "cgroup2", str(NFT_CGROUP_BASE)], capture_output=True,
                            text=True, timeout=15, check=False)
        if cp.returncode == 0:
            return NFT_CGROUP_BASE
    return None


def _own_mount_namespace() -> bool:
    """Whether this process has a mount namespace its parent does not share (``ip netns exec``)."""
    try:
        return os.readlink("/proc/self/ns/mnt") != os.readlink(f"/proc/{os.getppid()}/ns/mnt")
    except OSError:
        return False


def own_cgroup() -> str:
    """This process's cgroup v2 path ("/..." relative to the cgroup2 mount)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise OSError("no cgroup v2 membership")


@dataclass
class SessionCgroup:
    """The test session in a cgroup of its own; ``leave()`` puts it back and removes it."""

    path: Path  # absolute, under the cgroup2 mount
    home: Path  # where the session was
    nft_path: str  # ``path`` as nft names it (relative to NFT_CGROUP_BASE)

    @classmethod
    def enter(cls) -> SessionCgroup:
        mount = cgroup2_mount()
        if mount is None:
            raise OSError("no cgroup2 file system mounted")
        home = mount / own_cgroup().lstrip("/")
        remove_stale_cgroups(home)
        path = home / f"{CGROUP_PREFIX}{os.getpid()}"
        path.mkdir(exist_ok=True)
        try:
            (path / "cgroup.procs").write_text(str(os.getpid()))
            nft_path = str(path.relative_to(NFT_CGROUP_BASE))
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                path.rmdir()
            raise
        return cls(path, home, nft_path)

    def leave(self) -> None:
        with contextlib.suppress(OSError):
            (self.home / "cgroup.procs").write_text(str(os.getpid()))
        with contextlib.suppress(OSError):  # fails while a process the suite started still runs
            self.path.rmdir()


def remove_stale_cgroups(home: Path) -> None:
    for stale in home.glob(f"{CGROUP_PREFIX}*"):
        pid = stale.name[len(CGROUP_PREFIX):]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            with contextlib.suppress(OSError):
                stale.rmdir()


# --- the nftables table -----------------------------------------------------------------------------
def ruleset(table: str, ifaces: list[str], addrs: list[str], cgroup: tuple[int, str] | None = None,
            probe_port: int = 0) -> str:
    """The guard table. ``cgroup`` (level, nft path) restricts every counted rule to the
    suite's packets (then in the output hook only: the kernel matches a socket's cgroup there,
    not in postrouting, and every packet of a local process passes it); ``probe_port`` adds
    one counting rule per cgroup level for loopback datagrams to that port (to learn the level)."""
    ifs = "{ " + ", ".join(f'"{n}"' for n in ifaces) + " }"
    ours = f'socket cgroupv2 level {cgroup[0]} "{cgroup[1]}" ' if cgroup else ""
    # Never any rule on 10.0.0.0/8 *destinations* (the resolver lives there). The source
    # rule is limited to the test range, and left out if the machine itself lives in it.
    src_rule = (
        ""
        if any(ipaddress.ip_address(a) in TEST_RANGE for a in addrs)
        else f'    oifname {ifs} ip saddr {TEST_RANGE} {ours}counter drop comment "test-src"\n'
    )
    rules = (f'    oifname {ifs} ip daddr 224.0.0.0/4 {ours}counter drop comment "mcast4"\n'
             f'    oifname {ifs} ip6 daddr ff00::/8 meta l4proto udp {ours}counter drop comment "mcast6"\n')
    probes = "".join(
        f'    oifname "lo" udp dport {probe_port} socket cgroupv2 level {level} "{cgroup[1]}" '
        f'counter comment "probe-{level}"\n' for level in range(1, MAX_LEVEL + 1)
    ) if cgroup and probe_port else ""
    out = f"  chain out {{ type filter hook output priority -300; policy accept;\n{rules}{probes}"
    if cgroup:
        return f"table inet {table} {{\n{out}{src_rule}  }}\n}}\n"
    return (
        f"table inet {table} {{\n{out}  }}\n"
        f"  chain post {{ type filter hook postrouting priority 300; policy accept;\n{rules}{src_rule}  }}\n"
        "}\n"
    )


def counts(table: str) -> dict[str, int]:
    cp = nft("-j", "list", "table", "inet", table)
    if cp.returncode != 0:
        raise RuntimeError(f"egress guard table vanished: {cp.stderr.strip()}")
    out: dict[str, int] = {}
    for item in json.loads(cp.stdout)["nftables"]:
        rule = item.get("rule")
        if not rule:
            continue
        packets = sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
        key = f"{rule['chain']}/{rule.get('comment', rule['handle'])}"
        out[key] = out.get(key, 0) + packets
    return out


def delete_stale_tables() -> None:
    cp = nft("list", "tables")
    for line in cp.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].startswith(GUARD_PREFIX):
            pid = parts[2][len(GUARD_PREFIX):]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                nft("delete", "table", parts[1], parts[2])


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Guard:
    table: str
    ifaces: list[str]
    scope: str  # what is counted, for the messages
    cgroup: SessionCgroup | None = None
    seen: dict[str, int] = field(default_factory=dict)  # counters after the last check
    leaks: dict[str, dict[str, int]] = field(default_factory=dict)  # test id -> new packets

    @classmethod
    def load(cls, ifaces: list[str], addrs: list[str], note: list[str]) -> Guard:
        """The guard for the suite's own packets if the cgroup match works here, else for
        every packet of the machine (``note`` says why)."""
        table = f"{GUARD_PREFIX}{os.getpid()}"
        try:
            cgroup = SessionCgroup.enter()
        except OSError as exc:
            note.append(f"counting every process's packets: no cgroup of its own for the session ({exc})")
        else:
            level = _probe_level(table, ifaces, addrs, cgroup)
            rules = ruleset(table, ifaces, addrs, (level, cgroup.nft_path)) if level is not None else ""
            if rules and nft("-f", "-", input=rules).returncode == 0:
                return cls(table, ifaces, f"this test session's processes (cgroup {cgroup.path})", cgroup)
            note.append("counting every process's packets: nftables does not match the session's cgroup here")
            cgroup.leave()
        cp = nft("-f", "-", input=ruleset(table, ifaces, addrs))
        if cp.returncode != 0:
            raise RuntimeError(f"could not load the egress guard: {cp.stderr.strip()}")
        return cls(table, ifaces, "every process of this machine")

    def check(self, test: str) -> dict[str, int]:
        """New packets since the last check, recorded against ``test``."""
        now = counts(self.table)
        new = {k: v - self.seen.get(k, 0) for k, v in now.items() if v > self.seen.get(k, 0)}
        self.seen = now
        if new:
            self.leaks[test] = new
        return new

    def message(self, leaks: dict[str, dict[str, int]]) -> str:
        where = "; ".join(f"{test}: {new}" for test, new in leaks.items())
        return (f"EGRESS GUARD: packets of {self.scope} tried to leave through {self.ifaces} "
                f"(multicast must stay on lo or inside test namespaces) — {where}")

    def unload(self) -> None:
        nft("delete", "table", "inet", self.table)
        if self.cgroup is not None:
            self.cgroup.leave()


def _probe_level(table: str, ifaces: list[str], addrs: list[str], cgroup: SessionCgroup) -> int | None:
    """The cgroup level at which the kernel sees the session's cgroup: a datagram to loopback
    is counted by the probe rule of that level only."""
    port = _free_udp_port()
    if nft("-f", "-", input=ruleset(table, ifaces, addrs, (1, cgroup.nft_path), port)).returncode != 0:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"igrs egress guard probe", ("127.0.0.1", port))
        for _ in range(20):
            hits = [level for level in range(1, MAX_LEVEL + 1) if counts(table).get(f"out/probe-{level}")]
            if hits:
                return hits[0]
            time.sleep(0.01)
        return None
    finally:
        nft("delete", "table", "inet", table)
