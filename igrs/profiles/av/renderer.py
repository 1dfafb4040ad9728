"""The media client / renderer (5-21 "media client", the TV): the ``MediaRenderer`` IGRS
service — a transport state machine with a play queue, evented attributes — over a pluggable
output back end (gmrender-resurrect's output_module split, anchors §9).
specs/av-profile.md §7.

    renderer = await attach_renderer(device)                     # virtual player
    renderer = await attach_renderer(device, backend=FfmpegOutput())   # decodes for real

The renderer tracks the play position itself from a clock (``clock``, injectable for tests);
back ends only do the side effects and may report the end of a stream early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from igrs.constants import ReturnCode
from igrs.errors import IGRSError, ProtocolError
from igrs.node.service import Service, action, attribute
from igrs.profiles.av.didl import Entry, from_didl
from igrs.profiles.av.fetch_policy import FetchPolicy, Target, requester
from igrs.profiles.av.fetch_proxy import FetchProxy, FetchRoute, input_args
from igrs.profiles.av.media import MediaInfo, ffmpeg_path, probe_uri
from igrs.profiles.av.watch import Watchable

if TYPE_CHECKING:
    from igrs.node.device import Device

log = logging.getLogger(__name__)

MEDIA_RENDERER = "urn:IGRS:ServiceType:MediaRenderer:1"
NO_MEDIA, STOPPED, PLAYING, PAUSED = "NO_MEDIA_PRESENT", "STOPPED", "PLAYING", "PAUSED_PLAYBACK"
URI_SCHEMES = ("http", "https", "udp", "rtp")  # project choice: never file: (a peer must not open local files)
MAX_URI = 2048
MAX_QUEUE = 256
POSITION_INTERVAL = 1.0  # s between Position events while playing (project choice)


class TransportError(IGRSError):
    """An action the current transport state does not allow (412) or bad input (400)."""

    return_code = ReturnCode.PRECONDITION_FAILED


@dataclass(frozen=True, slots=True)
class Track:
    uri: str
    title: str = ""
    mime: str = ""
    duration: float | None = None
    item_id: str = ""
    protocol_info: str = ""  # the item's res@protocolInfo as the metadata gave it ("": unknown)
    # How a back end fetches ``uri`` (through the fetch proxy, for a peer's request; None: a
    # local caller's track, fetched directly). Set by the renderer.
    route: FetchRoute | None = None

    @classmethod
    def from_entry(cls, entry: Entry) -> Track:
        return cls(entry.url, entry.title, entry.mime, entry.duration, entry.id, entry.protocol_info)

    def fetch_options(self) -> tuple[list[str], dict[str, str] | None]:
        """ffmpeg/ffprobe input options and environment for fetching ``uri``."""
        env = {**os.environ, **self.route.env} if self.route is not None else None
        return input_args(self.uri), env


Resolver = Callable[[str], Awaitable[Track | None]]


# --- output back ends ------------------------------------------------------------------------------
class OutputBackend(Protocol):
    """What actually renders. ``end`` is called by the back end when a stream ends by itself."""

    end: Callable[[], None] | None
    reports_end: bool  # True: the back end says when a track ends (the clock does not end it)

    async def load(self, track: Track) -> None: ...
    async def play(self, position: float) -> None: ...
    async def pause(self) -> None: ...
    async def stop(self) -> None: ...
    async def seek(self, position: float, playing: bool) -> None: ...
    async def set_volume(self, volume: int, mute: bool) -> None: ...
    async def aclose(self) -> None: ...


class VirtualOutput:
    """The null output: renders nothing, records the calls (``calls``) for tests and demos."""

    def __init__(self) -> None:
        self.end: Callable[[], None] | None = None
        self.reports_end = False
        self.calls: list[tuple[str, object]] = []

    async def load(self, track: Track) -> None:
        self.calls.append(("load", track.uri))

    async def play(self, position: float) -> None:
        self.calls.append(("play", position))

    async def pause(self) -> None:
        self.calls.append(("pause", None))

    async def stop(self) -> None:
        self.calls.append(("stop", None))

    async def seek(self, position: float, playing: bool) -> None:
        self.calls.append(("seek", position))

    async def set_volume(self, volume: int, mute: bool) -> None:
        self.calls.append(("volume", (volume, mute)))

    async def aclose(self) -> None:
        pass


PlayObserver = Callable[[str, "Track | None"], None]


class ObservedOutput:
    """Another back end (default :class:`VirtualOutput`) that also tells ``observe(state,
    track)`` what it renders: ``"playing"`` / ``"paused"`` with the track, ``"stopped"`` with
    None -- the stop that only precedes the next track of the same transition is not told.
    ``igrs device run --renderer`` prints these lines."""

    def __init__(self, observe: PlayObserver, inner: OutputBackend | None = None) -> None:
        self.inner: OutputBackend = inner or VirtualOutput()
        self.observe = observe
        self.track: Track | None = None
        self._told = "stopped"
        self._stopping: asyncio.Handle | None = None

    @property
    def end(self) -> Callable[[], None] | None:
        return self.inner.end

    @end.setter
    def end(self, callback: Callable[[], None] | None) -> None:
        self.inner.end = callback

    @property
    def reports_end(self) -> bool:
        return self.inner.reports_end

    @reports_end.setter
    def reports_end(self, value: bool) -> None:
        self.inner.reports_end = value

    def _tell(self, state: str) -> None:
        if self._stopping is not None:
            self._stopping.cancel()
            self._stopping = None
        if state != self._told or state == "playing":
            self._told = state
            self.observe(state, None if state == "stopped" else self.track)

    async def load(self, track: Track) -> None:
        await self.inner.load(track)
        self.track = track

    async def play(self, position: float) -> None:
        await self.inner.play(position)
        self._tell("playing")

    async def pause(self) -> None:
        await self.inner.pause()
        self._tell("paused")

    async def stop(self) -> None:
        await self.inner.stop()
        if self._told != "stopped" and self._stopping is None:  # told unless a play follows at once
            self._stopping = asyncio.get_running_loop().call_soon(self._tell, "stopped")

    async def seek(self, position: float, playing: bool) -> None:
        await self.inner.seek(position, playing)

    async def set_volume(self, volume: int, mute: bool) -> None:
        await self.inner.set_volume(volume, mute)

    async def aclose(self) -> None:
        if self._stopping is not None:
            self._stopping.cancel()
        await self.inner.aclose()


class FfmpegOutput(VirtualOutput):
    """Decodes the stream for real with ``ffmpeg -re … -f null -`` (a headless TV): pause is
    SIGSTOP/SIGCONT, seek restarts at the position, the decoder's exit ends the track.
    ``sink`` replaces the null muxer (e.g. ``["-c", "copy", "-f", "mpegts", "out.ts"]``)."""

    def __init__(self, sink: list[str] | None = None) -> None:
        super().__init__()
        self.reports_end = True
        if ffmpeg_path() is None:
            raise RuntimeError("FfmpegOutput needs ffmpeg (apt-get install ffmpeg)")
        self.sink = sink or ["-f", "null", "-"]
        self.track: Track | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self._waiter: asyncio.Task[None] | None = None
        self.decoded_ok = 0  # streams the decoder finished without error

    async def load(self, track: Track) -> None:
        await super().load(track)
        await self._kill()
        self.track = track

    async def play(self, position: float) -> None:
        await super().play(position)
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
            return
        await self._spawn(position)

    async def _spawn(self, position: float) -> None:
        assert self.track is not None
        exe = ffmpeg_path() or "ffmpeg"
        seek = ["-ss", f"{position:.3f}"] if position > 0 else []
        options, env = self.track.fetch_options()
        self.proc = await asyncio.create_subprocess_exec(
            exe,
            "-nostdin",
            "-v",
            "error",
            "-re",
            *seek,
            *options,
            "-i",
            self.track.uri,
            *self.sink,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        self._waiter = asyncio.create_task(self._wait(self.proc))

    async def _wait(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if proc is self.proc and code == 0:
            self.decoded_ok += 1
            self.proc = None
            if self.end is not None:
                self.end()

    async def pause(self) -> None:
        await super().pause()
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGSTOP)

    async def stop(self) -> None:
        await super().stop()
        await self._kill()

    async def seek(self, position: float, playing: bool) -> None:
        await super().seek(position, playing)
        await self._kill()
        if playing:
            await self._spawn(position)

    async def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        if self._waiter is not None:
            self._waiter.cancel()
            self._waiter = None

    async def aclose(self) -> None:
        await self._kill()


# --- the service ---------------------------------------------------------------------------------
def check_uri(uri: str) -> str:
    if len(uri) > MAX_URI:
        raise TransportError("URI too long", return_code=ReturnCode.BAD_MESSAGE)
    parts = urlsplit(uri)
    if parts.scheme.lower() not in URI_SCHEMES or not parts.netloc:
        raise TransportError(
            f"URI scheme must be one of {', '.join(URI_SCHEMES)} with a host",
            return_code=ReturnCode.BAD_MESSAGE,
        )
    return uri


def track_from(uri: str, metadata: str, title: str) -> Track:
    track = Track(check_uri(uri), title)
    if metadata:
        try:
            entries = from_didl(metadata)
        except ProtocolError as exc:
            raise TransportError(f"Metadata: {exc.reason}", return_code=ReturnCode.BAD_MESSAGE) from None
        if entries:
            e = entries[0]
            track = replace(track, title=title or e.title, mime=e.mime, duration=e.duration, item_id=e.id,
                            protocol_info=e.protocol_info if e.url else "")
    return track


class MediaRenderer(Watchable, Service):
    """A TV: PlayTo an item or URI, transport control, volume; state evented."""

    service_type = MEDIA_RENDERER
    name = "Media renderer"
    TransportState = attribute(str, NO_MEDIA, notifiable=True)
    CurrentURI = attribute(str, "", notifiable=True)
    CurrentTitle = attribute(str, "", notifiable=True)
    CurrentItemID = attribute(str, "", notifiable=True)
    CurrentMime = attribute(str, "", notifiable=True)
    Position = attribute(float, 0.0, notifiable=True)  # s
    Duration = attribute(float, 0.0, notifiable=True)  # s, 0.0: unknown
    Volume = attribute(int, 50, notifiable=True)  # 0..100
    Mute = attribute(bool, False, notifiable=True)
    QueueIndex = attribute(int, -1, notifiable=True)
    QueueLength = attribute(int, 0, notifiable=True)

    def __init__(
        self,
        backend: OutputBackend | None = None,
        *,
        resolver: Resolver | None = None,
        clock: Callable[[], float] = time.monotonic,
        probe: bool = True,
        policy: FetchPolicy | None = None,
    ) -> None:
        self.backend: OutputBackend = backend or VirtualOutput()
        # What a peer may make this TV fetch (without a device: nothing; local calls: anything).
        self.policy = policy or FetchPolicy()
        self.fetcher = FetchProxy(self.policy)
        self.backend.end = self._on_backend_end
        self.resolver = resolver
        self.clock = clock
        self.probe = probe
        self.queue: list[Track] = []
        self._base = 0.0  # position when the clock was last read into it
        self._since = 0.0  # clock value at that moment
        self._ticker: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._ended = False
        self.lock = asyncio.Lock()

    # --- position bookkeeping ---
    def position(self) -> float:
        pos = self._base
        if self.TransportState == PLAYING:
            pos += max(0.0, self.clock() - self._since)
        duration = self.current.duration if self.current else None
        return min(pos, duration) if duration else pos

    def _set_position(self, pos: float) -> None:
        self._base, self._since = pos, self.clock()
        self.Position = round(pos, 3)

    @property
    def current(self) -> Track | None:
        i = self.QueueIndex
        return self.queue[i] if 0 <= i < len(self.queue) else None

    def _on_backend_end(self) -> None:
        self._ended = True
        task = asyncio.ensure_future(self.tick())
        task.add_done_callback(lambda t: t.exception())

    async def tick(self) -> None:
        """Publish the position; at the end of a track go to the next one or stop."""
        async with self.lock:
            if self.TransportState != PLAYING:
                self._ended = False
                return
            track = self.current
            pos = self.position()
            by_clock = (
                not getattr(self.backend, "reports_end", False) and track is not None and bool(track.duration)
            )
            if self._ended or (
                by_clock and track is not None and track.duration is not None and pos >= track.duration
            ):
                self._ended = False
                if self.QueueIndex + 1 < len(self.queue):
                    await self._select(self.QueueIndex + 1, play=True)
                else:
                    await self.backend.stop()
                    self.TransportState = STOPPED
                    self._set_position(0.0)
                return
            self.Position = round(pos, 3)

    async def start(self, position_interval: float | None = POSITION_INTERVAL) -> None:
        if position_interval:
            self._ticker = asyncio.create_task(self._tick_loop(position_interval))

    async def _tick_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except Exception:
                log.exception("renderer tick failed")

    async def aclose(self) -> None:
        for task in (self._ticker, self._probe):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._ticker = self._probe = None
        await self.backend.aclose()
        await self.fetcher.aclose()

    # --- transitions ---
    async def _select(self, index: int, *, play: bool) -> None:
        track = self.queue[index]
        await self.backend.stop()
        self.QueueIndex = index
        self.CurrentURI, self.CurrentTitle = track.uri, track.title
        self.CurrentItemID, self.CurrentMime = track.item_id, track.mime
        self.Duration = float(track.duration or 0.0)
        await self.backend.load(track)
        self.TransportState = STOPPED
        self._set_position(0.0)
        if play:
            await self.backend.play(0.0)
            self.TransportState = PLAYING
            self._set_position(0.0)
        if track.duration is None and self.probe and urlsplit(track.uri).scheme in ("http", "https"):
            if self._probe is not None:
                self._probe.cancel()
            self._probe = asyncio.create_task(self._probe_duration(index, track))

    async def _probe_duration(self, index: int, track: Track) -> None:
        options, env = track.fetch_options()
        info = await probe_uri(track.uri, MediaInfo(track.mime, 0), options=options, env=env)
        if info.duration and index < len(self.queue) and self.queue[index] is track:
            self.queue[index] = replace(track, duration=info.duration)
            if self.QueueIndex == index:
                self.Duration = info.duration

    def _need_media(self) -> Track:
        track = self.current
        if track is None:
            raise TransportError("no media loaded (PlayTo first)")
        return track

    async def admit(self, track: Track, origin: str | None) -> Track:
        """``track`` if the fetch policy lets a peer at ``origin`` (None: a local caller) make
        this TV fetch its URI, with the route its fetches take; FetchRefused (403) if not."""
        await self.policy.check_url(track.uri, origin)
        if origin is None or Target.of(track.uri).scheme not in ("http", "https"):
            return track
        return replace(track, route=await self.fetcher.route(origin))

    async def play_track(self, track: Track, *, auto_play: bool = True) -> str:
        """Replace the queue with an admitted ``track``; play it unless ``auto_play`` is false."""
        async with self.lock:
            self.queue = [track]
            self.QueueLength = 1
            await self._select(0, play=auto_play)
            return self.TransportState

    async def enqueue_track(self, track: Track) -> int:
        """Append an admitted ``track`` to the play queue; returns its length."""
        async with self.lock:
            if len(self.queue) >= MAX_QUEUE:
                raise TransportError(
                    f"the queue holds at most {MAX_QUEUE} tracks", return_code=ReturnCode.PAYLOAD_TOO_LARGE
                )
            self.queue.append(track)
            self.QueueLength = len(self.queue)
            if self.current is None:
                await self._select(0, play=False)
            return len(self.queue)

    async def set_next_track(self, track: Track) -> int:
        """Make an admitted ``track`` the one after the current (later ones are dropped); the
        UPnP bridge's SetNextAVTransportURI. Returns the queue length."""
        async with self.lock:
            keep = self.queue[: self.QueueIndex + 1] if self.current is not None else []
            self.queue = [*keep, track]
            self.QueueLength = len(self.queue)
            if self.current is None:
                await self._select(0, play=False)
            return len(self.queue)

    # --- actions (names: project choice after UPnP AVTransport/RenderingControl, anchors §6-9) ---
    @action
    async def PlayTo(
        self, URI: str = "", ItemID: str = "", Metadata: str = "", Title: str = "", AutoPlay: bool = True
    ) -> str:
        """Play a URI (optionally with its DIDL-Lite ``Metadata``) or a content item by id
        (resolved by this renderer's resolver); replaces the queue. Returns the state. A URI
        the fetch policy refuses for the caller: 403."""
        if URI:
            track = track_from(URI, Metadata, Title)
        elif ItemID:
            resolved = await self.resolver(ItemID) if self.resolver is not None else None
            if resolved is None:
                raise TransportError(f"unknown item {ItemID[:80]!r}", return_code=ReturnCode.NOT_FOUND)
            track = replace(resolved, uri=check_uri(resolved.uri), title=Title or resolved.title)
        else:
            raise TransportError("PlayTo needs URI or ItemID", return_code=ReturnCode.BAD_MESSAGE)
        return await self.play_track(await self.admit(track, requester()), auto_play=AutoPlay)

    @action
    async def Enqueue(self, URI: str, Metadata: str = "", Title: str = "") -> int:
        """Append to the play queue; returns its length."""
        return await self.enqueue_track(await self.admit(track_from(URI, Metadata, Title), requester()))

    @action
    async def Play(self) -> str:
        await self.tick()
        async with self.lock:
            self._need_media()
            if self.TransportState != PLAYING:
                pos = self.position()
                await self.backend.play(pos)
                self.TransportState = PLAYING
                self._set_position(pos)
            return self.TransportState

    @action
    async def Pause(self) -> str:
        await self.tick()
        async with self.lock:
            self._need_media()
            if self.TransportState == PAUSED:
                return PAUSED
            if self.TransportState != PLAYING:
                raise TransportError(f"cannot pause when {self.TransportState}")
            pos = self.position()
            await self.backend.pause()
            self.TransportState = PAUSED
            self._set_position(pos)
            return PAUSED

    @action
    async def Stop(self) -> str:
        async with self.lock:
            if self.current is not None:
                await self.backend.stop()
                self.TransportState = STOPPED
                self._set_position(0.0)
            return self.TransportState

    @action
    async def Seek(self, Position: float) -> float:
        await self.tick()
        async with self.lock:
            track = self._need_media()
            if Position != Position or Position < 0 or (track.duration and Position > track.duration):
                raise TransportError(
                    f"Position {Position} outside the track", return_code=ReturnCode.BAD_MESSAGE
                )
            await self.backend.seek(Position, self.TransportState == PLAYING)
            self._set_position(Position)
            return self.Position

    @action
    async def Next(self) -> int:
        return await self._step(+1)

    @action
    async def Previous(self) -> int:
        return await self._step(-1)

    async def _step(self, delta: int) -> int:
        await self.tick()
        async with self.lock:
            self._need_media()
            index = self.QueueIndex + delta
            if not 0 <= index < len(self.queue):
                raise TransportError("no next track" if delta > 0 else "no previous track")
            await self._select(index, play=self.TransportState == PLAYING)
            return index

    @action
    async def SetVolume(self, Volume: int) -> int:
        if not 0 <= Volume <= 100:
            raise TransportError("Volume must be 0..100", return_code=ReturnCode.BAD_MESSAGE)
        await self.backend.set_volume(Volume, self.Mute)
        self.Volume = Volume
        return Volume

    @action
    async def SetMute(self, Mute: bool) -> bool:
        await self.backend.set_volume(self.Volume, Mute)
        self.Mute = Mute
        return Mute

    @action
    async def GetPosition(self) -> dict[str, float]:
        """The current position (not just the last evented one) and duration (0: unknown)."""
        await self.tick()
        return {"Position": round(self.position(), 3), "Duration": float(self.Duration)}


async def attach_renderer(
    device: Device,
    *,
    backend: OutputBackend | None = None,
    resolver: Resolver | None = None,
    position_interval: float | None = POSITION_INTERVAL,
    probe: bool = True,
    service_id: int | None = None,
    fetch_allow: Iterable[str] = (),
) -> MediaRenderer:
    """Make ``device`` a TV: add a ``MediaRenderer`` service over ``backend`` (default
    :class:`VirtualOutput`). A peer's URIs follow the device's fetch policy, widened by the
    owner's ``fetch_allow`` list (fetch_policy.py). ``await renderer.aclose()`` when the
    device stops."""
    policy = FetchPolicy.for_device(device, fetch_allow)
    renderer = MediaRenderer(backend, resolver=resolver, probe=probe, policy=policy)
    await renderer.start(position_interval)
    device.add_service(renderer, service_id)
    return renderer
