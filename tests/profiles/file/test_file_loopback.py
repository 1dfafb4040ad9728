"""File profile end to end on loopback: a Device shares folders, paired ControlPoints browse,
get (ranges, resume) and put (resume, checksum), with per-peer permissions and hostile input."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from pairing import Pairings
from support import closing

from igrs import ControlPoint, Device
from igrs.constants import (
    FILE_CHECKSUM_MISMATCH,
    FILE_PATH_REFUSED,
    FILE_QUOTA_EXCEEDED,
    ReturnCode,
)
from igrs.errors import IGRSError
from igrs.profiles.file import SharedFolder, attach_file_server, parse_share_spec
from igrs.profiles.file.client import FileClient, error_code
from igrs.profiles.file.paths import PARTIAL_DIR

LO = ["lo"]
pytestmark = pytest.mark.timeout(90)


def _data(n: int, seed: int = 1) -> bytes:
    out, block = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 32
    return bytes(out[:n])


@pytest.fixture
async def home(tmp_path: Path, free_udp_port: int) -> AsyncIterator[dict]:
    pub, inbox, outside = tmp_path / "pub", tmp_path / "inbox", tmp_path / "outside"
    for d in (pub, inbox, outside):
        d.mkdir()
    (outside / "secret.txt").write_text("top secret")
    (pub / "hello.txt").write_text("hello world")
    (pub / "big.bin").write_bytes(_data(3_000_000))
    (pub / "sub").mkdir()
    (pub / "escape").symlink_to(outside)
    (pub / "escape.txt").symlink_to(outside / "secret.txt")
    (pub / "inside.txt").symlink_to(pub / "hello.txt")
    pins: list[str] = []
    async with Device(name="PC", device_type="PC", interfaces=LO, port=free_udp_port, http_port=0,
                      on_pin=pins.append, watch_interfaces=False) as dev:
        server = attach_file_server(dev, [SharedFolder("pub", pub),
                                          SharedFolder("inbox", inbox, writable=True, quota=2_000_000)])
        async with closing(Pairings(dev, free_udp_port, pins, LO)) as paired:
            yield {"dev": dev, "server": server, "paired": paired, "pub": pub, "inbox": inbox,
                   "outside": outside, "tmp": tmp_path}


async def _code(coro) -> int | None:
    with pytest.raises(IGRSError) as err:
        await coro
    return error_code(err.value)


async def test_browse_stat_get_with_ranges_and_resume(home: dict) -> None:
    cp = await home["paired"]()
    dev = home["dev"]
    async with FileClient.connect(cp, dev.device_id) as files:
        shares = await files.ls("/")
        assert [(e.name, e.type, e.access) for e in shares] == [("inbox", "share", "rw"),
                                                                ("pub", "share", "ro")]
        names = [e.name for e in await files.ls("/pub")]
        assert names == ["big.bin", "hello.txt", "inside.txt", "sub"]  # escaping symlinks hidden
        st = await files.stat("/pub/big.bin", checksum=True)
        assert st["size"] == "3000000" and st["sha256"] == hashlib.sha256(_data(3_000_000)).hexdigest()
        # plain HTTP with ranges on the capability URL
        info = await files.proxy.BeginGet(path="/pub/big.bin")
        async with aiohttp.ClientSession() as http:
            url = files.base_url + info["url"]
            async with http.get(url, headers={"Range": "bytes=100-199"}) as r:
                assert r.status == 206 and await r.read() == _data(3_000_000)[100:200]
            async with http.get(url, headers={"Range": "bytes=5000000-"}) as r:
                assert r.status == 416
            async with http.head(url) as r:
                assert r.status == 200 and r.headers["Content-Length"] == "3000000"
            async with http.get(files.base_url + "/files/not-a-token") as r:
                assert r.status == 404
        # an interrupted download resumes from its partial
        dest = home["tmp"] / "big.copy"
        seen: list[int] = []
        task = asyncio.create_task(files.get("/pub/big.bin", dest, rate_limit=2_000_000,
                                             progress=lambda d, t: seen.append(d)))
        while not seen or seen[-1] < 1_000_000:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        part = dest.with_name(dest.name + ".igrs-part")
        assert part.exists() and not dest.exists()
        kept = part.stat().st_size
        starts: list[int] = []
        await files.get("/pub/big.bin", dest, progress=lambda d, t: starts.append(d))
        assert starts[0] == kept > 0
        assert dest.read_bytes() == _data(3_000_000) and not part.exists()


async def test_put_resumes_after_a_killed_upload_and_verifies_checksum(home: dict) -> None:
    cp = await home["paired"]()
    inbox: Path = home["inbox"]
    src = home["tmp"] / "upload.bin"
    payload = _data(1_500_000, seed=7)
    src.write_bytes(payload)
    async with FileClient.connect(cp, home["dev"].device_id) as files:
        async with files.watch() as changes:
            it = changes.__aiter__()
            await asyncio.wait_for(it.__anext__(), 5)  # the initial value
            (inbox / "keep.bin").write_bytes(b"stored before")
            seen: list[int] = []
            task = asyncio.create_task(files.put(src, "/inbox/keep.bin", overwrite=True, rate_limit=1_000_000,
                                                 progress=lambda d, t: seen.append(d)))
            while not seen or seen[-1] < 500_000:
                await asyncio.sleep(0.02)
            task.cancel()  # the client dies mid-upload
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.3)
            # nothing stored was lost, nothing half-written under the final name
            assert (inbox / "keep.bin").read_bytes() == b"stored before"
            parts = list((inbox / PARTIAL_DIR).glob("*.part"))
            assert len(parts) == 1 and 0 < parts[0].stat().st_size < len(payload)
            kept = parts[0].stat().st_size
            resumed: list[int] = []
            digest = await files.put(src, "/inbox/keep.bin", overwrite=True, on_resume=resumed.append)
            assert resumed == [kept]
            assert digest == hashlib.sha256(payload).hexdigest()
            assert (inbox / "keep.bin").read_bytes() == payload
            assert not list((inbox / PARTIAL_DIR).glob("*.part"))
            change = await asyncio.wait_for(it.__anext__(), 5)
            assert change.value["op"] == "put" and change.value["path"] == "/inbox/keep.bin"
        # a wrong checksum: 460, nothing stored, nothing left over
        bad = home["tmp"] / "bad.bin"
        bad.write_bytes(b"x" * 1000)
        code = await _code(files.put(bad, "/inbox/bad.bin", sha256="0" * 64))
        assert code == FILE_CHECKSUM_MISMATCH
        assert not (inbox / "bad.bin").exists() and not list((inbox / PARTIAL_DIR).glob("*.part"))
        # without overwrite an existing file is refused (409) and kept
        assert await _code(files.put(bad, "/inbox/keep.bin")) == ReturnCode.CONFLICT
        assert (inbox / "keep.bin").read_bytes() == payload
        # several PUTs (chunk_size) and an empty file
        await files.put(bad, "/inbox/chunked.bin", chunk_size=300)
        assert (inbox / "chunked.bin").read_bytes() == b"x" * 1000
        empty = home["tmp"] / "empty"
        empty.write_bytes(b"")
        await files.put(empty, "/inbox/empty")
        assert (inbox / "empty").read_bytes() == b""


async def test_mkdir_move_delete(home: dict) -> None:
    cp = await home["paired"]()
    inbox: Path = home["inbox"]
    async with FileClient.connect(cp, home["dev"].device_id) as files:
        await files.mkdir("/inbox/a/b", parents=True)
        assert await _code(files.mkdir("/inbox/a")) == ReturnCode.CONFLICT
        assert await _code(files.mkdir("/inbox/x/y")) == ReturnCode.NOT_FOUND
        (inbox / "a" / "b" / "f.txt").write_text("f")
        await files.mv("/inbox/a/b/f.txt", "/inbox/a/g.txt")
        assert (inbox / "a" / "g.txt").read_text() == "f"
        (inbox / "other.txt").write_text("other")
        assert await _code(files.mv("/inbox/other.txt", "/inbox/a/g.txt")) == ReturnCode.CONFLICT
        assert (inbox / "a" / "g.txt").read_text() == "f"
        await files.mv("/inbox/other.txt", "/inbox/a/g.txt", overwrite=True)
        assert (inbox / "a" / "g.txt").read_text() == "other"
        assert await _code(files.mv("/inbox/a", "/inbox/a/b/c")) == ReturnCode.CONFLICT
        assert await _code(files.rm("/inbox/a")) == ReturnCode.CONFLICT
        await files.rm("/inbox/a", recursive=True)
        assert not (inbox / "a").exists()
        assert await _code(files.rm("/inbox")) == ReturnCode.FORBIDDEN
        assert await _code(files.rm("/inbox/nothing")) == ReturnCode.NOT_FOUND


async def test_permissions_per_peer(home: dict) -> None:
    alice, bob = await home["paired"](), await home["paired"]()
    server = home["server"]
    server.shares["inbox"].peers[str(bob.device_id)] = "ro"
    server.shares["pub"].peers[str(bob.device_id)] = "none"
    src = home["tmp"] / "f.txt"
    src.write_text("data")
    dev = home["dev"].device_id
    async with FileClient.connect(alice, dev) as a, FileClient.connect(bob, dev) as b:
        await a.put(src, "/inbox/f.txt")
        assert [e.name for e in await b.ls("/")] == ["inbox"]
        assert await _code(b.ls("/pub")) == ReturnCode.NOT_FOUND  # not disclosed
        assert [e.name for e in await b.ls("/inbox")] == ["f.txt"]
        assert await _code(b.put(src, "/inbox/g.txt")) == ReturnCode.FORBIDDEN
        assert await _code(b.rm("/inbox/f.txt")) == ReturnCode.FORBIDDEN
        assert await _code(a.put(src, "/pub/g.txt")) == ReturnCode.FORBIDDEN  # pub is read-only
        # a capability URL is bound to the address and share access of the peer it was made for
        info = await a.proxy.BeginPut(path="/inbox/h.txt", size=4, sha256=hashlib.sha256(b"data").hexdigest())
        server.shares["inbox"].peers[str(alice.device_id)] = "none"
        async with aiohttp.ClientSession() as http, \
                http.put(a.base_url + info["url"], data=b"data", headers={"Upload-Offset": "0"}) as r:
            assert r.status == 403
        assert not (home["inbox"] / "h.txt").exists()


@pytest.mark.parametrize("path", [
    "/pub/../inbox/x", "/pub/sub/../../etc/passwd", "/pub/a\x7fb", "/pub/a\\..\\b", "/pub/./hello.txt",
    "/pub/escape/secret.txt", "/pub/escape.txt", "/pub/" + "a" * 300, "/inbox/" + PARTIAL_DIR,
])
async def test_hostile_paths_are_refused(home: dict, path: str) -> None:
    cp = await home["paired"]()
    async with FileClient.connect(cp, home["dev"].device_id) as files:
        assert await _code(files.stat(path)) == FILE_PATH_REFUSED
        assert await _code(files.proxy.BeginGet(path=path)) == FILE_PATH_REFUSED
        assert await _code(files.proxy.BeginPut(path=path, size=1, sha256="0" * 64)) in (
            FILE_PATH_REFUSED, ReturnCode.FORBIDDEN)
    assert (home["outside"] / "secret.txt").read_text() == "top secret"


async def test_inside_symlink_is_followed(home: dict) -> None:
    cp = await home["paired"]()
    async with FileClient.connect(cp, home["dev"].device_id) as files:
        dest = home["tmp"] / "in.txt"
        await files.get("/pub/inside.txt", dest)
        assert dest.read_text() == "hello world"


async def test_oversize_and_quota(home: dict) -> None:
    cp = await home["paired"]()
    home["server"].shares["inbox"].max_upload = 1_000_000
    async with FileClient.connect(cp, home["dev"].device_id) as files:
        assert await _code(files.proxy.BeginPut(path="/inbox/huge", size=1_000_001, sha256="0" * 64)) \
            == ReturnCode.PAYLOAD_TOO_LARGE
        (home["inbox"] / "fill.bin").write_bytes(b"\0" * 1_500_000)
        home["server"]._usage.clear()
        assert await _code(files.proxy.BeginPut(path="/inbox/more", size=600_000, sha256="0" * 64)) \
            == FILE_QUOTA_EXCEEDED
        # a body longer than declared: 413 before anything is stored under the final name
        src = home["tmp"] / "small"
        src.write_bytes(b"y" * 10)
        info = await files.proxy.BeginPut(path="/inbox/small", size=10,
                                          sha256=hashlib.sha256(b"y" * 10).hexdigest())
        async with aiohttp.ClientSession() as http, \
                http.put(files.base_url + info["url"], data=b"y" * 20, headers={"Upload-Offset": "0"}) as r:
            assert r.status == 413
        assert not (home["inbox"] / "small").exists()
        assert (home["inbox"] / "fill.bin").stat().st_size == 1_500_000
        async with aiohttp.ClientSession() as http, \
                http.put(files.base_url + info["url"], data=b"y" * 10, headers={"Upload-Offset": "3"}) as r:
            assert r.status == 409 and r.headers["Upload-Offset"] == "0"


async def test_free_space_counts_the_reservations_of_unfinished_uploads(home: dict) -> None:
    """issue 12 item 12: 16 reservations of "free - 1 MiB" were all accepted."""
    cp = await home["paired"]()
    home["server"].shares["inbox"].quota = None
    size = shutil.disk_usage(home["inbox"]).free * 3 // 5
    async with FileClient.connect(cp, home["dev"].device_id) as files:
        first = await files.proxy.BeginPut(path="/inbox/a.bin", size=size, sha256="0" * 64)
        with pytest.raises(IGRSError) as err:
            await files.proxy.BeginPut(path="/inbox/b.bin", size=size, sha256="1" * 64)
        assert error_code(err.value) == FILE_QUOTA_EXCEEDED
        assert "reserved by unfinished uploads" in str(err.value)
        await files.proxy.CancelPut(upload=first["upload"])  # the reservation ends with the upload
        await files.proxy.BeginPut(path="/inbox/b.bin", size=size, sha256="1" * 64)


async def test_a_quota_given_in_a_share_spec_is_enforced(home: dict) -> None:
    small = home["tmp"] / "small"
    small.mkdir()
    home["server"].add_folder(parse_share_spec(f"small={small}:rw:quota=1K"))  # as --share-folder gives it
    cp = await home["paired"]()
    src = home["tmp"] / "two-k.bin"
    src.write_bytes(_data(2048))
    async with FileClient.connect(cp, home["dev"].device_id) as files:
        with pytest.raises(IGRSError) as err:
            await files.put(src, "/small/two-k.bin")
        assert error_code(err.value) == FILE_QUOTA_EXCEEDED
        src.write_bytes(_data(1000))
        await files.put(src, "/small/one-k.bin")


async def test_a_committed_upload_gets_the_normal_file_mode(home: dict) -> None:
    cp = await home["paired"]()
    src = home["tmp"] / "note.txt"
    src.write_bytes(b"note")
    async with FileClient.connect(cp, home["dev"].device_id) as files:
        await files.put(src, "/inbox/note.txt")
    umask = int(next(ln for ln in Path("/proc/self/status").read_text().splitlines()
                     if ln.startswith("Umask:")).split()[1], 8)
    assert stat.S_IMODE((home["inbox"] / "note.txt").stat().st_mode) == 0o666 & ~umask != 0o600


async def test_unpaired_peer_cannot_use_the_file_server(home: dict, free_udp_port: int) -> None:
    async with ControlPoint(interfaces=LO, port=free_udp_port) as stranger:
        await stranger.locate(home["dev"].device_id, mx=1)
        with pytest.raises(IGRSError):
            async with FileClient.connect(stranger, home["dev"].device_id) as files:
                await files.ls("/")
    assert os.path.exists(home["pub"] / "hello.txt")
