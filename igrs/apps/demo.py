"""``igrs demo``: the TV/PC sharing demo, on loopback, narrated step by step.

A PC, a TV and a phone come up as IGRS devices (random free ports: several demos and a test
suite never meet). The phone pairs with the PC and the TV (the demo reads the PIN each device
"shows" through ``on_pin``), browses the PC's sample media, makes the TV play a photo and then
a video (the three-box model: Browse on the PC, PlayTo on the TV), has the PC record a few
seconds of the TV's live programme, and copies a file into the PC's inbox (File profile).
The TV's screen is a web page (``/screen/`` on the TV's HTTP port) that follows along.

The role set-ups (:func:`setup_pc`, :func:`setup_tv`) and the phone's part (:class:`Phone`)
are shared with ``examples/pc.py``, ``examples/tv.py`` and ``examples/phone.py``, which run the
same roles as separate processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from igrs.apps.sample_media import night_photo, sample_media, write_png
from igrs.node.control import ControlPoint
from igrs.node.device import Device
from igrs.node.pin_text import pin_shown
from igrs.wire.ids import DeviceId

PC_NAME, TV_NAME, PHONE_NAME = "Study PC", "Living room TV", "Alice's phone"
RECORD_SECONDS = 3.0
PHOTO_SECONDS = 2.0  # how long the demo leaves the photo on the TV before the video


def say(text: str) -> None:
    print(text, flush=True)


def free_udp_port() -> int:
    """A UDP port free on this machine now (the ISDP port of one demo run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


# --- the roles -----------------------------------------------------------------------------------
@dataclass
class PcRole:
    """The PC: a media server over ``media`` (with a Recordings folder the recorder writes to),
    a recorder, and a File-profile ``inbox`` share (read-write for paired devices)."""

    device: Device
    media: Any  # MediaServer
    recorder: Any  # MediaRecorder
    files: Any  # FileServer
    media_dir: Path
    inbox: Path

    async def aclose(self) -> None:
        await self.recorder.aclose()
        await self.media.aclose()


async def setup_pc(
    device: Device, media_dir: Path, inbox: Path, *, watch_interval: float | None = 5.0
) -> PcRole:
    """Make a started ``device`` the PC: share ``media_dir`` as "Media", record into
    ``media_dir/Recordings``, accept files in ``inbox`` (share "inbox", read-write)."""
    from igrs.profiles.av import attach_media_server, attach_recorder
    from igrs.profiles.file import SharedFolder, attach_file_server

    recordings = media_dir / "Recordings"
    recordings.mkdir(parents=True, exist_ok=True)
    inbox.mkdir(parents=True, exist_ok=True)
    media = await attach_media_server(device, {"Media": media_dir}, watch_interval=watch_interval)
    recorder = attach_recorder(device, recordings)
    files = attach_file_server(device, [SharedFolder("inbox", inbox, writable=True)])
    return PcRole(device, media, recorder, files, media_dir, inbox)


@dataclass
class TvRole:
    """The TV: a renderer (virtual output), its screen page, and a live programme."""

    device: Device
    renderer: Any  # MediaRenderer
    screen: Any  # Screen
    live: Any  # MediaServer carrying the live programme
    live_kind: str = ""  # "ffmpeg test signal" or "synthetic MPEG-TS" (no ffmpeg)

    async def aclose(self) -> None:
        await self.live.aclose()
        await self.renderer.aclose()


async def setup_tv(device: Device) -> TvRole:
    """Make a started ``device`` the TV: MediaRenderer, ``/screen/`` page, and a MediaServer with
    one live item, "TV programme" (ffmpeg test signal, or the synthetic stream without ffmpeg)."""
    from igrs.profiles.av import LiveSource, attach_media_server, attach_renderer
    from igrs.profiles.av.screen import attach_screen

    renderer = await attach_renderer(device)
    screen = attach_screen(device, renderer)
    live = await attach_media_server(device, watch_interval=None)
    source = LiveSource.test_signal()
    live.add_live("programme", source, "TV programme")
    return TvRole(
        device,
        renderer,
        screen,
        live,
        "synthetic MPEG-TS" if source.generator is not None else "ffmpeg test signal",
    )


def screen_url(location: str) -> str:
    """The TV's screen page, from its description location (http://host:port/IGRS)."""
    from urllib.parse import urlsplit

    parts = urlsplit(location)
    return f"{parts.scheme}://{parts.netloc}/screen/"


# --- the phone (the dynamic service invocation module) -------------------------------------------
class TvWatch:
    """The phone's subscription to the TV's transport state and title (evented attributes)."""

    NAMES = ("TransportState", "CurrentTitle")

    def __init__(self, proxy: Any, out: Callable[[str], None]) -> None:
        self.proxy = proxy
        self.out = out
        self.state: dict[str, Any] = {}
        self.changed = asyncio.Condition()
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 10)

    async def _run(self) -> None:
        async with self.proxy.subscribe(*self.NAMES) as events:
            self.ready.set()
            async for change in events:
                if self.state.get(change.name) != change.value:
                    self.out(f"      TV event: {change.name} = {change.value!r}")
                self.state[change.name] = change.value
                async with self.changed:
                    self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout), self.changed:
                await self.changed.wait_for(lambda: predicate(self.state))
            return True
        except TimeoutError:
            return False

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


class Phone:
    """The phone's part of the scenario, through a control point paired with the PC and the TV."""

    def __init__(self, cp: ControlPoint, pc: DeviceId, tv: DeviceId, out: Callable[[str], None] = say) -> None:
        from igrs.profiles.av import AvController

        self.cp, self.pc, self.tv, self.out = cp, pc, tv, out
        self.av = AvController(cp)
        self.results: dict[str, Any] = {}

    async def browse_media(self) -> list[Any]:
        """Every playable item on the PC (walks the containers)."""
        items: list[Any] = []
        todo = ["0"]
        while todo:
            for entry in await self.av.browse_all(self.pc, todo.pop(0)):
                if entry.is_container:
                    todo.append(entry.id)
                elif entry.url:
                    items.append(entry)
        return items

    async def play(self, watch: TvWatch, entry: Any) -> str:
        self.out(f"      Browse(BrowseMetadata {entry.id}) on the PC, then PlayTo({entry.url}) on the TV")
        state = await self.av.play(self.pc, self.tv, entry.id)
        await watch.wait_for(
            lambda s: s.get("CurrentTitle") == entry.title and s.get("TransportState") == "PLAYING", 5
        )
        return state

    async def scenario(
        self,
        step: Callable[[str], None],
        *,
        phone_file: Path,
        record_seconds: float = RECORD_SECONDS,
        photo_seconds: float = PHOTO_SECONDS,
    ) -> dict:
        """Photo and video from the PC to the TV, the PC records the TV's programme, a file from
        the phone to the PC's inbox. ``step`` announces each step; returns the results."""
        from igrs.profiles.av import MEDIA_RECORDER, MEDIA_RENDERER
        from igrs.profiles.file.client import FileClient

        out, res = self.out, self.results
        step("The phone browses the PC's media (MediaServer Browse, DIDL-Lite):")
        items = await self.browse_media()
        for e in items:
            detail = ", ".join(
                x
                for x in (
                    e.mime,
                    e.resolution,
                    f"{e.duration:.1f} s" if e.duration else "",
                    kb(e.size) if e.size else "",
                )
                if x
            )
            out(f"      {e.title:<10} {detail}")
        photo = next(e for e in items if e.mime.startswith("image/"))
        video = next(e for e in items if e.mime.startswith("video/") and e.mime != "video/mp2t")

        async with self.cp.session(self.tv, MEDIA_RENDERER) as tv:
            watch = TvWatch(tv, out)
            await watch.start()
            try:
                step(f'The phone puts the photo "{photo.title}" on the TV (three-box: PC -> TV):')
                state = await self.play(watch, photo)
                out(f"      the TV is {state}: {photo.title} ({photo.mime})")
                res["photo"] = {"state": state, "uri": photo.url, "title": photo.title}
                await asyncio.sleep(photo_seconds)

                step(f'The phone plays the video "{video.title}" on the TV:')
                state = await self.play(watch, video)
                out(
                    f"      the TV is {state}: {video.title} ({video.mime}"
                    + (f", {video.duration:.1f} s)" if video.duration else ")")
                )
                wait = (video.duration or 3.0) + 3.0
                if await watch.wait_for(lambda s: s.get("TransportState") == "STOPPED", wait):
                    out("      the video played to its end; the TV stopped")
                else:
                    out("      (length unknown) the phone presses Stop")
                    await tv.Stop()
                pos = await tv.GetPosition()
                res["video"] = {
                    "state": state,
                    "uri": video.url,
                    "title": video.title,
                    "final_state": await tv.get("TransportState"),
                    "position": pos["Position"],
                }
            finally:
                await watch.aclose()

        step(f"The PC records {record_seconds:g} s of the TV's live programme (MediaRecorder):")
        live = await self.av.search(self.tv, 'upnp:class derivedfrom "object.item.videoItem.videoBroadcast"')
        programme = live.entries[0]
        out(f'      the TV\'s programme "{programme.title}" streams at {programme.url}')
        name = time.strftime("programme-%Y%m%d-%H%M%S.ts")
        async with self.cp.session(self.pc, MEDIA_RECORDER) as rec:
            await rec.Record(URI=programme.url, Seconds=record_seconds, Name=name, Wait=True)
            size = int(await rec.get("LastSize"))
        out(f"      recorded {size} bytes ({kb(size)}) to Recordings/{name} on the PC")
        res["recording"] = {"name": name, "size": size}

        step(f"The phone copies {phone_file.name} to the PC's inbox (File profile, checksum-verified):")
        async with FileClient.connect(self.cp, self.pc) as files:
            remote = f"/inbox/{phone_file.name}"
            digest = await files.put(phone_file, remote, overwrite=True)
            stat = await files.stat(remote)
        size = phone_file.stat().st_size
        out(f"      copied {size} bytes to {remote} on the PC; SHA-256 {digest[:16]}… verified by the PC")
        res["copy"] = {"path": remote, "size": size, "sha256": digest, "stat_size": int(stat.get("size", 0))}
        return res


async def pair_with(
    cp: ControlPoint, device: DeviceId, name: str, pins: list[str], out: Callable[[str], None] = say
) -> None:
    """Pair the phone's control point with an in-process device whose ``on_pin`` appends to
    ``pins`` (its "display"): the demo reads the PIN off it and types it into the phone."""

    async def read_display(_digits: int) -> str:
        out("      " + pin_shown(name, pins[-1], "the demo reads it off its display (on_pin) and types it "
                                                  "into the phone"))
        return pins[-1]

    paired = await cp.pair(device, read_display)
    out(f"      paired with {name} (its key fingerprint {paired.fingerprint[:19]})")


# --- the demo ------------------------------------------------------------------------------------
class Steps:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, text: str) -> None:
        self.n += 1
        say(f"{self.n}. {text}")


async def run_demo(
    interfaces: Sequence[str] = ("lo",), port: int | None = None, duration: float | None = None,
    stop: asyncio.Event | None = None,
    upnp: bool = False,
) -> int:
    """The whole scenario; then ``duration`` more seconds (None: until Ctrl-C). When the
    caller handles the signals it passes ``stop``: once set, the scenario stops where it is,
    the devices still say goodbye, and the exit code is 130. ``upnp``: the PC and the TV also
    appear as UPnP AV / DLNA devices (igrs[upnp]). Exit code."""
    port = port or free_udp_port()
    ifs = list(interfaces)
    step = Steps()
    started = time.monotonic()
    say(f"IGRS demo: a home on {', '.join(ifs)} (ISDP multicast 224.0.0.110, UDP port {port})")
    with tempfile.TemporaryDirectory(prefix="igrs-demo-") as tmp:
        root = Path(tmp)
        step("Sample media for the PC (generated, no download):")
        made = sample_media(root / "pc" / "media")
        for key in ("photo", "tone", "clip"):
            path = made[key]
            how = f", {made['clip_how']}" if key == "clip" else ""
            say(f"      {path.name:<10} {kb(path.stat().st_size)}{how}")
        say(f"      in {made['photo'].parent}")
        (root / "phone").mkdir(parents=True)
        phone_file = write_png(root / "phone" / "IMG_0001.png", 320, 240, night_photo)

        pins: dict[str, list[str]] = {"pc": [], "tv": []}

        def device(name: str, kind: str, pin_key: str | None) -> Device:
            return Device(
                name=name,
                device_type=kind,
                interfaces=ifs,
                port=port,
                http_port=0,
                watch_interfaces=False,
                model_name=f"igrs demo {kind}",
                on_pin=pins[pin_key].append if pin_key else None,
            )

        pc, tv, phone = (
            device(PC_NAME, "PC", "pc"),
            device(TV_NAME, "TV", "tv"),
            device(PHONE_NAME, "MobilePhone", None),
        )
        roles: list[Any] = []
        cp = ControlPoint(interfaces=ifs, port=port, name=PHONE_NAME, keepalive_interval=0)
        code, complete = 0, False
        interrupt = _CancelOn(stop)
        try:
            step("The PC, the TV and the phone switch on:")
            for dev in (pc, tv, phone):
                await dev.start()
            pc_role = await setup_pc(pc, made["photo"].parent, root / "pc" / "inbox", watch_interval=None)
            roles.append(pc_role)
            tv_role = await setup_tv(tv)
            roles.append(tv_role)
            say(f"      {PC_NAME:<16} {pc.location}  shares Media (photo, tone, clip) and inbox (read-write)")
            say(
                f"      {TV_NAME:<16} {tv.location}  renderer (virtual output), live programme "
                f"({tv_role.live_kind})"
            )
            say(f"      {PHONE_NAME:<16} {phone.location}  the remote control")
            say(f"      the TV's screen: {tv_role.screen.url()}  (open it in a browser)")
            await cp.start()

            step("The phone searches the network (M-SEARCH):")
            wanted = {pc.device_id, tv.device_id}
            found: dict[DeviceId, Any] = {}
            deadline = time.monotonic() + 10
            while not wanted <= found.keys() and time.monotonic() < deadline:
                for rec in await cp.search(timeout=1.0, mx=1):
                    found[rec.device_id] = rec
            for rec in found.values():
                if rec.device_id in wanted or rec.device_id == phone.device_id:
                    say(f"      found {rec.name:<16} ({rec.device_type.name}) at {rec.address}")
            if not wanted <= found.keys():
                raise RuntimeError("the PC or the TV did not answer the search")

            step("The phone pairs with the PC and the TV (PIN pairing, SPAKE2):")
            await pair_with(cp, pc.device_id, PC_NAME, pins["pc"])
            await pair_with(cp, tv.device_id, TV_NAME, pins["tv"])

            phone_part = Phone(cp, pc.device_id, tv.device_id)
            await phone_part.scenario(step, phone_file=phone_file)
            arrived = pc_role.inbox / phone_file.name
            same = arrived.is_file() and arrived.read_bytes() == phone_file.read_bytes()
            say(f"      on the PC's disk: {arrived} ({'identical' if same else 'DIFFERENT'})")
            if not same:
                raise RuntimeError("the copied file differs")

            if upnp:
                roles += await expose_upnp(step, pc, tv)
            step(f"Done in {time.monotonic() - started:.1f} s. The TV's screen: {tv_role.screen.url()}")
            say(f"      state as JSON: {tv_role.screen.url()}state")
            say(f"      other shells: igrs discover --interface {ifs[0]} --port {port}")
            say("SCENARIO COMPLETE")
            complete = True
            if duration is None:
                say("Running. Ctrl-C to stop.")
                await (stop.wait() if stop is not None else _wait_for_signal())
            elif duration > 0:
                say(f"Staying up {duration:g} s more.")
                await asyncio.sleep(duration)
        except asyncio.CancelledError:
            if not interrupt.fired:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # our own Ctrl-C
            code = 0 if complete else 130  # stopped while running, or in the middle of the scenario
        except Exception as exc:  # narrate the failure, then clean up
            say(f"DEMO FAILED: {type(exc).__name__}: {exc}")
            code = 1
        finally:
            interrupt.disarm()
            say("The devices switch off and say goodbye.")
            await cp.stop()
            for role in reversed(roles):
                with contextlib.suppress(Exception):
                    await role.aclose()
            for dev in (phone, tv, pc):
                with contextlib.suppress(Exception):
                    await dev.stop()
    say("Demo finished.")
    return code


class _CancelOn:
    """Cancels the current task once ``event`` is set (``fired`` says it was us): Ctrl-C
    stops the scenario wherever it is, and the clean-up after it runs undisturbed."""

    def __init__(self, event: asyncio.Event | None) -> None:
        self.fired = False
        self._watch: asyncio.Task[None] | None = None
        task = asyncio.current_task()
        if event is not None and task is not None:

            async def watch() -> None:
                await event.wait()
                self.fired = True
                task.cancel()

            self._watch = asyncio.ensure_future(watch())

    def disarm(self) -> None:
        if self._watch is not None:
            self._watch.cancel()


async def expose_upnp(step: Callable[[str], None], *devices: Device) -> list[Any]:
    """The PC's media and the TV's renderer as UPnP AV / DLNA devices (igrs.bridges.upnp)."""
    from igrs.bridges.upnp import attach_upnp

    step("The PC and the TV also speak UPnP AV / DLNA (VLC, phone apps, smart TVs see them):")
    exposures = []
    for dev in devices:
        exposure = await attach_upnp(dev)
        exposures.append(exposure)
        for url in exposure.locations:
            kind = "MediaServer" if "/server/" in url else "MediaRenderer"
            say(f"      {dev.name:<16} UPnP {kind:<13} {url}")
    return exposures


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


if __name__ == "__main__":
    sys.exit(asyncio.run(run_demo(duration=0)))
