"""igrs.net.fanout: the one events() mechanism (specs/events.md §9) — subscribed at the call,
bounded per reader with the oldest dropped, ended by aclose or by the publisher stopping."""

from __future__ import annotations

import asyncio
import gc

import pytest

from igrs.net.fanout import FanOut


async def test_a_reader_sees_what_is_published_after_the_call_not_before() -> None:
    fan: FanOut[int] = FanOut()
    fan.publish(0)  # nobody subscribed: lost
    reader = fan.subscribe()
    fan.publish_all([1, 2])  # before the first read: kept
    assert [await anext(reader), await anext(reader)] == [1, 2]
    late = fan.subscribe()
    fan.publish(3)
    assert await anext(reader) == 3 and await anext(late) == 3


async def test_a_slow_reader_loses_its_oldest_events_and_nobody_waits() -> None:
    fan: FanOut[int] = FanOut(limit=3)
    slow, quick = fan.subscribe(), fan.subscribe()
    for i in range(5):
        fan.publish(i)
        assert await anext(quick) == i
    assert (slow.dropped, quick.dropped, fan.dropped) == (2, 0, 2)
    assert [await anext(slow) for _ in range(3)] == [2, 3, 4]


async def test_aclose_unsubscribes_and_close_ends_readers_after_their_queue() -> None:
    fan: FanOut[str] = FanOut()
    gone, stays = fan.subscribe(), fan.subscribe()
    await gone.aclose()
    assert fan.readers == 1
    with pytest.raises(StopAsyncIteration):
        await anext(gone)
    fan.publish("last")
    waiting = asyncio.ensure_future(anext(fan.subscribe()))
    await asyncio.sleep(0)
    fan.close()  # the publisher stopped
    assert [e async for e in stays] == ["last"]
    with pytest.raises(StopAsyncIteration):
        await waiting
    assert fan.readers == 0
    async with fan.subscribe() as again:  # a publisher started again serves new readers
        fan.publish("new")
        assert await anext(again) == "new"
    assert fan.readers == 0


async def test_a_reader_dropped_unread_unsubscribes() -> None:
    fan: FanOut[int] = FanOut()
    fan.subscribe()
    gc.collect()
    assert fan.readers == 0
