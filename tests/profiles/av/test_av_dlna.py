"""DLNA-correct media (issue 14 item 3; specs/av-profile.md §4, §6): DLNA.ORG_PN from the codecs
ffprobe reports, one value for the DIDL's 4th protocolInfo field and contentFeatures.dlna.org,
transferMode echoed, TimeSeekRange refused with 406; from_didl keeps a server's raw
protocolInfo and reads a bare <item>; browse_all pages past TotalMatches=0."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from av_helpers import Home

from igrs.node.service import Service, action, attribute
from igrs.profiles.av import AvController, Entry, attach_media_server, from_didl, to_didl
from igrs.profiles.av.dlna import dlna_features, dlna_profile
from igrs.profiles.av.media import MediaInfo, probe_file
from igrs.profiles.av.server import MEDIA_SERVER

pytestmark = pytest.mark.timeout(60)

MINIDLNA_ITEM = (
    '<item id="64$1$0" parentID="64$1" restricted="1"><dc:title>clip</dc:title>'
    "<upnp:class>object.item.videoItem</upnp:class>"
    '<res size="140000" duration="0:00:10.000" bitrate="17500" sampleFrequency="44100" nrAudioChannels="2" '
    'protocolInfo="http-get:*:video/mp4:DLNA.ORG_PN=AVC_MP4_HP_HD_AAC;DLNA.ORG_OP=01;DLNA.ORG_CI=0;'
    'DLNA.ORG_FLAGS=01700000000000000000000000000000">http://10.77.1.10:8200/MediaItems/22.mp4</res></item>'
)


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("clip.mp4", "AVC_MP4_"),  # libx264 ultrafast: Constrained Baseline, 160x120
        ("clip.ts", "MPEG_TS_SD_EU_ISO"),
        ("tone.mp3", "MP3"),
        ("still.png", "PNG_LRG"),
        ("still.jpg", "JPEG_SM"),
    ],
)
async def test_profile_from_the_codecs_ffprobe_reports(
    media_dir: Path, need_ffmpeg: None, name: str, profile: str
) -> None:
    info = await probe_file(media_dir / name)
    assert (dlna_profile(info) or "").startswith(profile), info
    assert dlna_features(info).startswith(f"DLNA.ORG_PN={dlna_profile(info)};DLNA.ORG_OP=01;DLNA.ORG_CI=0;")


def test_profile_table() -> None:
    hd = MediaInfo("video/mp4", 1, width=1920, height=1080, container="mov,mp4", video_codec="h264",
                   video_profile="Main", audio_codec="aac")
    assert dlna_profile(hd) == "AVC_MP4_MP_HD_1080i_AAC"
    assert dlna_profile(MediaInfo("audio/wav", 1, container="wav", audio_codec="pcm_s16le")) is None
    live = dlna_features(MediaInfo("video/mp2t", 0), live=True)
    assert live == "DLNA.ORG_OP=00;DLNA.ORG_CI=0;DLNA.ORG_FLAGS=01700000000000000000000000000000"
    assert dlna_features(MediaInfo("image/png", 1, width=10, height=10)).endswith("FLAGS=00D" + "0" * 29)


def test_from_didl_keeps_the_raw_protocol_info_and_reads_a_bare_item() -> None:
    (entry,) = from_didl(MINIDLNA_ITEM)  # bare, prefixes undeclared
    assert entry.id == "64$1$0" and entry.title == "clip" and entry.mime == "video/mp4"
    assert entry.protocol_info.startswith("http-get:*:video/mp4:DLNA.ORG_PN=AVC_MP4_HP_HD_AAC;")
    assert (entry.sample_rate, entry.channels, entry.bitrate) == (44100, 2, 140000)
    (again,) = from_didl(to_didl([entry]))  # a relay DMS -> igrs -> DMR keeps DLNA.ORG_PN
    assert again == entry
    declared = MINIDLNA_ITEM.replace(
        "<item ", '<item xmlns="urn:schemas-upnp-org:metadata-1-0/DIDL-Lite/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:upnp="urn:schemas-upnp-org:metadata-1-0/upnp/" ', 1)
    assert from_didl('<?xml version="1.0"?>' + declared) == [entry]
    plain = Entry("i", "0", "t", "object.item.videoItem", url="http://h/x.mp4", mime="video/mp4")
    assert from_didl(to_didl([plain])) == [plain] and plain.dlna_features == "*"


async def test_didl_and_http_agree_and_dlna_headers(home: Home, media_dir: Path, need_ffmpeg: None) -> None:
    server = await attach_media_server(home.pc, {"Media": media_dir}, watch_interval=None)
    try:
        av = AvController(home.cp)
        share = (await av.browse(home.pc.device_id)).entries[0].id
        items = [e for e in await av.browse_all(home.pc.device_id, share) if e.url]
        assert {e.title for e in items} >= {"clip", "tone", "still"}
        async with aiohttp.ClientSession() as http:
            for e in items:
                async with http.head(e.url, headers={"getcontentFeatures.dlna.org": "1"}) as r:
                    assert r.status == 200 and r.headers["contentFeatures.dlna.org"] == e.dlna_features, e
                    assert e.dlna_features.startswith("DLNA.ORG_PN=") or e.mime == "audio/wav", e
            mp4 = next(e for e in items if e.mime == "video/mp4")
            png = next(e for e in items if e.mime == "image/png")
            for url, asked, status, mode in (
                (mp4.url, {}, 200, "Streaming"),
                (mp4.url, {"transferMode.dlna.org": "Background"}, 200, "Background"),
                (mp4.url, {"transferMode.dlna.org": "Interactive"}, 406, None),
                (png.url, {}, 200, "Interactive"),
                (png.url, {"transferMode.dlna.org": "Streaming"}, 406, None),
                (mp4.url, {"TimeSeekRange.dlna.org": "npt=1-"}, 406, None),
                (mp4.url, {"Range": "bytes=10-19"}, 206, "Streaming"),
            ):
                async with http.get(url, headers=asked) as r:
                    assert r.status == status, (url, asked)
                    if mode:
                        assert r.headers["transferMode.dlna.org"] == mode
                    if status == 206:
                        assert len(await r.read()) == 10
    finally:
        await server.aclose()


class UnknownTotalServer(Service):
    """A media server that pages by 2 and always answers TotalMatches=0 (CDS:1 "unknown")."""

    service_type = MEDIA_SERVER
    name = "unknown-total server"
    SystemUpdateID = attribute(int, 1, notifiable=True)
    ITEMS = [Entry(f"i{n}", "0", f"item {n}", "object.item.audioItem", url=f"http://h/{n}.mp3",
                   mime="audio/mpeg") for n in range(5)]

    @action
    async def Browse(self, ObjectID: str, BrowseFlag: str = "BrowseDirectChildren", StartingIndex: int = 0,
                     RequestedCount: int = 0, SortCriteria: str = "") -> dict[str, str]:
        page = self.ITEMS[StartingIndex:StartingIndex + 2]
        return {"Result": to_didl(page), "NumberReturned": str(len(page)), "TotalMatches": "0", "UpdateID": "1"}


async def test_browse_all_pages_past_total_matches_zero(home: Home) -> None:
    home.pc.add_service(UnknownTotalServer())
    entries = await AvController(home.cp).browse_all(home.pc.device_id)
    assert [e.id for e in entries] == [f"i{n}" for n in range(5)]
