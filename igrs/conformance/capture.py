"""Capture files for the passive checker, stdlib only: libpcap (µs and ns) and pcapng
(SHB/IDB/EPB/SPB/PB, either byte order, per-interface link type and ``if_tsresol``), link
layers Ethernet (VLAN tags), Linux cooked SLL/SLL2, raw IP, BSD loopback; IPv4 and IPv6
(extension headers skipped, fragments counted and skipped); UDP datagrams and TCP segments.
Also the sans-IO TCP reassembly the M-POST checks read streams from.

Every length read from a file is checked against the bytes that are really there before it
is used: a truncated or corrupt capture stops the reading (``CaptureStats.truncated_at``)
and what was read before stays usable. ``CaptureError`` (a ``ValueError``) is the only
error raised, and only when the file is not a capture at all. Format: specs/conformance/passive.md.
"""

from __future__ import annotations

import ipaddress
import mmap
import os
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

from igrs.constants import MULTICAST_TTL

UDP: Final = 17
TCP: Final = 6

LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276
LINK_TYPES: Final = frozenset({LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL,
                               LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2})

_PCAP_MAGIC: Final = {  # magic bytes -> (byte order, seconds per fraction unit)
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_SHB: Final = 0x0A0D0D0A
_BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D
_IDB, _PB, _SPB, _EPB = 1, 2, 3, 6
_OPT_TSRESOL, _OPT_TSOFFSET = 9, 14
_ETH_VLAN: Final = frozenset({0x8100, 0x88A8, 0x9100})
_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD
_AF_INET6: Final = frozenset({10, 24, 28, 30})  # Linux, NetBSD/OpenBSD, FreeBSD, macOS
_V6_EXT: Final = frozenset({0, 43, 60, 135, 139, 140})  # hop-by-hop, routing, dest-opts, mobility, HIP, shim6
_V6_FRAGMENT, _V6_AH = 44, 51


class CaptureError(ValueError):
    """Not a capture file this reader understands (bad magic or header)."""


@dataclass
class CaptureStats:
    """What reading a capture found beside the packets."""

    records: int = 0  # packet records read (all link types)
    truncated_at: int | None = None  # 1-based number of the record that could not be read
    fragments: int = 0  # IP fragments skipped
    skipped: Counter[str] = field(default_factory=Counter)  # other records not decoded, by reason
    first_ts: float | None = None
    last_ts: float | None = None

    def saw(self, ts: float) -> None:
        self.records += 1
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)


@dataclass(frozen=True, slots=True)
class Packet:
    """One UDP datagram or TCP segment of an unfragmented IPv4/IPv6 packet."""

    ts: float
    proto: int  # UDP or TCP
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes
    ttl: int  # IPv4 TTL / IPv6 hop limit
    seq: int = 0  # TCP only
    flags: int = 0  # TCP only (FIN 0x01, SYN 0x02, RST 0x04)
    truncated: bool = False  # fewer bytes captured than the packet carried (snaplen)


# --- records -----------------------------------------------------------------------------------
def records(buf: bytes | mmap.mmap, stats: CaptureStats) -> Iterator[tuple[float, int, bytes]]:
    """(time, link type, frame) of every packet record; CaptureError if not a capture."""
    magic = bytes(buf[:4])
    if magic in _PCAP_MAGIC:
        yield from _pcap_records(buf, stats)
    elif len(buf) >= 12 and struct.unpack_from("<I", buf, 0)[0] == _SHB:
        yield from _pcapng_records(buf, stats)
    else:
        raise CaptureError("not a pcap or pcapng capture")


def _pcap_records(buf: bytes | mmap.mmap, stats: CaptureStats) -> Iterator[tuple[float, int, bytes]]:
    if len(buf) < 24:
        stats.truncated_at = 1
        return
    endian, unit = _PCAP_MAGIC[bytes(buf[:4])]
    linktype = struct.unpack_from(endian + "I", buf, 20)[0] & 0x0FFFFFFF
    off, size = 24, len(buf)
    while off < size:
        if off + 16 > size:
            stats.truncated_at = stats.records + 1
            return
        sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", buf, off)
        if incl > size - off - 16:
            stats.truncated_at = stats.records + 1
            return
        ts = sec + frac * unit
        stats.saw(ts)
        yield ts, linktype, bytes(buf[off + 16:off + 16 + incl])
        off += 16 + incl


@dataclass
class _Interface:
    linktype: int
    unit: float = 1e-6  # seconds per timestamp unit (if_tsresol)
    offset: int = 0  # if_tsoffset, seconds
    snaplen: int = 0


def _pcapng_records(buf: bytes | mmap.mmap, stats: CaptureStats) -> Iterator[tuple[float, int, bytes]]:
    off, size, endian = 0, len(buf), "<"
    interfaces: list[_Interface] = []
    last_ts = 0.0
    while off + 12 <= size:
        btype = struct.unpack_from(endian + "I", buf, off)[0]
        if btype == _SHB:  # a new section: its own byte order and interfaces
            order = struct.unpack_from("<I", buf, off + 8)[0]
            if order not in (_BYTE_ORDER_MAGIC, 0x4D3C2B1A):
                if off == 0:
                    raise CaptureError("pcapng section header without byte-order magic")
                break
            endian = "<" if order == _BYTE_ORDER_MAGIC else ">"
            interfaces = []
        length = struct.unpack_from(endian + "I", buf, off + 4)[0]
        if length < 12 or length % 4 or length > size - off:
            break
        body = bytes(buf[off + 8:off + length - 4])
        off += length
        if btype == _IDB:
            interfaces.append(_idb(body, endian))
            continue
        packet = _packet_block(btype, body, endian, interfaces, last_ts)
        if packet is None:
            continue
        if packet is _BAD:
            off = size + 1  # corrupt: report truncation below
            break
        ts, linktype, frame = packet
        last_ts = ts
        stats.saw(ts)
        yield ts, linktype, frame
    if off != size:
        stats.truncated_at = stats.records + 1


_BAD: Final = (0.0, -1, b"")


def _idb(body: bytes, endian: str) -> _Interface:
    if len(body) < 8:
        return _Interface(-1)
    linktype, _reserved, snaplen = struct.unpack_from(endian + "HHI", body, 0)
    iface = _Interface(linktype, snaplen=snaplen)
    for code, value in _options(body[8:], endian):
        if code == _OPT_TSRESOL and len(value) >= 1:
            v = value[0]
            iface.unit = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -min(v, 30)
        elif code == _OPT_TSOFFSET and len(value) >= 8:
            iface.offset = struct.unpack_from(endian + "q", value, 0)[0]
    return iface


def _options(data: bytes, endian: str) -> Iterator[tuple[int, bytes]]:
    off = 0
    while off + 4 <= len(data):
        code, length = struct.unpack_from(endian + "HH", data, off)
        if code == 0:
            return
        yield code, data[off + 4:off + 4 + length]
        off += 4 + length + (-length % 4)


def _packet_block(btype: int, body: bytes, endian: str, interfaces: list[_Interface],
                  last_ts: float) -> tuple[float, int, bytes] | None:
    """(time, link type, frame) of an EPB/SPB/PB; None for other blocks; _BAD if corrupt."""
    if btype == _EPB:
        if len(body) < 20:
            return _BAD
        ifid, high, low, caplen, _orig = struct.unpack_from(endian + "IIIII", body, 0)
        start = 20
    elif btype == _PB:
        if len(body) < 20:
            return _BAD
        ifid, _drops, high, low, caplen, _orig = struct.unpack_from(endian + "HHIIII", body, 0)
        start = 20
    elif btype == _SPB:
        if len(body) < 4 or not interfaces:
            return _BAD
        ifid, high, low = 0, -1, 0
        orig = struct.unpack_from(endian + "I", body, 0)[0]
        snap = interfaces[0].snaplen or orig
        caplen, start = min(orig, snap, len(body) - 4), 4
    else:
        return None
    if ifid >= len(interfaces) or caplen > len(body) - start:
        return _BAD
    iface = interfaces[ifid]
    ts = last_ts if high < 0 else ((high << 32) | low) * iface.unit + iface.offset
    return ts, iface.linktype, body[start:start + caplen]


# --- link and network layers -------------------------------------------------------------------
def network_layer(linktype: int, frame: bytes) -> bytes | None:
    """The IPv4/IPv6 packet inside a frame, None for anything else."""
    ethertype, off = None, 0
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        ethertype, off = struct.unpack_from("!H", frame, 12)[0], 14
        while ethertype in _ETH_VLAN and len(frame) >= off + 4:
            ethertype, off = struct.unpack_from("!H", frame, off + 2)[0], off + 4
    elif linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return None
        ethertype, off = struct.unpack_from("!H", frame, 14)[0], 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return None
        ethertype, off = struct.unpack_from("!H", frame, 0)[0], 20
    elif linktype == LINKTYPE_NULL:
        if len(frame) < 4:
            return None
        family = {struct.unpack_from("<I", frame, 0)[0], struct.unpack_from(">I", frame, 0)[0]}
        ethertype = _ETH_IPV4 if 2 in family else _ETH_IPV6 if family & _AF_INET6 else None
        off = 4
    elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return frame
    if ethertype not in (_ETH_IPV4, _ETH_IPV6):
        return None
    return frame[off:]


class _Fragment(Exception):
    pass


def ip_packet(ts: float, ip: bytes, stats: CaptureStats) -> Packet | None:
    """The UDP/TCP content of one IP packet (None: not UDP/TCP, malformed, or a fragment)."""
    version = ip[0] >> 4 if ip else 0
    try:
        if version == 4:
            parsed = _ipv4(ip)
        elif version == 6:
            parsed = _ipv6(ip)
        else:
            stats.skipped["not IP"] += 1
            return None
    except _Fragment:
        stats.fragments += 1
        return None
    if parsed is None:
        stats.skipped["malformed IP"] += 1
        return None
    src, dst, proto, ttl, l4, truncated = parsed
    if proto == UDP and len(l4) >= 8:
        sport, dport, length = struct.unpack_from("!HHH", l4, 0)
        if length < 8:
            stats.skipped["malformed UDP"] += 1
            return None
        payload = l4[8:length]
        return Packet(ts, UDP, src, sport, dst, dport, payload, ttl,
                      truncated=truncated or len(payload) < length - 8)
    if proto == TCP and len(l4) >= 20:
        sport, dport, seq, _ack, offset, flags = struct.unpack_from("!HHIIBB", l4, 0)
        header = (offset >> 4) * 4
        if header < 20 or header > len(l4):
            stats.skipped["malformed TCP"] += 1
            return None
        return Packet(ts, TCP, src, sport, dst, dport, l4[header:], ttl, seq, flags, truncated)
    stats.skipped["not UDP/TCP"] += 1
    return None


_Parsed = tuple[str, str, int, int, bytes, bool]


def _ipv4(ip: bytes) -> _Parsed | None:
    if len(ip) < 20:
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack_from("!H", ip, 2)[0]
    if ihl < 20 or total < ihl:
        return None
    if struct.unpack_from("!H", ip, 6)[0] & 0x3FFF:  # MF flag or a fragment offset
        raise _Fragment
    return (str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20])), ip[9], ip[8],
            ip[ihl:total], len(ip) < total)


def _ipv6(ip: bytes) -> _Parsed | None:
    if len(ip) < 40:
        return None
    payload_len, next_header, hop_limit = struct.unpack_from("!HBB", ip, 4)
    end = 40 + payload_len
    off = 40
    while next_header in _V6_EXT or next_header in (_V6_FRAGMENT, _V6_AH):
        if off + 8 > min(end, len(ip)):
            return None
        if next_header == _V6_FRAGMENT:
            if struct.unpack_from("!H", ip, off + 2)[0] != 0:  # offset or M set: not atomic
                raise _Fragment
            length = 8
        elif next_header == _V6_AH:
            length = (ip[off + 1] + 2) * 4
        else:
            length = (ip[off + 1] + 1) * 8
        next_header = ip[off]
        off += length
    if payload_len == 0 or off > end:  # jumbogram or headers longer than the payload
        return None
    src = str(ipaddress.IPv6Address(ip[8:24]))
    dst = str(ipaddress.IPv6Address(ip[24:40]))
    return src, dst, next_header, hop_limit, ip[off:end], len(ip) < end


def packets(buf: bytes | mmap.mmap, stats: CaptureStats) -> Iterator[Packet]:
    """Every UDP datagram and TCP segment of a capture held in ``buf``."""
    for ts, linktype, frame in records(buf, stats):
        if linktype not in LINK_TYPES:
            stats.skipped[f"link type {linktype}"] += 1
            continue
        ip = network_layer(linktype, frame)
        if ip is None:
            stats.skipped["not IP"] += 1
            continue
        packet = ip_packet(ts, ip, stats)
        if packet is not None:
            yield packet


@contextmanager
def open_capture(path: str | os.PathLike[str]) -> Iterator[bytes | mmap.mmap]:
    """The file's bytes, memory-mapped (a capture may be larger than memory)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            yield b""
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            yield mm


# --- TCP reassembly ----------------------------------------------------------------------------
Endpoint = tuple[str, int]
FlowKey = tuple[Endpoint, Endpoint]  # (sender, receiver) of one direction


MAX_PENDING_SEGMENTS: Final = 1024  # out-of-order segments held per direction (bounds the drain work)


def _signed(delta: int) -> int:
    delta &= 0xFFFFFFFF
    return delta - (1 << 32) if delta & 0x80000000 else delta


@dataclass
class HalfStream:
    """One direction of a TCP connection, delivered in sequence order."""

    next_seq: int
    from_syn: bool  # the capture saw the start of the stream
    pending: dict[int, bytes] = field(default_factory=dict)  # out-of-order segments by seq
    pending_bytes: int = 0
    gap: bool = False
    fin: bool = False

    def add(self, seq: int, data: bytes, limit: int) -> bytes:
        """The bytes this segment makes deliverable (in order); sets ``gap`` when the
        out-of-order buffer would exceed ``limit`` bytes or MAX_PENDING_SEGMENTS segments."""
        if self.gap or not data:
            return b""
        if _signed(seq - self.next_seq) > 0:
            old = self.pending.get(seq, b"")
            if len(data) > len(old):
                self.pending[seq] = data
                self.pending_bytes += len(data) - len(old)
            if self.pending_bytes > limit or len(self.pending) > MAX_PENDING_SEGMENTS:
                self.mark_gap()
            return b""
        out = bytearray(self._take(seq, data))
        while self.pending:
            first = min(self.pending, key=lambda s: _signed(s - self.next_seq))
            if _signed(first - self.next_seq) > 0:
                break
            chunk = self.pending.pop(first)
            self.pending_bytes -= len(chunk)
            out += self._take(first, chunk)
        return bytes(out)

    def _take(self, seq: int, data: bytes) -> bytes:
        skip = -_signed(seq - self.next_seq)  # retransmitted / overlapping bytes
        fresh = data[skip:] if skip < len(data) else b""
        self.next_seq = (self.next_seq + len(fresh)) & 0xFFFFFFFF
        return fresh

    def mark_gap(self) -> None:
        self.gap = True
        self.pending.clear()
        self.pending_bytes = 0


@dataclass(frozen=True, slots=True)
class StreamData:
    """In-order bytes of one direction (``data``), or the news that it has a gap or ended."""

    flow: FlowKey
    data: bytes = b""
    gap: bool = False
    closed: bool = False


class TcpReassembler:
    """In-order reassembly per 4-tuple: retransmissions and overlaps trimmed by sequence
    number, out-of-order segments held (at most ``max_buffer`` bytes per direction), a hole
    that cannot be filled reported once as a gap; at most ``max_streams`` directions tracked."""

    def __init__(self, *, max_streams: int, max_buffer: int) -> None:
        self.max_streams = max_streams
        self.max_buffer = max_buffer
        self.streams: dict[FlowKey, HalfStream] = {}
        self.ended: dict[FlowKey, None] = {}  # recently closed: late retransmissions ignored
        self.refused = 0  # directions not tracked because of max_streams

    def segment(self, p: Packet) -> list[StreamData]:
        flow: FlowKey = ((p.src, p.sport), (p.dst, p.dport))
        out: list[StreamData] = []
        half = self.streams.get(flow)
        syn, fin, rst = p.flags & 0x02, p.flags & 0x01, p.flags & 0x04
        if half is None or (syn and half.fin):
            if rst or (half is None and not syn and (not p.payload or flow in self.ended)):
                return out
            self.ended.pop(flow, None)
            if len(self.streams) >= self.max_streams:
                self.refused += 1
                return out
            half = self.streams[flow] = HalfStream((p.seq + 1) & 0xFFFFFFFF if syn else p.seq, bool(syn))
        seq = (p.seq + 1) & 0xFFFFFFFF if syn else p.seq
        if p.truncated and p.payload:
            half.mark_gap()
        was_gap = half.gap
        data = half.add(seq, p.payload, self.max_buffer)
        if data:
            out.append(StreamData(flow, data))
        if half.gap and not was_gap:
            out.append(StreamData(flow, gap=True))
        if fin and not half.fin:
            half.fin = True
        if rst or (half.fin and not half.pending):
            out += self._close(flow)
        return out

    def forget(self, flow: FlowKey) -> None:
        """Stop following a direction (not HTTP, or given up on): its later segments are
        ignored, until a new SYN on the same 4-tuple."""
        if self.streams.pop(flow, None) is not None:
            self._ended(flow)

    def _ended(self, flow: FlowKey) -> None:
        self.ended[flow] = None
        if len(self.ended) > self.max_streams:
            del self.ended[next(iter(self.ended))]

    def _close(self, flow: FlowKey) -> list[StreamData]:
        half = self.streams.pop(flow)
        self._ended(flow)
        out = [StreamData(flow, gap=True)] if half.pending and not half.gap else []
        return [*out, StreamData(flow, closed=True)]

    def finish(self) -> list[StreamData]:
        """End of the capture: every direction still open ends (a hole left is a gap)."""
        out: list[StreamData] = []
        for flow in list(self.streams):
            out += self._close(flow)
        return out


# --- writing captures (tests, examples) --------------------------------------------------
UdpTuple = tuple[float, str, int, str, int, bytes]


def ip_bytes(p: Packet) -> bytes:
    """An IPv4 or IPv6 packet (no options, checksums 0) carrying a Packet's UDP/TCP payload."""
    if p.proto == UDP:
        l4 = struct.pack("!HHHH", p.sport, p.dport, 8 + len(p.payload), 0) + p.payload
    else:
        l4 = struct.pack("!HHIIBBHHH", p.sport, p.dport, p.seq, 0, 5 << 4, p.flags, 65535, 0, 0) + p.payload
    if ":" in p.src:
        return (struct.pack("!IHBB", 6 << 28, len(l4), p.proto, p.ttl) + ipaddress.IPv6Address(p.src).packed
                + ipaddress.IPv6Address(p.dst).packed + l4)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, p.ttl, p.proto, 0,
                       ipaddress.IPv4Address(p.src).packed, ipaddress.IPv4Address(p.dst).packed) + l4


def write_pcap(path: str | os.PathLike[str], items: Sequence[UdpTuple | Packet]) -> None:
    """Write packets as a raw-IP libpcap file; a tuple is a UDP datagram (TTL MULTICAST_TTL)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for item in items:
            p = item if isinstance(item, Packet) else Packet(item[0], UDP, item[1], item[2], item[3], item[4],
                                                              item[5], MULTICAST_TTL)
            ip = ip_bytes(p)
            f.write(struct.pack("<IIII", int(p.ts), round((p.ts % 1) * 1e6) % 1000000, len(ip), len(ip)) + ip)
