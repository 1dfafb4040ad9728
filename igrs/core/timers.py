"""Deadline structures of the sans-IO state machines: ``next_deadline`` in O(1), work per
input independent of how many things are waiting.

``Timers`` holds one-shot items (an advertisement copy, a delayed search answer, ...).
``ExpiryQueue`` holds keys that expire (registry entries, memberships, leases) and whose
expiry moves as they are refreshed: a refresh that only postpones costs a dict store; the
heap entry is corrected when it comes up (at most one correction per entry and expiry
period), so a registry of 10,000 devices costs a datagram no more than one of 10.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class Timers(Generic[T]):
    """A heap of (due, seq, item): items come out in due order, ties in insertion order."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()

    def add(self, due: float, item: T) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), item))

    def due(self, now: float) -> list[T]:
        """Remove and return the items due at ``now``."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        self._heap.clear()

    def __len__(self) -> int:
        return len(self._heap)


class ExpiryQueue(Generic[K]):
    """Keys with an expiry time.

    ``set`` moves a key's expiry (either way), ``discard`` forgets it, ``expired(now)``
    removes and returns the keys whose time has come, ``next_deadline()`` is exact.
    Each key has at most one live heap entry, at or before its expiry; entries left behind
    by ``discard`` or by an earlier ``set`` are skipped when they surface, and the heap is
    rebuilt when they outnumber the keys (memory stays proportional to the keys).
    """

    __slots__ = ("_due", "_entry", "_heap", "_seq")

    def __init__(self) -> None:
        self._due: dict[K, float] = {}  # key -> its expiry
        self._entry: dict[K, float] = {}  # key -> due of its live heap entry (<= its expiry)
        self._heap: list[tuple[float, int, K]] = []
        self._seq = itertools.count()

    def set(self, key: K, due: float) -> None:
        self._due[key] = due
        entry = self._entry.get(key)
        if entry is None or due < entry:
            self._push(key, due)
        # else: the live entry comes up first and is moved to ``due`` then

    def discard(self, key: K) -> None:
        if self._due.pop(key, None) is not None and len(self._heap) > 2 * len(self._due) + 64:
            self._rebuild()

    def get(self, key: K) -> float | None:
        return self._due.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def __len__(self) -> int:
        return len(self._due)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            due, _, key = heap[0]
            if self._entry.get(key) == due and self._due.get(key) == due:
                return due
            self._settle(heapq.heappop(heap))
        return None

    def expired(self, now: float) -> list[K]:
        """Remove and return the keys whose expiry is at or before ``now``, earliest first."""
        out: list[K] = []
        while (deadline := self.next_deadline()) is not None and deadline <= now:
            _, _, key = heapq.heappop(self._heap)
            del self._entry[key], self._due[key]
            out.append(key)
        return out

    def _push(self, key: K, due: float) -> None:
        self._entry[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))

    def _settle(self, item: tuple[float, int, K]) -> None:
        """A popped entry that is not its key's current expiry: drop it, or move it there."""
        due, _, key = item
        if self._entry.get(key) != due:
            return  # superseded by an earlier entry of the same key
        del self._entry[key]
        expiry = self._due.get(key)
        if expiry is not None:
            self._push(key, expiry)

    def _rebuild(self) -> None:
        self._entry = dict(self._due)
        self._heap = [(due, next(self._seq), key) for key, due in self._due.items()]
        heapq.heapify(self._heap)
