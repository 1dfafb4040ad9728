"""AV profile end to end on loopback: a PC shares media, a TV renders, a phone (control point)
browses and commands; ffprobe/ffmpeg and curl are the real peers."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from av_helpers import Home, decode_ok, ffprobe, video_frames

from igrs.constants import ReturnCode
from igrs.errors import RemoteError
from igrs.profiles.av import (
    MEDIA_RECORDER,
    MEDIA_RENDERER,
    MEDIA_SERVER,
    AvController,
    LiveSource,
    MulticastReceiver,
    MulticastSender,
    attach_media_server,
    attach_multicast_group,
    attach_recorder,
    attach_renderer,
    from_didl,
    record_stream,
)
from igrs.profiles.av.live import synthetic_packets

pytestmark = pytest.mark.timeout(90)


def curl(*args: str) -> str:
    return subprocess.run(
        ["curl", "-s", "--max-time", "20", *args], capture_output=True, text=True, timeout=30
    ).stdout


async def test_browse_search_and_stream_with_ranges(
    home: Home, media_dir: Path, need_ffmpeg: None, require_cmd
) -> None:  # type: ignore[no-untyped-def]
    require_cmd("curl")
    server = await attach_media_server(home.pc, {"Media": media_dir}, watch_interval=None)
    try:
        av = AvController(home.cp)
        root = await av.browse(home.pc.device_id)
        assert [e.title for e in root.entries] == ["Media"] and root.total == 1
        share = root.entries[0].id
        allents = await av.browse_all(home.pc.device_id, share, sort="+dc:title")
        titles = [(e.title, e.mime) for e in allents]
        assert ("sub", "") in titles and ("clip", "video/mp4") in titles and ("tone", "audio/mpeg") in titles
        assert all(".hidden" not in e.url and "notes" not in e.url for e in allents)
        page = await av.browse(home.pc.device_id, share, start=1, count=2, sort="-res@size")
        assert len(page.entries) == 2 and page.total == len(allents)
        mp4 = next(e for e in allents if e.mime == "video/mp4")
        assert mp4.resolution == "160x120" and mp4.duration and abs(mp4.duration - 2.0) < 0.1
        assert mp4.size == (media_dir / "clip.mp4").stat().st_size
        found = await av.search(
            home.pc.device_id, 'upnp:class derivedfrom "object.item.videoItem"', sort="+res@size"
        )
        assert {e.title for e in found.entries} == {"clip", "deep"} and found.total == 3

        # the stream transport: a real decoder on the streamed media
        for e in allents:
            if e.mime.startswith(("video/", "audio/")):
                info = await asyncio.to_thread(
                    ffprobe, e.url, "format=format_name,duration", "stream=codec_type,codec_name"
                )
                assert float(info["duration"]) > 0.9, (e.title, info)
                assert await asyncio.to_thread(decode_ok, e.url), e.title
        ts = next(e for e in allents if e.url.endswith("clip.ts"))
        size = (media_dir / "clip.ts").stat().st_size
        # curl range fetches (206, exact bytes), HEAD, suffix and open ranges, MIME type
        out = await asyncio.to_thread(
            curl,
            "-o",
            "/dev/null",
            "-r",
            "0-1023",
            "-w",
            "%{http_code} %{size_download} %{content_type}",
            ts.url,
        )
        assert out == "206 1024 video/mp2t"
        out = await asyncio.to_thread(
            curl, "-o", "/dev/null", "-r", "-500", "-w", "%{http_code} %{size_download}", ts.url
        )
        assert out == "206 500"
        head = await asyncio.to_thread(curl, "-I", ts.url)
        assert "200 OK" in head and f"Content-Length: {size}" in head and "Accept-Ranges: bytes" in head
        want = (media_dir / "clip.ts").read_bytes()
        async with aiohttp.ClientSession() as http:
            async with http.get(ts.url, headers={"Range": "bytes=1000-"}) as r:
                assert r.status == 206 and await r.read() == want[1000:]
                assert r.headers["Content-Range"] == f"bytes 1000-{size - 1}/{size}"
            # a tail of the stream still decodes (TS resynchronises): ffprobe on a 206 body
            for rng in (f"bytes={size}-", "bytes=5-2", "bytes=x-y", "bytes=0-1,5-6", "lines=0-4"):
                async with http.get(ts.url, headers={"Range": rng}) as r:
                    assert r.status in (416, 200), (rng, r.status)
                    if r.status == 200:
                        assert await r.read() == want  # unknown unit: ignored, whole file

            # many clients at once get identical bytes
            async def fetch() -> bytes:
                async with http.get(ts.url) as r:
                    return await r.read()

            bodies = await asyncio.gather(*(fetch() for _ in range(20)))
            assert all(b == want for b in bodies)
            # hostile paths and methods
            base = ts.url.split("/av/")[0]
            for path, status in (
                ("/av/res/../../etc/passwd", "400"),
                ("/av/res/%2e%2e/%2e%2e/etc/passwd", "400"),
                ("/av/res/..%2f..%2fetc%2fpasswd", "400"),
                ("/av/res/nope/x.ts", "404"),
                ("/av/res/", "404"),
                ("/av/../IGRS", "400"),
                ("/av/res/" + "a" * 300, "404"),
                ("/av/res/%00", "400"),
                ("/av/thumb/nope.jpg", "404"),
                ("/av/live/nope", "404"),
            ):
                got = await asyncio.to_thread(
                    curl, "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", base + path
                )
                assert got == status, (path, got)
            async with http.post(ts.url, data=b"x") as r:
                assert r.status == 405
            thumb = next(e for e in allents if e.mime == "video/mp4").thumbnail
            async with http.get(thumb) as r:
                assert (
                    r.status == 200 and r.content_type == "image/jpeg" and (await r.read())[:2] == b"\xff\xd8"
                )
        size_range = await asyncio.to_thread(
            curl, "-o", "/dev/null", "-r", f"{size - 100}-", "-w", "%{http_code} %{size_download}", ts.url
        )
        assert size_range == "206 100"

        # change events: a new file raises SystemUpdateID for subscribers
        async with home.cp.session(home.pc.device_id, MEDIA_SERVER) as ms:  # noqa: SIM117
            async with ms.subscribe("SystemUpdateID") as changes:
                it = changes.__aiter__()
                first = await asyncio.wait_for(it.__anext__(), 5)
                shutil.copy(media_dir / "tone.mp3", media_dir / "sub" / "tone2.mp3")
                try:
                    assert await ms.Rescan() == first.value + 1
                    change = await asyncio.wait_for(it.__anext__(), 5)
                    assert change.value == first.value + 1
                finally:
                    (media_dir / "sub" / "tone2.mp3").unlink()
                    await ms.Rescan()
    finally:
        await server.aclose()


async def test_media_server_bad_input(home: Home, media_dir: Path) -> None:
    server = await attach_media_server(home.pc, [media_dir], watch_interval=None, use_ffprobe=False)
    try:
        async with home.cp.session(home.pc.device_id, MEDIA_SERVER) as ms:
            cases = [
                ("Browse", {"ObjectID": "nope"}, ReturnCode.NOT_FOUND),
                ("Browse", {"ObjectID": "../../etc"}, ReturnCode.NOT_FOUND),
                ("Browse", {"ObjectID": "0", "BrowseFlag": "Everything"}, ReturnCode.BAD_MESSAGE),
                ("Browse", {"ObjectID": "0", "StartingIndex": -1}, ReturnCode.BAD_MESSAGE),
                ("Browse", {"ObjectID": "0", "RequestedCount": "10"}, ReturnCode.BAD_MESSAGE),  # wrong type
                ("Browse", {"ObjectID": 0}, ReturnCode.BAD_MESSAGE),
                ("Browse", {}, ReturnCode.BAD_MESSAGE),
                ("Browse", {"ObjectID": "0", "SortCriteria": "+nothing"}, ReturnCode.BAD_MESSAGE),
                ("Search", {"ContainerID": "0", "SearchCriteria": "dc:title = "}, ReturnCode.BAD_MESSAGE),
                ("Search", {"ContainerID": "zzz"}, ReturnCode.NOT_FOUND),
                ("NoSuchAction", {}, ReturnCode.NOT_FOUND),
            ]
            for name, kwargs, code in cases:
                with pytest.raises(RemoteError) as err:
                    await getattr(ms, name)(**kwargs)
                assert err.value.return_code == code, (name, kwargs, err.value)
            caps = await ms.GetSortCapabilities()
            assert "dc:title" in caps
            raw = await ms.Browse(ObjectID="0", BrowseFlag="BrowseMetadata")
            assert raw["NumberReturned"] == "1" and from_didl(raw["Result"])[0].id == "0"
    finally:
        await server.aclose()


async def test_three_box_renderer_control_and_events(home: Home, media_dir: Path, need_ffmpeg: None) -> None:
    server = await attach_media_server(home.pc, {"Media": media_dir}, watch_interval=None)
    renderer = await attach_renderer(home.tv, position_interval=0.2)
    try:
        av = AvController(home.cp)
        share = (await av.browse(home.pc.device_id)).entries[0].id
        clip = next(e for e in await av.browse_all(home.pc.device_id, share) if e.mime == "video/mp4")
        async with home.cp.session(home.tv.device_id, MEDIA_RENDERER) as tv:  # noqa: SIM117
            async with tv.subscribe("TransportState", "CurrentTitle", "Position") as changes:
                seen: list[tuple[str, object]] = []

                async def until(pred) -> None:  # type: ignore[no-untyped-def]
                    async for ch in changes:
                        seen.append((ch.name, ch.value))
                        if pred(ch):
                            return

                # the phone makes the TV play an item of the PC (three-box model)
                assert await av.play(home.pc.device_id, home.tv.device_id, clip.id) == "PLAYING"
                await asyncio.wait_for(until(lambda c: c.name == "Position" and c.value > 0), 5)
                assert ("CurrentTitle", "clip") in seen and ("TransportState", "PLAYING") in seen
                assert renderer.CurrentURI == clip.url and renderer.Duration == pytest.approx(2.0, abs=0.1)
                assert await tv.Pause() == "PAUSED_PLAYBACK"
                assert await tv.Seek(Position=1.5) == 1.5
                assert await tv.SetVolume(Volume=30) == 30
                assert await tv.get("Volume") == 30
                assert await tv.Play() == "PLAYING"
                # the 2 s clip ends by itself: back to STOPPED
                await asyncio.wait_for(
                    until(
                        lambda c: (
                            c == ("TransportState", "STOPPED")
                            or (c.name, c.value) == ("TransportState", "STOPPED")
                        )
                    ),
                    5,
                )
                for kwargs, code in (
                    ({"URI": "file:///etc/passwd"}, ReturnCode.BAD_MESSAGE),
                    ({"ItemID": "unknown"}, ReturnCode.NOT_FOUND),
                    ({"URI": 5}, ReturnCode.BAD_MESSAGE),
                    ({"Volume": 3}, ReturnCode.BAD_MESSAGE),
                ):
                    with pytest.raises(RemoteError) as err:
                        await tv.PlayTo(**kwargs)
                    assert err.value.return_code == code
                with pytest.raises(RemoteError) as err:
                    await tv.SetVolume(Volume=1000)
                assert err.value.return_code == ReturnCode.BAD_MESSAGE
                with pytest.raises(RemoteError) as err:
                    await tv.Seek(Position="1")
                assert err.value.return_code == ReturnCode.BAD_MESSAGE
                with pytest.raises(RemoteError) as err:
                    await tv.Next()
                assert err.value.return_code == ReturnCode.PRECONDITION_FAILED
    finally:
        await renderer.aclose()
        await server.aclose()


async def test_ffmpeg_output_decodes_what_the_tv_plays(home: Home, media_dir: Path, need_ffmpeg: None) -> None:
    from igrs.profiles.av import FfmpegOutput

    server = await attach_media_server(home.pc, {"Media": media_dir}, watch_interval=None)
    backend = FfmpegOutput()
    renderer = await attach_renderer(home.tv, backend=backend, position_interval=0.2)
    try:
        av = AvController(home.cp)
        share = (await av.browse(home.pc.device_id)).entries[0].id
        clip = next(e for e in await av.browse_all(home.pc.device_id, share) if e.url.endswith("clip.ts"))
        await av.play(home.pc.device_id, home.tv.device_id, clip.id)
        for _ in range(100):
            if backend.decoded_ok:
                break
            await asyncio.sleep(0.1)
        assert backend.decoded_ok == 1
        await asyncio.sleep(0.3)
        assert renderer.TransportState == "STOPPED"
    finally:
        await renderer.aclose()
        await server.aclose()


async def test_live_stream_recorded_by_the_pc(home: Home, tmp_path: Path, need_ffmpeg: None) -> None:
    """The TV exposes its live programme (test signal); the PC records 3 s of it."""
    tv_server = await attach_media_server(home.tv, watch_interval=None)
    live = tv_server.add_live("programme", LiveSource.test_signal(size="160x120"), "TV programme")
    rec_dir = tmp_path / "recordings"
    rec_dir.mkdir()
    recorder = attach_recorder(home.pc, rec_dir)
    try:
        av = AvController(home.cp)
        found = await av.search(
            home.tv.device_id, 'upnp:class derivedfrom "object.item.videoItem.videoBroadcast"'
        )
        assert [e.url for e in found.entries] == [live.url]
        async with home.cp.session(home.pc.device_id, MEDIA_RECORDER) as rec:
            name = await rec.Record(URI=live.url, Seconds=3.0, Name="programme.ts", Wait=True)
            assert name == "programme.ts" and await rec.get("LastRecording") == "programme.ts"
            for kwargs, code in (
                ({"URI": "file:///etc/passwd", "Seconds": 1.0}, ReturnCode.BAD_MESSAGE),
                ({"URI": live.url, "Seconds": 0.0}, ReturnCode.BAD_MESSAGE),
                ({"URI": live.url, "Seconds": 1.0, "Name": "../evil.ts"}, ReturnCode.BAD_MESSAGE),
                ({"URI": live.url, "Seconds": 1.0, "Name": "programme.ts"}, ReturnCode.CONFLICT),
                ({"URI": live.url, "Seconds": "1"}, ReturnCode.BAD_MESSAGE),
            ):
                with pytest.raises(RemoteError) as err:
                    await rec.Record(**kwargs)
                assert err.value.return_code == code, kwargs
        out = rec_dir / "programme.ts"
        assert not list(rec_dir.glob("*.part"))
        info = ffprobe(str(out), "format=format_name,duration", "stream=codec_type")
        assert info["format_name"] == "mpegts" and "has_video" in info and "has_audio" in info
        assert 1.5 < float(info["duration"]) < 6, info
        assert video_frames(str(out)) >= 25  # >= 1 s of the 25 fps signal decodes (joined mid-GOP)
        # the client helper does the same
        n = await record_stream(live.url, tmp_path / "helper.ts", 1.5)
        assert n > 10_000 and ffprobe(str(tmp_path / "helper.ts"))["format_name"] == "mpegts"
    finally:
        await recorder.aclose()
        await tv_server.aclose()


async def test_multicast_group_on_loopback(
    home: Home, media_dir: Path, tmp_path: Path, need_ffmpeg: None
) -> None:
    """The PC streams an item to an AV multicast group on lo; two members receive the same stream."""
    server = await attach_media_server(home.pc, {"Media": media_dir}, watch_interval=None)
    group = attach_multicast_group(home.pc, server)
    assert group.interface == "127.0.0.1"
    try:
        av = AvController(home.cp)
        share = (await av.browse(home.pc.device_id)).entries[0].id
        clip = next(e for e in await av.browse_all(home.pc.device_id, share) if e.url.endswith("clip.ts"))
        from igrs.profiles.av import AV_MULTICAST_GROUP

        async with home.cp.session(home.pc.device_id, AV_MULTICAST_GROUP) as g:
            a, b = tmp_path / "a.ts", tmp_path / "b.ts"
            rx = [asyncio.create_task(record_stream("udp://239.255.77.9:15004", p, 3.0)) for p in (a, b)]
            await asyncio.sleep(0.2)
            uri = await g.StartGroupStream(Source=clip.id, Group="239.255.77.9", Port=15004)
            assert uri == "udp://239.255.77.9:15004" and await g.get("Streams") == [uri]
            sizes = await asyncio.gather(*rx)
            assert await g.StopGroupStream(URI=uri) is True
            for kwargs, code in (
                ({"Source": clip.id, "Group": "224.0.0.1"}, ReturnCode.BAD_MESSAGE),
                ({"Source": clip.id, "Group": "8.8.8.8"}, ReturnCode.BAD_MESSAGE),
                ({"Source": "nope"}, ReturnCode.NOT_FOUND),
                ({"Source": share}, ReturnCode.BAD_MESSAGE),
                ({"Source": clip.id, "Port": 80}, ReturnCode.BAD_MESSAGE),
            ):
                with pytest.raises(RemoteError) as err:
                    await g.StartGroupStream(**kwargs)
                assert err.value.return_code == code, kwargs
            with pytest.raises(RemoteError) as err:
                await g.StopGroupStream(URI=uri)
            assert err.value.return_code == ReturnCode.NOT_FOUND
        assert min(sizes) > 50_000
        for p in (a, b):
            info = ffprobe(str(p), "format=format_name", "stream=codec_type,codec_name")
            assert info["format_name"] == "mpegts" and info.get("has_video"), info
            assert video_frames(str(p)) >= 40  # the 2 s clip, looped: at least most of it decodes
    finally:
        await group.aclose()
        await server.aclose()


async def test_synthetic_stream_without_ffmpeg(tmp_path: Path) -> None:
    """The fallback live stream is valid MPEG-TS (checked by ffprobe when it exists)."""
    data = b"".join(synthetic_packets(i) for i in range(50))
    assert len(data) % 188 == 0 and all(data[i] == 0x47 for i in range(0, len(data), 188))
    source = LiveSource.synthetic(rate=200)
    sender = MulticastSender(source, "239.255.77.10", 15006, interface="127.0.0.1")
    async with MulticastReceiver("239.255.77.10", 15006, "127.0.0.1") as rx:
        await sender.start()
        try:
            got = b""
            while len(got) < 20 * 188:
                chunk = await rx.recv(timeout=3)
                assert chunk, "nothing received"
                got += chunk
        finally:
            await sender.aclose()
            await source.aclose()
    (tmp_path / "syn.ts").write_bytes(got)
    if shutil.which("ffprobe"):
        assert ffprobe(str(tmp_path / "syn.ts"))["format_name"] == "mpegts"
