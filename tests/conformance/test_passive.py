"""The passive checker: ``igrs conformance pcap`` on real captures (tshark on lo, and in a
namespace bed for IPv6) of igrs.Device, igrs.ControlPoint and the broken reference devices;
``igrs conformance watch`` as a subprocess on lo; the capture reader, TCP reassembly and the
rules on crafted input, including a hypothesis fuzz of the reader. Loopback only in the root
namespace (``--interface lo``, ``IP_MULTICAST_IF`` 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from broken_core import InvalidDescriptionDevice, LateSearchResponseDevice, WrongAcknowledgeIdDevice
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netbed import LineReader, NetBed, free_port, link_local

from igrs import ControlPoint, Device
from igrs.conformance.capture import (
    TCP,
    UDP,
    CaptureError,
    CaptureStats,
    Packet,
    ip_bytes,
    open_capture,
    packets,
    write_pcap,
)
from igrs.conformance.passive import PassiveChecker, Violation, check_capture, check_pcap
from igrs.conformance.watch import OUTPUT_BURST, OUTPUT_RATE, Output
from igrs.constants import IPV4_GROUP, IPV6_GROUP
from igrs.wire import description as ddesc
from igrs.wire import isdp, messages
from igrs.wire.ids import DeviceId, DeviceType

LO = ["lo"]
IGRS = [sys.executable, "-m", "igrs"]
SEARCH_ANSWERS = "(udp and udp[8:4] = 0x48545450)"  # unicast "HTTP/1.1 200 OK" datagrams (IPv4)


# --- helpers ---------------------------------------------------------------------------------------
def _send_udp(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"probe", ("127.0.0.1", port))


class Capture:
    """tshark writing ``path``. Entered once a probe datagram shows in its output: "Capturing
    on" is printed a little before packets really are captured."""

    def __init__(self, path: Path, capture_filter: str, *, iface: str = "lo", extra: tuple[str, ...] = (),
                 popen: Callable[..., subprocess.Popen[str]] = subprocess.Popen,
                 probe: Callable[[int], None] = _send_udp) -> None:
        self.probe_port = free_port("udp")
        self.argv = ["tshark", "-i", iface, *extra, "-f", f"({capture_filter}) or udp port {self.probe_port}",
                     "-w", str(path), "-P", "-l"]
        self.popen, self.probe = popen, probe

    def __enter__(self) -> Capture:
        self.proc = self.popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
        self.out, self.err = LineReader(self.proc.stdout), LineReader(self.proc.stderr)
        try:
            assert self.err.wait_for(lambda ln: "Capturing on" in ln, 30), self.err.text()
            deadline = time.monotonic() + 20
            while not self.out.wait_for(lambda ln: f"→ {self.probe_port}" in ln or f" {self.probe_port} " in ln,
                                        0.3):
                assert time.monotonic() < deadline, f"tshark shows no probe: {self.err.text()}"
                self.probe(self.probe_port)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)  # the last packets reach the file
        self.stop()


async def raw_get_description(http_port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
    writer.write(b"GET /IGRS/description.xml HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


def ports_in(where: str) -> set[int]:
    return {int(p) for p in re.findall(r":(\d+)(?=\s|$)", where)}


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IGRS, "conformance", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


# --- real captures on lo ---------------------------------------------------------------------------
def test_good_device_capture_pcapng_and_pcap(tmp_path: Path, free_udp_port: int, free_tcp_port: int,
                                             require_cmd: Callable[[str], str]) -> None:
    require_cmd("tshark")
    require_cmd("editcap", "tshark")
    port, http_port = free_udp_port, free_tcp_port
    pcapng = tmp_path / "good.pcapng"

    async def session() -> None:
        async with Device(name="Good TV", device_type="TV", interfaces=LO, port=port, http_port=http_port,
                          max_age=4) as dev:
            async with ControlPoint(interfaces=LO, port=port) as cp:
                [record] = [r for r in await cp.search(timeout=1.5) if r.device_id == dev.device_id]
                assert (await cp.describe(record)).name == "Good TV"
            assert b"200 OK" in await raw_get_description(http_port)
            await asyncio.sleep(2.2)  # a periodic re-announcement (every 1.6-2 s at max-age 4)

    with Capture(pcapng, f"udp port {port} or tcp port {http_port} or {SEARCH_ANSWERS}"):
        asyncio.run(session())
    assert pcapng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    report = check_capture(pcapng, port=port)
    assert report.violations == [], "\n".join(map(str, report.violations))
    assert report.notes == []
    kinds = report.kinds
    assert kinds["DeviceOnlineAdvertisement"] >= 3, kinds  # 2 start-up copies + a periodic one
    assert kinds["DeviceOfflineAdvertisement"] == 2, kinds
    assert kinds["SearchDeviceRequest"] == 2 and kinds["SearchDeviceResponse"] >= 1, kinds
    assert kinds["GetDeviceDescriptionRequest"] == kinds["GetDeviceDescriptionResponse"] == 1, kinds
    assert kinds["description"] == 1, kinds
    assert report.seen == sum(kinds.values())

    for fmt, magic in (("pcap", b"\xd4\xc3\xb2\xa1"), ("nsecpcap", b"\x4d\x3c\xb2\xa1")):
        converted = tmp_path / f"good.{fmt}"
        subprocess.run(["editcap", "-F", fmt, str(pcapng), str(converted)], check=True, capture_output=True,
                       timeout=30)
        assert converted.read_bytes()[:4] == magic
        again = check_capture(converted, port=port)
        assert (again.violations, again.seen, again.kinds) == ([], report.seen, kinds), fmt
    cp = run_cli("pcap", str(tmp_path / "good.pcap"), "--port", str(port))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout == f"{report.seen} IGRS message(s) checked, 0 violation(s)\n"  # the result: stdout


def test_broken_devices_are_caught_passively(tmp_path: Path, require_cmd: Callable[[str], str]) -> None:
    """One capture, four devices on their own ports: the good one clean, each broken one caught
    by the rule it breaks, and only by that one."""
    require_cmd("tshark")
    kinds: dict[str, type[Device]] = {"good": Device, "late": LateSearchResponseDevice,
                                      "desc": InvalidDescriptionDevice, "ack": WrongAcknowledgeIdDevice}
    ports = {name: (free_port("udp"), free_port("tcp")) for name in kinds}
    assert len({p for pair in ports.values() for p in pair}) == 8
    path = tmp_path / "broken.pcapng"

    async def one(name: str) -> None:
        port, http_port = ports[name]
        async with kinds[name](name=f"{name} TV", device_type="TV", interfaces=LO, port=port,
                               http_port=http_port, max_age=60) as dev:
            async with ControlPoint(interfaces=LO, port=port) as cp:
                found = [r for r in await cp.search(timeout=1.5) if r.device_id == dev.device_id]
                if name == "late":
                    await asyncio.sleep(5.0)  # its answer comes 3.5 s + U(0, MX) after the search
                    return
                with contextlib.suppress(Exception) if name == "ack" else contextlib.nullcontext():
                    await cp.describe(found[0])
            await raw_get_description(http_port)

    async def session() -> None:
        await asyncio.gather(*(one(name) for name in kinds))

    udp = " or ".join(f"udp port {p} or tcp port {h}" for p, h in ports.values())
    with Capture(path, f"{udp} or {SEARCH_ANSWERS}"):
        asyncio.run(session())

    def violations_of(name: str) -> tuple[list[Violation], list[Violation]]:
        port, http_port = ports[name]
        found = check_capture(path, port=port).violations
        return ([v for v in found if "(tcp)" not in v.where],
                [v for v in found if "(tcp)" in v.where and http_port in ports_in(v.where)])

    assert violations_of("good") == ([], [])
    late_udp, late_tcp = violations_of("late")
    assert late_udp and late_tcp == [], late_udp + late_tcp
    assert all("later than MX 1 s + 1 s grace" in v.text and v.rule == "isdp.md §9 rule 7" for v in late_udp), \
        late_udp
    desc_udp, desc_tcp = violations_of("desc")
    assert desc_udp == [] and len(desc_tcp) == 1, desc_udp + desc_tcp
    assert "description not valid against device-description.xsd" in desc_tcp[0].text
    assert "manufacturer" in desc_tcp[0].text and desc_tcp[0].rule == "description.md"
    ack_udp, ack_tcp = violations_of("ack")
    assert ack_udp == [] and len(ack_tcp) == 1, ack_udp + ack_tcp
    m = re.fullmatch(r"AcknowledgeId (\d+) != the request's SequenceId (\d+)", ack_tcp[0].text)
    assert m and int(m.group(1)) == int(m.group(2)) + 1, ack_tcp
    assert ack_tcp[0].what == "GetDeviceDescriptionResponse"

    cp = run_cli("pcap", str(path), "--port", str(ports["late"][0]), "--json")
    assert cp.returncode == 1, cp.stderr
    objects = [json.loads(line) for line in cp.stdout.splitlines()]
    assert {o["rule"] for o in objects if o["event"] == "violation" and "tcp" not in o["where"]} \
        == {"isdp.md §9 rule 7"}
    assert objects[-1]["event"] == "summary" and objects[-1]["violations"] >= 1


# --- IPv6 in a namespace bed -----------------------------------------------------------------------


@pytest.mark.netns
def test_ipv6_capture_in_a_namespace(netbed: NetBed, tmp_path: Path, require_cmd: Callable[[str], str]) -> None:
    """ISDP over [ff02::c] and M-POST over link-local IPv6, captured on the TV host by
    ``tshark -i any`` as Linux cooked v2: every datagram checked, no violation."""
    require_cmd("tshark")
    lan = netbed.lan("lan")
    tv, cp = netbed.host("tv", lan), netbed.host("cp", lan)
    tv_v6, cp_v6 = link_local(tv, lan), link_local(cp, lan)
    path = tmp_path / "v6.pcapng"

    def probe(port: int) -> None:
        tv.run(["bash", "-c", f"echo probe > /dev/udp/127.0.0.1/{port}"])

    with Capture(path, "udp or tcp", iface="any", extra=("-y", "LINUX_SLL2"), popen=tv.popen, probe=probe):
        dev = tv.popen([*IGRS, "device", "run", "--name", "V6 TV", "--type", "TV", "--ipv6", "--interface",
                        tv_v6, "--http-port", "0", "--max-age", "30", "--json",
                        "--state-dir", str(tmp_path / "tv")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert dev.stdout is not None
        ready = json.loads(dev.stdout.readline())
        found = cp.run([*IGRS, "discover", "--ipv6", "--interface", cp_v6, "--json"], timeout=30)
        assert found.returncode == 0 and ready["id"] in found.stdout, found.stderr
        described = cp.run([*IGRS, "describe", "V6 TV", "--ipv6", "--interface", cp_v6], timeout=30)
        assert described.returncode == 0, described.stderr
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(15) == 0
    report = check_capture(path)
    assert report.violations == [], "\n".join(map(str, report.violations))
    kinds = report.kinds
    for kind in ("DeviceOnlineAdvertisement", "DeviceOfflineAdvertisement", "SearchDeviceRequest",
                 "SearchDeviceResponse", "GetDeviceDescriptionRequest", "GetDeviceDescriptionResponse"):
        assert kinds[kind] >= 1, kinds
    stats = CaptureStats()
    with open_capture(path) as buf:
        isdp_v6 = [p for p in packets(buf, stats) if p.proto == UDP and p.dport == 3880 and p.dst == IPV6_GROUP]
    assert len(isdp_v6) >= 4 and all(p.src == tv_v6 or p.src == cp_v6 for p in isdp_v6)


# --- watch -----------------------------------------------------------------------------------------
class WatchProcess:
    def __init__(self, port: int, *extra: str) -> None:
        self.proc = subprocess.Popen([*IGRS, "conformance", "watch", "--interface", "lo", "--port", str(port),
                                      "--json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, stdin=subprocess.DEVNULL)
        self.out, self.err = LineReader(self.proc.stdout), LineReader(self.proc.stderr)
        if not self.out.wait_for(lambda ln: '"ready"' in ln, 30):
            self.proc.kill()
            raise AssertionError(f"watch not ready: {self.err.text()}")

    def finish(self, timeout: float = 30) -> tuple[int, list[dict[str, Any]]]:
        try:
            rc = self.proc.wait(timeout)
        finally:
            self.kill()
        self.out.join()
        return rc, [json.loads(line) for line in self.out.lines]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def bad_sender(ttl: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    s.bind(("127.0.0.1", 0))
    return s


def alive(location: str, port: int, max_age: int = 1800) -> bytes:
    msg = isdp.DeviceOnlineAdvertisement(DeviceId.new(), DeviceType("TV"), location, max_age)
    return isdp.encode(msg, host=f"{IPV4_GROUP}:{port}")


async def test_watch_reports_bad_datagrams_not_the_good_device(free_udp_port: int) -> None:
    port = free_udp_port
    watch = await asyncio.to_thread(WatchProcess, port, "--duration", "4")
    with bad_sender(1) as spoof, bad_sender(0) as junk:
        async with Device(name="Watched TV", interfaces=LO, port=port, http_port=0, max_age=3):
            await asyncio.sleep(0.5)
            spoof.sendto(alive("http://10.77.1.99:3880/IGRS", port), (IPV4_GROUP, port))
            junk.sendto(b"\x00garbage\r\n\r\n", (IPV4_GROUP, port))
            await asyncio.sleep(1.5)
        bad = {f"127.0.0.1:{s.getsockname()[1]} ->" for s in (spoof, junk)}
        rc, lines = await asyncio.to_thread(watch.finish)
    violations = [o for o in lines if o["event"] == "violation"]
    assert rc == 1, watch.err.text()
    assert violations and all(any(v["where"].startswith(b) for b in bad) for v in violations), violations
    texts = {v["violation"]: v["rule"] for v in violations}
    assert texts["LOCATION host 10.77.1.99 != source address 127.0.0.1"] == "transport.md Interfaces 4"
    assert texts["multicast with TTL/hop limit 1, not MULTICAST_TTL 2"] == "transport.md TTL / hop limit"
    assert any(t.startswith("does not decode") and r == "isdp.md §7" for t, r in texts.items()), texts
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["violations"] == len(violations) == 3
    assert summary["checked"] >= 2 + 3  # the device's start-up copies, a periodic one, the 2 bad datagrams
    assert f"{summary['checked']} IGRS message(s) checked, 3 violation(s)" in watch.err.text()


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
async def test_watch_good_device_ends_on_a_signal(free_udp_port: int, sig: signal.Signals, status: int) -> None:
    """A watch without --duration ends on a signal with its summary: SIGTERM stops it cleanly
    (0: no violation), Ctrl-C follows the command line's rule (130, "interrupted"). Meanwhile
    a count line every --status-every seconds shows that it hears traffic."""
    port = free_udp_port
    watch = await asyncio.to_thread(WatchProcess, port, "--status-every", "0.5")
    try:
        async with Device(name="Quiet TV", interfaces=LO, port=port, http_port=0, max_age=2):
            await asyncio.sleep(2.0)
            watch.proc.send_signal(sig)
            rc, lines = await asyncio.to_thread(watch.finish)
    finally:
        watch.kill()  # no --duration: never leave it running
    assert rc == status, watch.err.text()
    assert [o["event"] for o in lines] == ["ready", "summary"]  # stdout: JSON only
    assert lines[-1]["checked"] >= 3 and lines[-1]["violations"] == 0, lines
    err = watch.err.text()
    assert re.search(r"^\d+ IGRS message\(s\) checked, 0 violation\(s\)$", err, re.M)
    assert re.search(r"^… [1-9]\d* IGRS message\(s\) so far \(\d+ in the last 0.5 s\), 0 violation\(s\)$", err,
                     re.M), err
    assert err.rstrip().endswith("igrs: interrupted") == (sig == signal.SIGINT), err


def test_watch_survives_a_flood(free_udp_port: int) -> None:
    port, duration = free_udp_port, 3.0
    watch = WatchProcess(port, "--duration", str(duration))
    with bad_sender(0) as s:
        for i in range(5000):
            s.sendto(b"flood %d" % i, (IPV4_GROUP, port))
    rc, lines = watch.finish()
    assert rc == 1, watch.err.text()
    printed = [o for o in lines if o["event"] == "violation"]
    suppressed = sum(o["count"] for o in lines if o["event"] == "suppressed")
    summary = lines[-1]
    assert summary["event"] == "summary"
    assert len(printed) <= OUTPUT_BURST + OUTPUT_RATE * (duration + 2), len(printed)
    assert suppressed >= 100 and summary["suppressed"] == suppressed
    assert len(printed) + suppressed == summary["violations"]
    assert summary["violations"] + summary["dropped"] <= 5000


def test_output_rate_limit_text() -> None:
    out, err = io.StringIO(), io.StringIO()
    o = Output(False, out, err, rate=0.0, burst=3)
    for i in range(10):
        o.violation(Violation(float(i), "a -> b", "garbage", "does not decode", "isdp.md §7"))
    o.flush()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1] == "… 7 more suppressed" and lines[0].endswith("(isdp.md §7)")


# --- crafted captures: formats, link types, truncation ---------------------------------------------
DID = DeviceId.new()


def alive_from(src: str, max_age: int = 1800, host: str = f"{IPV4_GROUP}:3880") -> bytes:
    literal = f"[{src}]" if ":" in src else src
    msg = isdp.DeviceOnlineAdvertisement(DID, DeviceType("TV"), f"http://{literal}:3880/IGRS", max_age)
    return isdp.encode(msg, host=host)


def udp(ts: float, src: str, dst: str, payload: bytes, sport: int = 40000, dport: int = 3880,
        ttl: int = 2) -> Packet:
    return Packet(ts, UDP, src, sport, dst, dport, payload, ttl)


def test_pcap_checker(tmp_path: Path) -> None:  # moved here from test_suite.py
    did = DeviceId.new()

    def alive(location: str) -> bytes:
        msg = isdp.DeviceOnlineAdvertisement(did, DeviceType("TV"), location, 1800)
        return isdp.encode(msg, host="224.0.0.110:3880")

    good, spoofed = alive("http://10.77.1.10:3880/IGRS"), alive("http://10.77.1.99:3880/IGRS")
    path = tmp_path / "c.pcap"
    write_pcap(str(path), [
        (1.0, "10.77.1.10", 3880, "224.0.0.110", 3880, good),
        (2.0, "10.77.1.10", 3880, "224.0.0.110", 3880, spoofed),
        (3.0, "10.77.1.11", 5000, "224.0.0.110", 3880, b"M-SEARCH * HTTP/1.1\r\nMX: x\r\n\r\n"),
        (4.0, "10.77.1.11", 5000, "10.77.1.12", 53, b"not igrs"),
    ])
    violations, seen = check_pcap(str(path))
    assert seen == 3
    assert len(violations) == 2
    assert "LOCATION host 10.77.1.99" in violations[0] and "does not decode" in violations[1]


def test_truncated_capture_reports_and_checks_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    write_pcap(path, [udp(float(i), "10.0.0.1", IPV4_GROUP, alive_from("10.0.0.9")) for i in range(1, 4)])
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # the third record is cut
    report = check_capture(path)
    assert report.notes[0] == "capture truncated at record 3: checked what was read before it"
    assert report.seen == 2 and len(report.violations) == 2  # LOCATION host 10.0.0.9 != 10.0.0.1
    path.write_bytes(data[:24 + 16 + 5])  # a record header claims more bytes than the file holds
    assert check_capture(path).notes[0].startswith("capture truncated at record 1")
    ng = tmp_path / "t.pcapng"
    whole = pcapng([shb("<"), idb("<", 101), *(epb("<", 0, i * 10**6, ip_bytes(udp(i, "10.0.0.1", IPV4_GROUP,
                                                                                     alive_from("10.0.0.1"))))
                                            for i in range(1, 4))])
    ng.write_bytes(whole[:-7])
    report = check_capture(ng)
    assert report.notes[0].startswith("capture truncated at record 3") and report.seen == 2
    assert report.violations == []
    for junk in (b"", b"\x0a\x0d\x0d\x0a" + b"\x00" * 20, b"hello world, not a capture"):
        path.write_bytes(junk)
        with pytest.raises(CaptureError):
            check_capture(path)
    cp = run_cli("pcap", str(path))
    assert cp.returncode == 2 and "not a pcap" in cp.stderr


# A minimal pcapng writer (either byte order) for the reader's unit tests.
def block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack(e + "II", btype, 12 + len(body)) + body + struct.pack(e + "I", 12 + len(body))


def shb(e: str) -> bytes:
    return block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def option(e: str, code: int, value: bytes) -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def idb(e: str, linktype: int, *options: bytes) -> bytes:
    opts = b"".join(options) + (struct.pack(e + "HH", 0, 0) if options else b"")
    return block(e, 1, struct.pack(e + "HHI", linktype, 0, 0) + opts)


def epb(e: str, ifid: int, units: int, frame: bytes) -> bytes:
    return block(e, 6, struct.pack(e + "IIIII", ifid, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame))
                 + frame)


def spb(e: str, frame: bytes) -> bytes:
    return block(e, 3, struct.pack(e + "I", len(frame)) + frame)


def pcapng(blocks: list[bytes]) -> bytes:
    return b"".join(blocks)


def ethernet(ip: bytes, vlan: bool = False) -> bytes:
    ethertype = b"\x86\xdd" if ip[0] >> 4 == 6 else b"\x08\x00"
    tag = b"\x81\x00\x00\x07" if vlan else b""
    return b"\x00\x11\x22\x33\x44\x55" * 2 + tag + ethertype + ip


def test_pcapng_sections_interfaces_and_link_types(tmp_path: Path) -> None:
    """Two sections (big- then little-endian), interfaces of different link types and timestamp
    resolutions, EPB and SPB: every datagram found, at the right time."""
    v4 = ip_bytes(udp(0, "10.0.0.1", IPV4_GROUP, alive_from("10.0.0.1")))
    v6 = ip_bytes(udp(0, "fe80::1", IPV6_GROUP, alive_from("fe80::1", host=f"[{IPV6_GROUP}]:3880")))
    sll = b"\x00\x04\x00\x01\x00\x06" + b"\x00" * 8 + b"\x08\x00" + v4
    sll2 = b"\x86\xdd\x00\x00" + b"\x00" * 16 + v6
    null_v6 = struct.pack("<I", 10) + v6
    data = pcapng([
        shb(">"),
        idb(">", 1),  # Ethernet, microseconds
        idb(">", 228, option(">", 9, b"\x09"), option(">", 14, struct.pack(">q", 100))),  # raw IPv4, ns, +100 s
        epb(">", 0, 1_500_000, ethernet(v4, vlan=True)),
        epb(">", 1, 2_250_000_000, v4),
        shb("<"),
        idb("<", 276, option("<", 9, b"\x83")),  # SLL2, 2^-3 s
        idb("<", 113),
        idb("<", 0),
        epb("<", 0, 40, sll2),
        epb("<", 1, 6_000_000, sll),
        epb("<", 2, 7_000_000, null_v6),
        spb("<", sll2),  # no timestamp: the previous one
        epb("<", 2, 8_000_000, struct.pack("<I", 99) + v4),  # unknown loopback family: skipped
    ])
    stats = CaptureStats()
    found = list(packets(data, stats))
    assert [p.src for p in found] == ["10.0.0.1", "10.0.0.1", "fe80::1", "10.0.0.1", "fe80::1", "fe80::1"]
    assert [p.ts for p in found] == pytest.approx([1.5, 102.25, 5.0, 6.0, 7.0, 7.0])
    assert stats.records == 7 and stats.truncated_at is None and stats.skipped["not IP"] == 1
    path = tmp_path / "two.pcapng"
    path.write_bytes(data)
    report = check_capture(path)
    assert report.seen == 6 and report.violations == [], report.violations


def test_ipv6_extension_headers_and_fragments() -> None:
    payload = alive_from("fe80::1", host=f"[{IPV6_GROUP}]:3880")
    udp_part = struct.pack("!HHHH", 40000, 3880, 8 + len(payload), 0) + payload

    def v6(next_header: int, ext: bytes) -> bytes:
        body = ext + udp_part
        addresses = socket.inet_pton(socket.AF_INET6, "fe80::1") + socket.inet_pton(socket.AF_INET6, IPV6_GROUP)
        return struct.pack("!IHBB", 6 << 28, len(body), next_header, 2) + addresses + body

    hop_by_hop = bytes([60, 0, 5, 2, 0, 0, 1, 0])  # -> dest-opts; router alert + PadN
    dest_opts = bytes([43, 0, 1, 4, 0, 0, 0, 0])  # -> routing
    routing = bytes([44, 0, 0, 0, 0, 0, 0, 0])  # -> fragment
    atomic = bytes([17, 0, 0, 0, 0, 0, 0, 1])  # fragment header, offset 0, M 0: not really a fragment
    first_fragment = bytes([17, 0, 0, 1, 0, 0, 0, 1])  # M set: a fragment
    stats = CaptureStats()
    ok = v6(0, hop_by_hop + dest_opts + routing + atomic)
    frag = v6(0, hop_by_hop + dest_opts + routing + first_fragment)
    cut = v6(0, hop_by_hop)[:44]  # extension header beyond the captured bytes
    data = pcapng([shb("<"), idb("<", 229), *(epb("<", 0, i, p) for i, p in enumerate((ok, frag, cut)))])
    found = list(packets(data, stats))
    assert [(p.src, p.dport, p.payload) for p in found] == [("fe80::1", 3880, payload)]
    assert stats.fragments == 1 and stats.skipped["malformed IP"] == 1
    checker = PassiveChecker()
    assert checker.packet(found[0]) == [] and checker.kinds["DeviceOnlineAdvertisement"] == 1
    v4_fragment = bytearray(ip_bytes(udp(0, "10.0.0.1", IPV4_GROUP, payload)))
    v4_fragment[6] |= 0x20  # more fragments
    stats = CaptureStats()
    assert list(packets(pcapng([shb("<"), idb("<", 101), epb("<", 0, 0, bytes(v4_fragment))]), stats)) == []
    assert stats.fragments == 1


# --- M-POST over TCP: reassembly and the message rules -----------------------------------------------
CLIENT, SERVER = ("10.0.0.2", 45000), ("10.0.0.1", 3880)
CP_ID, DEV_ID = DeviceId.new(), DeviceId.new()


def exchange(ack: int = 7, *, status: int | None = None, error: int | None = None,
             chunked: bool = False) -> tuple[bytes, bytes]:
    """A GetDeviceDescription request (SequenceId 7) and its answer, as bytes on the wire."""
    headers, body = messages.encode(messages.GetDeviceDescriptionRequest(), source=CP_ID, target=DEV_ID,
                                    sequence_id=7)
    request = messages.build_request("10.0.0.1:3880", headers, body)
    reply: messages.SoapMessage = messages.GetDeviceDescriptionResponse(
        messages.Status(ack), ddesc.DeviceDescription(DEV_ID, DeviceType("TV"), "TV"))
    if error is not None:
        reply = messages.ErrorResponse(messages.Status(ack, error, "no"))
    headers, body = messages.encode(reply, source=DEV_ID, target=CP_ID, sequence_id=1)
    code = status or (error or 200)
    if not chunked:
        return request, messages.build_response(headers, body, code)
    head = messages.build_response([*headers, ("Transfer-Encoding", "chunked")], b"", code)
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + 100]), body[i:i + 100])
                      for i in range(0, len(body), 100))
    return request, head + chunks + b"0\r\nX-Trailer: 1\r\n\r\n"


def segments(request: bytes, response: bytes, order: list[tuple[int, int]] | None = None,
             drop: tuple[int, int] | None = None) -> list[Packet]:
    """SYN, SYN-ACK, the request in the given (start, end) slices, the response in two
    overlapping slices, FINs."""
    c_isn, s_isn = 0xFFFFFF00, 5000  # the client's sequence numbers wrap around 2^32

    def seg(ts: float, src: tuple[str, int], dst: tuple[str, int], seq: int, data: bytes = b"",
            flags: int = 0x10) -> Packet:
        return Packet(ts, TCP, src[0], src[1], dst[0], dst[1], data, 64, seq & 0xFFFFFFFF, flags)

    order = order or [(0, len(request))]
    out = [seg(0.0, CLIENT, SERVER, c_isn, flags=0x02), seg(0.0, SERVER, CLIENT, s_isn, flags=0x12)]
    out += [seg(0.1 + i / 100, CLIENT, SERVER, c_isn + 1 + a, request[a:b])
            for i, (a, b) in enumerate(order) if (a, b) != drop]
    half = len(response) // 2
    out += [seg(0.3, SERVER, CLIENT, s_isn + 1, response[:half + 10]),
            seg(0.31, SERVER, CLIENT, s_isn + 1 + half, response[half:]),
            seg(0.4, CLIENT, SERVER, c_isn + 1 + len(request), flags=0x11),
            seg(0.4, SERVER, CLIENT, s_isn + 1 + len(response), flags=0x11)]
    return out


def run_checker(items: list[Packet]) -> PassiveChecker:
    checker = PassiveChecker()
    for p in items:
        checker.packet(p)
    checker.finish(items[-1].ts if items else None)
    return checker


def test_tcp_reassembly_out_of_order_retransmitted_and_overlapping() -> None:
    request, response = exchange()
    n = len(request)
    shuffled = [(0, 100), (200, n), (100, 200), (0, 100), (50, 150), (150, 260)]
    checker = run_checker(segments(request, response, shuffled))
    assert checker.violations == [] and checker.notes == []
    assert checker.kinds == {"GetDeviceDescriptionRequest": 1, "GetDeviceDescriptionResponse": 1}
    wrong = run_checker(segments(request, exchange(ack=8)[1], shuffled))
    assert [v.text for v in wrong.violations] == ["AcknowledgeId 8 != the request's SequenceId 7"]
    assert wrong.violations[0].where == "10.0.0.1:3880 -> 10.0.0.2:45000 (tcp)"


def test_tcp_gap_is_noted_once_and_not_checked() -> None:
    request, response = exchange(ack=8)
    n = len(request)
    checker = run_checker(segments(request, response, [(0, 100), (200, n), (100, 200)], drop=(100, 200)))
    # the answer is checked on its own (its request never completed): its AcknowledgeId cannot be judged
    assert checker.violations == [] and checker.kinds == {"GetDeviceDescriptionResponse": 1}
    assert checker.notes == [
        "TCP stream 10.0.0.2:45000 -> 10.0.0.1:3880 (tcp) has a gap, not checked from there on"]


def test_tcp_hostile_segmentation_stays_fast() -> None:
    """Thousands of one-byte segments in reverse order, and a head past the limit: done in
    well under a second each (bounded work per segment), the second noted."""
    request, response = exchange()
    started = time.monotonic()
    checker = run_checker(segments(request, response, [(i, i + 1) for i in reversed(range(len(request)))]))
    assert checker.kinds == {"GetDeviceDescriptionRequest": 1, "GetDeviceDescriptionResponse": 1}
    head = b"M-POST /IGRS HTTP/1.1\r\nX-Long: " + b"a" * 60000
    checker = run_checker(segments(head, b"", [(i, i + 100) for i in range(0, len(head), 100)]))
    assert checker.seen == 0 and len(checker.notes) == 1 and "HTTP head longer than" in checker.notes[0]
    assert time.monotonic() - started < 5


def test_http_rules_chunked_error_status_and_non_igrs_traffic() -> None:
    request, response = exchange(chunked=True)
    assert run_checker(segments(request, response)).violations == []
    request, response = exchange(error=501, status=200)
    texts = [(v.text, v.rule) for v in run_checker(segments(request, response)).violations]
    assert texts == [("ErrorResponse sent with HTTP status 200, not its ReturnCode 501", "return-codes.md")]
    head = (b"HEAD /IGRS/description.xml HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: 551\r\n\r\n")
    checker = run_checker(segments(*head))
    assert checker.violations == [] and checker.kinds == {"description": 1}
    get = b"GET /IGRS HTTP/1.1\r\nHost: x\r\n\r\n"
    allowed = b"HTTP/1.1 405 Method Not Allowed\r\nAllow: M-POST, POST\r\nContent-Length: 0\r\n\r\n"
    assert run_checker(segments(get, allowed)).violations == []
    texts = [v.text for v in run_checker(segments(get, b"HTTP/1.1 404 Not Found\r\n\r\n")).violations]
    assert texts == ["GET /IGRS answered 404 (Allow ''), not 405 with Allow: M-POST, POST"]
    other = b"GET /files/a HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    checker = run_checker(segments(*other))
    assert checker.seen == 0 and checker.violations == []
    checker = run_checker(segments(b"\x16\x03\x01 TLS hello", b"\x16\x03\x03 server hello"))
    assert checker.seen == 0 and checker.notes == []


def test_session_bodies_are_checked_against_their_message_type() -> None:
    """10.5/10.6 bodies travel as <Session> (messages.md §5): checked against the declaration of
    their 01-IGRSMessageType, so a CreateSessionRequest lacking a field is a violation (H4)."""
    from igrs.wire.bodies import sessions as ss

    headers, body = messages.encode(ss.CreateSessionRequest(5, 7, 9), source=CP_ID, target=DEV_ID,
                                    sequence_id=9)
    assert b"<Session " in body
    reply_headers, reply = messages.encode(ss.CreateSessionResponse(messages.Status(9), 7, 5, 11),
                                           source=DEV_ID, target=CP_ID, sequence_id=1)
    request = messages.build_request("10.0.0.1:3880", headers, body)
    answer = messages.build_response(reply_headers, reply)
    good = run_checker(segments(request, answer))
    assert good.violations == [] and good.kinds == {"CreateSessionRequest": 1, "CreateSessionResponse": 1}
    # a SessionId after the end of the declared sequence: decodable, not schema-valid
    bad_reply = reply.replace(b"<SessionId>11</SessionId>", b"").replace(
        b"<SourceServiceId>", b"<SessionId>11</SessionId><SourceServiceId>")
    texts = [v.text for v in run_checker(segments(request, messages.build_response(reply_headers, bad_reply)))
             .violations]
    assert len(texts) == 1 and "not valid against igrs-services.xsd" in texts[0], texts


# --- ISDP timing, sans-IO ------------------------------------------------------------------------
def test_search_response_deadline_and_searcher_id() -> None:
    searcher, device = DeviceId.new(), DeviceId.new()
    search = isdp.encode(isdp.SearchDeviceRequest(isdp.SearchTarget.all(), 1, searcher),
                         host="224.0.0.110:3880")

    def answer(requester: DeviceId | None) -> bytes:
        msg = isdp.SearchDeviceResponse(device, DeviceType("TV"), "http://10.0.0.1:3880/IGRS", 1800,
                                        isdp.SearchTarget.all(), requester=requester)
        return isdp.encode(msg, host="")

    def run(delay: float, requester: DeviceId | None = searcher, to: int = 5000) -> list[str]:
        checker = PassiveChecker()
        checker.datagram(10.0, "10.0.0.2", 5000, IPV4_GROUP, 3880, search, 2)
        found = checker.datagram(10.0 + delay, "10.0.0.1", 41000, "10.0.0.2", to, answer(requester), 64)
        assert checker.seen == (2 if to == 5000 else 1)
        return [f"{v.text} ({v.rule})" for v in found]

    assert run(1.9) == []
    assert run(2.1) == ["answered 2.10 s after the search, later than MX 1 s + 1 s grace (isdp.md §9 rule 7)"]
    assert run(9.0, to=5001) == []  # not sent to a searcher of this capture: not an ISDP datagram here
    other = DeviceId.new()
    assert run(0.5, other) == [f"01-TargetDeviceId {other} is not the searcher's 01-SourceDeviceId "
                               f"{searcher} (isdp.md §9 rule 8)"]
    assert run(0.5, None) == [f"no 01-TargetDeviceId although the search carried 01-SourceDeviceId "
                              f"{searcher} (isdp.md §9 rule 8)"]


def test_reannouncement_before_max_age() -> None:
    a, b = DeviceId.new(), DeviceId.new()

    def notify(device: DeviceId, nts: str = "alive") -> bytes:
        if nts == "byebye":
            return isdp.encode(isdp.DeviceOfflineAdvertisement(device, DeviceType("TV")),
                               host="224.0.0.110:3880")
        return isdp.encode(isdp.DeviceOnlineAdvertisement(device, DeviceType("TV"), "http://10.0.0.1:3880/IGRS",
                                                          10), host="224.0.0.110:3880")

    checker = PassiveChecker()
    feed = [(0.0, notify(a)), (0.0, notify(b)), (4.0, notify(a)), (5.0, notify(b, "byebye")), (15.5, notify(a))]
    found = [v for ts, data in feed for v in checker.datagram(ts, "10.0.0.1", 41000, IPV4_GROUP, 3880, data, 2)]
    assert [(v.ts, v.text, v.rule) for v in found] == [
        (15.5, "re-announced 11.5 s after the previous announcement, beyond its max-age 10 s", "isdp.md §8")]
    assert checker.finish(25.0) == []  # the last announcement's max-age has not passed yet
    assert [(v.ts, v.rule) for v in checker.finish(26.0)] == [(25.5, "isdp.md §8")]
    assert "no re-announcement (and no byebye) within max-age 10 s" in checker.violations[-1].text


def test_datagram_header_rules() -> None:
    good = alive_from("10.0.0.1")
    checker = PassiveChecker()
    assert checker.datagram(0, "10.0.0.1", 41000, IPV4_GROUP, 3880, good, 2) == []
    mangled = (good.replace(b"HOST: 224.0.0.110:3880", b"Host: 239.255.255.250:3880")
               .replace(b"\r\nSERVER: IGRS/1.0 igrs-python/0.1", b"").replace(b"isdp:alive", b"ISDP:ALIVE"))
    found = {(v.text, v.rule) for v in checker.datagram(1, "10.0.0.1", 41000, IPV4_GROUP, 3880, mangled, 5)}
    assert found == {
        ("header names not in the case the spec shows: Host", "isdp.md §1"),
        ("HOST '239.255.255.250:3880' is not the group:port it was sent to (224.0.0.110:3880)", "isdp.md §2"),
        ("headers every DeviceOnlineAdvertisement carries are missing: SERVER", "isdp.md §2"),
        ("NTS 'ISDP:ALIVE' is not emitted in lower case", "isdp.md §2"),
        ("multicast with TTL/hop limit 5, not MULTICAST_TTL 2", "transport.md TTL / hop limit"),
    }
    unicast = checker.datagram(2, "10.0.0.1", 41000, "10.0.0.7", 3880, good, 64)
    assert [v.text for v in unicast] == ["advertisement sent unicast, not to the ISDP group"]


# --- fuzz: the reader and the checker never fail on hostile input -------------------------------------
PREFIXES = [b"", b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + b"\x00" * 12 + b"\x01\x00\x00\x00",
            b"\xa1\xb2\x3c\x4d\x00\x02\x00\x04" + b"\x00" * 12 + b"\x00\x00\x00\xe5",
            shb("<") + idb("<", 1), shb(">") + idb(">", 276, option(">", 9, b"\x06")), b"\x0a\x0d\x0d\x0a"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(PREFIXES), data=st.binary(max_size=600))
def test_fuzz_capture_reader(prefix: bytes, data: bytes) -> None:
    stats = CaptureStats()
    try:
        found = list(packets(prefix + data, stats))
    except CaptureError:
        return
    checker = PassiveChecker()
    for p in found:
        checker.packet(p)
    checker.finish(stats.last_ts)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3000), st.binary(max_size=300),
                          st.sampled_from([0, 0x01, 0x02, 0x04])), max_size=12),
       st.binary(max_size=200))
def test_fuzz_checker_streams_and_datagrams(items: list[tuple[int, bytes, int]], datagram: bytes) -> None:
    request, response = exchange()
    stream = request + response
    checker = PassiveChecker()
    checker.datagram(0.0, "10.0.0.1", 3880, IPV4_GROUP, 3880, datagram, 2)
    for i, (offset, junk, flags) in enumerate(items):
        src, dst = (CLIENT, SERVER) if i % 2 else (SERVER, CLIENT)
        data = junk if i % 3 else stream[offset:offset + 400]
        checker.packet(Packet(float(i), TCP, src[0], src[1], dst[0], dst[1], data, 64, offset, flags))
    checker.finish(99.0)
