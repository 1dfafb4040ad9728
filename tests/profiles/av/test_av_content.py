"""Content directory: scanning, paging, sorting, search criteria, DIDL-Lite (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from didl_lite import didl_lite

from igrs.constants import ReturnCode
from igrs.profiles.av.content import ROOT_ID, ContentDirectory, ContentError, parse_search, parse_sort
from igrs.profiles.av.didl import Entry, from_didl, to_didl
from igrs.profiles.av.media import format_duration, parse_duration


def make_tree(root: Path, n: int = 25) -> None:
    (root / "b").mkdir()
    for i in range(n):
        (root / f"v{i:02d}.ts").write_bytes(b"\x47" * (188 * (i + 1)))
    (root / "b" / "song.mp3").write_bytes(b"ID3" + b"\0" * 100)
    (root / "b" / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x40\0\0\0\x30" + b"\0" * 20)
    (root / ".secret.ts").write_bytes(b"x")
    (root / "readme.txt").write_text("x")


@pytest.fixture
async def cd(tmp_path: Path) -> ContentDirectory:
    make_tree(tmp_path)
    directory = ContentDirectory({"Share": tmp_path}, use_ffprobe=False)
    assert await directory.scan()
    return directory


def share_id(cd: ContentDirectory) -> str:
    return cd.browse(ROOT_ID).objects[0].id


async def test_tree_hidden_and_non_media_not_shared(cd: ContentDirectory) -> None:
    root = cd.browse(ROOT_ID)
    assert [o.title for o in root.objects] == ["Share"]
    page = cd.browse(share_id(cd))
    assert page.total == 26  # 25 videos + folder b; no .secret.ts, no readme.txt
    assert page.objects[0].title == "b" and page.objects[0].is_container  # containers first
    b = cd.browse(page.objects[0].id)
    assert sorted((o.title, o.cls) for o in b.objects) == [
        ("pic", "object.item.imageItem.photo"),
        ("song", "object.item.audioItem.musicTrack"),
    ]
    pic = next(o for o in b.objects if o.title == "pic")
    assert pic.info is not None and pic.info.resolution == "64x48"  # from the PNG header


async def test_paging_is_complete_and_disjoint(cd: ContentDirectory) -> None:
    sid = share_id(cd)
    seen: list[str] = []
    for start in range(0, 30, 7):
        page = cd.browse(sid, start=start, count=7, sort="+dc:title")
        assert page.total == 26
        seen += [o.id for o in page.objects]
    assert len(seen) == len(set(seen)) == 26
    assert cd.browse(sid, start=26, count=5).objects == []
    assert cd.browse(sid, start=1000).objects == []


async def test_sorting(cd: ContentDirectory) -> None:
    sid = share_id(cd)
    by_size = cd.browse(sid, sort="-res@size").objects
    sizes = [o.info.size for o in by_size if o.info]
    assert sizes == sorted(sizes, reverse=True) and by_size[-1].is_container  # unknown last
    titles = [o.title for o in cd.browse(sid, sort="+upnp:class,-dc:title").objects]
    assert titles[0] == "b" and titles[1] == "v24" and titles[-1] == "v00"
    with pytest.raises(ContentError) as err:
        cd.browse(sid, sort="+dc:creator")
    assert err.value.return_code == ReturnCode.BAD_MESSAGE
    assert parse_sort("dc:title, -res@size") == [("dc:title", False), ("res@size", True)]


async def test_search(cd: ContentDirectory) -> None:
    found = cd.search(ROOT_ID, 'upnp:class derivedfrom "object.item.videoItem" and res@size >= "4512"')
    assert {o.title for o in found.objects} == {f"v{i:02d}" for i in range(23, 25)}
    found = cd.search(ROOT_ID, '(dc:title contains "SON" or dc:title = "pic") and @id exists true')
    assert {o.title for o in found.objects} == {"song", "pic"}
    assert cd.search(ROOT_ID, "*").total == 29  # every descendant: Share, b, 27 items
    page = cd.search(ROOT_ID, 'upnp:class = "object.item.videoItem"', start=5, count=5, sort="-dc:title")
    assert page.total == 25 and [o.title for o in page.objects] == ["v19", "v18", "v17", "v16", "v15"]


@pytest.mark.parametrize(
    "bad",
    [
        "dc:title contains",
        'nosuch:prop = "x"',
        'dc:title ~ "x"',
        '(dc:title = "x"',
        "dc:title = x",
        'res@size > "big"',
        'dc:title = "x" and',
        "@id exists maybe",
        '"x"',
        "x" * 2000,
    ],
)
def test_bad_search_criteria(bad: str) -> None:
    with pytest.raises(ContentError) as err:
        parse_search(bad)
    assert err.value.return_code == ReturnCode.BAD_MESSAGE


async def test_bad_browse_input(cd: ContentDirectory) -> None:
    for oid in ("nope", "../etc/passwd", "", "0/../.."):
        with pytest.raises(ContentError) as err:
            cd.browse(oid)
        assert err.value.return_code == ReturnCode.NOT_FOUND
    with pytest.raises(ContentError):
        cd.browse(ROOT_ID, start=-1)
    with pytest.raises(ContentError):
        cd.browse(ROOT_ID, count=-5)
    item = cd.search(ROOT_ID, 'dc:title = "v00"').objects[0]
    with pytest.raises(ContentError):  # an item has no children
        cd.browse(item.id)
    assert cd.browse(item.id, metadata=True).objects == [item]


async def test_changes_bump_update_id(cd: ContentDirectory, tmp_path: Path) -> None:
    first = cd.update_id
    ids = {o.id for o in cd.objects.values()}
    assert not await cd.scan() and cd.update_id == first  # nothing changed
    (tmp_path / "new.mp4").write_bytes(b"\0" * 10)
    assert await cd.scan() and cd.update_id == first + 1
    assert ids < {o.id for o in cd.objects.values()}  # ids are stable across scans
    (tmp_path / "v00.ts").unlink()
    assert await cd.scan() and cd.update_id == first + 2


async def test_symlink_escaping_the_share_is_not_shared(tmp_path: Path) -> None:
    share, outside = tmp_path / "share", tmp_path / "outside"
    share.mkdir()
    outside.mkdir()
    (outside / "private.mp4").write_bytes(b"x")
    (share / "ok.mp4").write_bytes(b"x")
    os.symlink(outside / "private.mp4", share / "escape.mp4")
    os.symlink(outside, share / "escape-dir")
    os.symlink(share / "ok.mp4", share / "inside.mp4")
    cd = ContentDirectory([share], use_ffprobe=False)
    await cd.scan()
    titles = {o.title for o in cd.objects.values()}
    assert "ok" in titles and "inside" in titles
    assert not {"escape", "escape-dir", "private"} & titles


def test_didl_round_trip_and_python_didl_lite_reads_it() -> None:
    entries = [
        Entry("c1", "0", "Films & more", "object.container.storageFolder", child_count=3),
        Entry(
            "i1",
            "c1",
            "Clip <1>",
            "object.item.videoItem",
            url="http://h:1/av/res/i1/clip.mp4",
            mime="video/mp4",
            size=1234,
            duration=3723.5,
            resolution="160x120",
            bitrate=80000,
            thumbnail="http://h:1/av/thumb/i1.jpg",
            date="2024-01-01T00:00:00",
        ),
    ]
    xml = to_didl(entries)
    assert from_didl(xml) == entries
    objs = didl_lite.from_xml_string(xml)
    assert objs[0].title == "Films & more" and objs[1].upnp_class == "object.item.videoItem"
    assert objs[1].res[0].uri == entries[1].url and objs[1].res[0].protocol_info == "http-get:*:video/mp4:*"
    assert objs[1].res[0].duration == "1:02:03.500"


def test_duration_format() -> None:
    assert format_duration(0.04) == "0:00:00.040"
    assert parse_duration("1:02:03.500") == 3723.5
    assert parse_duration("12.5") == 12.5
    assert parse_duration("x:1") is None and parse_duration("") is None


@pytest.mark.parametrize("text", ["<x/>", "not xml", "<DIDL-Lite/>"])
def test_from_didl_rejects(text: str) -> None:
    from igrs.errors import ProtocolError

    with pytest.raises(ProtocolError):
        from_didl(text)
