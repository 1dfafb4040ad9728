"""When ISDP datagrams go out, sans-IO: the advertisement schedule and the search responder
that device discovery (``igrs.core.discovery``) and device groups
(``igrs.core.device_groups``) share. Rules: specs/isdp.md §8-§9, specs/groups.md §5.1, §5.5.

* ``AdvertisementSchedule`` — start-up copies, the periodic round with jitter, goodbye copies;
  it says *when*, its owner builds the datagrams.
* ``SearchResponder`` — the checks a search passes before it is answered (arrival subnet,
  one pending answer per requester and target, a pending cap, a per-requester rate, the
  byte budget) and the answer's delay of U(0, MX).
* ``SearchRepeats`` — the copies of a search a control point sends.

Also here: what the core needs to know of a local interface (``Interface``), the datagram
actions (``SendMulticast`` / ``SendUnicast``) and the drop counter.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from igrs.constants import (
    COPY_SPACING,
    IPV4_GROUP,
    IPV6_GROUP,
    MAX_MX,
    MAX_PENDING_RESPONSES,
    MAX_RESPONSE_BYTES_PER_REQUEST,
    MAX_TRACKED_SOURCES,
    REANNOUNCE_FRACTION,
    REANNOUNCE_JITTER,
    RESPONDER_BURST,
    RESPONDER_RATE,
    SEARCH_AMPLIFICATION,
    STARTUP_COPIES,
)
from igrs.core.ratelimit import KeyedRateLimiter
from igrs.core.timers import Timers

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = tuple[str, int]
S = TypeVar("S")


# --- what the core needs to know of a local interface ------------------------------------------
@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    address: str
    network: IPNetwork
    scope_id: int = 0
    device: str = ""  # the OS interface name, when ``name`` is made unique from it

    @property
    def os_name(self) -> str:
        return self.device or self.name

    @property
    def family(self) -> int:
        return self.network.version

    @classmethod
    def from_cidr(cls, name: str, cidr: str, scope_id: int = 0) -> Interface:
        iface = ipaddress.ip_interface(cidr)
        return cls(name, str(iface.ip), iface.network, scope_id)


def group_host(iface: Interface, port: int) -> str:
    return f"{IPV4_GROUP}:{port}" if iface.family == 4 else f"[{IPV6_GROUP}]:{port}"


# --- actions -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendMulticast:
    interface: str
    payload: bytes
    group: str = ""  # "" = the interface's own group (IPV4_GROUP / IPV6_GROUP); else this IPv4 group


@dataclass(frozen=True, slots=True)
class SendUnicast:
    interface: str
    address: Address
    payload: bytes


DatagramAction = SendMulticast | SendUnicast


@dataclass(slots=True)
class DropCounter:
    """Why datagrams were dropped (malformed, rate-limited, ...): for logs, tests, stats."""

    reasons: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str) -> None:
        self.reasons[reason] += 1

    @property
    def total(self) -> int:
        return sum(self.reasons.values())


# --- the advertisement schedule ------------------------------------------------------------------
CopyKind = Literal["alive", "update", "goodbye"]


@dataclass(frozen=True, slots=True)
class Copy(Generic[S]):
    """A further copy of an announcement about ``subject`` (an interface, a group, ...)."""

    subject: S
    kind: CopyKind = "alive"


@dataclass(frozen=True, slots=True)
class Round:
    """The periodic round: announce everything again (the next round is already scheduled)."""


@dataclass(frozen=True, slots=True)
class _RoundDue:
    generation: int


class AdvertisementSchedule(Generic[S]):
    """When a sender's advertisements go out (specs/isdp.md §8).

    The owner sends the first copy of an announcement itself and calls ``burst`` for the
    ``STARTUP_COPIES - 1`` further ones, ``COPY_SPACING`` apart; ``start_rounds`` starts the
    periodic round, every ``max_age * REANNOUNCE_FRACTION - U(0, REANNOUNCE_JITTER * max_age)``.
    ``due(now)`` returns the ``Copy`` and ``Round`` items whose time has come.
    """

    def __init__(self, max_age: int, rng: random.Random) -> None:
        self.max_age = max_age
        self.rng = rng
        self._timers: Timers[Copy[S] | _RoundDue] = Timers()
        self._generation = 0
        self.rounds_running = False

    def burst(self, subject: S, now: float, kind: CopyKind = "alive") -> None:
        for copy in range(1, STARTUP_COPIES):
            self._timers.add(now + copy * COPY_SPACING, Copy(subject, kind))

    def start_rounds(self, now: float) -> None:
        """(Re)start the periodic round from ``now``; a round already scheduled is dropped."""
        self._generation += 1
        self.rounds_running = True
        delay = self.max_age * REANNOUNCE_FRACTION - self.rng.uniform(0, REANNOUNCE_JITTER * self.max_age)
        self._timers.add(now + max(delay, 0.5), _RoundDue(self._generation))

    def stop_rounds(self) -> None:
        self._generation += 1
        self.rounds_running = False

    def clear(self) -> None:
        """Forget every pending copy and stop the rounds."""
        self._timers.clear()
        self.stop_rounds()

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def due(self, now: float) -> list[Copy[S] | Round]:
        out: list[Copy[S] | Round] = []
        for item in self._timers.due(now):
            if isinstance(item, Copy):
                out.append(item)
            elif item.generation == self._generation and self.rounds_running:
                out.append(Round())
                self.start_rounds(now)
        return out


# --- the search responder ------------------------------------------------------------------------
Answer = tuple[bytes, bytes | None]  # (the full datagram, a compact form or None)


def response_budget(request_size: int) -> int:
    """Bytes of answers a search of ``request_size`` bytes may draw (anti-amplification). Where
    the full answers together fit, no compact form is ever sent: a caller may leave them None."""
    return min(MAX_RESPONSE_BYTES_PER_REQUEST, SEARCH_AMPLIFICATION * request_size)


@dataclass(frozen=True, slots=True)
class _Pending:
    key: tuple[str, int, str]  # (requester ip, port, ST)
    actions: tuple[SendUnicast, ...]


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None


class SearchResponder:
    """Answers searches after the checks of specs/isdp.md §9, each refusal counted in ``drops``.

    No amplification: the datagrams answering one search total at most
    ``min(MAX_RESPONSE_BYTES_PER_REQUEST, SEARCH_AMPLIFICATION x the search's size)`` bytes.
    An answer that does not fit in full goes in its compact form (required headers only)
    if that fits; the first that fits in neither form ends the answer (``byte_cap``).
    """

    def __init__(self, rng: random.Random, drops: DropCounter) -> None:
        self.rng = rng
        self.drops = drops
        self.answered = 0  # searches answered (their answers sent)
        self._timers: Timers[_Pending] = Timers()
        self._pending: set[tuple[str, int, str]] = set()
        self._requesters = KeyedRateLimiter(RESPONDER_RATE, RESPONDER_BURST, MAX_TRACKED_SOURCES)

    def respond(self, answers: Callable[[], Iterable[Answer]], *, target: str, mx: int, request_size: int,
                source: Address, iface: Interface | None, now: float) -> None:
        """Schedule the answers to a search that arrived on ``iface`` from ``source``.
        ``answers`` is only called once the search passed the checks."""
        if iface is None:
            self.drops.drop("unknown_interface")
            return
        src_ip = parse_ip(source[0])
        if src_ip is None:
            self.drops.drop("bad_source")
            return
        if src_ip not in iface.network:
            # Anti-reflection: a search from outside the link is spoofed or misrouted.
            self.drops.drop("off_subnet")
            return
        key = (str(src_ip), source[1], target)
        if key in self._pending:
            return  # an answer to this requester and target is already on its way
        if len(self._pending) >= MAX_PENDING_RESPONSES:
            self.drops.drop("responder_busy")
            return
        if not self._requesters.allow(str(src_ip), now):
            self.drops.drop("requester_rate")
            return
        budget = response_budget(request_size)
        payloads: list[SendUnicast] = []
        for full, compact in answers():
            payload = full if len(full) <= budget else compact
            if payload is None or len(payload) > budget:
                self.drops.drop("byte_cap")
                break
            budget -= len(payload)
            payloads.append(SendUnicast(iface.name, source, payload))
        if not payloads:
            return
        self._pending.add(key)
        delay = self.rng.uniform(0, min(max(mx, 0), MAX_MX))
        self._timers.add(now + delay, _Pending(key, tuple(payloads)))

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def due(self, now: float) -> list[SendUnicast]:
        out: list[SendUnicast] = []
        for item in self._timers.due(now):
            self._pending.discard(item.key)
            self.answered += 1
            out.extend(item.actions)
        return out

    def clear(self) -> None:
        self._timers.clear()
        self._pending.clear()


# --- a control point's search copies ---------------------------------------------------------------
class SearchRepeats:
    """The further copies of a search (specs/isdp.md §10): ``retries - 1`` of them, spread
    over the first half of MX and at most 0.25 s apart."""

    def __init__(self) -> None:
        self._timers: Timers[tuple[SendMulticast, ...]] = Timers()

    def schedule(self, sends: tuple[SendMulticast, ...], mx: int, retries: int, now: float) -> None:
        spacing = min(0.25, mx / max(retries, 1) / 2)
        for copy in range(1, retries):
            self._timers.add(now + copy * spacing, sends)

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def due(self, now: float) -> list[SendMulticast]:
        return [send for sends in self._timers.due(now) for send in sends]


def earliest(*deadlines: float | None) -> float | None:
    """The earliest of some deadlines, None when there is none."""
    return min((d for d in deadlines if d is not None), default=None)
