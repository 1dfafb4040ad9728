"""``FanOut``: events from one publisher to every application reader, bounded per reader.

The one semantics of every ``events()`` of the stack (``ControlPoint.events()``,
``GroupManager.events()``, ``DnsSdBrowser.events()``; specs/events.md §9):

* **From the call on.** A reader is subscribed when ``subscribe()`` (the ``events()`` call)
  returns, not at its first read: it sees every event published from that moment, in order,
  and none published before.
* **Bounded, drop-oldest.** A reader holds at most ``limit`` unread events
  (``EVENT_READER_LIMIT``); when a slow reader's queue is full its oldest event is dropped and
  counted (``reader.dropped``, ``fanout.dropped``). The publisher never waits and no reader
  costs more than ``limit`` events of memory. Drop-oldest rather than disconnect: these are
  state changes, and a reader that fell behind is better served by the latest ones.
* **Ends.** ``await reader.aclose()`` (or leaving ``async with reader``) unsubscribes it;
  a reader dropped unread is unsubscribed when it is garbage-collected. When the publisher
  stops (``fanout.close()``) every reader ends: it reads what is queued, then its iteration
  stops. A publisher started again serves new readers.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Generic, Self, TypeVar

from igrs.constants import EVENT_READER_LIMIT

T = TypeVar("T")


class EventReader(Generic[T]):
    """One reader of a FanOut: an async iterator (and async context manager) of its events."""

    __slots__ = ("__weakref__", "_closed", "_fanout", "_queue", "_wake", "dropped")

    def __init__(self, fanout: FanOut[T], limit: int) -> None:
        self._fanout: FanOut[T] | None = fanout
        self._queue: deque[T] = deque(maxlen=limit)
        self._wake = asyncio.Event()
        self._closed = False
        self.dropped = 0  # events this reader lost because it read too slowly

    def _put(self, event: T) -> bool:
        """Queue ``event``; True when the oldest one had to go to make room."""
        full = len(self._queue) == self._queue.maxlen
        self._queue.append(event)  # a full deque drops its oldest item itself
        self.dropped += full
        self._wake.set()
        return full

    def _end(self) -> None:
        self._closed = True
        self._fanout = None
        self._wake.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        return self._queue.popleft()

    async def aclose(self) -> None:
        """Unsubscribe: the iteration ends at once (what is queued is dropped)."""
        if self._fanout is not None:
            self._fanout._readers.discard(self)
        self._queue.clear()
        self._end()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


class FanOut(Generic[T]):
    """Publish to every subscribed ``EventReader``; see the module docstring for the rules."""

    def __init__(self, limit: int = EVENT_READER_LIMIT) -> None:
        if limit < 1:
            raise ValueError("a reader holds at least one event")
        self.limit = limit
        self.dropped = 0  # events lost by slow readers, all readers together
        self._readers: weakref.WeakSet[EventReader[T]] = weakref.WeakSet()

    @property
    def readers(self) -> int:
        return len(self._readers)

    def subscribe(self) -> EventReader[T]:
        """A new reader of every event published from now on."""
        reader = EventReader(self, self.limit)
        self._readers.add(reader)
        return reader

    def publish(self, event: T) -> None:
        for reader in self._readers:
            self.dropped += reader._put(event)

    def publish_all(self, events: Iterable[T]) -> None:
        for event in events:
            self.publish(event)

    def close(self) -> None:
        """End every current reader (after what it has queued): the publisher stopped."""
        for reader in list(self._readers):
            reader._end()
        self._readers.clear()


__all__ = ["EventReader", "FanOut"]
