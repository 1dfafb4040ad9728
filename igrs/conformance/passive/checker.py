"""``PassiveChecker``: datagrams and TCP segments in, violations out; ``check_capture`` runs
it over a capture file (specs/conformance/passive.md §5)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from igrs.conformance.capture import (
    TCP,
    UDP,
    CaptureStats,
    Endpoint,
    Packet,
    StreamData,
    TcpReassembler,
    open_capture,
    packets,
)
from igrs.conformance.cases import GRACE
from igrs.conformance.passive.datagram_rules import check_datagram
from igrs.conformance.passive.http_exchanges import HttpConnection
from igrs.conformance.passive.isdp_timing import IsdpTiming
from igrs.conformance.passive.limits import MAX_NOTES, MAX_TCP_STREAMS, STREAM_BUFFER
from igrs.conformance.passive.violations import Problem, Violation, endpoint_text
from igrs.constants import IGRS_PORT


@dataclass
class PassiveChecker:
    """Feed it ``datagram()``s and ``packet()``s in time order; read ``violations``/``notes``.

    ``port``: the ISDP UDP port. A UDP datagram is an ISDP one when it goes to or from that
    port, or to the address:port an M-SEARCH of this capture came from (search answers).
    ``keep``: keep every violation in ``violations`` (a live watch sets False and takes the
    returned lists instead).
    """

    port: int = IGRS_PORT
    grace: float = GRACE
    keep: bool = True
    seen: int = 0  # IGRS messages checked
    kinds: Counter[str] = field(default_factory=Counter)  # checked messages by type
    count: int = 0  # violations found
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    notes_dropped: int = 0

    def __post_init__(self) -> None:
        self.timing = IsdpTiming(self.grace)
        self.tcp = TcpReassembler(max_streams=MAX_TCP_STREAMS, max_buffer=STREAM_BUFFER)
        self.connections: dict[frozenset[Endpoint], HttpConnection] = {}
        self._found: list[Violation] = []

    # --- output ---
    def report(self, ts: float, where: str, what: str, problems: Iterable[Problem], kind: str = "") -> None:
        """One IGRS message checked (``kind``: its type), with its violations."""
        self.seen += 1
        self.kinds[kind or what] += 1
        for text, rule in problems:
            self._add(Violation(ts, where, what, text, rule))

    def _add(self, violation: Violation) -> None:
        self.count += 1
        self._found.append(violation)
        if self.keep:
            self.violations.append(violation)

    def note(self, text: str) -> None:
        if not text:
            return
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)
        else:
            self.notes_dropped += 1

    def _take(self) -> list[Violation]:
        found, self._found = self._found, []
        return found

    # --- input ---
    def datagram(self, ts: float, src: str, sport: int, dst: str, dport: int, payload: bytes,
                 ttl: int | None = None) -> list[Violation]:
        """Check one UDP datagram (ignored unless it is an ISDP one); the violations found."""
        if self.port not in (sport, dport) and not self.timing.is_searcher((dst, dport)):
            return []
        where = f"{endpoint_text(src, sport)} -> {endpoint_text(dst, dport)}"
        what = payload.split(b"\n", 1)[0][:60].decode("utf-8", "replace").rstrip("\r")
        msg, problems = check_datagram(payload, src, dst, dport, ttl)
        if msg is not None:
            problems += self.timing.observe(ts, msg, (src, sport), (dst, dport), where, what)
        self.report(ts, where, what, problems, msg.message_type if msg is not None else "undecodable")
        return self._take()

    def packet(self, p: Packet) -> list[Violation]:
        if p.proto == UDP:
            if p.truncated:
                if self.port in (p.sport, p.dport):
                    self.note(f"{p.ts:.6f} {endpoint_text(p.src, p.sport)} -> {endpoint_text(p.dst, p.dport)}: "
                              "datagram cut by the capture's snap length, not checked")
                return []
            return self.datagram(p.ts, p.src, p.sport, p.dst, p.dport, p.payload, p.ttl)
        if p.proto == TCP:
            refused = self.tcp.refused
            for item in self.tcp.segment(p):
                self._stream(p.ts, item)
            if self.tcp.refused > refused and not refused:
                self.note(f"more than {MAX_TCP_STREAMS} TCP streams at once: later ones are not checked")
        return self._take()

    def _stream(self, ts: float, item: StreamData) -> None:
        key = frozenset(item.flow)
        conn = self.connections.get(key)
        if conn is None:
            if not item.data:
                return
            back = self.tcp.streams.get((item.flow[1], item.flow[0]))
            this = self.tcp.streams.get(item.flow)
            synced = this is not None and this.from_syn and (back is None or back.from_syn)
            conn = self.connections[key] = HttpConnection(self, synced)
        if item.data:
            conn.feed(ts, item.flow, item.data)
        if item.gap:
            conn.gap(item.flow)
        if item.closed:
            conn.close(ts, item.flow)
        if conn.state in ("ignored", "done"):  # not HTTP, or given up on: stop following it
            for flow in (item.flow, (item.flow[1], item.flow[0])):
                self.tcp.forget(flow)
            del self.connections[key]
        elif len(conn.closed) == 2:
            del self.connections[key]

    def expire(self, now: float) -> list[Violation]:
        """Announcements overdue at ``now`` (a live watch calls this periodically)."""
        for violation in self.timing.overdue(now):
            self._add(violation)
        return self._take()

    def finish(self, end: float | None) -> list[Violation]:
        """End of input at time ``end``: open TCP streams end, overdue announcements count."""
        for item in self.tcp.finish():
            self._stream(end or 0.0, item)
        if end is not None:
            for violation in self.timing.overdue(end):
                self._add(violation)
        return self._take()


# --- captures --------------------------------------------------------------------------------------
@dataclass
class CaptureReport:
    violations: list[Violation]
    notes: list[str]
    seen: int
    kinds: Counter[str]  # checked messages by type ("description": GET description.xml answers)
    stats: CaptureStats


def check_capture(path: str | os.PathLike[str], *, port: int = IGRS_PORT,
                  grace: float = GRACE) -> CaptureReport:
    """Check every IGRS message of a pcap/pcapng file (CaptureError if it is not one)."""
    checker = PassiveChecker(port=port, grace=grace)
    stats = CaptureStats()
    with open_capture(path) as buf:
        for p in packets(buf, stats):
            checker.packet(p)
    checker.finish(stats.last_ts)
    notes = []
    if stats.truncated_at is not None:
        notes.append(f"capture truncated at record {stats.truncated_at}: checked what was read before it")
    if stats.fragments:
        notes.append(f"{stats.fragments} IP fragment(s) skipped (not reassembled)")
    notes += [f"{n} record(s) skipped: {reason}" for reason, n in sorted(stats.skipped.items())
              if reason.startswith("link type")]
    notes += checker.notes
    if checker.notes_dropped:
        notes.append(f"{checker.notes_dropped} more note(s) not shown")
    return CaptureReport(checker.violations, notes, checker.seen, checker.kinds, stats)


def check_pcap(path: str | os.PathLike[str], *, port: int = IGRS_PORT) -> tuple[list[str], int]:
    """(violations as text lines, number of IGRS messages checked)."""
    report = check_capture(path, port=port)
    return [str(v) for v in report.violations], report.seen
