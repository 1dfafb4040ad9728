"""The shared datagram machinery (igrs/core/datagram_schedule.py) and the deadline structures
(igrs/core/timers.py), with fake time."""

from __future__ import annotations

import random

import pytest

from igrs.constants import (
    COPY_SPACING,
    MAX_RESPONSE_BYTES_PER_REQUEST,
    REANNOUNCE_FRACTION,
    REANNOUNCE_JITTER,
    SEARCH_AMPLIFICATION,
    STARTUP_COPIES,
)
from igrs.core.datagram_schedule import (
    AdvertisementSchedule,
    Copy,
    DropCounter,
    Interface,
    Round,
    SearchRepeats,
    SearchResponder,
    SendMulticast,
)
from igrs.core.timers import ExpiryQueue, Timers

LAN = Interface.from_cidr("eth0", "10.77.1.10/24")


# --- timers ------------------------------------------------------------------------------------
def test_timers_come_out_in_due_order() -> None:
    t: Timers[str] = Timers()
    for due, item in ((3.0, "c"), (1.0, "a"), (2.0, "b"), (1.0, "a2")):
        t.add(due, item)
    assert t.next_deadline() == 1.0
    assert t.due(1.5) == ["a", "a2"]
    assert t.due(10.0) == ["b", "c"] and t.next_deadline() is None


class TestExpiryQueue:
    def test_postponed_expiry_is_exact(self) -> None:
        q: ExpiryQueue[str] = ExpiryQueue()
        q.set("a", 10.0)
        q.set("b", 12.0)
        q.set("a", 20.0)  # refreshed: no longer the first
        assert q.next_deadline() == 12.0
        assert q.expired(15.0) == ["b"]
        assert q.next_deadline() == 20.0 and q.expired(19.9) == [] and q.expired(20.0) == ["a"]
        assert len(q) == 0 and q.next_deadline() is None

    def test_brought_forward_and_discarded(self) -> None:
        q: ExpiryQueue[str] = ExpiryQueue()
        q.set("a", 10.0)
        q.set("a", 5.0)
        assert q.next_deadline() == 5.0
        q.set("b", 7.0)
        q.discard("a")
        assert q.next_deadline() == 7.0 and "a" not in q
        q.set("a", 8.0)  # back again, later than its old entry
        assert q.expired(100.0) == ["b", "a"]

    def test_memory_stays_proportional_under_churn(self) -> None:
        q: ExpiryQueue[int] = ExpiryQueue()
        for i in range(10_000):
            q.set(i, 1000.0 - i * 0.01)
            q.set(i, 10.0 + i * 0.001)  # brought forward: a second heap entry
            q.discard(i)
        q.set(-1, 5.0)
        assert len(q) == 1 and len(q._heap) <= 2 * len(q) + 64 + 2
        assert q.expired(6.0) == [-1]

    def test_many_keys_each_refreshed_cost_one_correction(self) -> None:
        q: ExpiryQueue[int] = ExpiryQueue()
        for i in range(1000):
            q.set(i, 100.0 + i)
        for i in range(1000):
            q.set(i, 5000.0 + i)  # refreshes: no heap work
        assert len(q._heap) == 1000
        assert q.next_deadline() == 5000.0  # every stale entry moved once
        assert q.expired(5000.5) == [0]


# --- the advertisement schedule ------------------------------------------------------------------
def run(schedule: AdvertisementSchedule[str], until: float) -> list[tuple[float, Copy[str] | Round]]:
    out = []
    while (deadline := schedule.next_deadline()) is not None and deadline <= until:
        out += [(deadline, item) for item in schedule.due(deadline)]
    return out


class TestAdvertisementSchedule:
    def test_burst_copies_then_rounds_with_jitter(self) -> None:
        s: AdvertisementSchedule[str] = AdvertisementSchedule(100, random.Random(3))
        s.burst("eth0", 0.0)
        s.start_rounds(0.0)
        items = run(s, 250.0)
        copies = [(t, i) for t, i in items if isinstance(i, Copy)]
        assert [t for t, _ in copies] == pytest.approx([c * COPY_SPACING for c in range(1, STARTUP_COPIES)])
        rounds = [t for t, i in items if isinstance(i, Round)]
        assert len(rounds) >= 4
        gaps = [b - a for a, b in zip([0.0, *rounds], rounds, strict=False)]
        low, high = 100 * (REANNOUNCE_FRACTION - REANNOUNCE_JITTER), 100 * REANNOUNCE_FRACTION
        assert all(low <= g <= high for g in gaps), gaps
        assert len({round(g, 6) for g in gaps}) > 1  # jittered

    def test_goodbye_copies_survive_clear_of_the_rounds(self) -> None:
        s: AdvertisementSchedule[str] = AdvertisementSchedule(100, random.Random(1))
        s.start_rounds(0.0)
        s.clear()
        s.burst("eth0", 5.0, "goodbye")
        items = run(s, 1000.0)
        assert [(i.subject, i.kind) for _, i in items if isinstance(i, Copy)] == [("eth0", "goodbye")]
        assert not any(isinstance(i, Round) for _, i in items)

    def test_restarting_rounds_drops_the_pending_one(self) -> None:
        s: AdvertisementSchedule[str] = AdvertisementSchedule(100, random.Random(1))
        s.start_rounds(0.0)
        s.start_rounds(30.0)
        rounds = [t for t, i in run(s, 100.0) if isinstance(i, Round)]
        assert len(rounds) == 1 and rounds[0] >= 30.0 + 40.0


# --- the search responder ------------------------------------------------------------------------
def respond(responder: SearchResponder, answers: list[tuple[bytes, bytes | None]], size: int,
            source: tuple[str, int] = ("10.77.1.20", 4000), mx: int = 1, now: float = 0.0) -> list[bytes]:
    responder.respond(lambda: answers, target="isdp:all", mx=mx, request_size=size, source=source,
                      iface=LAN, now=now)
    return [a.payload for a in responder.due(now + mx)]


class TestSearchResponder:
    def make(self) -> SearchResponder:
        return SearchResponder(random.Random(2), DropCounter())

    def test_answer_at_most_the_amplification_factor(self) -> None:
        r = self.make()
        full, compact = b"F" * 500, b"c" * 200
        assert respond(r, [(full, compact)], 55) == [compact]  # 220 bytes allowed
        assert respond(r, [(full, compact)], 300, source=("10.77.1.21", 1)) == [full]
        assert respond(r, [(full, b"c" * 221)], 55, source=("10.77.1.22", 1)) == []
        assert r.drops.reasons["byte_cap"] == 1

    def test_budget_shared_by_the_answers_of_one_search(self) -> None:
        r = self.make()
        answers = [(b"F" * 600, b"c" * 300)] * 5
        sent = respond(r, answers, 400)  # 1600 bytes allowed: 600 + 600 + 300, then none
        assert [len(p) for p in sent] == [600, 600, 300]
        assert sum(map(len, sent)) <= min(MAX_RESPONSE_BYTES_PER_REQUEST, SEARCH_AMPLIFICATION * 400)
        assert r.drops.reasons["byte_cap"] == 1

    def test_checks_come_before_the_answers_are_built(self) -> None:
        r = self.make()
        built = []

        def answers() -> list[tuple[bytes, bytes | None]]:
            built.append(1)
            return [(b"x", None)]

        r.respond(answers, target="t", mx=1, request_size=100, source=("192.0.2.1", 1), iface=LAN, now=0.0)
        r.respond(answers, target="t", mx=1, request_size=100, source=("10.77.1.9", 1), iface=None, now=0.0)
        assert built == [] and r.drops.reasons["off_subnet"] == 1 and r.drops.reasons["unknown_interface"] == 1

    def test_delay_within_mx_and_one_pending_per_requester_and_target(self) -> None:
        r = self.make()
        r.respond(lambda: [(b"x", None)], target="t", mx=3, request_size=100, source=("10.77.1.9", 7),
                  iface=LAN, now=10.0)
        r.respond(lambda: [(b"x", None)], target="t", mx=3, request_size=100, source=("10.77.1.9", 7),
                  iface=LAN, now=10.1)
        deadline = r.next_deadline()
        assert deadline is not None and 10.0 <= deadline <= 13.0
        assert len(r.due(13.0)) == 1 and r.answered == 1


def test_search_repeats_spread_over_half_of_mx() -> None:
    repeats = SearchRepeats()
    sends = (SendMulticast("eth0", b"s"),)
    repeats.schedule(sends, mx=1, retries=3, now=0.0)
    assert repeats.next_deadline() == pytest.approx(1 / 3 / 2)
    assert repeats.due(10.0) == [sends[0], sends[0]]
