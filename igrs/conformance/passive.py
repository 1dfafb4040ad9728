"""Passive checker: read a pcap capture (stdlib only) and check every ISDP datagram
(UDP to or from the ISDP port) against the ISDP codec and the header rules of isdp.md.

This slice covers UDP/IPv4 in libpcap files (Ethernet, Linux cooked, raw IP links);
M-POST over TCP (stream reassembly), pcapng and IPv6 are open points.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from urllib.parse import urlsplit

from igrs.constants import IGRS_PORT, MAX_DATAGRAM
from igrs.wire import isdp

LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4 = 1, 101, 113, 228


def _records(data: bytes) -> Iterator[tuple[float, int, bytes]]:
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError("not a libpcap file (pcapng is not supported yet)")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        yield sec + frac / (1e9 if nano else 1e6), linktype, data[off:off + incl]
        off += incl


def _ipv4(linktype: int, frame: bytes) -> bytes | None:
    if linktype == LINKTYPE_ETHERNET:
        off, ethertype = 14, struct.unpack("!H", frame[12:14])[0]
        while ethertype == 0x8100 and len(frame) >= off + 4:  # VLAN tags
            ethertype = struct.unpack("!H", frame[off + 2:off + 4])[0]
            off += 4
        return frame[off:] if ethertype == 0x0800 else None
    if linktype == LINKTYPE_LINUX_SLL:
        return frame[16:] if struct.unpack("!H", frame[14:16])[0] == 0x0800 else None
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        return frame if frame[:1] and frame[0] >> 4 == 4 else None
    return None


def udp_datagrams(data: bytes) -> Iterator[tuple[float, str, int, str, int, bytes]]:
    """(time, src, sport, dst, dport, payload) of every unfragmented UDP/IPv4 datagram."""
    for ts, linktype, frame in _records(data):
        ip = _ipv4(linktype, frame)
        if ip is None or len(ip) < 20:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        if ip[9] != 17 or struct.unpack("!H", ip[6:8])[0] & 0x3FFF:
            continue  # not UDP, or a fragment
        udp = ip[ihl:total]
        if len(udp) < 8:
            continue
        sport, dport, length = struct.unpack("!HHH", udp[:6])
        yield (ts, str(ipaddress.IPv4Address(ip[12:16])), sport, str(ipaddress.IPv4Address(ip[16:20])),
               dport, udp[8:length])


def check_datagram(payload: bytes, src: str, dst: str) -> list[str]:
    """Violations of one ISDP datagram (empty list: conforming)."""
    if len(payload) > MAX_DATAGRAM:
        return [f"datagram of {len(payload)} bytes exceeds MAX_DATAGRAM {MAX_DATAGRAM} (isdp.md §1)"]
    try:
        msg = isdp.decode(payload)
    except Exception as exc:
        return [f"does not decode: {exc}"]
    problems = []
    location = getattr(msg, "location", None)
    if location is not None and urlsplit(location).hostname != src:
        problems.append(f"LOCATION host {urlsplit(location).hostname} != source address {src} "
                        "(transport.md Interfaces 4)")
    if isinstance(msg, isdp.SearchDeviceResponse) and ipaddress.ip_address(dst).is_multicast:
        problems.append("SearchDeviceResponse sent to a multicast group, not unicast (isdp.md §5)")
    if payload.startswith((b"NOTIFY", b"M-SEARCH")) and b"\r\n" not in payload:
        problems.append("not CRLF line ends (isdp.md §1: emitted with CRLF)")
    return problems


def check_pcap(path: str, *, port: int = IGRS_PORT) -> tuple[list[str], int]:
    """(violations as text lines, number of ISDP datagrams checked)."""
    with open(path, "rb") as f:
        data = f.read()
    out, seen = [], 0
    for ts, src, sport, dst, dport, payload in udp_datagrams(data):
        if port not in (sport, dport):
            continue
        seen += 1
        first = payload.split(b"\r\n", 1)[0][:60].decode("utf-8", "replace")
        out += [f"{ts:.6f} {src}:{sport} -> {dst}:{dport} [{first}]: {p}"
                for p in check_datagram(payload, src, dst)]
    return out, seen


def write_pcap(path: str, packets: list[tuple[float, str, int, str, int, bytes]]) -> None:
    """Write UDP/IPv4 packets as a raw-IPv4 libpcap file (for tests and examples)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        for ts, src, sport, dst, dport, payload in packets:
            udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 2, 17, 0,
                             ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + udp
            f.write(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(ip), len(ip)) + ip)
