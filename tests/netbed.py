"""netbed: a multi-host IP network on one machine, built from Linux network namespaces.

Every LAN is a bridge living in its own namespace; every host is a namespace with ``lo`` up
and one veth per LAN it joins; a router is a host on two LANs doing NAT with nftables.
Nothing is created in the root namespace, so a bed never touches the machine's real
interfaces, and beds can run in parallel. Needs root and iproute2 (``nft`` for routers).

Import it from a test as ``from netbed import NetBed`` (``tests/`` is put on ``sys.path`` by
``tests/conftest.py``); most tests take the ``netbed`` fixture instead, which skips with the
reason when namespaces are unavailable and closes the bed afterwards.

API
---
Module functions
    ``netns_unavailable_reason() -> str | None``  None when ``ip netns add`` works (tried once,
        cached), else why not ("needs root", "iproute2 not installed", the ip error).
    ``nft_unavailable_reason() -> str | None``     the same for ``nft`` (routers need it).
    ``free_port(kind="both") -> int``               a port free for UDP and/or TCP on this
        machine (random, below the ephemeral range); kind is "udp", "tcp" or "both".
    ``cleanup_stale(base="igrst") -> list[str]``   delete namespaces left by crashed runs (their
        pid is gone), killing what still runs in them; called by every new NetBed.

``NetBed(base="igrst")`` -- context manager; ``bed.name`` is ``<base>-<pid>-<n>``, the prefix of
every namespace it makes (``<bed.name>-<lan or host name>``).
    ``bed.lan(name, subnet=None) -> Lan``        bridge ``br0`` in namespace ``<bed>-<name>``;
        subnet defaults to 10.77.<k>.0/24, k = 1, 2, ... per bed.
    ``bed.host(name, lan=None, addr=None, gateway=None, ifname=None) -> Host``  namespace with
        lo up and, if ``lan`` is given, a veth into it. ``addr`` defaults to the LAN's next free
        address (.10, .11, ...); ``gateway`` is an address or a Host (its address on that LAN).
    ``host.connect(lan, addr=None, gateway=None, ifname=None) -> Iface``  join another LAN
        (two-homed hosts). The host-side interface is named ``v-<lan name>`` unless given.
    ``bed.router(name, inside, outside, inside_addr=None, outside_addr=None) -> Router``
        a host on both LANs (.1 on each by default) with ip_forward on and an nftables NAT:
        masquerade out of the outside interface, forward policy drop except
        established/related, inside->outside and port-forwarded (dnat) traffic.
        ``router.dropped_unsolicited() -> int``  packets dropped by that policy (a counter).
        ``router.forward_port(proto, port, to_addr, to_port=None)`` adds a DNAT port mapping.
    ``bed.set_loss(target, percent, direction="egress") -> str``  random packet loss on a
        Host (all its LAN interfaces), an Iface or a Lan (every attached host interface);
        direction "egress" (packets the host sends), "ingress" or "both"; percent 0 removes it.
        Uses ``tc netem`` when the kernel has it, otherwise an nftables
        ``numgen random`` drop rule in the host's namespace (same effect for IP traffic;
        ARP is spared). Returns "netem" or "nft"; raises ``LossUnavailable`` (turn it into a
        skip) when neither works.
    ``bed.close()`` -- SIGTERM then SIGKILL to the process group of every process started,
        kill anything left inside the bed's namespaces, delete them. Idempotent; also run
        at interpreter exit for beds left open.

``Host``: ``name``, ``ns`` (namespace name), ``ifaces`` (dict LAN name -> Iface), ``addr``
    (address on the first LAN), ``addr_on(lan)``, ``iface_on(lan)``,
    ``exec_argv(argv)`` (``["ip", "netns", "exec", ns, *argv]``),
    ``popen(argv, **kw) -> subprocess.Popen`` (own session/process group, tracked for close),
    ``run(argv, timeout=10, check=False, **kw) -> subprocess.CompletedProcess`` (text, captured).
``Iface``: ``host``, ``lan``, ``name``, ``addr``, ``prefixlen``, ``port`` (bridge-side name).
``Lan``: ``name``, ``ns``, ``subnet`` (ipaddress.IPv4Network), ``ifaces``.

``wait_until(predicate, timeout, interval=0.05)`` -- poll; the truthy value or None.
``namespaces_with_prefix(prefix) -> list[str]`` -- for leak checks.
``LineReader(stream)`` -- reads a process's text stream in a thread;
    ``wait_for(predicate, timeout) -> line | None``, ``json_objects()``, ``lines``, ``text()``.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

DEFAULT_BASE = "igrst"
TEST_RANGE = ipaddress.ip_network("10.77.0.0/16")
_IP_TIMEOUT = 15.0

__all__ = [
    "Host",
    "Iface",
    "Lan",
    "LineReader",
    "LossUnavailable",
    "NetBed",
    "NetBedError",
    "Router",
    "cleanup_stale",
    "free_port",
    "link_local",
    "namespaces_with_prefix",
    "netns_unavailable_reason",
    "nft_unavailable_reason",
    "wait_until",
]


class NetBedError(RuntimeError):
    """A command building or tearing down the bed failed."""


class LossUnavailable(NetBedError):
    """Neither tc netem nor nftables can emulate packet loss here (skip the test)."""


# --------------------------------------------------------------------------------------
# helpers


def _run(
    argv: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = _IP_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    try:
        cp = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise NetBedError(f"{argv[0]}: not installed") from exc
    if check and cp.returncode != 0:
        raise NetBedError(f"{' '.join(argv)} failed ({cp.returncode}): {(cp.stderr or cp.stdout).strip()}")
    return cp


_reason_cache: dict[str, str | None] = {}


def netns_unavailable_reason() -> str | None:
    """None if this process may create network namespaces, else a human-readable reason."""
    if "netns" not in _reason_cache:
        _reason_cache["netns"] = _probe_netns()
    return _reason_cache["netns"]


def _probe_netns() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') not installed"
    name = f"{DEFAULT_BASE}-{os.getpid()}-probe"
    try:
        cp = _run(["ip", "netns", "add", name], check=False)
        if cp.returncode != 0:
            return f"ip netns add failed: {cp.stderr.strip()}"
        cp = _run(["ip", "-n", name, "link", "set", "lo", "up"], check=False)
        if cp.returncode != 0:
            return f"ip link in a namespace failed: {cp.stderr.strip()}"
    except (NetBedError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    finally:
        _run(["ip", "netns", "del", name], check=False)
    return None


def nft_unavailable_reason() -> str | None:
    """None if nftables works inside a namespace, else why not."""
    if "nft" not in _reason_cache:
        reason = netns_unavailable_reason()
        if reason is None and shutil.which("nft") is None:
            reason = "nftables ('nft') not installed"
        _reason_cache["nft"] = reason
    return _reason_cache["nft"]


def free_port(kind: str = "both") -> int:
    """A port that is free now for UDP and/or TCP (random, 20000-32000)."""
    kinds = {
        "udp": (socket.SOCK_DGRAM,),
        "tcp": (socket.SOCK_STREAM,),
        "both": (socket.SOCK_DGRAM, socket.SOCK_STREAM),
    }[kind]
    for _ in range(200):
        port = random.randrange(20000, 32000)
        try:
            for typ in kinds:
                with socket.socket(socket.AF_INET, typ) as s:
                    s.bind(("0.0.0.0", port))
        except OSError:
            continue
        return port
    raise NetBedError("no free port found")


def _pid_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _kill_ns_pids(ns: str) -> None:
    cp = _run(["ip", "netns", "pids", ns], check=False)
    for tok in cp.stdout.split():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(tok), signal.SIGKILL)


def cleanup_stale(base: str = DEFAULT_BASE) -> list[str]:
    """Delete namespaces named ``<base>-<pid>-...`` whose creating process is gone."""
    if shutil.which("ip") is None:
        return []
    cp = _run(["ip", "netns", "list"], check=False)
    pattern = re.compile(rf"^{re.escape(base)}-(\d+)-\S+")
    removed = []
    for line in cp.stdout.splitlines():
        m = pattern.match(line.strip())
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        ns = m.group(0)
        _kill_ns_pids(ns)
        _run(["ip", "netns", "del", ns], check=False)
        removed.append(ns)
    return removed


class LineReader:
    """Collects the lines of a text stream in a background thread."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self.closed = False
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        try:
            for line in stream:
                line = line.rstrip("\n")
                with self._lock:
                    self.lines.append(line)
                self._q.put(line)
        except (ValueError, OSError):
            pass
        finally:
            self.closed = True
            self._q.put(None)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str | None:
        """First *new* line (not yet consumed by wait_for) satisfying predicate, or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:  # EOF
                self._q.put(None)
                return None
            if predicate(line):
                return line

    def json_objects(self) -> list[Any]:
        out = []
        with self._lock:
            lines = list(self.lines)
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def join(self, timeout: float = 2.0) -> None:
        self._thread.join(timeout)


# --------------------------------------------------------------------------------------
# topology objects


class Lan:
    def __init__(self, bed: NetBed, name: str, ns: str, subnet: ipaddress.IPv4Network) -> None:
        self.bed, self.name, self.ns, self.subnet = bed, name, ns, subnet
        self.bridge = "br0"
        self.ifaces: list[Iface] = []
        self._ports = itertools.count()
        self._next_host = 10

    def next_addr(self) -> str:
        used = {i.addr for i in self.ifaces}
        hosts = list(self.subnet.hosts())
        while self._next_host <= len(hosts):
            addr = str(hosts[self._next_host - 1])
            self._next_host += 1
            if addr not in used:
                return addr
        raise NetBedError(f"LAN {self.name}: out of addresses")

    def __repr__(self) -> str:
        return f"Lan({self.name!r}, {self.subnet})"


class Iface:
    def __init__(self, host: Host, lan: Lan, name: str, addr: str, prefixlen: int, port: str) -> None:
        self.host, self.lan, self.name, self.addr = host, lan, name, addr
        self.prefixlen, self.port = prefixlen, port

    def __repr__(self) -> str:
        return f"Iface({self.host.name}:{self.name} {self.addr}/{self.prefixlen} on {self.lan.name})"


class Host:
    def __init__(self, bed: NetBed, name: str, ns: str) -> None:
        self.bed, self.name, self.ns = bed, name, ns
        self.ifaces: dict[str, Iface] = {}

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {[i.addr for i in self.ifaces.values()]})"

    @property
    def addr(self) -> str:
        if not self.ifaces:
            raise NetBedError(f"host {self.name} has no LAN interface")
        return next(iter(self.ifaces.values())).addr

    def iface_on(self, lan: Lan | str) -> Iface:
        return self.ifaces[lan if isinstance(lan, str) else lan.name]

    def addr_on(self, lan: Lan | str) -> str:
        return self.iface_on(lan).addr

    def connect(
        self, lan: Lan, addr: str | None = None, gateway: str | Host | None = None, ifname: str | None = None
    ) -> Iface:
        if lan.name in self.ifaces:
            raise NetBedError(f"{self.name} is already on {lan.name}")
        if addr is None:
            addr = lan.next_addr()
        prefixlen = lan.subnet.prefixlen
        if "/" in addr:
            addr, plen = addr.split("/", 1)
            prefixlen = int(plen)
        if ipaddress.ip_address(addr) not in TEST_RANGE:
            raise NetBedError(f"{addr}: test hosts must use 10.77.0.0/16")
        if ifname is None:
            ifname = f"v-{lan.name}"[:15]
            if any(i.name == ifname for i in self.ifaces.values()):
                ifname = f"v{len(self.ifaces)}-{lan.name}"[:15]
        port = f"p{next(lan._ports)}-{self.name}"[:15]
        h, ln = self.ns, lan.ns
        _run(["ip", "-n", h, "link", "add", ifname, "type", "veth", "peer", "name", port, "netns", ln])
        _run(["ip", "-n", ln, "link", "set", port, "master", lan.bridge, "up"])
        _run(["ip", "-n", h, "addr", "add", f"{addr}/{prefixlen}", "dev", ifname])
        _run(["ip", "-n", h, "link", "set", ifname, "up"])
        iface = Iface(self, lan, ifname, addr, prefixlen, port)
        self.ifaces[lan.name] = iface
        lan.ifaces.append(iface)
        if gateway is not None:
            gw = gateway.addr_on(lan) if isinstance(gateway, Host) else gateway
            _run(["ip", "-n", h, "route", "replace", "default", "via", gw])
        return iface

    # --- processes -------------------------------------------------------------------
    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *[str(a) for a in argv]]

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start argv in this host's namespace, in its own process group (tracked)."""
        kw.setdefault("start_new_session", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self.exec_argv(argv), **kw)
        self.bed._procs.append(proc)
        return proc

    def run(
        self, argv: Sequence[str], timeout: float = 10.0, check: bool = False, **kw: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run argv to completion in this host's namespace (text output captured)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self.exec_argv(argv), timeout=timeout, check=check, **kw)

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(self.exec_argv(["sh", "-c", script]), check=check)


class Router(Host):
    def __init__(self, bed: NetBed, name: str, ns: str) -> None:
        super().__init__(bed, name, ns)
        self.inside: Iface | None = None
        self.outside: Iface | None = None

    def _setup_nat(self) -> None:
        assert self.inside is not None and self.outside is not None
        reason = nft_unavailable_reason()
        if reason:
            raise NetBedError(f"router {self.name}: {reason}")
        self.sh("echo 1 > /proc/sys/net/ipv4/ip_forward")
        inn, out = self.inside.name, self.outside.name
        rules = f"""
table ip netbed_nat {{
  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
    oifname "{out}" masquerade; }}
}}
table inet netbed_filter {{
  counter unsolicited {{ }}
  chain forward {{ type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "{inn}" oifname "{out}" accept
    ct status dnat accept
    counter name "unsolicited" drop
  }}
}}
"""
        _run(self.exec_argv(["nft", "-f", "-"]), input=rules)

    def dropped_unsolicited(self) -> int:
        """Packets the NAT's forward policy dropped (unsolicited outside->inside etc.)."""
        cp = _run(self.exec_argv(["nft", "-j", "list", "counter", "inet", "netbed_filter", "unsolicited"]))
        for item in json.loads(cp.stdout)["nftables"]:
            if "counter" in item:
                return int(item["counter"]["packets"])
        raise NetBedError("counter not found")

    def forward_port(self, proto: str, port: int, to_addr: str, to_port: int | None = None) -> None:
        """Map outside ``proto``/``port`` on the router to ``to_addr:to_port`` inside."""
        assert self.outside is not None and proto in ("tcp", "udp")
        _run(
            self.exec_argv(
                [
                    "nft",
                    "add",
                    "rule",
                    "ip",
                    "netbed_nat",
                    "prerouting",
                    "iifname",
                    self.outside.name,
                    proto,
                    "dport",
                    str(port),
                    "dnat",
                    "to",
                    f"{to_addr}:{to_port or port}",
                ]
            )
        )


# --------------------------------------------------------------------------------------
# the bed

_open_beds: weakref.WeakSet[NetBed] = weakref.WeakSet()
_bed_counter = itertools.count()


@atexit.register
def _close_all() -> None:
    for bed in list(_open_beds):
        with contextlib.suppress(Exception):
            bed.close()


class NetBed:
    def __init__(self, base: str = DEFAULT_BASE) -> None:
        reason = netns_unavailable_reason()
        if reason:
            raise NetBedError(f"network namespaces unavailable: {reason}")
        cleanup_stale(base)
        self.name = f"{base}-{os.getpid()}-{next(_bed_counter)}"
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self.lans: dict[str, Lan] = {}
        self.hosts: dict[str, Host] = {}
        self._subnets = itertools.count(1)
        self._loss: dict[str, dict[str, tuple[int, str]]] = {}  # host ns -> ifname -> (pct, dir)
        self._netem: bool | None = None
        self._closed = False
        _open_beds.add(self)

    def __enter__(self) -> NetBed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NetBed({self.name!r}, lans={list(self.lans)}, hosts={list(self.hosts)})"

    def _new_ns(self, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
            raise NetBedError(f"bad name {name!r} (letters, digits, _ . - only)")
        if name in self.lans or name in self.hosts:
            raise NetBedError(f"name {name!r} already used in this bed")
        ns = f"{self.name}-{name}"
        _run(["ip", "netns", "add", ns])
        self._namespaces.append(ns)
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def lan(self, name: str, subnet: str | None = None) -> Lan:
        ns = self._new_ns(name)
        net = ipaddress.ip_network(subnet or f"10.77.{next(self._subnets)}.0/24")
        if not isinstance(net, ipaddress.IPv4Network) or not net.subnet_of(TEST_RANGE):
            raise NetBedError(f"{net}: LAN subnets must be inside 10.77.0.0/16")
        # no IPv6 on bridge ports (no stray MLD/RS noise from the switch itself)
        _run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; "
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
            ],
            check=False,
        )
        _run(
            [
                "ip",
                "-n",
                ns,
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
                "forward_delay",
                "0",
                "stp_state",
                "0",
            ]
        )
        _run(["ip", "-n", ns, "link", "set", "br0", "up"])
        lan = Lan(self, name, ns, net)
        self.lans[name] = lan
        return lan

    def _make_host(self, cls: type[Host], name: str) -> Host:
        ns = self._new_ns(name)
        # IPv6 link-local usable at once (no DAD wait)
        _run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "sh",
                "-c",
                "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad; "
                "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad",
            ],
            check=False,
        )
        host = cls(self, name, ns)
        self.hosts[name] = host
        return host

    def host(
        self,
        name: str,
        lan: Lan | None = None,
        addr: str | None = None,
        gateway: str | Host | None = None,
        ifname: str | None = None,
    ) -> Host:
        host = self._make_host(Host, name)
        if lan is not None:
            host.connect(lan, addr=addr, gateway=gateway, ifname=ifname)
        return host

    def router(
        self,
        name: str,
        inside: Lan,
        outside: Lan,
        inside_addr: str | None = None,
        outside_addr: str | None = None,
    ) -> Router:
        router = self._make_host(Router, name)
        assert isinstance(router, Router)
        router.inside = router.connect(inside, addr=inside_addr or str(inside.subnet.network_address + 1))
        router.outside = router.connect(outside, addr=outside_addr or str(outside.subnet.network_address + 1))
        router._setup_nat()
        return router

    # --- impairment ------------------------------------------------------------------
    def _netem_available(self, iface: Iface) -> bool:
        if self._netem is None:
            cp = _run(
                iface.host.exec_argv(
                    ["tc", "qdisc", "replace", "dev", iface.name, "root", "netem", "loss", "0%"]
                ),
                check=False,
            )
            self._netem = cp.returncode == 0
            if self._netem:
                _run(iface.host.exec_argv(["tc", "qdisc", "del", "dev", iface.name, "root"]), check=False)
        return self._netem

    def set_loss(self, target: Host | Iface | Lan, percent: float, direction: str = "egress") -> str:
        """Random loss on target's interfaces; returns "netem" or "nft" (see module doc)."""
        if direction not in ("egress", "ingress", "both"):
            raise ValueError(direction)
        if not 0 <= percent <= 100:
            raise ValueError(percent)
        if isinstance(target, Iface):
            ifaces = [target]
        elif isinstance(target, Host):
            ifaces = list(target.ifaces.values())
        else:
            ifaces = list(target.ifaces)
        if not ifaces:
            raise NetBedError(f"{target!r}: no interface")
        pct = round(percent)
        if shutil.which("tc") and self._netem_available(ifaces[0]):
            for i in ifaces:
                legs = []
                if direction in ("egress", "both"):
                    legs.append((i.host.ns, i.name))
                if direction in ("ingress", "both"):
                    legs.append((i.lan.ns, i.port))
                for ns, dev in legs:
                    if pct:
                        _run(
                            [
                                "ip",
                                "netns",
                                "exec",
                                ns,
                                "tc",
                                "qdisc",
                                "replace",
                                "dev",
                                dev,
                                "root",
                                "netem",
                                "loss",
                                f"{percent}%",
                            ]
                        )
                    else:
                        _run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"], check=False)
            return "netem"
        if nft_unavailable_reason():
            raise LossUnavailable(f"no tc netem in this kernel and no nftables: {nft_unavailable_reason()}")
        touched = set()
        for i in ifaces:
            self._loss.setdefault(i.host.ns, {})[i.name] = (pct, direction)
            touched.add(i.host)
        for host in touched:
            self._apply_nft_loss(host)
        return "nft"

    def _apply_nft_loss(self, host: Host) -> None:
        out_rules, in_rules = [], []
        for ifname, (pct, direction) in self._loss.get(host.ns, {}).items():
            if not pct:
                continue
            rule = "counter drop" if pct >= 100 else f"numgen random mod 100 < {pct} counter drop"
            if direction in ("egress", "both"):
                out_rules.append(f'oifname "{ifname}" {rule}')
            if direction in ("ingress", "both"):
                in_rules.append(f'iifname "{ifname}" {rule}')
        script = "table inet netbed_loss { }\ndelete table inet netbed_loss\n"
        if out_rules or in_rules:
            script += (
                "table inet netbed_loss {\n"
                "  chain out { type filter hook postrouting priority -300; policy accept;\n"
                + "".join(f"    {r}\n" for r in out_rules)
                + "  }\n"
                "  chain in { type filter hook prerouting priority -300; policy accept;\n"
                + "".join(f"    {r}\n" for r in in_rules)
                + "  }\n}\n"
            )
        _run(host.exec_argv(["nft", "-f", "-"]), input=script)

    # --- teardown --------------------------------------------------------------------
    def close(self, grace: float = 2.0) -> None:
        """Stop every process started, then delete every namespace. Never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            live = [p for p in self._procs if p.poll() is None]
            for p in live:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for p in live:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(max(0.0, deadline - time.monotonic()))
            for p in self._procs:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)  # the whole group, stragglers included
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(2.0)
                for stream in (p.stdin, p.stdout, p.stderr):
                    if stream is not None:
                        with contextlib.suppress(Exception):
                            stream.close()
        finally:
            for ns in reversed(self._namespaces):
                with contextlib.suppress(Exception):
                    _kill_ns_pids(ns)
                with contextlib.suppress(Exception):
                    _run(["ip", "netns", "del", ns], check=False)
            self._namespaces.clear()
            _open_beds.discard(self)

    @property
    def namespaces(self) -> list[str]:
        return list(self._namespaces)


def namespaces_with_prefix(prefix: str) -> list[str]:
    """Names from ``ip netns list`` that start with prefix (for leak checks)."""
    cp = _run(["ip", "netns", "list"], check=False)
    return [ln.split()[0] for ln in cp.stdout.splitlines() if ln.startswith(prefix)]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll predicate until it returns a truthy value (returned) or timeout (returns None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def link_local(host: Host, lan: Lan) -> str:
    """Bring the host's interface on ``lan`` up without duplicate address detection; return
    its fe80:: address (IPv6 tests in a bed)."""
    ifname = host.iface_on(lan).name
    for key in ("all", "default", ifname):
        host.run(["sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0"])
    host.run(["ip", "link", "set", ifname, "down"])
    host.run(["ip", "link", "set", ifname, "up"])

    def address() -> str | None:
        m = re.search(r"inet6 (fe80::[0-9a-f:]+)/64 scope link\s*$",
                      host.run(["ip", "-6", "addr", "show", "dev", ifname]).stdout, re.M)
        return m.group(1) if m else None

    found = wait_until(address, timeout=5)
    assert found, f"no link-local address on {host.name}"
    return found
