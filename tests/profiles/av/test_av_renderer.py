"""The renderer's transport state machine with a fake clock and the virtual output."""

from __future__ import annotations

import asyncio

import pytest

from igrs.constants import ReturnCode
from igrs.profiles.av.didl import Entry, to_didl
from igrs.profiles.av.renderer import (
    NO_MEDIA,
    PAUSED,
    PLAYING,
    STOPPED,
    MediaRenderer,
    Track,
    TransportError,
    VirtualOutput,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def meta(duration: float, title: str = "Clip", item: str = "i1") -> str:
    return to_didl(
        [
            Entry(
                item,
                "c",
                title,
                "object.item.videoItem",
                url="http://h:1/x.ts",
                mime="video/mp2t",
                duration=duration,
            )
        ]
    )


@pytest.fixture
def tv() -> tuple[MediaRenderer, Clock, VirtualOutput, list[tuple[str, object]]]:
    clock, out = Clock(), VirtualOutput()
    r = MediaRenderer(out, clock=clock, probe=False)
    events: list[tuple[str, object]] = []
    r._igrs_listener = lambda name, value: events.append((name, value))
    return r, clock, out, events


async def test_play_pause_seek_stop_with_fake_time(tv) -> None:  # type: ignore[no-untyped-def]
    r, clock, out, events = tv
    assert r.TransportState == NO_MEDIA
    assert await r.PlayTo(URI="http://h:1/x.ts", Metadata=meta(10.0)) == PLAYING
    assert (r.CurrentTitle, r.Duration, r.CurrentItemID, r.CurrentMime) == ("Clip", 10.0, "i1", "video/mp2t")
    clock.now += 3
    assert (await r.GetPosition())["Position"] == 3.0
    assert await r.Pause() == PAUSED
    clock.now += 50  # paused: time does not count
    assert r.position() == 3.0 and r.Position == 3.0
    assert await r.Seek(Position=7.5) == 7.5
    assert await r.Play() == PLAYING
    clock.now += 1
    assert r.position() == 8.5
    assert await r.Stop() == STOPPED and r.position() == 0.0
    assert [c[0] for c in out.calls] == ["stop", "load", "play", "pause", "seek", "play", "stop"]
    states = [v for n, v in events if n == "TransportState"]
    assert states == [STOPPED, PLAYING, PAUSED, PLAYING, STOPPED]


async def test_end_of_track_advances_the_queue_then_stops(tv) -> None:  # type: ignore[no-untyped-def]
    r, clock, _out, _events = tv
    await r.PlayTo(URI="http://h:1/a.ts", Metadata=meta(2.0, "A"))
    assert await r.Enqueue(URI="http://h:1/b.ts", Metadata=meta(3.0, "B", "i2")) == 2
    clock.now += 2.5
    await r.tick()
    assert (r.TransportState, r.CurrentTitle, r.QueueIndex, r.Position) == (PLAYING, "B", 1, 0.0)
    clock.now += 3.1
    await r.tick()
    assert (r.TransportState, r.Position) == (STOPPED, 0.0)
    assert await r.Previous() == 0 and r.CurrentTitle == "A" and r.TransportState == STOPPED
    assert await r.Next() == 1
    with pytest.raises(TransportError) as err:
        await r.Next()
    assert err.value.return_code == ReturnCode.PRECONDITION_FAILED


async def test_backend_end_of_stream(tv) -> None:  # type: ignore[no-untyped-def]
    r, clock, _out, _events = tv
    await r.PlayTo(URI="http://h:1/live.ts")  # no duration: plays until the stream ends
    clock.now += 1000
    await r.tick()
    assert r.TransportState == PLAYING and r.Duration == 0.0
    r._ended = True
    await r.tick()
    assert r.TransportState == STOPPED


async def test_volume_and_mute(tv) -> None:  # type: ignore[no-untyped-def]
    r, _, _out, events = tv
    assert await r.SetVolume(Volume=80) == 80
    assert await r.SetMute(Mute=True) is True
    assert ("Volume", 80) in events and ("Mute", True) in events
    for bad in (-1, 101):
        with pytest.raises(TransportError) as err:
            await r.SetVolume(Volume=bad)
        assert err.value.return_code == ReturnCode.BAD_MESSAGE


async def test_preconditions_and_bad_input(tv) -> None:  # type: ignore[no-untyped-def]
    r, _, _, _ = tv
    for act in (r.Play, r.Pause, r.Next, r.Previous):
        with pytest.raises(TransportError) as err:
            await act()
        assert err.value.return_code == ReturnCode.PRECONDITION_FAILED
    with pytest.raises(TransportError):
        await r.Seek(Position=1.0)
    assert await r.Stop() == NO_MEDIA  # harmless
    for kwargs in (
        {},
        {"URI": "file:///etc/passwd"},
        {"URI": "javascript:x"},
        {"URI": "http://"},
        {"URI": "http://h/" + "x" * 3000},
        {"URI": "http://h/x", "Metadata": "<not-didl/>"},
    ):
        with pytest.raises(TransportError) as err:
            await r.PlayTo(**kwargs)
        assert err.value.return_code == ReturnCode.BAD_MESSAGE, kwargs
    with pytest.raises(TransportError) as err:
        await r.PlayTo(ItemID="nope")  # no resolver
    assert err.value.return_code == ReturnCode.NOT_FOUND
    await r.PlayTo(URI="http://h:1/a.ts", Metadata=meta(5.0), AutoPlay=False)
    assert r.TransportState == STOPPED
    with pytest.raises(TransportError) as err:
        await r.Pause()
    assert err.value.return_code == ReturnCode.PRECONDITION_FAILED
    for pos in (-1.0, 5.5, float("nan")):
        with pytest.raises(TransportError) as err:
            await r.Seek(Position=pos)
        assert err.value.return_code == ReturnCode.BAD_MESSAGE


async def test_play_item_by_id_with_resolver() -> None:
    async def resolve(item: str) -> Track | None:
        return Track("http://h:1/r.ts", "Resolved", "video/mp2t", 4.0, item) if item == "good" else None

    r = MediaRenderer(resolver=resolve, clock=Clock(), probe=False)
    assert await r.PlayTo(ItemID="good") == PLAYING and r.CurrentTitle == "Resolved"
    with pytest.raises(TransportError):
        await r.PlayTo(ItemID="bad")


async def test_an_observed_output_tells_what_plays_once_per_change() -> None:
    """``igrs device run --renderer`` prints these: playing / paused with the track; stopped
    only when nothing plays next (the stop before the next track is not told)."""
    from igrs.profiles.av.renderer import ObservedOutput

    told: list[tuple[str, str]] = []
    clock, inner = Clock(), VirtualOutput()
    out = ObservedOutput(lambda state, track: told.append((state, track.title if track else "")), inner)
    r = MediaRenderer(out, clock=clock, probe=False)
    await r.PlayTo(URI="http://h:1/a.png", Title="A")
    await r.Enqueue(URI="http://h:1/b.png", Title="B")
    await r.Pause()
    await r.Play()
    await r.Next()  # stop + load + play in one transition: only "playing B"
    await r.Stop()
    await asyncio.sleep(0)  # a stop is told once the transition is over
    await r.PlayTo(URI="http://h:1/c.png", Title="C", AutoPlay=False)
    await asyncio.sleep(0)
    assert told == [("playing", "A"), ("paused", "A"), ("playing", "A"), ("playing", "B"), ("stopped", "")]
    assert ("load", "http://h:1/c.png") in inner.calls and r.TransportState == STOPPED
    assert out.reports_end is False and out.end is not None  # the renderer's end hook reaches the inner one
