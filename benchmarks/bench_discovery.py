#!/usr/bin/env python3
"""Discovery benchmarks: codec throughput, search latency on loopback, process footprint.

Every figure is a ratio against a baseline measured in the same run, printed with the
absolute numbers. Nothing here asserts a time: goals are reported as met / not met.

    python benchmarks/bench_discovery.py                 # everything (about 1-2 minutes)
    python benchmarks/bench_discovery.py --quick         # fewer repeats (about 30 s)
    python benchmarks/bench_discovery.py --only codec    # codec | latency | footprint | registry

Multicast stays on loopback: devices and control points use ``interfaces=["lo"]`` and
a random free UDP port; the SSDP baseline sets ``IP_MULTICAST_IF`` to 127.0.0.1.

Machine-readable results: one ``BENCH-RESULT {json}`` line per figure on stdout (the
protocol ``benchmarks/run`` collects; see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _result import BenchResult, say

BENCH = "discovery"
HERE = Path(__file__).resolve().parent
LO = ["lo"]
QUICK = os.environ.get("IGRS_BENCH_QUICK", "") not in ("", "0")


# --- result protocol --------------------------------------------------------------------------


@dataclass
class Result(BenchResult):
    bench: str = BENCH


def fmt_rate(v: float) -> str:
    return f"{v / 1000:,.1f} k/s" if v >= 1000 else f"{v:,.0f} /s"


# --- a. codec throughput -------------------------------------------------------------------------

N_DISTINCT = 1024  # distinct packets per kind: more than every cache keyed by packet, device or URL

ROOMS = ["Living room", "Kitchen", "Bedroom", "Study", "客厅", "卧室", "Hall", "Garage"]
KINDS = ["TV", "STB", "MediaServer", "PC", "MobilePhone", "AudioRenderer"]
# The four discovery datagrams, in the order they are reported: (ISDP corpus key, SSDP corpus key, label)
DATAGRAMS = [
    ("online", "alive", "alive NOTIFY"),
    ("offline", "byebye", "byebye NOTIFY"),
    ("search", "msearch", "M-SEARCH"),
    ("response", "response", "search response 200 OK"),
]


def igrs_corpus(seed: int = 1) -> dict[str, list[Any]]:
    """Realistic ISDP datagrams of each kind, every one from a different device (or searcher),
    and the messages behind them: ``<kind>_msgs`` and ``<kind>_bytes``."""
    from igrs.wire import isdp
    from igrs.wire.ids import DeviceId, DeviceType

    rng = random.Random(seed)
    host = "224.0.0.110:3880"

    def new_id() -> DeviceId:
        return DeviceId(uuid.UUID(int=rng.getrandbits(128), version=4))

    msgs: dict[str, list[Any]] = {"online": [], "offline": [], "search": [], "response": []}
    for i in range(N_DISTINCT):
        did = new_id()
        dtype = DeviceType(rng.choice(KINDS), rng.randint(1, 2))
        location = f"http://192.168.{rng.randint(0, 3)}.{rng.randint(2, 254)}:{rng.randint(1024, 65000)}/IGRS"
        name = f"{rng.choice(ROOMS)} {dtype.name} {i}"
        target = (
            isdp.SearchTarget.all()
            if rng.random() < 0.75
            else isdp.SearchTarget("device_type", device_type=DeviceType(rng.choice(KINDS), 1))
        )
        msgs["online"].append(isdp.DeviceOnlineAdvertisement(did, dtype, location, 1800, name))
        msgs["offline"].append(isdp.DeviceOfflineAdvertisement(did, dtype))
        msgs["search"].append(isdp.SearchDeviceRequest(target, rng.randint(1, 3), new_id()))
        msgs["response"].append(
            isdp.SearchDeviceResponse(did, dtype, location, 1800, target, name, new_id())
        )
    out: dict[str, list[Any]] = {}
    for kind, items in msgs.items():
        out[f"{kind}_msgs"] = items
        out[f"{kind}_bytes"] = [isdp.encode(m, host="" if kind == "response" else host) for m in items]
    return out


def ssdp_corpus(seed: int = 2) -> dict[str, list[Any]]:
    """The equivalent UPnP SSDP packets (UDA 2.0 headers), each from a different device or
    control point: NOTIFY ssdp:alive / ssdp:byebye, M-SEARCH and the unicast search response."""
    rng = random.Random(seed)
    out: dict[str, list[Any]] = {f"{kind}_bytes": [] for kind in ("alive", "byebye", "msearch", "response")}
    notify_headers = []

    def packet(start: str, headers: dict[str, str]) -> bytes:
        return (start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()

    for i in range(N_DISTINCT):
        udn = f"uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        nt = f"urn:schemas-upnp-org:device:{rng.choice(['MediaRenderer', 'MediaServer'])}:1"
        ip = f"192.168.{rng.randint(0, 3)}.{rng.randint(2, 254)}"
        loc = f"http://{ip}:{rng.randint(1024, 65000)}/description.xml"
        server = "Linux/5.10 UPnP/1.0 igrs-bench/1.0"
        alive = {
            "HOST": "239.255.255.250:1900",
            "CACHE-CONTROL": "max-age=1800",
            "LOCATION": loc,
            "NT": nt,
            "NTS": "ssdp:alive",
            "SERVER": server,
            "USN": f"{udn}::{nt}",
            "BOOTID.UPNP.ORG": "1",
            "CONFIGID.UPNP.ORG": "1",
            "X-FRIENDLY-NAME": f"{rng.choice(ROOMS)} {i}",
        }
        notify_headers.append(alive)
        out["alive_bytes"].append(packet("NOTIFY * HTTP/1.1", alive))
        byebye = {"HOST": "239.255.255.250:1900", "NT": nt, "NTS": "ssdp:byebye", "USN": f"{udn}::{nt}",
                  "BOOTID.UPNP.ORG": "1", "CONFIGID.UPNP.ORG": "1"}
        out["byebye_bytes"].append(packet("NOTIFY * HTTP/1.1", byebye))
        st = "ssdp:all" if rng.random() < 0.75 else nt
        msearch = {"HOST": "239.255.255.250:1900", "MAN": '"ssdp:discover"', "MX": str(rng.randint(1, 3)),
                   "ST": st, "USER-AGENT": server, "CPFN.UPNP.ORG": f"{rng.choice(ROOMS)} {i}",
                   "CPUUID.UPNP.ORG": f"uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"}
        out["msearch_bytes"].append(packet("M-SEARCH * HTTP/1.1", msearch))
        response = {"CACHE-CONTROL": "max-age=1800", "EXT": "", "LOCATION": loc, "SERVER": server,
                    "ST": st, "USN": f"{udn}::{nt}", "BOOTID.UPNP.ORG": "1", "CONFIGID.UPNP.ORG": "1"}
        out["response_bytes"].append(packet("HTTP/1.1 200 OK", response))
    out["notify_headers"] = notify_headers
    return out


def lower_names(datagram: bytes) -> bytes:
    """The datagram with its header names in lower case (values untouched)."""
    start, *lines = datagram[:-4].split(b"\r\n")
    lowered = (n.lower() + b":" + v for n, _, v in (x.partition(b":") for x in lines))
    return b"\r\n".join([start, *lowered]) + b"\r\n\r\n"


def mixed(corpus: dict[str, list[Any]], kinds: Sequence[str]) -> list[Any]:
    """The kinds' packets interleaved: a1 b1 c1 d1 a2 b2 ..."""
    return [p for group in zip(*(corpus[f"{k}_bytes"] for k in kinds), strict=True) for p in group]


def mdns_corpus(seed: int = 3) -> dict[str, list[Any]]:
    """One device's mDNS answer per packet (PTR + SRV + TXT + A), as a responder sends it."""
    from zeroconf import DNSAddress, DNSOutgoing, DNSPointer, DNSService, DNSText, const

    rng = random.Random(seed)
    outs = []
    for i in range(N_DISTINCT):
        service = "_igrs-bench._tcp.local."
        inst = f"{rng.choice(ROOMS)} TV {i}.{service}"
        host = f"tv-{i}.local."
        out = DNSOutgoing(const._FLAGS_QR_RESPONSE | const._FLAGS_AA)
        out.add_answer_at_time(DNSPointer(service, const._TYPE_PTR, const._CLASS_IN, 4500, inst), 0)
        out.add_additional_answer(
            DNSService(
                inst,
                const._TYPE_SRV,
                const._CLASS_IN | const._CLASS_UNIQUE,
                120,
                0,
                0,
                rng.randint(1024, 65000),
                host,
            )
        )
        out.add_additional_answer(
            DNSText(
                inst,
                const._TYPE_TXT,
                const._CLASS_IN | const._CLASS_UNIQUE,
                4500,
                b"\x0fmd=igrs-bench TV\x06pv=1.0\x14id=01:6B:30:FF:51:37\x05c#=12",
            )
        )
        out.add_additional_answer(
            DNSAddress(
                host,
                const._TYPE_A,
                const._CLASS_IN | const._CLASS_UNIQUE,
                120,
                socket.inet_aton(f"192.168.1.{rng.randint(2, 254)}"),
            )
        )
        outs.append(out)
    return {"outgoing": outs, "packets": [o.packets()[0] for o in outs]}


def measure(
    subjects: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]],
    repeats: int,
    min_time: float = 0.15,
    rounds: dict[str, list[float]] | None = None,
) -> dict[str, float]:
    """Operations per CPU second of each subject: best of ``repeats`` rounds, subjects
    interleaved within every round so that machine load affects them alike. Each sample loops
    over the corpus as often as needed to take ``min_time`` seconds. CPU time of this
    (single-threaded) process, not wall time: time spent preempted by other processes on a
    shared machine does not count against either side. ``rounds``, if given, receives every
    round's rate of each subject."""
    loops: dict[str, int] = {}
    for name, (fn, items) in subjects.items():  # warm-up + calibration
        n, t0 = 0, time.process_time()
        while time.process_time() - t0 < min_time / 3:
            for x in items:
                fn(x)
            n += 1
        per_pass = (time.process_time() - t0) / n
        loops[name] = max(1, int(min_time / per_pass))
    best = dict.fromkeys(subjects, 0.0)
    for _ in range(repeats):
        for name, (fn, items) in subjects.items():
            t0 = time.process_time()
            for _ in range(loops[name]):
                for x in items:
                    fn(x)
            rate = loops[name] * len(items) / (time.process_time() - t0)
            best[name] = max(best[name], rate)
            if rounds is not None:
                rounds.setdefault(name, []).append(rate)
    return best


def codec_rates(
    repeats: int, pure_zeroconf: bool = False, rounds: dict[str, list[float]] | None = None
) -> dict[str, float]:
    from async_upnp_client.ssdp import build_ssdp_packet, decode_ssdp_packet
    from zeroconf import DNSIncoming
    from zeroconf._protocol.outgoing import State

    STATE_INIT = State.init.value

    from igrs.wire import isdp

    ig, ss, md = igrs_corpus(), ssdp_corpus(), mdns_corpus()
    remote = ("192.168.1.77", 1900)
    host = "224.0.0.110:3880"

    # Each subject is one plain call per item, so loop overheads are alike.
    def igrs_decode(d: bytes) -> object:
        return isdp.decode(d)

    def igrs_encode_online(m: Any) -> bytes:
        return isdp.encode(m, host=host)

    def igrs_encode_response(m: Any) -> bytes:
        return isdp.encode(m, host="")

    def aupnp_decode(d: bytes) -> object:
        return decode_ssdp_packet(d, None, remote)

    def aupnp_build(h: dict[str, str]) -> bytes:
        return build_ssdp_packet("NOTIFY * HTTP/1.1", h)

    def zc_parse(p: bytes) -> object:
        return DNSIncoming(p).answers()

    def zc_build(o: Any) -> object:
        packets = o.packets()
        o.state, o.finished, o.packets_data = STATE_INIT, False, []  # as zeroconf's own benchmark
        o._reset_for_next_packet()
        return packets

    if pure_zeroconf:
        return measure(
            {
                "igrs decode online": (igrs_decode, ig["online_bytes"]),
                "zeroconf-pure DNSIncoming": (zc_parse, md["packets"]),
            },
            repeats,
        )
    subjects: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]] = {}
    for igrs_kind, ssdp_kind, _ in DATAGRAMS:
        subjects[f"igrs decode {igrs_kind}"] = (igrs_decode, ig[f"{igrs_kind}_bytes"])
        subjects[f"a-u-c decode {ssdp_kind} (cold)"] = (aupnp_decode, ss[f"{ssdp_kind}_bytes"])
    subjects["igrs decode mixed"] = (igrs_decode, mixed(ig, [k for k, _, _ in DATAGRAMS]))
    # The same datagrams with lower-case header names: not the common wire form, so every one
    # takes the general parser (isdp._decode_common answers None): information.
    subjects["igrs decode mixed, general path"] = (
        igrs_decode, [lower_names(p) for p in mixed(ig, [k for k, _, _ in DATAGRAMS])]
    )
    subjects["a-u-c decode mixed (cold)"] = (aupnp_decode, mixed(ss, [k for _, k, _ in DATAGRAMS]))
    subjects |= {
        "igrs encode online": (igrs_encode_online, ig["online_msgs"]),
        "igrs encode response": (igrs_encode_response, ig["response_msgs"]),
        # other packets than the cold corpora's, which must not be in its cache when timed
        "a-u-c decode alive (cached)": (aupnp_decode, ssdp_corpus(seed=5)["alive_bytes"][:64]),
        "a-u-c build NOTIFY": (aupnp_build, ss["notify_headers"]),
        "zeroconf DNSIncoming": (zc_parse, md["packets"]),
        "zeroconf DNSOutgoing": (zc_build, md["outgoing"]),
    }
    rates = measure(subjects, repeats, rounds=rounds)
    _report_cold(ig, ss, igrs_decode, aupnp_decode)
    return rates


def _report_cold(
    ig: dict[str, list[Any]], ss: dict[str, list[Any]], igrs_decode: Callable[[bytes], Any],
    aupnp_decode: Callable[[bytes], Any],
) -> None:
    """Show that the 'cold' corpora miss the per-packet caches on both sides (one more pass
    over each, counting cache hits), and how large the packets are."""
    from async_upnp_client import ssdp

    from igrs.wire import isdp

    caches = {
        "igrs isdp._decode_cached": isdp._decode_cached,
        "a-u-c _cached_decode_ssdp_packet": ssdp._cached_decode_ssdp_packet,
        "a-u-c _cached_header_parse": ssdp._cached_header_parse,
    }
    before = {name: cache.cache_info().hits for name, cache in caches.items()}
    for igrs_kind, ssdp_kind, _ in DATAGRAMS:
        for d in ig[f"{igrs_kind}_bytes"]:
            igrs_decode(d)
        for d in ss[f"{ssdp_kind}_bytes"]:
            aupnp_decode(d)
    n = len(DATAGRAMS) * N_DISTINCT
    hits = ", ".join(f"{name} {cache.cache_info().hits - before[name]}/{n}" for name, cache in caches.items())
    say(f"  cold corpora, cache hits in one more pass: {hits}")
    for igrs_kind, ssdp_kind, label in DATAGRAMS:
        sizes = []
        for corpus, key in ((ig, f"{igrs_kind}_bytes"), (ss, f"{ssdp_kind}_bytes")):
            packets = corpus[key]
            size = statistics.mean(map(len, packets))
            lines = statistics.mean(p.count(b"\r\n") - 2 for p in packets)
            sizes.append(f"{size:4.0f} B {lines:4.1f} headers")
        say(f"  {label:24s} ISDP {sizes[0]}   SSDP {sizes[1]}")


def _pure_zeroconf_copy(dest: Path) -> Path:
    """A copy of the installed zeroconf without its compiled (Cython) modules."""
    import zeroconf

    src = Path(zeroconf.__file__).parent
    target = dest / "zeroconf"
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "__pycache__"))
    return dest


def bench_codec(repeats: int) -> list[Result]:
    import zeroconf._protocol.incoming as zinc

    compiled = not zinc.__file__.endswith(".py")
    say(f"== a. codec throughput ({N_DISTINCT} distinct packets per corpus, best of {repeats}) ==")
    rounds: dict[str, list[float]] = {}
    r = codec_rates(repeats, rounds=rounds)
    pure: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = _pure_zeroconf_copy(Path(tmp))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run(
            [sys.executable, __file__, "--codec-worker", str(repeats)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode == 0:
            pure = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            say(f"  (pure-Python zeroconf run failed: {proc.stderr.strip()[-300:]})")
    for name, v in r.items():
        say(f"  {name:32s} {fmt_rate(v):>12s}")
    for name, v in pure.items():
        say(f"  {name + ' [pure run]':32s} {fmt_rate(v):>12s}")
    say(f"  (installed zeroconf build: {'Cython-compiled' if compiled else 'pure Python'})")
    zc = "zeroconf DNSIncoming" + (" (Cython)" if compiled else "")
    isdp_names = {
        "online": "DeviceOnlineAdvertisement",
        "offline": "DeviceOfflineAdvertisement",
        "search": "SearchDeviceRequest",
        "response": "SearchDeviceResponse",
    }
    out = []
    for igrs_kind, ssdp_kind, label in [*DATAGRAMS, ("mixed", "mixed", "the four kinds interleaved")]:
        subject_key, baseline_key = f"igrs decode {igrs_kind}", f"a-u-c decode {ssdp_kind} (cold)"
        subject, baseline = r[subject_key], r[baseline_key]
        # The two were timed one after the other in every round: the median of those rounds'
        # ratios shows how much the best-of ratio owes to the noise of a shared machine.
        pairs = zip(rounds[subject_key], rounds[baseline_key], strict=True)
        paired = statistics.median(a / b for a, b in pairs)
        say(f"  ISDP / a-u-c decode, {label}: best-of ratio {subject / baseline:.2f}x, "
            f"median of the {repeats} per-round ratios {paired:.2f}x")
        out.append(
            Result(
                f"ISDP decode {isdp_names.get(igrs_kind, 'all four datagrams, mixed')}",
                subject,
                "msg/s",
                f"a-u-c decode_ssdp_packet {label} (cold)",
                baseline,
                "higher",
                goal=">= 2.0x",
                met=subject >= 2 * baseline,
                note=f"distinct packets: both sides' per-packet caches miss; median of the {repeats} "
                f"per-round ratios {paired:.2f}x",
            )
        )
    out += [
        Result(
            "ISDP decode, four kinds mixed, lower-case header names (general path)",
            r["igrs decode mixed, general path"],
            "msg/s",
            "a-u-c decode_ssdp_packet the four kinds interleaved (cold)",
            r["a-u-c decode mixed (cold)"],
            "higher",
            note="information: datagrams outside the common wire form take the general header parser",
        ),
        Result(
            "ISDP decode DeviceOnlineAdvertisement",
            r["igrs decode online"],
            "msg/s",
            "a-u-c decode alive NOTIFY (LRU-cached repeat)",
            r["a-u-c decode alive (cached)"],
            "higher",
            note="information: a-u-c caches whole packets; repeats cost a dict lookup",
        ),
        Result(
            "ISDP decode DeviceOnlineAdvertisement",
            r["igrs decode online"],
            "msg/s",
            zc + " 1 device (PTR+SRV+TXT+A)",
            r["zeroconf DNSIncoming"],
            "higher",
        ),
        Result(
            "ISDP encode DeviceOnlineAdvertisement",
            r["igrs encode online"],
            "msg/s",
            "a-u-c build_ssdp_packet NOTIFY",
            r["a-u-c build NOTIFY"],
            "higher",
        ),
        Result(
            "ISDP encode SearchDeviceResponse",
            r["igrs encode response"],
            "msg/s",
            "zeroconf DNSOutgoing.packets() 1 device",
            r["zeroconf DNSOutgoing"],
            "higher",
        ),
    ]
    if pure:
        out.append(
            Result(
                "ISDP decode DeviceOnlineAdvertisement",
                pure["igrs decode online"],
                "msg/s",
                "zeroconf DNSIncoming pure Python",
                pure["zeroconf-pure DNSIncoming"],
                "higher",
                goal="~1.0x (anchors §18.1)",
                met=pure["igrs decode online"] >= 0.9 * pure["zeroconf-pure DNSIncoming"],
            )
        )
    return out


def codec_worker(repeats: int) -> None:
    import zeroconf._protocol.incoming as zinc

    if not zinc.__file__.endswith(".py"):
        raise SystemExit(f"expected pure-Python zeroconf, got {zinc.__file__}")
    print(json.dumps(codec_rates(repeats, pure_zeroconf=True)))


# --- d. registry: per-datagram cost against the number of known devices ------------------------------

REGISTRY_SIZES = (10, 1_000, 4_000, 10_000)
N_PROBES = 1024  # distinct probe datagrams: more than the decoder's 256-entry memo, at every size


class RegistryFeeder:
    """What a ``ControlPoint`` does per received datagram, without the sockets: the registry's
    ``on_datagram``, then the timer driver's check of ``next_deadline()`` (``TimerDriver.wake``),
    and a ``poll`` only when a deadline is due. The registry knows ``known`` devices, each
    from its own address; the probes are 1024 distinct alive refreshes of known devices
    (their max-age varies), so the decoder's memo misses at every registry size."""

    def __init__(self, known: int, seed: int = 7) -> None:
        from igrs.core.discovery import ControlPointDiscovery, Interface
        from igrs.wire import isdp
        from igrs.wire.ids import DeviceId, DeviceType

        rng = random.Random(seed)
        tv = DeviceType("TV")
        self.registry = ControlPointDiscovery(DeviceId(uuid.UUID(int=rng.getrandbits(128), version=4)),
                                              max_devices=known)
        self.registry.set_interfaces([Interface.from_cidr("eth0", "10.0.0.1/8")])
        devices = []
        for i in range(known):
            did = DeviceId(uuid.UUID(int=rng.getrandbits(128), version=4))
            ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{(i & 255) or 254}"
            name = f"{rng.choice(ROOMS)} TV {i}"
            devices.append((did, ip, name))
            msg = isdp.DeviceOnlineAdvertisement(did, tv, f"http://{ip}:3880/IGRS", 86400, name)
            self.registry.on_datagram(isdp.encode(msg, host="224.0.0.110:3880"), (ip, 3880), "eth0", 0.0)
        assert len(self.registry.devices) == known, "every device must be known before timing"
        self.probes = []
        for j in range(N_PROBES):
            did, ip, name = devices[j % known]
            msg = isdp.DeviceOnlineAdvertisement(did, tv, f"http://{ip}:3880/IGRS", 80000 + j, name)
            self.probes.append((isdp.encode(msg, host="224.0.0.110:3880"), (ip, 3880)))
        self.now = 1.0
        self.polls = 0

    def __call__(self, probe: tuple[bytes, tuple[str, int]]) -> None:
        # 10 ms apart: no source exceeds its rate limit; max-age ~1 day: nothing expires
        self.now += 0.01
        registry = self.registry
        registry.on_datagram(probe[0], probe[1], "eth0", self.now)
        deadline = registry.next_deadline()
        if deadline is not None and deadline <= self.now:
            self.polls += 1
            registry.poll(self.now)


def bench_registry(repeats: int) -> list[Result]:
    from igrs.wire import isdp

    say(f"== d. registry: per-datagram cost by known devices ({N_PROBES} distinct alive refreshes, "
        f"best of {repeats}) ==")
    feeders = {n: RegistryFeeder(n) for n in REGISTRY_SIZES}
    subjects: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]] = {
        f"{n} known": (feeder, feeder.probes) for n, feeder in feeders.items()}
    subjects["bare decode"] = (lambda p: isdp.decode(p[0]), feeders[REGISTRY_SIZES[0]].probes)
    rates = measure(subjects, repeats)
    cost = {name: 1e6 / rate for name, rate in rates.items()}  # microseconds per datagram
    for name, us in cost.items():
        say(f"  {name:14s} {us:8.2f} us/datagram ({us / cost['bare decode']:.2f}x the bare decode)")
    polls = {n: f.polls for n, f in feeders.items()}
    say(f"  polls (a deadline was due) over all probes: {polls}")
    small, large = f"{REGISTRY_SIZES[0]} known", f"{REGISTRY_SIZES[-1]} known"
    ratio = cost[large] / cost[small]
    return [
        Result(
            f"registry: cost per datagram, {REGISTRY_SIZES[-1]:,} known devices",
            cost[large], "us", f"the same with {REGISTRY_SIZES[0]} known devices", cost[small], "lower",
            goal="<= 1.5x", met=ratio <= 1.5,
            note="decode + registry + the driver's next_deadline check (specs/isdp.md §11)",
        ),
        Result(
            f"registry: cost per datagram, {REGISTRY_SIZES[-1]:,} known devices",
            cost[large], "us", "bare isdp.decode of the same datagrams", cost["bare decode"], "lower",
            note="information: what the registry adds to decoding",
        ),
    ]


# --- b. discovery latency --------------------------------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def _device_worker(port: int, count: int, tag: str) -> None:
    from igrs import Device

    raise_nofile()
    devices = [
        Device(
            name=f"{tag}-{i}", device_type="TV", interfaces=LO, port=port, http_port=0, watch_interfaces=False
        )
        for i in range(count)
    ]
    await asyncio.gather(*(d.start() for d in devices))
    print("READY", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)  # the parent closing our stdin also stops us
    await stop.wait()
    await asyncio.gather(*(d.stop() for d in devices), return_exceptions=True)


class _SsdpResponder(asyncio.DatagramProtocol):
    """The simplest correct SSDP device: answers M-SEARCH after U(0, MX), like an IGRS device."""

    def __init__(self, n: int, tag: str) -> None:
        self.udn = f"uuid:{uuid.uuid4()}"
        self.n, self.tag = n, tag
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.startswith(b"M-SEARCH"):
            return
        m = re.search(rb"(?im)^MX:\s*(\d+)", data)
        mx = int(m.group(1)) if m else 1
        nt = "urn:schemas-upnp-org:device:MediaRenderer:1"
        payload = (
            f"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\n"
            f"LOCATION: http://127.0.0.1:{9000 + self.n}/desc.xml\r\nSERVER: Linux UPnP/1.0 bench/1\r\n"
            f"ST: ssdp:all\r\nUSN: {self.udn}::{nt}\r\nX-TAG: {self.tag}\r\n\r\n"
        ).encode()
        loop = asyncio.get_running_loop()
        loop.call_later(random.uniform(0, mx), self._send, payload, addr)

    def _send(self, payload: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(payload, addr)


def _ssdp_socket(group: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_MULTICAST_ALL", 49), 0)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    sock.bind((group, port))
    mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("127.0.0.1"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    sock.setblocking(False)
    return sock


async def _ssdp_worker(port: int, count: int, tag: str, first: int) -> None:
    raise_nofile()
    loop = asyncio.get_running_loop()
    transports = []
    for i in range(count):
        factory = functools.partial(_SsdpResponder, first + i, tag)
        t, _ = await loop.create_datagram_endpoint(factory, sock=_ssdp_socket("239.255.255.250", port))
        transports.append(t)
    print("READY", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)
    await stop.wait()
    for t in transports:
        t.close()


class WorkerPool:
    """``procs`` subprocesses of this script, each running ``per`` devices or responders."""

    def __init__(self, mode: str, procs: int, per: int, port: int, tag: str) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        for k in range(procs):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, mode, str(port), str(per), f"{tag}-{k}", str(k * per)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        for p in self.procs:
            assert p.stdout is not None
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError("device workers did not start")
                line = p.stdout.readline()
                if not line:
                    raise RuntimeError(f"device worker exited with {p.wait()}")
                if line.strip() == "READY":
                    break
        self.wait_idle()

    def cpu(self) -> float:
        """CPU seconds the workers used so far (user + system, clock-tick resolution)."""
        total = 0
        for p in self.procs:
            fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / os.sysconf("SC_CLK_TCK")

    def wait_idle(self, quiet: float = 0.02, timeout: float = 120.0) -> None:
        """Wait until the workers' CPU use falls below ``quiet`` of a core: the storm of
        start-up announcements (every device hears every other device's) is over."""
        cpu = self.cpu
        deadline = time.monotonic() + timeout
        last = cpu()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = cpu()
            if now - last < quiet * 0.5 * len(self.procs):
                return
            last = now

    def close(self) -> None:
        for p in self.procs:
            with contextlib.suppress(OSError):
                assert p.stdin is not None
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@dataclass
class SearchRun:
    found: int
    expected: int
    all_found_after: float | None  # seconds from the search until the last device arrived
    arrivals: list[float]


async def igrs_search_once(port: int, prefix: str, expected: int, mx: int) -> SearchRun:
    from igrs import ControlPoint
    from igrs.core.discovery import DeviceAppeared

    loop = asyncio.get_running_loop()
    arrivals: list[float] = []
    async with ControlPoint(interfaces=LO, port=port) as cp:
        events = cp.events()
        t0 = loop.time()
        search = asyncio.create_task(cp.search(timeout=mx + 1.0, mx=mx))

        async def collect() -> None:
            async for ev in events:
                if isinstance(ev, DeviceAppeared) and ev.device.name.startswith(prefix):
                    arrivals.append(loop.time() - t0)
                    if len(arrivals) >= expected:
                        return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collect(), mx + 1.0)
        await search
    return SearchRun(len(arrivals), expected, max(arrivals) if len(arrivals) >= expected else None, arrivals)


async def aupnp_search_once(port: int, tag: str, expected: int, mx: int) -> SearchRun:
    from async_upnp_client.search import SsdpSearchListener

    loop = asyncio.get_running_loop()
    seen: dict[str, float] = {}
    t0 = loop.time()

    async def on_response(headers: Any) -> None:
        if str(headers.get("x-tag", "")).startswith(tag):
            seen.setdefault(str(headers.get("usn")), loop.time() - t0)

    # async_search() would send MX = its listening time; the listener lets us send MX = mx
    # and listen mx + 1 s, as the igrs control point does.
    listener = SsdpSearchListener(
        async_callback=on_response,
        loop=loop,
        source=("127.0.0.1", 0),
        target=("239.255.255.250", port),
        timeout=mx,
        async_connect_callback=None,
    )
    await listener.async_start()
    t0 = loop.time()
    listener.async_search()
    await asyncio.sleep(mx + 1.0)
    listener.async_stop()
    arrivals = sorted(seen.values())
    return SearchRun(len(arrivals), expected, max(arrivals) if len(arrivals) >= expected else None, arrivals)


def summarize(runs: list[SearchRun]) -> dict[str, float]:
    done = [r.all_found_after for r in runs if r.all_found_after is not None]
    pooled = [a for r in runs for a in r.arrivals]
    return {
        "median_all": statistics.median(done) if done else float("nan"),
        "max_all": max(done) if done else float("nan"),
        "missed": float(sum(r.expected - r.found for r in runs)),
        "incomplete": float(sum(1 for r in runs if r.all_found_after is None)),
        "p50_device": statistics.median(pooled) if pooled else float("nan"),
    }


def bench_latency(devices: int, procs: int, searches: int, mx: int, with_aupnp: bool) -> list[Result]:
    say(f"== b. discovery latency: {devices} devices in {procs} processes, {searches} searches, MX {mx} ==")
    per = devices // procs
    devices = per * procs
    port = free_udp_port()
    tag = f"bench{os.getpid()}"
    pool = WorkerPool("--device-worker", procs, per, port, tag)
    t_start = time.monotonic()
    try:
        pool.wait_ready()
        say(
            f"  {devices} igrs devices up and idle in {time.monotonic() - t_start:.1f} s on lo, UDP port {port}"
        )

        async def run_all() -> list[SearchRun]:
            runs = []
            for i in range(searches):
                run = await igrs_search_once(port, tag, devices, mx)
                runs.append(run)
                say(
                    f"  igrs search {i + 1:2d}: found {run.found}/{devices}, all after "
                    + (f"{run.all_found_after:.3f} s" if run.all_found_after is not None else "-- (incomplete)")
                )
                await asyncio.sleep(0.3)
            return runs

        igrs_runs = asyncio.run(run_all())
    finally:
        pool.close()
    s = summarize(igrs_runs)
    ideal = mx * devices / (devices + 1)  # expected max of N uniform delays on [0, MX]
    say(
        f"  igrs: median {s['median_all']:.3f} s, max {s['max_all']:.3f} s, missed {int(s['missed'])}, "
        f"median device arrival {s['p50_device']:.3f} s (ideal max {ideal:.3f} s)"
    )
    out = [
        Result(
            f"search {devices} devices: median time to all (MX {mx})",
            s["median_all"],
            "s",
            f"ideal: E[max of {devices} U(0,MX)]",
            ideal,
            "lower",
            goal="< 1.5 s, none missed",
            met=s["median_all"] < 1.5 and s["missed"] == 0,
            note=f"missed {int(s['missed'])} over {searches} searches",
        ),
        Result(
            f"search {devices} devices: worst time to all (MX {mx})",
            s["max_all"],
            "s",
            "MX",
            float(mx),
            "lower",
        ),
        Result(
            f"search {devices} devices: devices missed (sum of {searches})",
            s["missed"],
            "devices",
            "expected",
            0.0,
            "lower",
            goal="0",
            met=s["missed"] == 0,
        ),
    ]
    if with_aupnp:
        port = free_udp_port()
        pool = WorkerPool("--ssdp-worker", procs, per, port, tag)
        try:
            pool.wait_ready()

            async def run_aupnp() -> list[SearchRun]:
                runs = []
                for i in range(searches):
                    run = await aupnp_search_once(port, tag, devices, mx)
                    runs.append(run)
                    say(
                        f"  a-u-c search {i + 1:2d}: found {run.found}/{devices}, all after "
                        + (f"{run.all_found_after:.3f} s" if run.all_found_after is not None else "--")
                    )
                    await asyncio.sleep(0.3)
                return runs

            a = summarize(asyncio.run(run_aupnp()))
        finally:
            pool.close()
        say(f"  a-u-c: median {a['median_all']:.3f} s, max {a['max_all']:.3f} s, missed {int(a['missed'])}")
        out.append(
            Result(
                f"search {devices} devices: median time to all (MX {mx})",
                s["median_all"],
                "s",
                f"a-u-c async_search, {devices} SSDP responders U(0,MX)",
                a["median_all"],
                "lower",
                note=f"a-u-c missed {int(a['missed'])}",
            )
        )
    return out


# --- c. footprint ------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def idle_rss(argv: list[str], ready: str | None, settle: float = 2.0) -> int:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        if ready is not None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if ready in line:
                    break
            else:
                raise RuntimeError(f"{argv[:4]} exited: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(max(0.0, settle - (time.monotonic() - t0)))
        return rss_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def importtime_us(stmt: str, module: str = "igrs") -> int:
    """Cumulative import time of ``module`` reported by ``-X importtime`` (microseconds)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", stmt], capture_output=True, text=True, check=True
    )
    total = 0
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if (
            len(parts) == 3
            and parts[1].isdigit()
            and parts[2].split(".")[0] == module
            and parts[2] == parts[2].lstrip()
        ):
            total += int(parts[1])
    return total


def igrs_command() -> list[str]:
    script = Path(sys.executable).parent / "igrs"
    return [str(script)] if script.exists() else [sys.executable, "-m", "igrs"]


FOOTPRINT_IDLE_GOAL = 1.3  # x bare asyncio python (issue 15)
FOOTPRINT_PROFILES_GOAL = 2.0


def compiled_bytecode(env: dict[str, str]) -> None:
    """Compile igrs's bytecode as an install does, so that the RSS measured is the device's and
    not what compiling its sources left behind (PYTHONDONTWRITEBYTECODE would leave every start
    compiling)."""
    import igrs

    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(igrs.__file__).parent)],
                   env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def device_run_rss(extra: list[str], loop: str, state: str) -> int:
    argv = [*igrs_command(), "device", "run", "--interface", "lo", "--port", str(free_udp_port()),
            "--http-port", "0", "--name", "bench-footprint", "--state-dir", state, "--loop", loop, *extra]
    return idle_rss(argv, ready="is up")


def bench_footprint(runs: int) -> list[Result]:
    say(f"== c. footprint (median of {runs} runs) ==")
    py = sys.executable
    compiled_bytecode(dict(os.environ))
    scratch = tempfile.mkdtemp(prefix="igrs-bench-footprint-")
    state, share = f"{scratch}/state", f"{scratch}/share"
    os.mkdir(share)
    profiles = ["--sample-service", "--share-folder", share]
    # The default install has no uvloop: measured on asyncio's loop, as the baseline; the
    # uvloop figure (igrs[uvloop]) is shown for information.
    idle, with_profiles, on_uvloop, base = [], [], [], []
    for _ in range(max(1, runs // 2)):  # interleaved, so load drifts hit all alike
        idle.append(device_run_rss([], "asyncio", state))
        base.append(idle_rss([py, "-c", "import asyncio; asyncio.run(asyncio.sleep(5))"], ready=None))
        with_profiles.append(device_run_rss(profiles, "asyncio", state))
    with contextlib.suppress(Exception):  # uvloop not installed: no information line
        import uvloop  # noqa: F401

        on_uvloop.append(device_run_rss([], "uvloop", state))
    shutil.rmtree(scratch, ignore_errors=True)
    dev_mb, prof_mb, base_mb = (statistics.median(x) / 1024 for x in (idle, with_profiles, base))
    uv = f"; on uvloop {on_uvloop[0] / 1024:.1f} MB" if on_uvloop else ""
    say(f"  idle `igrs device run` RSS {dev_mb:.1f} MB ({dev_mb / base_mb:.2f}x){uv}; with --sample-service "
        f"--share-folder {prof_mb:.1f} MB ({prof_mb / base_mb:.2f}x); bare asyncio python {base_mb:.1f} MB")
    t_pass, t_import, t_device = [], [], []
    for _ in range(runs):  # interleaved, so load drifts hit all three alike
        t_pass.append(wall([py, "-c", "pass"]))
        t_import.append(wall([py, "-c", "import igrs"]))
        t_device.append(wall([py, "-c", "import igrs; igrs.Device"]))
    mp, mi, md = (statistics.median(t) * 1000 for t in (t_pass, t_import, t_device))
    it_igrs = importtime_us("import igrs") / 1000
    it_dev = importtime_us("import igrs; igrs.Device", module="igrs") / 1000
    say(
        f"  python -c pass {mp:.0f} ms; import igrs {mi:.0f} ms "
        f"(igrs itself {it_igrs:.1f} ms by -X importtime); "
        f"import igrs; igrs.Device {md:.0f} ms"
    )
    baseline = "bare python asyncio.run(asyncio.sleep(5))"
    return [
        Result(
            "idle `igrs device run --interface lo` RSS after 2 s",
            dev_mb,
            "MB",
            baseline,
            base_mb,
            "lower",
            goal=f"<= {FOOTPRINT_IDLE_GOAL}x",
            met=dev_mb <= FOOTPRINT_IDLE_GOAL * base_mb,
            note="asyncio loop, bytecode compiled" + uv,
        ),
        Result(
            "idle `igrs device run --sample-service --share-folder DIR` RSS after 2 s",
            prof_mb,
            "MB",
            baseline,
            base_mb,
            "lower",
            goal=f"<= {FOOTPRINT_PROFILES_GOAL}x",
            met=prof_mb <= FOOTPRINT_PROFILES_GOAL * base_mb,
            note="asyncio loop, bytecode compiled",
        ),
        Result(
            "python -c 'import igrs' wall time",
            mi,
            "ms",
            "python -c pass",
            mp,
            "lower",
            goal="<= 250 ms",
            met=mi <= 250,
            note=f"igrs modules {it_igrs:.1f} ms (-X importtime)",
        ),
        Result(
            "python -c 'import igrs; igrs.Device' wall time",
            md,
            "ms",
            "python -c pass",
            mp,
            "lower",
            note=f"igrs.* modules {it_dev:.1f} ms (-X importtime); information",
        ),
    ]


# --- main ------------------------------------------------------------------------------------------


def print_table(results: list[Result]) -> None:
    say()
    say(f"{'metric':58s} {'value':>14s}  {'baseline':48s} {'base value':>14s} {'ratio':>8s}  goal")
    for r in results:

        def v(x: float, unit: str) -> str:
            return fmt_rate(x) if unit == "msg/s" else f"{x:,.3f} {unit}" if unit == "s" else f"{x:,.1f} {unit}"

        met = "" if r.met is None else (" met" if r.met else " NOT met")
        say(
            f"{r.name[:58]:58s} {v(r.value, r.unit):>14s}  {r.baseline[:48]:48s} "
            f"{v(r.baseline_value, r.unit):>14s} {r.ratio:7.2f}x  {r.goal}{met}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=["codec", "latency", "footprint", "registry"])
    p.add_argument("--quick", action="store_true", default=QUICK, help="fewer repeats ($IGRS_BENCH_QUICK=1)")
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--searches", type=int, default=None, help="default 10 (quick: 4)")
    p.add_argument("--mx", type=int, default=1)
    p.add_argument(
        "--no-aupnp-latency", action="store_true", help="skip the async-upnp-client latency baseline"
    )
    args = p.parse_args(argv)
    only = set(args.only or ["codec", "latency", "footprint", "registry"])
    results: list[Result] = []
    if "codec" in only:
        results += bench_codec(repeats=3 if args.quick else 7)
    if "latency" in only:
        results += bench_latency(
            args.devices,
            args.procs,
            args.searches or (4 if args.quick else 10),
            args.mx,
            with_aupnp=not args.no_aupnp_latency,
        )
    if "registry" in only:
        results += bench_registry(repeats=3 if args.quick else 7)
    if "footprint" in only:
        results += bench_footprint(runs=5 if args.quick else 11)
    print_table(results)
    for r in results:
        r.emit()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--codec-worker":
        codec_worker(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] in ("--device-worker", "--ssdp-worker"):
        _, mode, port_s, count_s, tag_s, first_s = sys.argv
        if mode == "--device-worker":
            asyncio.run(_device_worker(int(port_s), int(count_s), tag_s))
        else:
            asyncio.run(_ssdp_worker(int(port_s), int(count_s), tag_s, int(first_s)))
    else:
        sys.exit(main())
